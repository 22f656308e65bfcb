"""experiment=paper_gsm8k / paper_math: `mode=eval` scores the paper's benchmark (GSM8K / MATH test) with the
answer rule the preset's training data teaches ("The answer is: X"), end to end on the LLaDA stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blocksft.config.validation import ConfigError, validate_config, with_eval_benchmark
from blocksft.evaluation.answers import reference_answer, score
from blocksft.runs.compose import compose_config
from helpers.remote_code import save_standin
from helpers.runs import run_in_process

FIXTURES = Path(__file__).parent / "fixtures"
PRESETS = {"paper_gsm8k": ("gsm8k", "openai/gsm8k"), "paper_math": ("math", "EleutherAI/hendrycks_math")}
# A MetaMathQA-style generation for the first test row of each fixture (no "####", no \boxed{})
GENERATIONS = {
    "gsm8k": "She has 16 - 3 - 4 = 9 eggs left and sells them for 9 * 2 = 18 dollars.\nThe answer is: 18",
    "math": "Since 50 = 25 * 2, the square root of 50 is 5 times the square root of 2.\nThe answer is: 5\\sqrt{2}",
}


def first_test_row(benchmark: str) -> dict:
    return json.loads((FIXTURES / benchmark / "test.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_eval_mode_swaps_in_the_benchmark_test_split_and_keeps_training_untouched(preset):
    benchmark, hub_path = PRESETS[preset]
    trained = compose_config([f"experiment={preset}"])
    assert with_eval_benchmark(trained) is trained and trained.data.name == "metamathqa"
    evaluated = with_eval_benchmark(compose_config([f"experiment={preset}", "mode=eval"]))
    validate_config(evaluated)
    assert evaluated.data.name == benchmark and evaluated.data.source.path == hub_path
    assert evaluated.eval.split == "test" and evaluated.eval.size is None  # the whole test split
    assert evaluated.data.answer_scheme == "metamathqa"
    assert evaluated.data.response_len == evaluated.decode.gen_length == trained.data.response_len == 256
    assert evaluated.decode.block_length == 32 and evaluated.decode.steps == 128
    assert evaluated.data.prompt_template == trained.data.prompt_template  # the prompt it was trained with


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_metamathqa_format_generation_scores_correct_under_the_presets_rule(preset):
    benchmark, _ = PRESETS[preset]
    scheme = with_eval_benchmark(compose_config([f"experiment={preset}", "mode=eval"])).data.answer_scheme
    row = first_test_row(benchmark)
    answer_field = row["answer"] if benchmark == "gsm8k" else row["solution"]
    target = reference_answer(answer_field, scheme)  # as the data module stores it
    result = score(GENERATIONS[benchmark], target, scheme)
    assert result["correct"] and result["correct_flexible"]
    assert not score(GENERATIONS[benchmark], target, benchmark)["correct"]  # the benchmark's own rule misses it


def test_reference_that_says_the_answer_is_a_boxed_value_is_unboxed():
    solution = "Adding gives 12, so the answer is $\\boxed{12}$."
    assert reference_answer(solution, "metamathqa") == "12"
    assert score("The answer is: 12", reference_answer(solution, "metamathqa"), "metamathqa")["correct"]


def test_malformed_benchmark_is_a_one_line_config_error():
    cfg = compose_config(["mode=eval", "+eval.benchmark.split=test"])
    with pytest.raises(ConfigError, match=r"^eval\.benchmark=.* is invalid: allowed null or \{data: "):
        with_eval_benchmark(cfg)


@pytest.fixture(scope="module")
def llada(tmp_path_factory):
    return save_standin("llada", tmp_path_factory.mktemp("llada-standin"))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_one_command_eval_on_the_llada_stand_in(preset, llada, tmp_path):
    """`python train.py experiment=<preset> mode=eval` (base model, no ckpt_path) with the benchmark's hub
    files replaced by the fixtures; CPU-sized: trainer=cpu, float32, 64 decoding steps."""
    benchmark, _ = PRESETS[preset]
    files = f"{{train: '{FIXTURES / benchmark / 'train.jsonl'}', test: '{FIXTURES / benchmark / 'test.jsonl'}'}}"
    run_in_process(
        [
            f"experiment={preset}",
            "mode=eval",
            f"model.name_or_path={llada}",
            "model.dtype=float32",
            "trainer=cpu",
            "trainer.precision=32",
            "data.max_prompt_len=512",
            "decode.steps=64",
            f"eval.benchmark.data.source.data_files={files}",
            "eval.benchmark.data.source.holdout={validation: 2}",  # of the fixture's 12 train rows
            f"data.cache_dir={tmp_path / 'cache'}",
            "logger=csv",
        ],
        tmp_path,
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["mode"] == "eval" and results["eval_split"] == "test" and results["eval_size"] == 6
    assert results["answer_scheme"] == "metamathqa" and results["config"]["data"]["name"] == benchmark
    assert results["decode_cost"]["nfe_per_problem"] == 64 and results["decode_cost"]["problems"] == 6
    assert isinstance(results["answer_format_mismatch"], bool)
    records = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (FIXTURES / benchmark / "test.jsonl").read_text().splitlines()]
    expected = [reference_answer(r["answer"] if benchmark == "gsm8k" else r["solution"], "metamathqa") for r in rows]
    assert [r["target"] for r in records] == expected  # GSM8K / MATH test references, in order
    assert {"correct", "correct_flexible", "nfe", "positions_fed"} <= records[0].keys()
