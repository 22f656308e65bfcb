"""Data sources, prompt templates, bad rows and the tokenisation cache, on small JSONL fixtures.

The fixtures under ``tests/fixtures/`` are hand-written rows in each real dataset's exact schema
(GSM8K ``question``/``answer`` with ``#### n``; EleutherAI/hendrycks_math ``problem``/``level``/
``type``/``solution`` with ``\\boxed{}``; MetaMathQA ``query``/``response``/``type``/
``original_question`` with ``The answer is: X``), read through each source's ``data_files`` override,
the same code path as the hub download from the source on.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from blocksft.config.validation import ConfigError, validate_config
from blocksft.data import prepare
from blocksft.data.collate import EvalCollator, TrainCollator
from blocksft.data.datamodule import DataError, DiffusionSFTDataModule
from blocksft.data.settings import LoaderSettings, RowSettings
from blocksft.data.sources import HubSource, JsonlSource
from blocksft.data.tokenizer import CHARACTERS, build_char_tokenizer
from blocksft.evaluation.answers import score
from blocksft.runs.compose import compose_config
from helpers.runs import run_in_process, run_train

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL_START = "Below is an instruction that describes a task."
OFFICIAL_END = "### Response: Let's think step by step."


def real_config(name: str, tmp_path: Path, data_files: dict[str, str], *extra: str):
    """``data=<name>`` reading fixtures instead of the hub; the char tokenizer needs longer limits."""
    files = ",".join(f"{split}:'{path}'" for split, path in data_files.items())
    return compose_config(
        [
            f"data={name}",
            f"data.source.data_files={{{files}}}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.max_prompt_len=512",
            "data.response_len=512",
            "data.num_proc=1",
            *extra,
        ]
    )


def setup_module_from(cfg, tokenizer=None) -> DiffusionSFTDataModule:
    validate_config(cfg)
    datamodule = DiffusionSFTDataModule.from_config(cfg, tokenizer or build_char_tokenizer())
    datamodule.setup()
    return datamodule


def data_module(source, tokenizer, **kwargs) -> DiffusionSFTDataModule:
    """A data module from one set of keyword arguments: ``LoaderSettings`` takes its fields, ``RowSettings``
    the rest."""
    loader = {f.name for f in fields(LoaderSettings)}
    return DiffusionSFTDataModule(
        source,
        tokenizer,
        LoaderSettings(**{k: v for k, v in kwargs.items() if k in loader}),
        RowSettings(**{k: v for k, v in kwargs.items() if k not in loader}),
    )


def jsonl_module(tmp_path: Path, train: Path, tokenizer=None, **kwargs) -> DiffusionSFTDataModule:
    defaults = dict(
        response_len=32, max_prompt_len=160, batch_size=4, eval_batch_size=4, cache_dir=str(tmp_path / "cache")
    )
    source = JsonlSource(
        {"train": str(train), "validation": str(FIXTURES / "jsonl" / "validation.jsonl")},
        cache_dir=str(tmp_path / "cache"),
    )
    datamodule = data_module(source, tokenizer or build_char_tokenizer(), **{**defaults, **kwargs})
    datamodule.setup()
    return datamodule


# ----------------------------------------------------------------------------------------- GSM8K


def test_gsm8k_source_schema_prompts_targets_and_scoring(tmp_path):
    gsm = FIXTURES / "gsm8k"
    cfg = real_config(
        "gsm8k",
        tmp_path,
        {"train": gsm / "train.jsonl", "test": gsm / "test.jsonl"},
        "data.source.holdout={validation: 3}",
        "eval.split=test",
    )
    raw = HubSource(
        "openai/gsm8k",
        {"train": "train"},
        data_files={"train": str(gsm / "train.jsonl")},
        cache_dir=str(tmp_path / "raw"),
    ).load_splits(["question", "answer"])["train"]
    assert {"question", "answer"} <= set(raw.column_names) and len(raw) == 12
    datamodule = setup_module_from(cfg)
    assert len(datamodule.train_set) == 9 and len(datamodule.eval_set) == 6 and not datamodule.dropped
    prompt = datamodule.eval_set[0]["prompt"]
    assert prompt.startswith(OFFICIAL_START) and prompt.endswith(OFFICIAL_END) and "Janet has 16 eggs" in prompt
    assert datamodule.eval_set["target"] == ["18", "3", "1820", "460", "64", "260"]
    strict_and_flexible = score("16 - 3 - 4 = 9\n9 * 2 = 18\n#### 18", "18", "gsm8k")
    assert strict_and_flexible["correct"] and strict_and_flexible["correct_flexible"]
    flexible_only = score("She makes 9 * 2 = 18 dollars.", "18", "gsm8k")
    assert not flexible_only["correct"] and flexible_only["correct_flexible"]
    assert score("#### 1,820", datamodule.eval_set["target"][2], "gsm8k")["correct"]


def test_hub_path_goes_through_load_dataset(tmp_path):
    """Without ``data_files`` the source calls ``datasets.load_dataset(path, name, split=...)``; a local
    folder in the hub layout exercises that path offline (and its missing-field check)."""
    source = HubSource(
        str(FIXTURES / "gsm8k"), {"train": "train", "test": "test"}, holdout={"validation": 2}, cache_dir=str(tmp_path)
    )
    splits = source.load_splits(["question", "answer"])
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 10, "test": 6, "validation": 2}
    assert "__error__" not in splits["train"].column_names and "(default) split 'test'" in source.describe("test")
    with pytest.raises(ValueError, match="no field"):
        source.load_splits(["query", "response"])


def test_holdout_is_seeded_disjoint_and_keeps_file_order(tmp_path):
    gsm = FIXTURES / "gsm8k"
    source = HubSource(
        "openai/gsm8k",
        {"train": "train"},
        data_files={"train": str(gsm / "train.jsonl")},
        holdout={"validation": 3, "test": 2},
        holdout_seed=7,
        cache_dir=str(tmp_path),
    )
    splits = source.load_splits(["question", "answer"])
    origins = {split: splits[split]["__origin__"] for split in ("train", "validation", "test")}
    lines = {split: [int(origin.rsplit(":", 1)[1]) for origin in values] for split, values in origins.items()}
    assert sorted(sum(lines.values(), [])) == list(range(1, 13))
    assert all(values == sorted(values) for values in lines.values())
    assert len(lines["validation"]) == 3 and len(lines["test"]) == 2
    again = HubSource(
        "openai/gsm8k",
        {"train": "train"},
        data_files={"train": str(gsm / "train.jsonl")},
        holdout={"validation": 3, "test": 2},
        holdout_seed=7,
        cache_dir=str(tmp_path),
    ).load_splits(["question", "answer"])
    assert again["validation"]["__origin__"] == origins["validation"]
    with pytest.raises(ValueError, match="cannot hold out"):
        HubSource(
            "openai/gsm8k",
            {"train": "train"},
            data_files={"train": str(gsm / "train.jsonl")},
            holdout={"validation": 12},
            cache_dir=str(tmp_path),
        ).load_splits(["question", "answer"])


# ------------------------------------------------------------------------------------------ MATH


def test_math_source_boxed_targets_normalised_and_exact_scoring(tmp_path):
    math = FIXTURES / "math"
    cfg = real_config(
        "math",
        tmp_path,
        {"train": math / "train.jsonl", "test": math / "test.jsonl"},
        "data.source.holdout={validation: 2}",
        "eval.split=test",
    )
    datamodule = setup_module_from(cfg)
    assert len(datamodule.train_set) == 8 and len(datamodule.eval_set) == 6
    assert datamodule.eval_set["target"] == ["5\\sqrt{2}", "\\frac{1}{3}", "9\\pi", "7", "42", "30^\\circ"]
    assert datamodule.eval_set[0]["prompt"].startswith(OFFICIAL_START)
    normalised = score("So $x = \\boxed{\\dfrac{1}{3}}$.", "\\frac{1}{3}", "math")
    assert normalised["correct"] and not normalised["correct_exact"]
    assert score("\\boxed{30}", "30^\\circ", "math")["correct"]
    assert score("\\frac{1}{3}", "\\frac{1}{3}", "math")["correct_exact"]
    assert not score("\\boxed{8\\pi}", "9\\pi", "math")["correct"]


# ------------------------------------------------------------------------------------ MetaMathQA


@pytest.mark.parametrize("prefix, kept", [("MATH", 9), ("GSM", 7), (None, 16)])
def test_metamathqa_type_filter(tmp_path, prefix, kept):
    source = HubSource(
        "meta-math/MetaMathQA",
        {"train": "train"},
        type_prefix=prefix,
        cache_dir=str(tmp_path),
        data_files={"train": str(FIXTURES / "metamathqa" / "train.jsonl")},
    )
    train = source.load_splits(["query", "response", "type"])["train"]
    assert len(train) == kept
    assert all(kind.startswith(prefix or "") for kind in train["type"])


def test_metamathqa_heldout_splits_and_answer_is_scoring(tmp_path):
    cfg = real_config(
        "metamathqa",
        tmp_path,
        {"train": FIXTURES / "metamathqa" / "train.jsonl"},
        "data.source.holdout={validation: 2, test: 2}",
    )
    assert cfg.data.source.type_prefix == "MATH" and cfg.data.answer_scheme == "metamathqa"
    datamodule = setup_module_from(cfg)
    assert len(datamodule.train_set) == 5 and len(datamodule.eval_set) == 2
    expected = {"12", "9", "7", "3", "\\frac{2}{15}", "10", "\\frac{1}{2}", "6"}
    assert set(datamodule.train_set["target"]) | set(datamodule.eval_set["target"]) <= expected
    assert score("so X = 3.\nThe answer is: 3", "3", "metamathqa")["correct"]
    assert not score("so X = 3.\n#### 3", "3", "metamathqa")["correct"]
    assert score("The answer is: 0.5", "\\frac{1}{2}", "metamathqa")["correct"]


# ----------------------------------------------------------------------------------- JSONL source


def test_jsonl_source_with_configurable_fields_and_target_field(tmp_path):
    rows = [
        {"problem": "What is $1 + 1$?", "solution": "We add: $1 + 1 = \\boxed{2}$.", "answer": "2"},
        {"problem": "What is $2 \\cdot 3$?", "solution": "Multiplying, $2 \\cdot 3 = 6$.", "answer": "6"},
    ]
    path = tmp_path / "math500.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = JsonlSource({"train": str(path), "validation": str(path)}, cache_dir=str(tmp_path / "raw"))
    common = dict(
        response_len=64,
        max_prompt_len=64,
        batch_size=2,
        eval_batch_size=2,
        question_field="problem",
        answer_field="solution",
        answer_scheme="math",
        cache_dir=str(tmp_path / "cache"),
    )
    from_field = data_module(source, build_char_tokenizer(), target_field="answer", **common)
    from_field.setup()
    assert from_field.eval_set["target"] == ["2", "6"]
    from_solution = data_module(source, build_char_tokenizer(), **common)
    from_solution.setup()
    assert from_solution.eval_set["target"] == ["2"]  # the second solution has no \boxed{}
    assert from_solution.dropped["validation/no_reference_answer"] == 1


def test_missing_jsonl_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        JsonlSource({"train": str(tmp_path / "nope.jsonl")}).load_splits(["question", "answer"])


# -------------------------------------------------------------------------------------- bad rows


BAD_ROWS = {  # reason -> line of tests/fixtures/jsonl/train.jsonl
    "malformed_json": 3,
    "missing_answer_field": 4,
    "empty_answer": 5,
    "missing_prompt_field": 6,
    "not_a_json_object": 7,
    "prompt_longer_than_max_prompt_len": 8,
    "answer_longer_than_response_len": 9,
    "no_reference_answer": 10,
    "non_text_field": 11,
}


@pytest.mark.parametrize("reason, line", sorted(BAD_ROWS.items()))
def test_each_bad_row_is_skipped_counted_and_located(tmp_path, reason, line, caplog):
    train = FIXTURES / "jsonl" / "train.jsonl"
    with caplog.at_level("WARNING"):
        datamodule = jsonl_module(tmp_path, train)
    key = f"train/{reason}"
    assert datamodule.dropped[key] == 1
    assert datamodule.first_dropped[key] == f"{train.resolve()}:{line}"
    assert f"{key} first at {train.resolve()}:{line}" in caplog.text


def test_bad_rows_leave_the_good_ones_untruncated(tmp_path):
    datamodule = jsonl_module(tmp_path, FIXTURES / "jsonl" / "train.jsonl")
    assert (
        len(datamodule.train_set) == 8 and sum(v for k, v in datamodule.dropped.items() if k.startswith("train/")) == 9
    )
    assert datamodule.train_set["index"] == list(range(8))
    assert all(len(ids) + 1 <= 32 for ids in datamodule.train_set["answer_ids"])
    assert not any("Ella" in prompt for prompt in datamodule.train_set["prompt"])  # too long: dropped, not cut
    assert datamodule.dropped["validation/malformed_json"] == 1 and len(datamodule.eval_set) == 4


def test_eval_rows_are_not_dropped_for_long_reference_solutions(tmp_path):
    datamodule = jsonl_module(tmp_path, FIXTURES / "jsonl" / "train.jsonl", response_len=17)
    assert datamodule.dropped["train/answer_longer_than_response_len"] > 1 and len(datamodule.train_set) >= 1
    assert len(datamodule.eval_set) == 4 and max(map(len, datamodule.eval_set["answer_ids"])) + 1 > 17
    assert "validation/answer_longer_than_response_len" not in datamodule.dropped


def test_no_usable_training_row_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="all_bad.jsonl"):
        jsonl_module(tmp_path, FIXTURES / "jsonl" / "all_bad.jsonl")


def test_no_usable_eval_row_is_an_error_naming_the_file(tmp_path):
    source = JsonlSource(
        {"train": str(FIXTURES / "jsonl" / "train.jsonl"), "validation": str(FIXTURES / "jsonl" / "all_bad.jsonl")},
        cache_dir=str(tmp_path),
    )
    datamodule = data_module(
        source, build_char_tokenizer(), response_len=32, max_prompt_len=160, batch_size=4, eval_batch_size=4
    )
    with pytest.raises(DataError, match="no usable validation rows in .*all_bad.jsonl"):
        datamodule.setup()


def test_max_train_rows_keeps_the_first_usable_rows(tmp_path):
    datamodule = jsonl_module(tmp_path, FIXTURES / "jsonl" / "train.jsonl", max_train_rows=3)
    assert datamodule.train_set["target"] == ["12", "5", "14"] and datamodule.train_set["index"] == [0, 1, 2]


# ------------------------------------------------------------------------------- prompt templates

CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def chat_tokenizer():
    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = CHAT
    return tokenizer


@pytest.mark.parametrize("mode, uses_chat", [("auto", True), (True, True), (False, False)])
def test_chat_template_modes(tmp_path, mode, uses_chat):
    datamodule = jsonl_module(
        tmp_path,
        FIXTURES / "jsonl" / "train.jsonl",
        tokenizer=chat_tokenizer(),
        chat_template=mode,
        max_prompt_len=200,
        prompt_template="Q: {question}\nA:",
    )
    prompt = datamodule.train_set[0]["prompt"]
    if uses_chat:
        assert prompt.startswith("<|user|>\nQ: Mia has 7 apples.") and prompt.endswith("\nA:\n<|assistant|>\n")
    else:
        assert prompt == "Q: Mia has 7 apples. She buys 5 more. How many apples does Mia have now?\nA:"


def test_chat_template_true_needs_one():
    source = JsonlSource({"train": str(FIXTURES / "jsonl" / "train.jsonl")})
    with pytest.raises(ValueError, match="data.chat_template=true"):
        data_module(
            source,
            build_char_tokenizer(),
            response_len=32,
            max_prompt_len=160,
            batch_size=4,
            eval_batch_size=4,
            chat_template=True,
        )


def test_response_starts_right_after_the_prompt_the_decoder_sees(tmp_path):
    """Train and decode share one prompt encoding; the training response (first block) starts at the
    index where the decoder appends its first mask: the end of the left-padded prompt."""
    source = JsonlSource(
        {
            "train": str(FIXTURES / "jsonl" / "validation.jsonl"),
            "validation": str(FIXTURES / "jsonl" / "validation.jsonl"),
        },
        cache_dir=str(tmp_path),
    )
    datamodule = data_module(
        source,
        chat_tokenizer(),
        response_len=32,
        max_prompt_len=200,
        batch_size=4,
        eval_batch_size=4,
        prompt_template="Q: {question}\nA:",
    )
    datamodule.setup()
    train_row, eval_row = datamodule.train_set[0], datamodule.eval_set[0]
    assert train_row["prompt_ids"] == eval_row["prompt_ids"]
    batch = TrainCollator(0, 2, 32)([train_row])
    prompts = EvalCollator(0)([eval_row])["prompt_ids"]
    start = int(batch["response_start"][0])
    assert start == prompts.shape[1] and batch["input_ids"][0, :start].tolist() == prompts[0].tolist()
    assert batch["input_ids"][0, start : start + len(train_row["answer_ids"])].tolist() == train_row["answer_ids"]


# ------------------------------------------------------------------------------------------ cache


def test_second_run_reuses_the_cache_and_changes_invalidate_it(tmp_path):
    train = FIXTURES / "jsonl" / "train.jsonl"
    first = jsonl_module(tmp_path, train)
    assert first.cache_reused == {"train": False, "validation": False}
    second = jsonl_module(tmp_path, train)
    assert second.cache_reused == {"train": True, "validation": True}
    assert second.train_set.to_list() == first.train_set.to_list() and second.dropped == first.dropped
    for change in (
        dict(prompt_template="Question: {question}\n"),
        dict(response_len=48),
        dict(max_prompt_len=150),
        dict(answer_scheme="metamathqa"),
        dict(chat_template=False, tokenizer=chat_tokenizer()),
    ):
        assert jsonl_module(tmp_path, train, **change).cache_reused["train"] is False, change
    other_tokenizer = build_char_tokenizer(CHARACTERS[::-1])
    assert jsonl_module(tmp_path, train, tokenizer=other_tokenizer).cache_reused["train"] is False


def test_editing_the_file_invalidates_the_cache(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text((FIXTURES / "jsonl" / "train.jsonl").read_text())
    assert len(jsonl_module(tmp_path, train).train_set) == 8
    with train.open("a") as handle:
        row = {"question": "Ava has 2 hats. She buys 2 more. How many hats?", "answer": "2 + 2 = 4\n#### 4"}
        handle.write(json.dumps(row) + "\n")
    changed = jsonl_module(tmp_path, train)
    assert changed.cache_reused["train"] is False and len(changed.train_set) == 9


def test_several_tokenisation_processes_give_the_same_rows(tmp_path, monkeypatch):
    train = FIXTURES / "jsonl" / "train.jsonl"
    single = jsonl_module(tmp_path / "one", train)
    monkeypatch.setattr(prepare, "MIN_ROWS_PER_PROCESS", 4)
    parallel = jsonl_module(tmp_path / "two", train, num_proc=2)
    assert list((tmp_path / "two" / "cache").glob("prepared-*_00001_of_00002.arrow"))
    assert parallel.train_set.to_list() == single.train_set.to_list() and parallel.dropped == single.dropped
    assert jsonl_module(tmp_path / "two", train, num_proc=2).cache_reused["train"] is True


# ----------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.chat_template=maybe", "data.chat_template"),
        ("data.prompt_template=no_placeholder", "data.prompt_template"),
        ("data.num_proc=0", "data.num_proc"),
        ("data.answer_scheme=mmlu", "data.answer_scheme"),
        ("data.max_train_rows=0", "data.max_train_rows"),
        ("data.question_field=''", "data.question_field"),
    ],
)
def test_bad_data_values_raise_naming_the_key(override, key):
    with pytest.raises(ConfigError) as error:
        validate_config(compose_config([override]))
    assert str(error.value).startswith(key)


def test_real_dataset_configs_default_to_the_official_prompt_and_hub_ids():
    for name, path, field_names in [
        ("gsm8k", "openai/gsm8k", ("question", "answer")),
        ("math", "EleutherAI/hendrycks_math", ("problem", "solution")),
        ("metamathqa", "meta-math/MetaMathQA", ("query", "response")),
    ]:
        cfg = compose_config([f"data={name}"])
        assert cfg.data.source.path == path and (cfg.data.question_field, cfg.data.answer_field) == field_names
        assert cfg.data.prompt_template.startswith(OFFICIAL_START) and cfg.data.prompt_template.endswith(OFFICIAL_END)
    assert compose_config(["data=gsm8k"]).data.source.config_names == ["main"]
    assert compose_config().data.prompt_template == "{question}\n"


def test_every_data_config_has_the_keys_of_the_default():
    """So that any ``data.<key>=`` override works whichever dataset is chosen."""
    default = set(compose_config().data) - {"source"}
    for name in ("gsm8k", "math", "metamathqa", "jsonl"):
        assert default <= set(compose_config([f"data={name}"]).data), name


# ---------------------------------------------------------------------------------- end to end


def test_cli_smoke_on_the_jsonl_source_reports_dropped_rows(tmp_path):
    files = f"{{train:'{FIXTURES / 'jsonl' / 'train.jsonl'}',validation:'{FIXTURES / 'jsonl' / 'validation.jsonl'}'}}"
    run_in_process(
        [
            "data=jsonl",
            f"data.source.files={files}",
            "debug=smoke",
            "model.tokenizer=char",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
        tmp_path / "run",
    )
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "completed" and results["eval_size"] == 4
    assert {f"train/{reason}" for reason in BAD_ROWS} <= set(results["dropped_rows"])
    assert results["dropped_rows"]["validation/malformed_json"] == 1


def test_cli_with_no_usable_rows_fails_naming_the_file(tmp_path):
    files = f"{{train:'{FIXTURES / 'jsonl' / 'all_bad.jsonl'}',validation:'{FIXTURES / 'jsonl' / 'validation.jsonl'}'}}"
    result = run_train(
        [
            "data=jsonl",
            f"data.source.files={files}",
            "debug=smoke",
            "model.tokenizer=char",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
        tmp_path / "run",
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]  # (the lines before it are datasets' progress bars)
    assert last.startswith("data error: data: no usable training rows in ") and "Traceback" not in result.stderr
    assert f"no usable training rows in {(FIXTURES / 'jsonl' / 'all_bad.jsonl').resolve()}" in last
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "failed"
