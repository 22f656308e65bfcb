"""data=reasoning_gym: seeded rows in the GSM8K schema, disjoint splits, an Arrow cache, and the pipeline."""

from __future__ import annotations

import re

from blocksft.config.validation import validate_config
from blocksft.data.batch_plan import plan_batches
from blocksft.data.documents import datamodule_from_config
from blocksft.data.reasoning_gym import ReasoningGymSource
from blocksft.data.tokenizer import build_char_tokenizer
from blocksft.evaluation.answers import reference_answer
from blocksft.runs.compose import compose_config

SIZES = {"train": 40, "validation": 10}


def rows(source: ReasoningGymSource) -> dict[str, list[dict]]:
    return {split: dataset.to_list() for split, dataset in source.load_splits().items()}


def test_a_fixed_seed_gives_the_same_rows_and_another_seed_others(tmp_path):
    first = rows(ReasoningGymSource(["gsm_symbolic"], SIZES, seed=3))
    assert first == rows(ReasoningGymSource(["gsm_symbolic"], SIZES, seed=3))
    assert first == rows(ReasoningGymSource(["gsm_symbolic"], SIZES, seed=3, cache_dir=str(tmp_path)))  # written
    assert first == rows(ReasoningGymSource(["gsm_symbolic"], SIZES, seed=3, cache_dir=str(tmp_path)))  # read back
    assert first["train"] != rows(ReasoningGymSource(["gsm_symbolic"], SIZES, seed=4))["train"]
    assert len(first["validation"]) == 10 and 0 < len(first["train"]) <= 40
    assert not {r["question"] for r in first["train"]} & {r["question"] for r in first["validation"]}


def test_gsm_symbolic_answers_are_chains_of_thought_ending_in_the_target():
    for row in rows(ReasoningGymSource(["gsm_symbolic"], {"train": 20}, seed=0))["train"]:
        assert row["task"] == "gsm_symbolic" and "\n" in row["answer"]  # several reasoning lines
        assert re.search(r"#### -?[\d.,]+\s*$", row["answer"])
        assert reference_answer(row["answer"], "gsm8k") == row["target"]


def test_tasks_without_a_chain_of_thought_get_a_scorable_answer_and_options_pass_through():
    source = ReasoningGymSource(
        {"chain_sum": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}, "basic_arithmetic": None},
        {"train": 6},
        seed=0,
    )
    train = rows(source)["train"]
    assert [r["task"] for r in train[:4]] == ["chain_sum", "basic_arithmetic", "chain_sum", "basic_arithmetic"]
    for row in train:
        assert row["answer"] == f"#### {row['target']}"
        if row["task"] == "chain_sum":
            assert len(re.findall(r"\d+", row["question"])) == 2


def test_data_reasoning_gym_runs_through_the_data_module(tmp_path):
    cfg = compose_config(
        [
            "data=reasoning_gym",
            "data.source.sizes={train: 24, validation: 8}",
            "eval.size=8",
            f"data.cache_dir={tmp_path}",
            "data.response_len=1024",
            "data.max_prompt_len=1024",
        ]
    )
    validate_config(cfg)
    datamodule = datamodule_from_config(cfg, build_char_tokenizer(), plan_batches(cfg.data.batch_size, None, 1))
    datamodule.setup()
    assert len(datamodule.train_set) > 0 and len(datamodule.eval_set) == 8
    assert (
        datamodule.eval_set[0]["target"]
        == rows(ReasoningGymSource(["gsm_symbolic"], {"train": 24, "validation": 8}, seed=0))["validation"][0]["target"]
    )
