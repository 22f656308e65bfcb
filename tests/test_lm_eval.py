"""The lm-eval model ``blocksft`` and the shipped tasks (``blocksft.lm_eval``), on the session's smoke run: lm-eval's
generations are ``mode=eval``'s token for token and score the same; batch size changes nothing; the multiple-choice
task goes through the Monte-Carlo log-likelihood; bad model arguments fail with one line; the command runs offline."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager, get_task_dict
from peft import PeftModel

from blocksft.data.arithmetic import ArithmeticConfig, generate_splits
from blocksft.data.datamodule import DiffusionSFTDataModule
from blocksft.errors import ConfigError
from blocksft.evaluation.decoding import decode
from blocksft.evaluation.likelihood import continuation_masks, loglikelihood, mask_counts
from blocksft.lm_eval import TASKS_DIR
from blocksft.lm_eval.__main__ import with_task_path
from blocksft.lm_eval.args import ModelArgs, eval_config
from blocksft.lm_eval.chains import chains_mc_dataset, distractors, eval_rows
from blocksft.lm_eval.model import BlockSFTLM
from blocksft.lm_eval.scorer import cut_at_stop
from blocksft.models import build_model, build_tokenizer, export_model
from blocksft.runs.compose import compose_config
from helpers.hf_models import BERT_TARGETS, hf_cfg, random_ids, save_tiny_bert
from helpers.project import ROOT
from helpers.runs import subprocess_env

ROWS = 8  # problems scored in the fast tests (the smoke run decoded 16)


def evaluate(lm: BlockSFTLM, task: str, limit: int) -> dict:
    """lm-eval's ``simple_evaluate`` of ``lm`` on one shipped task, with the per-document samples."""
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    return simple_evaluate(model=lm, tasks=[task], limit=limit, log_samples=True, task_manager=manager)


def samples(results: dict, task: str) -> list[dict]:
    return sorted(results["samples"][task], key=lambda sample: sample["doc_id"])


@pytest.fixture(scope="module")
def smoke_lm(smoke_run):
    """``smoke_lm(batch_size=..., **model_args)``: the model ``blocksft`` on the smoke run, one per arguments."""
    built: dict[str, BlockSFTLM] = {}

    def lm(**model_args) -> BlockSFTLM:
        key = json.dumps(model_args, sort_keys=True)
        if key not in built:
            built[key] = BlockSFTLM(pretrained=str(smoke_run), device="cpu", **model_args)
        return built[key]

    return lm


@pytest.fixture(scope="module")
def chains_results(smoke_lm):
    """blocksft_chains through lm-eval at batch sizes 1 and 4: {batch size: results}."""
    return {size: evaluate(smoke_lm(batch_size=size), "blocksft_chains", ROWS) for size in (1, 4)}


@pytest.fixture(scope="module")
def mc_results(smoke_lm):
    """blocksft_chains_mc through lm-eval at batch sizes 1 and 4 (8 Monte-Carlo samples): {batch size: results}."""
    return {size: evaluate(smoke_lm(batch_size=size, mc_num=8), "blocksft_chains_mc", 4) for size in (1, 4)}


# ----------------------------------------------------------------------------------------- the same as mode=eval
def test_lm_eval_generations_and_scores_are_mode_evals(smoke_run, chains_results):
    records = [json.loads(line) for line in (smoke_run / "generations.jsonl").read_text().splitlines()]
    records = sorted(records, key=lambda record: record["index"])[:ROWS]
    for results in chains_results.values():
        found = samples(results, "blocksft_chains")
        assert [s["doc"]["question"] + "\n" for s in found] == [r["prompt"] for r in records]  # the same problems
        assert [s["doc"]["target"] for s in found] == [r["target"] for r in records]
        assert [s["resps"][0][0] for s in found] == [r["generation"] for r in records]
        assert [s["exact_match"] for s in found] == [float(r["correct"]) for r in records]
        assert [s["exact_match_flexible"] for s in found] == [float(r["correct_flexible"]) for r in records]
        metrics = results["results"]["blocksft_chains"]
        assert metrics["exact_match,none"] == pytest.approx(sum(r["correct"] for r in records) / ROWS)


def test_lm_eval_canvases_equal_mode_evals_batch_token_for_token(smoke_run, smoke_lm):
    """The decoded tokens (not only their text) of ``mode=eval``'s data path (its data module's batch of the same
    rows, left-padded together) and of the scorer, one request at a time and four at a time."""
    scorer = smoke_lm(batch_size=1).scorer
    cfg = eval_config(ModelArgs(pretrained=str(smoke_run)))
    cfg.data.source.sizes = {"train": 16, "validation": ROWS, "test": ROWS}  # the first rows of each split
    datamodule = DiffusionSFTDataModule.from_config(cfg, scorer.tokenizer)
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    output = decode(
        scorer.model, batch["prompt_ids"], scorer.settings, mask_id=scorer.tokenizer.mask_token_id,
        attention_mask=batch["attention_mask"],
    )  # fmt: skip
    expected = output[:, batch["prompt_ids"].shape[1] :]
    prompts = [scorer.prompt_ids(row["question"]) for row in eval_rows()[0]["validation"][:ROWS]]
    alone = torch.cat([scorer.decode_canvases([prompt], "") for prompt in prompts])
    together = torch.cat([scorer.decode_canvases(prompts[i : i + 4], "") for i in range(0, ROWS, 4)])
    assert torch.equal(alone, expected)
    assert torch.equal(together, expected)


def test_the_task_rows_follow_the_default_data_config(smoke_run):
    """The rows are the generator's at the default data config's knobs, seed and sizes (read, not restated); a
    task may name another config (``data_config``)."""
    source = compose_config([]).data.source
    knobs = {key: source[key] for key in ("max_operand", "min_ops", "max_ops", "max_result")}
    config = ArithmeticConfig(**knobs, operations=tuple(source.operations))
    expected = generate_splits(config, dict(source.sizes), source.seed)
    splits, seed = eval_rows()
    assert seed == source.seed
    for split in ("validation", "test"):
        assert [row["question"] for row in splits[split]] == [row["question"] for row in expected[split]]
        assert [row["answer"] for row in splits[split]] == [row["answer"] for row in expected[split]]
    chains = compose_config(["data=chains"]).data.source
    assert eval_rows("chains")[0]["test"][0]["question"] != splits["test"][0]["question"] and chains.max_result == 20


def test_a_peft_adapter_export_is_scored_without_merging(tmp_path):
    """An adapter export loads as mode=eval loads it: the base with the peft adapter on top, not merged."""
    model_cfg = hf_cfg(save_tiny_bert(tmp_path / "bert"), "model.lora.enabled=true", BERT_TARGETS).model
    model_cfg.lora.export = "adapter"
    tokenizer = build_tokenizer(model_cfg)
    model = build_model(model_cfg, tokenizer).eval()
    with torch.no_grad():  # make the adapter matter (peft initialises lora_B to zero)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    export_model(model, tokenizer, tmp_path / "adapter", model_cfg)
    scorer = BlockSFTLM(pretrained=str(tmp_path / "adapter"), device="cpu", mc_num=4).scorer
    assert isinstance(scorer.model.model, PeftModel)
    ids = random_ids(tokenizer)
    with torch.no_grad():
        assert torch.allclose(scorer.model(ids).logits, model(ids).logits, atol=1e-5)
    assert len(scorer.generate([("1 + 2?", {"until": []})])) == 1
    assert scorer.loglikelihood([("1 + 2?", "#### 3")])[0][0] < 0


def test_the_test_task_reads_the_test_split():
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    task = get_task_dict(["blocksft_chains_test"], manager)["blocksft_chains_test"]
    questions = [doc["question"] for doc in task.eval_docs]
    assert questions == [row["question"] for row in eval_rows()[0]["test"]] and len(questions) == 1000


# ----------------------------------------------------------------------------------------- batch size, seeds
def test_batch_size_changes_neither_generations_nor_loglikelihoods(chains_results, mc_results):
    one, four = (samples(chains_results[size], "blocksft_chains") for size in (1, 4))
    assert [s["resps"] for s in one] == [s["resps"] for s in four]
    one, four = (samples(mc_results[size], "blocksft_chains_mc") for size in (1, 4))
    assert [s["resps"] for s in one] == [s["resps"] for s in four]


def test_mc_batch_size_changes_the_estimate_by_float_rounding_only(smoke_lm):
    requests = [("Mia has 3 apples. How many apples does Mia have now?", "#### 3")]
    one = smoke_lm(mc_num=8, mc_batch_size=1).scorer.loglikelihood(requests)
    eight = smoke_lm(mc_num=8, mc_batch_size=8).scorer.loglikelihood(requests)
    assert one[0][0] == pytest.approx(eight[0][0], rel=1e-6) and one[0][1] == eight[0][1]


def test_loglikelihood_is_seeded_per_request(smoke_lm):
    scorer = smoke_lm(batch_size=4, mc_num=8).scorer
    requests = [("Mia has 3 apples. How many apples does Mia have now?", "#### 3"), ("Q?", "#### 4")]
    first = scorer.loglikelihood(requests)
    assert scorer.loglikelihood(requests[::-1]) == first[::-1]  # not the order nor the company of a request
    assert scorer.loglikelihood(requests[1:]) == first[1:]
    reseeded = smoke_lm(batch_size=4, mc_num=8, seed=1).scorer.loglikelihood(requests)
    assert [ll for ll, _ in reseeded] != [ll for ll, _ in first]


def test_sampled_generation_is_seeded_per_request_whatever_the_batch_size(smoke_lm):
    requests = [(row["question"], {"until": []}) for row in eval_rows()[0]["validation"][:3]]
    one = smoke_lm(batch_size=1, temperature=1.0).scorer.generate(requests)
    assert smoke_lm(batch_size=4, temperature=1.0).scorer.generate(requests[::-1]) == one[::-1]


# ----------------------------------------------------------------------------------------- likelihood
def test_the_multiple_choice_task_runs_through_loglikelihood(mc_results):
    results = mc_results[4]
    found = samples(results, "blocksft_chains_mc")
    assert len(found) == 4 and all(len(s["resps"]) == 4 for s in found)  # one loglikelihood request per choice
    assert all(isinstance(resp[0][0], float) and resp[0][0] < 0 for s in found for resp in s["resps"])
    assert 0.0 <= results["results"]["blocksft_chains_mc"]["acc,none"] <= 1.0


def test_the_multiple_choice_rows_hold_the_answer_and_three_seeded_distractors():
    first, again = chains_mc_dataset(), chains_mc_dataset()
    rows = first["validation"]
    assert rows[:16] == again["validation"][:16]
    for row in rows.select(range(16)):
        assert len(set(row["choices"])) == 4 and row["choices"][row["label"]] == f"#### {row['target']}"
    assert len({row["label"] for row in rows}) == 4  # the answer's place is drawn too


def test_the_estimate_is_llada_formula_on_the_models_logits(smoke_lm):
    """-mean over samples of (sum of the masked tokens' cross-entropy) / (masked fraction), from plain forwards."""
    scorer = smoke_lm(batch_size=1).scorer
    prompt, target = scorer.prompt_ids("Q: 2 + 3?"), scorer.continuation_ids("2 + 3 = 5\n#### 5")
    estimate = loglikelihood(
        scorer.model, prompt, target, mask_id=scorer.tokenizer.mask_token_id, mc_num=6, batch_size=4,
        generator=torch.Generator().manual_seed(7),
    )  # fmt: skip
    masks = continuation_masks(len(target), 6, torch.Generator().manual_seed(7))
    losses = []
    for mask in masks:
        noisy = torch.tensor([prompt + [scorer.tokenizer.mask_token_id if m else t for t, m in zip(target, mask)]])
        with torch.no_grad():
            logits = scorer.model(noisy).logits[0, len(prompt) :][mask]
        losses.append(F.cross_entropy(logits, torch.tensor(target)[mask], reduction="sum") * len(target) / mask.sum())
    assert estimate == pytest.approx(-float(torch.stack(losses).mean()), rel=1e-5)


def test_mask_counts_are_stratified_over_one_to_the_length():
    counts = mask_counts(10, 10, torch.Generator().manual_seed(0))
    assert sorted(counts.tolist()) == list(range(1, 11))  # as many samples as tokens: every count once
    masks = continuation_masks(7, 50, torch.Generator().manual_seed(1))
    assert masks.sum(dim=1).min() >= 1 and masks.sum(dim=1).max() <= 7


def test_rolling_loglikelihood_says_it_is_not_implemented(smoke_lm):
    with pytest.raises(NotImplementedError, match="loglikelihood_rolling"):
        smoke_lm(batch_size=1).loglikelihood_rolling([])


# ----------------------------------------------------------------------------------------- generation kwargs
def test_until_and_max_gen_toks_cut_the_text(smoke_lm):
    scorer = smoke_lm(batch_size=1).scorer
    canvas = torch.tensor(scorer.continuation_ids("1 + 2 = 3\n#### 3") + [scorer.tokenizer.eos_token_id] * 4)
    assert scorer.response_text(canvas, {}) == "1 + 2 = 3\n#### 3"
    assert scorer.response_text(canvas, {"until": ["\n"]}) == "1 + 2 = 3"
    assert scorer.response_text(canvas, {"until": "####"}) == "1 + 2 = 3\n"
    kept = scorer.response_text(canvas, {"max_gen_toks": 3})
    assert kept == scorer.tokenizer.decode(canvas[:3].tolist())
    assert cut_at_stop("a. b? c", [".", "?", ""]) == "a"


# ----------------------------------------------------------------------------------------- model arguments
@pytest.mark.parametrize(
    ("model_args", "named"),
    [
        ({"block_length": 5}, "block_length=5 is invalid: allowed a divisor of gen_length=64"),
        ({"steps": 3}, "steps=3 is invalid"),
        ({"remasking": "highest"}, "remasking='highest' is invalid"),
        ({"gen_length": 0}, "gen_length=0 is invalid"),
        ({"prompt_template": "no placeholder"}, "prompt_template='no placeholder' is invalid"),
        ({"mc_num": 0}, "mc_num=0 is invalid"),
        ({"batch_size": "auto"}, "batch_size='auto' is invalid"),
        ({"blok_length": 16}, "blok_length is not a model argument of blocksft"),
        ({"data": "nonesuch"}, "data=nonesuch is invalid: allowed one of"),
    ],
)
def test_a_bad_model_argument_is_one_line_naming_it(smoke_run, model_args, named):
    with pytest.raises(ConfigError) as raised:
        eval_config(ModelArgs.parse({"pretrained": str(smoke_run), **model_args}))
    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_pretrained_path_says_what_pretrained_may_be(tmp_path):
    with pytest.raises(ConfigError, match=r"^pretrained='.*nowhere' is invalid: allowed a run folder"):
        eval_config(ModelArgs.parse({"pretrained": str(tmp_path / "nowhere")}))
    with pytest.raises(ConfigError, match="pretrained='.*' is invalid: allowed .*got a folder"):
        eval_config(ModelArgs.parse({"pretrained": str(tmp_path)}))


def test_the_command_line_gets_the_task_path_unless_it_names_one():
    assert with_task_path(["--tasks", "x"]) == ["--tasks", "x", "--include_path", str(TASKS_DIR)]
    assert with_task_path(["--tasks", "x", "--include_path=mine"]) == ["--tasks", "x", "--include_path=mine"]
    assert with_task_path(["--help"]) == ["--help"]


# ----------------------------------------------------------------------------------------- the command
def lm_eval_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blocksft.lm_eval", *args],
        cwd=ROOT,
        env=subprocess_env({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_command_scores_the_shipped_base_offline_and_prints_the_table():
    done = lm_eval_command(
        "--model", "blocksft", "--model_args", "pretrained=experiments/base", "--tasks", "blocksft_chains",
        "--limit", "8",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert any(line.startswith("|blocksft_chains|") and "exact_match" in line for line in table), done.stdout


@pytest.mark.slow
def test_the_command_refuses_a_bad_model_argument_in_one_line():
    done = lm_eval_command(
        "--model", "blocksft", "--model_args", "pretrained=experiments/base,block_length=5", "--tasks",
        "blocksft_chains", "--limit", "1",
    )  # fmt: skip
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("model_args error:")]
    assert errors == [
        "model_args error: block_length=5 is invalid: allowed a divisor of gen_length=64: [1, 2, 4, 8, 16, 32, 64]"
    ], done.stderr[-3000:]


def test_distractors_are_seeded_by_the_row():
    assert distractors(3, random.Random("1:validation:0")) == distractors(3, random.Random("1:validation:0"))
    assert all(value >= 0 and value != 3 for value in distractors(3, random.Random(0)))
