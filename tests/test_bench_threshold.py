"""experiments/bench/threshold.py (benchmark section 6) on a debug=smoke trained model (the session's ``smoke_run``):
structure and invariants, no timing."""

from __future__ import annotations

import json

import pytest

from experiments.bench import cli as bench_cli
from experiments.bench import threshold as bench_threshold


def test_measure_compares_threshold_with_exact_on_the_same_problems(smoke_run):
    result = bench_threshold.measure_threshold(
        str(smoke_run / "export"),
        num_problems=6,
        batch_size=3,
        thresholds=(1e-9, 0.5, 1.0),
        repeats=1,
        consistency_problems=6,
    )
    decoders = result["decoders"]
    assert list(decoders) == ["exact", "threshold_1e-09", "threshold_0.5", "threshold_1"]
    assert result["num_problems"] == 6 and result["settings"]["block_length"] == 8
    exact = decoders["exact"]
    assert exact["nfe_per_problem"] == exact["nfe_min"] == exact["nfe_max"] == 32  # decode.steps
    assert exact["identical_to_exact"] == 6 and exact["changed_verdicts"] == 0
    assert decoders["threshold_1e-09"]["nfe_max"] == 4  # 32 / 8 blocks, one forward each
    assert decoders["threshold_1e-09"]["positions_per_problem"] < exact["positions_per_problem"]
    # threshold 1 commits one token per step, as the exact schedule does at 8 steps per block of 8
    assert decoders["threshold_1"]["identical_to_exact"] == 6 and decoders["threshold_1"]["nfe_per_problem"] == 32
    for name, entry in decoders.items():
        assert 4 <= entry["nfe_min"] <= entry["nfe_per_problem"] <= entry["nfe_max"] <= 32
        assert 0.0 <= entry["accuracy"] <= 1.0 and entry["problems_per_s"] > 0
        if name != "exact":
            check = entry["batched_equals_batch_one"]
            assert check == {"checked": 6, "identical_tokens": 6, "identical_nfe": 6, "holds": True}
            assert entry["nfe_reduction"] == pytest.approx(32 / entry["nfe_per_problem"])
    markdown = bench_threshold.render_threshold(result)
    assert markdown.count("\n| threshold_") == 3 and "| exact | 32.0 (32-32) |" in markdown


def test_cli_quick_runs_section_6_and_writes_markdown_and_json(smoke_run, tmp_path):
    assert (
        bench_cli.main(
            [
                "--sections",
                "6",
                "--quick",
                "--device",
                "cpu",
                "--model",
                str(smoke_run / "export"),
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "benchmark.json").read_text())["threshold"]
    assert list(result["decoders"]) == ["exact", "threshold_0.9"] and result["num_problems"] == 8
    assert "threshold_0.9" in (tmp_path / "benchmark.md").read_text()
    with pytest.raises(SystemExit) as error:
        bench_cli.main(["--sections", "6", "--model", str(tmp_path / "nothing")])
    assert error.value.code == 2
