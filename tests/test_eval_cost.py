"""Decoding cost in every results.json / metrics log, and the strict-vs-flexible answer-format check."""

from __future__ import annotations

import json
import logging

import pytest

from blocksft.evaluation.metrics import FORMAT_GAP, decode_cost, evaluation_fields, format_warning
from blocksft.runs.compose import compose_config
from helpers.project import PREVIOUS_DEFAULT
from helpers.runs import run_in_process

COST_KEYS = {
    "problems",
    "nfe_per_problem",
    "nfe_min",
    "nfe_max",
    "positions_fed_per_problem",
    "decode_seconds",
    "problems_per_second",
    "generated_tokens_per_second",
    "answer_tokens_per_second",
    "device",
}


def test_decode_cost_arithmetic():
    cost = decode_cost([4, 6], [40, 66], [3, 5], seconds=2.0, gen_length=8, device="cpu: x")
    assert cost["nfe_per_problem"] == 5 and (cost["nfe_min"], cost["nfe_max"]) == (4, 6)
    assert cost["positions_fed_per_problem"] == 53 and cost["problems_per_second"] == 1.0
    assert cost["generated_tokens_per_second"] == 8.0 and cost["answer_tokens_per_second"] == 4.0
    assert decode_cost([1], [1], [1], 0.0, 8, "cpu")["problems_per_second"] is None
    with pytest.raises(ValueError, match="same non-zero number"):
        decode_cost([], [], [], 1.0, 8, "cpu")


def test_format_warning_fires_only_above_the_gap():
    assert format_warning(0.05, 0.70) is not None and "another format than the scorer expects" in format_warning(
        0.05, 0.70
    )
    assert format_warning(0.50, 0.50 + FORMAT_GAP - 0.01) is None
    assert format_warning(0.9, 0.5) is not None  # either direction
    assert format_warning(0.1, None) is None  # a scheme without a flexible score
    fields = evaluation_fields({8: {"accuracy": 0.0, "accuracy_flexible": 0.5}}, {8: {"nfe_per_problem": 32}}, 8)
    assert fields["answer_format_mismatch"] is True and fields["decode_cost"] == {"nfe_per_problem": 32}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One debug=smoke training run decoded at block lengths 4 and 8 with 16 steps."""
    run_dir = tmp_path_factory.mktemp("trained")
    run_in_process(["debug=smoke", *PREVIOUS_DEFAULT, "decode.block_length=[4,8]", "decode.steps=16"], run_dir)
    return run_dir


def read(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    records = [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    return results, records


def prompt_positions(records, gen_length=32):
    """{problem index: prompt tokens}, from the fixed schedule's positions fed (nfe full forwards each)."""
    return {r["index"]: r["positions_fed"] // r["nfe"] - gen_length for r in records}


def test_fixed_schedule_cost_is_in_results_metrics_and_generations(smoke_run):
    results, records = read(smoke_run)
    assert set(results["decode_cost_by_decode_block"]) == {"4", "8"}
    for cost in results["decode_cost_by_decode_block"].values():
        assert COST_KEYS <= cost.keys() and cost["problems"] == results["eval_size"] == 16
        assert cost["nfe_per_problem"] == cost["nfe_min"] == cost["nfe_max"] == 16  # decode.steps
        assert cost["problems_per_second"] > 0 and cost["generated_tokens_per_second"] == pytest.approx(
            32 * cost["problems_per_second"]
        )
    # the headline numbers are at the training block (8), though the list starts at 4
    assert results["decode_block_length"] == 8 and results["accuracy"] == results["accuracy_by_decode_block"]["8"]
    assert results["decode_cost"] == results["decode_cost_by_decode_block"]["8"]
    assert results["answer_format_mismatch"] is False and results["answer_scheme"] == "gsm8k"
    assert all(r["nfe"] == 16 and r["positions_fed"] % 16 == 0 for r in records)
    by_block = {b: prompt_positions([r for r in records if r["decode_block_length"] == b]) for b in (4, 8)}
    assert by_block[4] == by_block[8] and all(0 < n < 200 for n in by_block[4].values())
    header = (smoke_run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in (
        "val/nfe_per_problem",
        "val/problems_per_second",
        "val/generated_tokens_per_second",
        "val/positions_fed_per_problem",
        "val/nfe_per_problem@block4",
    ):
        assert name in header


def test_threshold_and_cached_eval_costs_follow_the_blocks(smoke_run, tmp_path):
    _, trained = read(smoke_run)
    prompts = prompt_positions([r for r in trained if r["decode_block_length"] == 4])
    common = [
        "mode=eval",
        f"ckpt_path={smoke_run}",
        "debug=smoke",
        *PREVIOUS_DEFAULT,
        "decode.block_length=[4,8]",
        "decode.steps=16",
    ]
    run_in_process([*common, "decode=semi_ar_threshold", "decode.confidence_threshold=0.2"], tmp_path / "t")
    results, records = read(tmp_path / "t")
    for r in records:  # between one forward per block and one per token
        assert 32 // r["decode_block_length"] <= r["nfe"] <= 32
        assert r["positions_fed"] == r["nfe"] * (prompts[r["index"]] + 32)
    cost = results["decode_cost_by_decode_block"]["8"]
    assert cost["nfe_min"] <= cost["nfe_per_problem"] <= cost["nfe_max"] <= 32
    assert results["config"]["decode"]["confidence_threshold"] == 0.2

    run_in_process([*common, "decode=semi_ar_cached"], tmp_path / "c")
    _, records = read(tmp_path / "c")
    for r in records:  # per block: one whole-canvas forward, then steps_per_block - 1 of x[:, block_start:]
        block = r["decode_block_length"]
        num_blocks = 32 // block
        per_block = 16 // num_blocks
        tail = sum((32 - k * block) * (per_block - 1) for k in range(num_blocks))
        assert r["nfe"] == 16 and r["positions_fed"] == num_blocks * (prompts[r["index"]] + 32) + tail


def test_format_mismatch_warns_and_flags_results(tmp_path, monkeypatch, caplog):
    """A model that writes `#### n` scored by the metamathqa rule: strict 0, flexible 100 -> warning + flag."""
    from blocksft.runs.run import run
    from blocksft.training import module as module_file

    original_step = module_file.DiffusionSFTModule.test_step

    def test_step(self, batch, batch_index):
        self.targets_in_batch = list(batch["target"])
        return original_step(self, batch, batch_index)

    monkeypatch.setattr(module_file.DiffusionSFTModule, "test_step", test_step)
    monkeypatch.setattr(
        module_file.DiffusionSFTModule,
        "decode_responses",
        lambda self, canvas: [f"so it is\n#### {target}" for target in self.targets_in_batch],
    )
    cfg = compose_config(
        ["debug=smoke", "budget.value=1", "data.answer_scheme=metamathqa", "logger=none", f"paths.log_dir={tmp_path}"],
        output_dir=tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="blocksft"):
        results = run(cfg)
    assert results.accuracy == 0.0 and results.accuracy_flexible == 1.0
    assert results.answer_format_mismatch is True
    assert "another format than the scorer expects" in results.answer_format_warning
    assert json.loads((tmp_path / "results.json").read_text())["answer_format_mismatch"] is True
    assert any("another format than the scorer expects" in r.getMessage() for r in caplog.records)


def test_a_cpu_is_described_with_the_kernels_torch_chose_and_its_threads():
    import torch

    from blocksft.evaluation.metrics import device_description

    description = device_description("cpu")
    assert description.startswith("cpu: ")
    assert description.endswith(f"({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} torch threads)")
