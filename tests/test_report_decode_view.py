"""The study report's decode-view loss (``diagnostics.decode_view``): the curves per block read from each job's
metrics.csv, averaged over seeds per configuration, ``decode_view_loss.png`` and the table of the last values in
report.md; nothing of it for runs that did not log it. Expected numbers are computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import reporting as rep
from experiments.reporting.plots import final_decode_view_losses, load_decode_view_curves, mean_decode_view_curves
from test_report import write_job

# (strategy, seed) -> step -> (block 0, block 1) losses; Lightning's rows of other metrics in between
CURVES = {
    ("classical", 0): {199: (3.0, 2.0), 399: (2.0, 1.0)},
    ("classical", 1): {199: (5.0, 4.0), 399: (4.0, 3.0)},
    ("blockwise", 0): {199: (2.0, 1.5), 399: (1.0, 0.5)},
    ("blockwise", 1): {199: (2.0, 2.5)},  # a job whose last evaluation came earlier (and block 1 only there)
}


def write_decode_view_csv(job: Path, curve: dict[int, tuple[float, float]]) -> None:
    (job / "csv").mkdir()
    header = (
        "decode_view/loss,decode_view/loss_block0,decode_view/loss_block0_mask1,decode_view/loss_block1,step,train/loss"
    )
    lines = [header]
    for step, (block0, block1) in curve.items():
        lines += [f",,,,{step},0.5", f"{(block0 + block1) / 2},{block0},9.9,{block1},{step},"]
    (job / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for (strategy, seed), curve in CURVES.items():
        job = write_job(root, f"{strategy}-seed{seed}", strategy=strategy, seed=seed, study="main")
        write_decode_view_csv(job, curve)
    write_job(root, "blockwise-seed2", strategy="blockwise", seed=2, study="main")  # logged nothing
    return root


def test_curves_are_read_per_block_without_the_per_ratio_cells(sweep: Path):
    assert load_decode_view_curves(sweep / "classical-seed0") == {0: {199: 3.0, 399: 2.0}, 1: {199: 2.0, 399: 1.0}}
    assert load_decode_view_curves(sweep / "blockwise-seed2") == {}


def test_curves_and_last_values_are_averaged_over_seeds_per_configuration(sweep: Path):
    runs = rep.load_runs(sweep)
    curves = mean_decode_view_curves(runs, ["strategy"])
    assert curves[0]["classical"] == ([199, 399], [4.0, 3.0], 2)
    assert curves[1]["blockwise"] == ([199, 399], [2.0, 0.5], 2)  # step 399: the one job that logged it
    finals = final_decode_view_losses(runs, ["strategy"])
    assert finals["classical"] == {"n": 2, "loss_block": [3.0, 2.0]}
    assert finals["blockwise"] == {
        "n": 2,
        "loss_block": [pytest.approx(1.5), pytest.approx(1.5)],
    }  # (1+2)/2, (.5+2.5)/2


def test_the_report_plots_and_tabulates_it(sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = rep.write_report(sweep, out)
    assert "decode_view_loss.png" in summary["plots"]
    assert (out / "decode_view_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    assert "## Decode-view loss" in text and "| configuration | block 0 | block 1 | n seeds |" in text
    assert "| blockwise, block_size=8 | 1.500 | 1.500 | 2 |" in text  # the report's configurations: strategy, block
    assert "| classical, block_size=8 | 3.000 | 2.000 | 2 |" in text
    assert "![decode_view_loss](decode_view_loss.png)" in text
    assert json.loads((out / "summary.json").read_text())["decode_view_final"]["classical, block_size=8"]["n"] == 2


def test_runs_without_it_get_neither_plot_nor_section(tmp_path: Path):
    root = tmp_path / "sweep"
    for seed in range(2):
        write_job(root, f"classical-seed{seed}", strategy="classical", seed=seed, study="main", losses={0: 1.0})
    out = tmp_path / "out"
    summary = rep.write_report(root, out)
    assert "decode_view_loss.png" not in summary["plots"] and not (out / "decode_view_loss.png").exists()
    assert "Decode-view" not in (out / "report.md").read_text() and summary["decode_view_final"] == {}
