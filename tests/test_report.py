"""experiments/reporting (python experiments/report.py): loading, aggregation, paired CI, block grid, claim
verdicts, outputs, CLI.

The fixture sweeps are written into tmp_path; every expected number below is computed by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import reporting as rep
from experiments.reporting.plots import budget_axis_label, plot_budget_curves
from experiments.reporting.render import render_markdown

ROOT = Path(__file__).resolve().parents[1]

T2 = 4.302652729749464  # t_{0.975, df=2}


# ---------------------------------------------------------------------------------------- fixtures


def write_job(
    root: Path,
    sub: str,
    *,
    strategy: str = "blockwise",
    block: int = 8,
    seed: int = 0,
    accuracy: float = 0.3,
    budget: str = "steps",
    budget_value: float | None = None,
    by_block: dict[int, float] | None = None,
    prefix: float = 0.0,
    suffix: float = 1.0,
    study: str | None = None,
    wall: float = 100.0,
    overrides: list[str] | None = None,
    losses: dict[int, float] | None = None,
    model: str | None = None,
    supervised: int = 123,
    eligible: int = 456,
    steps: int = 2000,
) -> Path:
    """One completed job in the results.json schema of the project (``model``: ``config.model.name``)."""
    job = root / sub
    job.mkdir(parents=True)
    masking = {"prefix_mask_rate": prefix, "suffix_mask_prob": suffix} if strategy != "classical" else {"eps": 1e-3}
    by_block = by_block or {block: accuracy}
    results = {
        "status": "completed",
        "mode": "train",
        "strategy": strategy,
        "block_size": block,
        "decode_block_length": next(iter(by_block)),
        "seed": seed,
        "budget": {
            "kind": budget,
            "value": budget_value if budget_value is not None else 2000 if budget == "steps" else 500000,
            "count": "eligible",
        },
        "steps": steps,
        "supervised_tokens": supervised,
        "eligible_tokens": eligible,
        "accuracy": accuracy,
        "accuracy_flexible": accuracy + 0.01,
        "accuracy_by_decode_block": {str(k): v for k, v in by_block.items()},
        "final_train_loss": 0.4,
        "wall_seconds": wall,
        "train_seconds": wall - 10,
        "eval_seconds": 5.0,
        "git_commit": "abc123",
        "study": study,
        "config": {"strategy": {"name": strategy, "masking": masking}, "block": {"size": block}, "seed": seed},
    }
    if model is not None:
        results["config"]["model"] = {"name": model, "init_from": None if model.endswith("_scratch") else "/base"}
    (job / "results.json").write_text(json.dumps(results))
    if overrides is not None:
        write_overrides(job, overrides)
    if losses is not None:
        (job / "csv").mkdir()
        lines = ["epoch,lr-AdamW,step,train/loss,val/accuracy"]
        for step, loss in losses.items():
            lines += [f",0.001,{step},,", f"0,,{step},{loss},"]  # lr rows have no loss: skipped
        (job / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    return job


def write_overrides(job: Path, overrides: list[str]) -> None:
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


# main study: steps diffs 0.04, 0.05, 0.06 (CI above 0); tokens diffs -0.02, 0.01, 0.04 (CI spans 0)
MAIN = {
    ("classical", "steps"): [0.20, 0.25, 0.30],
    ("blockwise", "steps"): [0.24, 0.30, 0.36],
    ("classical", "tokens"): [0.30, 0.28, 0.26],
    ("blockwise", "tokens"): [0.28, 0.29, 0.30],
}


@pytest.fixture
def main_sweep(tmp_path: Path) -> Path:
    root = tmp_path / "2026-01-01_00-00-00"
    for (strategy, budget), values in MAIN.items():
        for seed, accuracy in enumerate(values):
            losses = {0: 4.0 + seed, 1: 3.0 + seed, 2: 2.0} if (strategy, budget) == ("blockwise", "steps") else None
            write_job(
                root,
                f"{strategy}-{budget}-seed{seed}",
                strategy=strategy,
                budget=budget,
                seed=seed,
                accuracy=accuracy,
                study="main",
                wall=100.0 + seed,
                losses=losses,
            )
    # an unpaired blockwise seed (its classical partner has no results.json)
    write_job(root, "blockwise-tokens-seed3", budget="tokens", seed=3, accuracy=0.31, study="main")
    failed = root / "blockwise-steps-seed3"
    failed.mkdir()
    (failed / "results.json").write_text(json.dumps({"status": "failed", "error": "RuntimeError: CUDA OOM"}))
    write_overrides(failed, ["strategy=blockwise", "block='8'", "seed=3", "budget=steps", "+study=main"])
    write_overrides(root / "classical-tokens-seed3", ["strategy=classical", "block='8'", "seed=3", "budget=tokens"])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


GRID = {  # single seed; diagonal is the row max for B=4 and B=8, not for B=16
    4: {4: 0.30, 8: 0.25, 16: 0.20, 32: 0.10},
    8: {4: 0.28, 8: 0.35, 16: 0.30, 32: 0.20},
    16: {4: 0.20, 8: 0.33, 16: 0.30, 32: 0.25},
}
CLASSICAL_ROW = {4: 0.22, 8: 0.24, 16: 0.26, 32: 0.27}


@pytest.fixture
def grid_sweep(tmp_path: Path) -> Path:
    root = tmp_path / "grid"
    for block, row in GRID.items():
        write_job(
            root,
            f"blockwise-B{block}-seed0",
            block=block,
            by_block=dict(row),
            accuracy=row[4],
            study="block_size_consistency",
        )
    write_job(
        root,
        "classical-B32-seed0",
        strategy="classical",
        block=32,
        by_block=dict(CLASSICAL_ROW),
        accuracy=0.22,
        study="block_size_consistency",
    )
    return root


PREFIX = {0.0: [0.40, 0.42], 0.25: [0.35, 0.37], 0.5: [0.30, 0.32]}


@pytest.fixture
def prefix_sweep(tmp_path: Path) -> Path:
    root = tmp_path / "prefix_ablation"
    for rate, values in PREFIX.items():
        for seed, accuracy in enumerate(values):
            write_job(root, f"rate{rate}/seed{seed}", prefix=rate, seed=seed, accuracy=accuracy)
    return root


# ------------------------------------------------------------------------------------------ loading


def test_load_runs_reads_completed_failed_and_overrides_only_jobs(main_sweep: Path):
    runs = rep.load_runs(main_sweep)
    assert len(runs) == 15
    failed = {r["job"]: r for r in runs if r["status"] == "failed"}
    assert set(failed) == {"blockwise-steps-seed3"}
    assert failed["blockwise-steps-seed3"]["error"] == "RuntimeError: CUDA OOM"
    assert failed["blockwise-steps-seed3"]["block_size"] == 8 and failed["blockwise-steps-seed3"]["study"] == "main"
    only = next(
        r for r in runs if r["job"] == "classical-tokens-seed3"
    )  # overrides, no results.json: running or killed
    assert only["status"] == "unfinished" and only["accuracy"] is None
    assert (only["strategy"], only["seed"], only["block_size"], only["budget_kind"]) == ("classical", 3, 8, "tokens")
    assert only["overrides"] == ["strategy=classical", "block='8'", "seed=3", "budget=tokens"]
    done = next(r for r in runs if r["job"] == "classical-steps-seed1")
    assert done["prefix_mask_rate"] is None and done["accuracy_by_decode_block"] == {8: 0.25}


def test_parse_overrides():
    fields = rep.parse_overrides(
        [
            "strategy=blockwise",
            "block='16'",
            "seed=2",
            "budget=tokens",
            "strategy.masking.prefix_mask_rate=0.5",
            "++study=main",
            "junk",
        ]
    )
    assert fields == {
        "strategy": "blockwise",
        "block_size": 16,
        "seed": 2,
        "budget_kind": "tokens",
        "prefix_mask_rate": 0.5,
        "study": "main",
    }


def test_loss_curve_skips_empty_rows(main_sweep: Path):
    assert rep.load_loss_curve(main_sweep / "blockwise-steps-seed1") == {0: 5.0, 1: 4.0, 2: 2.0}
    assert rep.load_loss_curve(main_sweep / "classical-steps-seed0") == {}
    curves = rep.mean_loss_curves(rep.load_runs(main_sweep), ["strategy", "budget_kind"])
    assert list(curves) == ["blockwise, budget_kind=steps"]
    steps, losses, n = curves["blockwise, budget_kind=steps"]
    assert steps == [0, 1, 2] and losses == pytest.approx([5.0, 4.0, 2.0]) and n == 3


# -------------------------------------------------------------------------------------- statistics


def test_aggregate_main_groups(main_sweep: Path):
    runs = rep.load_runs(main_sweep)
    assert rep.default_keys(runs) == ["strategy", "block_size", "budget_kind"]
    groups = {(g["strategy"], g["budget_kind"]): g for g in rep.aggregate(runs)}
    assert groups[("classical", "steps")]["mean"] == pytest.approx(0.25)
    assert groups[("classical", "steps")]["std"] == pytest.approx(0.05)
    assert groups[("blockwise", "steps")]["std"] == pytest.approx(0.06)
    tokens = groups[("blockwise", "tokens")]
    assert tokens["n"] == 4 and tokens["seeds"] == [0, 1, 2, 3]
    assert tokens["mean"] == pytest.approx(0.295) and tokens["std"] == pytest.approx(math.sqrt(0.0005 / 3))


def test_paired_difference_hand_computed(main_sweep: Path):
    paired = {d["budget_kind"]: d for d in rep.paired_difference(rep.load_runs(main_sweep))}
    steps, tokens = paired["steps"], paired["tokens"]
    assert steps["n_pairs"] == 3 and steps["seeds"] == [0, 1, 2]
    assert steps["mean"] == pytest.approx(0.05) and steps["std"] == pytest.approx(0.01)
    half = T2 * 0.01 / math.sqrt(3)  # 0.024842
    assert steps["ci_low"] == pytest.approx(0.05 - half, abs=1e-4)
    assert steps["ci_high"] == pytest.approx(0.05 + half, abs=1e-4)
    assert steps["verdict"] == "supports"
    assert tokens["n_pairs"] == 3  # seed 3 is unpaired
    assert tokens["mean"] == pytest.approx(0.01) and tokens["std"] == pytest.approx(0.03)
    half = T2 * 0.03 / math.sqrt(3)  # 0.074527
    assert tokens["ci_low"] == pytest.approx(0.01 - half, abs=1e-4)
    assert tokens["verdict"] == "inconclusive at n=3 seeds"


def test_single_pair_has_no_ci():
    runs = [
        {"status": "completed", "strategy": s, "seed": 0, "accuracy": a, "budget_kind": "steps"}
        for s, a in (("blockwise", 0.5), ("classical", 0.4))
    ]
    (diff,) = rep.paired_difference(runs)
    assert diff["n_pairs"] == 1 and diff["mean"] == pytest.approx(0.1) and diff["ci_low"] is None
    assert diff["verdict"] == "inconclusive at n=1 seeds"


def test_t_critical():
    assert rep.t_critical(2) == pytest.approx(T2, abs=1e-3)
    assert rep.t_critical(30) == pytest.approx(2.0423, abs=1e-3)
    assert rep.t_critical(1000) == pytest.approx(1.96, abs=0.01)


def test_block_grid_single_seed(grid_sweep: Path):
    grid = rep.block_grid(rep.load_runs(grid_sweep))
    assert grid["decode_lengths"] == [4, 8, 16, 32]
    rows = {r["label"]: r for r in grid["rows"]}
    assert [r["label"] for r in grid["rows"]] == ["B=4", "B=8", "B=16", "classical"]
    assert rows["B=8"]["cells"]["8"] == {"mean": 0.35, "std": None, "n": 1}
    assert [rows[k]["diagonal_is_max"] for k in ("B=4", "B=8", "B=16")] == [True, True, False]
    assert rows["B=16"]["best_decode"] == [8]
    assert rows["classical"]["best_decode"] == [32] and rows["classical"]["diagonal_is_max"] is None
    assert "matched" not in rows["classical"] and "verdict" not in rows["classical"]
    assert [d["decode"] for d in rows["B=8"]["matched"]] == [4, 16, 32]
    assert rows["B=8"]["matched"][0]["mean"] == pytest.approx(0.07) and rows["B=8"]["matched"][0]["ci_low"] is None
    assert rows["B=8"]["verdict"] == "inconclusive at n=1 seeds", "one seed: no interval"
    assert rows["B=8"]["supervised_tokens"] == 123


# three seeds; B=4 peaks at 4 (every paired difference clearly above 0), B=8 is beaten at decode 16
GRID_SEEDS = {
    4: {4: [0.50, 0.52, 0.56], 8: [0.40, 0.41, 0.47], 16: [0.30, 0.33, 0.35]},
    8: {4: [0.48, 0.50, 0.52], 8: [0.50, 0.52, 0.54], 16: [0.55, 0.58, 0.59]},
}


def test_under_a_protocol_the_grid_describes_and_the_family_decides(grid_sweep: Path):
    protocol = {"seeds": [0], "split": "validation", "min_eval_size": 1, "family": {}}
    runs = [r | {"protocol": protocol} for r in rep.load_runs(grid_sweep)]
    text = render_markdown(rep.summarize(runs, "block_size_consistency"), runs, [])
    assert "## Block-size consistency" in text and "the declared comparisons above" in text
    assert "vs longer decode blocks" not in text  # no unadjusted verdict table beside the family


def test_block_grid_pairs_each_row_by_seed_against_its_matched_decode_length(tmp_path: Path):
    for block, row in GRID_SEEDS.items():
        for seed in range(3):
            by_block = {length: values[seed] for length, values in row.items()}
            write_job(
                tmp_path,
                f"B{block}-seed{seed}",
                block=block,
                seed=seed,
                by_block=by_block,
                accuracy=by_block[4],
                study="block_size_consistency",
            )
    grid = rep.block_grid(rep.load_runs(tmp_path))
    rows = {r["label"]: r for r in grid["rows"]}
    b4 = {d["decode"]: d for d in rows["B=4"]["matched"]}
    assert b4[8]["diffs"] == pytest.approx([0.10, 0.11, 0.09]) and b4[8]["seeds"] == [0, 1, 2]
    assert b4[8]["ci_low"] == pytest.approx(0.10 - T2 * 0.01 / math.sqrt(3), abs=1e-4)
    assert rows["B=4"]["verdict"] == "supports"
    b8 = {d["decode"]: d for d in rows["B=8"]["matched"]}
    assert b8[16]["diffs"] == pytest.approx([-0.05, -0.06, -0.05]) and b8[16]["ci_high"] < 0
    assert b8[4]["ci_low"] == pytest.approx(0.02, abs=1e-9) == b8[4]["ci_high"], (
        "equal differences: a zero-width interval"
    )
    assert rows["B=8"]["verdict"] == "contradicts", "decode 16 beats the matched length"
    assert rep.verdict_block_diagonal(grid) == "inconclusive (partly: 1/2 rows support, 1/2 contradict)"
    assert (rows["B=4"]["verdict_longer"], rows["B=4"]["verdict_shorter"]) == ("supports", None), "no shorter length"
    assert (rows["B=8"]["verdict_longer"], rows["B=8"]["verdict_shorter"]) == ("contradicts", "supports")
    assert rep.verdict_block_diagonal(grid, "verdict_shorter") == "supports", "only the rows that have shorter lengths"
    summary = rep.write_report(tmp_path, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert f"| B=4 | — | +10.0 [{100 * b4[8]['ci_low']:.1f}, {100 * b4[8]['ci_high']:.1f}] (3) |" in text
    assert (
        "| train block: Δ vs decode | 4 | 8 | 16 | verdict | vs longer decode blocks | vs shorter decode blocks |"
        in text
    )
    [b8_line] = [line for line in text.splitlines() if line.startswith("| B=8 | +2.0 [2.0, 2.0] (3) | — | -5.3 ")]
    assert b8_line.endswith("| contradicts | contradicts | supports |")
    claim, longer, shorter = summary["claims"]
    assert (
        claim["verdict"] == rep.verdict_block_diagonal(grid)
        and "B=8: contradicts (vs decode 4: +2.0" in claim["evidence"]
    )
    assert (
        longer["verdict"].startswith("inconclusive (partly") and longer["evidence"] == "B=4: supports; B=8: contradicts"
    )
    assert shorter["verdict"] == "supports" and shorter["evidence"] == "B=8: supports"


def test_block_grid_gives_no_verdict_to_a_row_without_its_training_block_or_another_length(tmp_path: Path):
    """A row trained at a block outside the decode lengths, or scored at its training block alone (a job
    copied from a study that decodes once), has cells but no paired differences: it counts for no verdict."""
    for seed in range(3):
        write_job(tmp_path, f"B4-seed{seed}", block=4, seed=seed, by_block={4: 0.5 + seed / 100, 8: 0.4, 16: 0.3})
        write_job(tmp_path, f"B64-seed{seed}", block=64, seed=seed, by_block={4: 0.5, 8: 0.4, 16: 0.3})
        write_job(tmp_path, f"B8-seed{seed}", block=8, seed=seed, by_block={8: 0.5})
    grid = rep.block_grid(rep.load_runs(tmp_path))
    rows = {r["label"]: r for r in grid["rows"]}
    assert grid["decode_lengths"] == [4, 8, 16]
    assert rows["B=64"]["diagonal_is_max"] is None and rows["B=8"]["diagonal_is_max"] is True
    assert all("matched" not in rows[label] and "verdict" not in rows[label] for label in ("B=64", "B=8"))
    assert rows["B=8"]["cells"]["4"] is None and rows["B=8"]["cells"]["8"]["n"] == 3
    assert rep.verdict_block_diagonal(grid) == "supports", "B=4 alone decides"
    summary = rep.write_report(tmp_path, tmp_path / "out")
    assert summary["claims"][0]["evidence"].endswith(
        "B=4: supports (vs decode 8: +11.0 [8.5, 13.5], vs decode 16: +21.0 [18.5, 23.5])"
    )


# ------------------------------------------------------------------------------------------ claims


def test_verdict_from_ci():
    assert rep.verdict_from_ci({"ci_low": 0.01, "ci_high": 0.05, "n_pairs": 3}) == "supports"
    assert rep.verdict_from_ci({"ci_low": -0.05, "ci_high": -0.01, "n_pairs": 3}) == "contradicts"
    assert rep.verdict_from_ci({"ci_low": -0.01, "ci_high": 0.05, "n_pairs": 5}) == "inconclusive at n=5 seeds"


def _grid(verdicts: list[str | None]) -> dict:
    return {"rows": [{"label": str(i), "verdict": v} for i, v in enumerate(verdicts)]}


def test_verdict_block_diagonal():
    assert rep.verdict_block_diagonal(_grid(["supports", "supports", None])) == "supports"
    assert rep.verdict_block_diagonal(_grid(["contradicts", "contradicts"])) == "contradicts"
    assert (
        rep.verdict_block_diagonal(_grid(["supports", "contradicts", "inconclusive at n=5 seeds"]))
        == "inconclusive (partly: 1/3 rows support, 1/3 contradict)"
    )
    assert rep.verdict_block_diagonal(_grid(["inconclusive at n=5 seeds"])) == "inconclusive (no row decided)"
    assert rep.verdict_block_diagonal(_grid([None])).startswith("inconclusive (no row has")


def _differences(knob: str, intervals: dict[float, tuple[float, float]]) -> list[dict]:
    return [
        {knob: k, "mean": (low + high) / 2, "ci_low": low, "ci_high": high, "n_pairs": 3}
        for k, (low, high) in intervals.items()
    ]


def test_verdict_prefix_from_the_clean_minus_noisiest_interval():
    knob = "prefix_mask_rate"
    assert rep.verdict_prefix(_differences(knob, {0.1: (-0.05, 0.01), 0.5: (0.02, 0.08)})) == "supports"
    assert rep.verdict_prefix(_differences(knob, {0.5: (0.02, 0.08), 0.1: (-0.05, 0.01)})) == "supports", "order"
    assert rep.verdict_prefix(_differences(knob, {0.1: (0.02, 0.08), 0.5: (-0.08, -0.02)})) == "contradicts"
    assert rep.verdict_prefix(_differences(knob, {0.5: (-0.01, 0.08)})) == "inconclusive at n=3 seeds"
    assert rep.verdict_prefix([]).startswith("inconclusive (needs prefix_mask_rate=0")


def test_verdict_suffix_from_the_hidden_minus_most_visible_interval():
    knob = "suffix_mask_prob"
    assert rep.verdict_suffix(_differences(knob, {0.0: (0.10, 0.20), 0.5: (-0.01, 0.02)})) == "supports"
    assert rep.verdict_suffix(_differences(knob, {0.0: (-0.20, -0.10), 0.5: (0.01, 0.02)})) == "contradicts"
    assert rep.verdict_suffix(_differences(knob, {0.0: (-0.01, 0.20)})) == "inconclusive at n=3 seeds"
    assert rep.verdict_suffix([]).startswith("inconclusive (needs suffix_mask_prob=1.0")


def test_knob_differences_pair_each_value_with_the_reference_by_seed(prefix_sweep: Path):
    runs = rep.load_runs(prefix_sweep)
    differences = rep.knob_differences(runs, "prefix_mask_rate", 0.0)
    assert [d["prefix_mask_rate"] for d in differences] == [0.25, 0.5]
    assert [d["diffs"] for d in differences] == [pytest.approx([0.05, 0.05]), pytest.approx([0.10, 0.10])]
    assert [d["verdict"] for d in differences] == ["supports", "supports"]
    assert rep.knob_differences(runs, "prefix_mask_rate", 0.9) == [], "no runs at the reference: nothing paired"


def test_claims_from_summary():
    diff = {"mean": 0.05, "ci_low": 0.02, "ci_high": 0.08, "n_pairs": 3}
    summary = {
        "paired": [{"budget_kind": "steps", **diff}],
        "grid": {
            "rows": [
                {
                    "label": "B=8",
                    "verdict": "contradicts",
                    "matched": [{"decode": 16, **diff, "mean": -0.05, "ci_low": -0.08, "ci_high": -0.02}],
                }
            ]
        },
        "prefix": [
            {"prefix_mask_rate": 0.0, "mean": 0.4, "std": 0.01, "n": 3},
            {"prefix_mask_rate": 0.5, "mean": 0.35, "std": 0.01, "n": 3},
        ],
        "prefix_paired": [{"prefix_mask_rate": 0.5, **diff}],
        "suffix": [],
    }
    claims = rep.claims(summary)
    assert [c["verdict"] for c in claims] == ["supports", "contradicts", "supports"]
    assert claims[1]["evidence"].endswith("B=8: contradicts (vs decode 16: -5.0 [-8.0, -2.0])")
    assert "clean − prefix_mask_rate=0.5: Δ = +5.0 pts, 95% CI [2.0, 8.0], n=3 pairs" in claims[2]["evidence"]
    assert rep.claims({}) == []


# ----------------------------------------------------------------------------------------- outputs


def _png_ok(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_report_main(main_sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    rep.write_report(main_sweep, out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["study"] == "main" and summary["kinds"] == ["main"]
    assert (summary["n_jobs"], summary["n_completed"], summary["n_failed"], summary["n_unfinished"]) == (15, 13, 1, 1)
    assert summary["git_commits"] == {"abc123": 13}
    assert summary["wall_seconds_total"] == pytest.approx(4 * (100 + 101 + 102) + 100)
    steps = next(d for d in summary["paired"] if d["budget_kind"] == "steps")
    assert steps["mean"] == pytest.approx(0.05) and steps["ci_low"] == pytest.approx(
        0.05 - T2 * 0.01 / 3**0.5, abs=1e-4
    )
    assert [c["verdict"] for c in summary["claims"]] == ["supports", "inconclusive at n=3 seeds"]
    text = (out / "report.md").read_text()
    assert "# Study report: main" in text and "13 completed / 1 failed / 1 unfinished" in text
    assert "## Failed jobs" in text and "RuntimeError: CUDA OOM" in text
    failed_section, unfinished_section = text.split("## Unfinished jobs")[0], text.split("## Unfinished jobs")[1]
    assert "seed=3 budget=tokens" not in failed_section.split("## Failed jobs")[1]
    assert "`strategy=classical block='8' seed=3 budget=tokens`" in unfinished_section.split("##")[0]
    assert "| strategy | block_size | budget_kind | accuracy |" in text
    assert "| classical | 8 | steps | 25.0 ± 5.0 |" in text
    assert "## Main comparison: blockwise − classical" in text and "inconclusive at n=3 seeds (CI includes 0)" in text
    assert "## Paper comparison" in text and "76.0" in text and "70.8" in text and "34.2" in text
    assert "different scale" in text.lower() and "LLaDA-8B" in text and "2508.19529" in text
    assert "- Blockwise SFT beats classical SFT at an equal steps budget: **supports**" in text
    assert _png_ok(out / "bars.png") and _png_ok(out / "loss_curves.png")
    assert not (out / "heatmap.png").exists()


def test_write_report_grid(grid_sweep: Path):
    summary = rep.write_report(grid_sweep)
    out = grid_sweep / "report"
    assert summary["kinds"] == ["block_size_consistency"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["grid"]["rows"][1]["cells"]["8"]["mean"] == pytest.approx(0.35)
    assert saved["claims"][0]["verdict"] == "inconclusive (no row decided)", "one seed: no interval"
    text = (out / "report.md").read_text()
    assert "| train block \\ decode | 4 | 8 | 16 | 32 | diagonal is row max? | supervised tokens per run |" in text
    assert "| B=8 | 28.0 ± n/a (1) | **35.0 ± n/a (1)** | 30.0 ± n/a (1) | 20.0 ± n/a (1) | yes | 123 |" in text
    assert "| B=16 |" in text and "**33.0 ± n/a (1)**" in text
    assert "| classical | 22.0 ± n/a (1) | 24.0 ± n/a (1) | 26.0 ± n/a (1) | **27.0 ± n/a (1)** | n/a | 123 |" in text
    assert "## Paper comparison" in text
    # every job's results.json names decode 4 as its primary length; outside the grid each counts at its block
    assert "A run decoded at several block lengths counts at its training block." in text
    assert "| blockwise | 8 | 35.0 ± n/a | — | 1 | 0 |" in text, "no flexible accuracy by length in the fixture"
    assert "| blockwise | 16 | 30.0 ± n/a |" in text
    assert "| classical | 32 | 27.0 ± n/a |" in text
    assert "| synthetic arithmetic (ours, best blockwise config) | 35.0 ± n/a | 27.0 ± n/a (classical) |" in text
    assert _png_ok(out / "heatmap.png")
    assert not (out / "bars.png").exists() and not (out / "loss_curves.png").exists()


def test_write_report_prefix(prefix_sweep: Path, tmp_path: Path):
    summary = rep.write_report(prefix_sweep, tmp_path / "out")
    assert summary["study"] == "prefix_ablation" and summary["kinds"] == ["prefix"]
    prefix = {g["prefix_mask_rate"]: g for g in summary["prefix"]}
    assert prefix[0.0]["mean"] == pytest.approx(0.41) and prefix[0.0]["std"] == pytest.approx(0.02 / math.sqrt(2))
    assert prefix[0.5]["mean"] == pytest.approx(0.31)
    assert summary["group_keys"] == ["strategy", "block_size", "prefix_mask_rate"]
    assert [c["verdict"] for c in summary["claims"]] == ["supports"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Prefix ablation" in text and "| 0 | 41.0 ± 1.4 | 2 | reference | — | — | — |" in text
    assert "| 0.25 | 36.0 ± 1.4 | 2 | +5.00 | [5.00, 5.00] | 2 | supports |" in text
    assert [d["mean"] for d in summary["prefix_paired"]] == [pytest.approx(0.05), pytest.approx(0.10)]
    assert _png_ok(tmp_path / "out" / "bars.png")


def test_empty_sweep_does_not_crash(tmp_path: Path):
    summary = rep.write_report(tmp_path, tmp_path / "out", study="nothing")
    assert summary["n_jobs"] == 0 and summary["plots"] == []
    assert "## Paper comparison" in (tmp_path / "out" / "report.md").read_text()


def test_cli(main_sweep: Path, prefix_sweep: Path, tmp_path: Path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "report.py"), str(main_sweep)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (main_sweep / "report" / "report.md").is_file() and "13 completed, 1 failed, 1 unfinished" in done.stdout
    out = tmp_path / "cli-out"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "report.py"),
            str(prefix_sweep),
            "--study",
            "my_prefix",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["study"] == "my_prefix"


def test_suffix_study_detected_from_data(tmp_path: Path):
    root = tmp_path / "sweep"
    for suffix, values in {1.0: [0.40, 0.42], 0.0: [0.20, 0.22]}.items():
        for seed, accuracy in enumerate(values):
            write_job(root, f"s{suffix}-{seed}", suffix=suffix, seed=seed, accuracy=accuracy)
    runs = rep.load_runs(root)
    assert rep.study_kinds("2026-01-01_00-00-00", runs) == ["suffix"]
    summary = rep.summarize(runs, "suffix")
    assert [g["suffix_mask_prob"] for g in summary["suffix"]] == [0.0, 1.0]
    assert summary["suffix"][1]["mean"] == pytest.approx(0.41)
    assert summary["suffix_paired"][0]["diffs"] == pytest.approx([0.20, 0.20])
    assert [c["verdict"] for c in summary["claims"]] == ["supports"]


def test_time_breakdown_splits_wall_time_into_training_decoding_and_other():
    runs = [
        {"wall_seconds": 100.0, "train_seconds": 70.0, "eval_seconds": 20.0},
        {"wall_seconds": 50.0, "train_seconds": 30.0, "eval_seconds": 15.0},
        {"wall_seconds": None, "train_seconds": None, "eval_seconds": None},
    ]
    assert rep.time_breakdown(runs) == {"jobs": 2, "train": 100.0, "decode": 35.0, "other": 15.0, "wall": 150.0}
    assert rep.time_breakdown(runs[2:]) is None


def test_linked_job_folders_are_read_once_and_marked(tmp_path: Path):
    """A study may symlink a run of identical configuration from another sweep: it is read and marked
    linked; a symlink loop does not hang or duplicate runs."""
    other, sweep = tmp_path / "suffix_study", tmp_path / "prefix_study"
    shared = write_job(other, "blockwise-B8-suffix1.0-seed0", accuracy=0.40, study="ablation_suffix")
    write_job(sweep, "blockwise-B8-prefix0.5-seed0", prefix=0.5, accuracy=0.30, study="ablation_prefix")
    (sweep / "blockwise-B8-prefix0.0-seed0").symlink_to(shared, target_is_directory=True)
    (sweep / "loop").symlink_to(sweep, target_is_directory=True)
    runs = rep.load_runs(sweep)
    assert [r["job"] for r in runs] == ["blockwise-B8-prefix0.0-seed0", "blockwise-B8-prefix0.5-seed0"]
    assert runs[0]["linked_from"] == str(shared.resolve()) and runs[1]["linked_from"] is None
    summary = rep.write_report(sweep, tmp_path / "out", study="ablation_prefix")
    assert {g["prefix_mask_rate"]: g["mean"] for g in summary["prefix"]} == pytest.approx({0.0: 0.40, 0.5: 0.30})
    assert summary["linked"] == {"blockwise-B8-prefix0.0-seed0": str(shared.resolve())}
    text = (tmp_path / "out" / "report.md").read_text()
    assert "- Linked jobs: 1" in text and "| `blockwise-B8-prefix0.0-seed0` † |" in text


def test_controls_study_compares_each_control_with_blockwise_by_seed(tmp_path: Path):
    root = tmp_path / "controls"
    arms = {
        "blockwise": [0.30, 0.32, 0.34],
        "blockwise_unaligned": [0.20, 0.21, 0.22],
        "classical_matched": [0.40, 0.42, 0.44],
        "blockwise_visible_future": [0.31, 0.30, 0.35],
    }
    for strategy, values in arms.items():
        for seed, accuracy in enumerate(values):
            write_job(
                root,
                f"{strategy}-B8-seed{seed}",
                strategy=strategy,
                seed=seed,
                accuracy=accuracy,
                suffix=0.0 if strategy == "blockwise_visible_future" else 1.0,
            )
    summary = rep.write_report(root, tmp_path / "out", study="ablation_controls")
    assert summary["kinds"] == ["controls"] and summary["suffix"] == []  # visible_future's suffix 0 is not a sweep
    by_control = {c["control"]: c for c in summary["controls"]}
    assert list(by_control) == ["blockwise_unaligned", "blockwise_visible_future", "classical_matched"]
    unaligned = by_control["blockwise_unaligned"]["paired"]  # diffs 0.10, 0.11, 0.12
    assert unaligned["mean"] == pytest.approx(0.11)
    assert unaligned["ci_low"] == pytest.approx(0.11 - T2 * 0.01 / math.sqrt(3))
    assert {name: c["verdict"] for name, c in by_control.items()} == {
        "blockwise_unaligned": "supports",
        "classical_matched": "contradicts",
        "blockwise_visible_future": "inconclusive at n=3 seeds",
    }
    assert [c["verdict"] for c in summary["claims"]] == ["supports", "inconclusive at n=3 seeds", "contradicts"]
    assert (
        "paired by seed, blockwise − blockwise_unaligned: Δ = +11.0 pts, 95% CI [" in summary["claims"][0]["evidence"]
    )
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Controls: blockwise vs variants that break its alignment" in text and "## Suffix ablation" not in text
    assert "| blockwise_unaligned | 21.0 ± 1.0 (3) | 32.0 ± 2.0 (3) | +11.00 |" in text
    assert _png_ok(tmp_path / "out" / "bars.png")


# ------------------------------------------------------------------------------- corruption schemes

T4 = 2.7764  # t_{0.975, df=4}
# (budget, scheme) -> accuracy per seed 0, 1, 2. Δ = blockwise − scheme by seed:
#   steps:  classical −0.20, −0.23, −0.26 (contradicts); all_blocks +0.10, +0.11, +0.12 (supports);
#           complementary −0.01, +0.02, −0.01 (CI spans 0); block_causal +0.05, +0.04, +0.05 (supports)
#   tokens: classical −0.02, +0.01, +0.04 (CI spans 0); the others as listed
SCHEMES = {
    ("steps", "blockwise"): [0.30, 0.32, 0.34],
    ("steps", "classical"): [0.50, 0.55, 0.60],
    ("steps", "blockwise_all_blocks"): [0.20, 0.21, 0.22],
    ("steps", "blockwise_complementary"): [0.31, 0.30, 0.35],
    ("steps", "blockwise_block_causal"): [0.25, 0.28, 0.29],
    ("tokens", "blockwise"): [0.28, 0.29, 0.30],
    ("tokens", "classical"): [0.30, 0.28, 0.26],
    ("tokens", "blockwise_all_blocks"): [0.40, 0.40, 0.40],
    ("tokens", "blockwise_complementary"): [0.10, 0.12, 0.14],
    ("tokens", "blockwise_block_causal"): [0.20, 0.20, 0.23],
}
# training seconds of seed 0 (seed s: + s, so the mean is this + 1); train_seconds = wall − 10 in write_job
SCHEME_TRAIN = {
    ("steps", "blockwise_block_causal"): 390.0,
    ("tokens", "classical"): 150.0,
    ("tokens", "blockwise_all_blocks"): 200.0,
}  # every other (budget, scheme): 290.0
# Pareto front of (mean train s, mean accuracy): tokens classical (151, 0.28), tokens all_blocks (201, 0.40),
# steps classical (291, 0.55); every other point costs >= 291 s and scores below 0.55
SCHEME_FRONT = {("tokens", "classical"), ("tokens", "blockwise_all_blocks"), ("steps", "classical")}


@pytest.fixture
def schemes_sweep(tmp_path: Path) -> Path:
    root = tmp_path / "corruption_schemes"
    for (budget, strategy), values in SCHEMES.items():
        train = SCHEME_TRAIN.get((budget, strategy), 290.0)
        supervised = 2000 if strategy == "classical" else 1000
        for seed, accuracy in enumerate(values):
            write_job(
                root,
                f"{strategy}-B32-seed{seed}-{budget}",
                strategy=strategy,
                block=32,
                budget=budget,
                seed=seed,
                accuracy=accuracy,
                study="corruption_schemes",
                wall=train + 10 + seed,
                supervised=supervised + seed,
                eligible=3000,
                steps=400 if budget == "steps" else 300,
            )
    return root


def test_pareto_front_by_hand():
    points = [(1.0, 0.2), (2.0, 0.5), (2.0, 0.4), (3.0, 0.5), (4.0, 0.9), (1.0, 0.2), (0.5, 0.1)]
    # (2, 0.4) loses to (2, 0.5) on accuracy; (3, 0.5) to (2, 0.5) on cost; equal points both stay
    assert rep.pareto_front(points) == [True, True, False, False, True, True, True]
    assert rep.pareto_front([]) == [] and rep.pareto_front([(5.0, 0.0)]) == [True]
    assert rep.pareto_front([(1.0, 0.5), (2.0, 0.1)]) == [True, False]


def test_cost_summary_means_over_the_runs_that_report_a_field():
    runs = [{"steps": 400, "train_seconds": 10.0}, {"steps": 400, "train_seconds": 14.0}, {"steps": None}]
    cost = rep.cost_summary(runs, ("steps", "train_seconds", "wall_seconds"))
    assert cost["steps"] == {"mean": 400.0, "std": 0.0, "n": 2}
    assert cost["train_seconds"]["mean"] == pytest.approx(12.0) and cost["wall_seconds"] == {
        "mean": None,
        "std": None,
        "n": 0,
    }


def test_scheme_comparison_pairs_each_scheme_with_blockwise_within_a_budget(schemes_sweep: Path):
    runs = rep.load_runs(schemes_sweep)
    assert rep.study_kinds("corruption_schemes", runs) == ["corruption_schemes"]
    assert rep.study_kinds("2026-01-01_00-00-00", runs) == ["corruption_schemes"]  # from the data: no main section
    rows = {(r["budget_kind"], r["strategy"]): r for r in rep.scheme_comparison(runs)}
    assert [k for k in rows][:5] == [
        ("steps", s)
        for s in ("blockwise", "classical", "blockwise_all_blocks", "blockwise_complementary", "blockwise_block_causal")
    ]
    assert rows[("steps", "blockwise")]["paired"] is None and rows[("steps", "blockwise")]["verdict"] is None
    classical = rows[("steps", "classical")]["paired"]  # blockwise − classical: −0.20, −0.23, −0.26
    assert classical["mean"] == pytest.approx(-0.23) and classical["std"] == pytest.approx(0.03)
    assert classical["ci_high"] == pytest.approx(-0.23 + T2 * 0.03 / math.sqrt(3))
    verdicts = {key: r["verdict"] for key, r in rows.items() if r["verdict"]}
    assert verdicts == {
        ("steps", "classical"): "contradicts",
        ("steps", "blockwise_all_blocks"): "supports",
        ("steps", "blockwise_complementary"): "inconclusive at n=3 seeds",
        ("steps", "blockwise_block_causal"): "supports",
        ("tokens", "classical"): "inconclusive at n=3 seeds",
        ("tokens", "blockwise_all_blocks"): "contradicts",
        ("tokens", "blockwise_complementary"): "supports",
        ("tokens", "blockwise_block_causal"): "supports",
    }
    cost = rows[("steps", "classical")]["cost"]
    assert cost["supervised_tokens"]["mean"] == pytest.approx(2001) and cost["eligible_tokens"]["mean"] == 3000
    assert cost["train_seconds"]["mean"] == pytest.approx(291) and cost["wall_seconds"]["mean"] == pytest.approx(301)
    assert cost["steps"]["mean"] == 400 and rows[("tokens", "classical")]["cost"]["steps"]["mean"] == 300


def test_write_report_corruption_schemes(schemes_sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = rep.write_report(schemes_sweep, out)
    assert summary["study"] == "corruption_schemes" and summary["kinds"] == ["corruption_schemes"]
    assert summary["paired"] == [] and summary["pareto"]["cost"] == "train_seconds"
    front = {(p["budget_kind"], p["strategy"]) for p in summary["pareto"]["points"] if p["on_front"]}
    assert front == SCHEME_FRONT and len(summary["pareto"]["points"]) == 10
    claims = {c["claim"]: c["verdict"] for c in summary["claims"]}
    assert claims["Blockwise beats classical at an equal steps budget (corruption schemes)"] == "contradicts"
    assert (
        claims["Blockwise beats blockwise_complementary at an equal steps budget (corruption schemes)"]
        == "inconclusive at n=3 seeds"
    )
    assert len(claims) == 8
    text = (out / "report.md").read_text()
    assert "## Corruption schemes" in text and "## Main comparison" not in text
    assert "| steps | blockwise | 32.0 ± 2.0 (3) | reference | — | — | — |" in text
    assert "| steps | classical | 55.0 ± 5.0 (3) | -23.00 |" in text and "| contradicts |" in text
    assert "| steps | blockwise_complementary | 32.0 ± 2.6 (3) | +0.00 |" in text
    assert "inconclusive at n=3 seeds (CI includes 0)" in text
    assert "| steps | classical | 400 | 2,001 | 3,000 | 291 | 5m01s | **yes** |" in text
    assert "| tokens | blockwise_all_blocks | 300 | 1,001 | 3,000 | 201 | 3m31s | **yes** |" in text
    assert "| steps | blockwise | 400 | 1,001 | 3,000 | 291 | 5m01s | no |" in text
    assert "against training seconds per job (`train_seconds`)" in text and "![pareto](pareto.png)" in text
    assert _png_ok(out / "pareto.png") and _png_ok(out / "bars.png")


# ---------------------------------------------------------------------------------- scratch vs base

# (model, strategy) -> accuracy per seed 0, 1, 2. blockwise − classical: base +0.10, +0.11, +0.12 (supports);
# scratch −0.30, −0.38, −0.46 (contradicts); difference of differences 0.40, 0.49, 0.58 (supports).
# base − scratch: blockwise 0.40, 0.43, 0.46 (supports); classical 0.00, −0.06, −0.12 (CI spans 0).
SCRATCH = {
    ("base", "blockwise"): [0.50, 0.55, 0.60],
    ("base", "classical"): [0.40, 0.44, 0.48],
    ("base_scratch", "blockwise"): [0.10, 0.12, 0.14],
    ("base_scratch", "classical"): [0.40, 0.50, 0.60],
}


@pytest.fixture
def scratch_sweep(tmp_path: Path) -> Path:
    root = tmp_path / "scratch_vs_base"
    for (model, strategy), values in SCRATCH.items():
        for seed, accuracy in enumerate(values):
            write_job(
                root,
                f"{strategy}-B32-{model}-seed{seed}",
                strategy=strategy,
                block=32,
                seed=seed,
                accuracy=accuracy,
                study="scratch_vs_base",
                model=model,
            )
    return root


def test_runs_carry_the_model_name(scratch_sweep: Path, tmp_path: Path):
    runs = rep.load_runs(scratch_sweep)
    assert {r["model"] for r in runs} == {"base", "base_scratch"}
    assert rep.parse_overrides(["model=base_scratch"]) == {"model": "base_scratch"}
    unfinished = tmp_path / "unfinished-job"  # overrides only: the model name comes from them
    write_overrides(unfinished, ["strategy=blockwise", "model=base_scratch", "seed=4"])
    (run,) = rep.load_runs(unfinished)
    assert run["status"] == "unfinished" and run["model"] == "base_scratch"


def test_pairing_includes_the_model_only_when_several_models_ran(main_sweep: Path, scratch_sweep: Path):
    assert rep.pairing_keys(rep.load_runs(main_sweep)) == ("budget_kind",)
    assert rep.pairing_keys(rep.load_runs(scratch_sweep)) == ("model", "budget_kind")
    one_model = [{**r, "model": "base"} for r in rep.load_runs(main_sweep)]
    assert rep.pairing_keys(one_model) == ("budget_kind",)
    assert rep.summarize(one_model, "main")["paired"] == rep.summarize(rep.load_runs(main_sweep), "main")["paired"]


def test_scratch_pairs():
    assert rep.scratch_pairs(["base", "base_scratch", "tiny", None, "other_scratch"]) == [("base", "base_scratch")]
    assert rep.scratch_pairs(["base"]) == []


def test_difference_of_differences_by_hand():
    """Seed 3 lacks one corner and is left out; diffs of diffs 0.02, −0.03, 0.04: CI spans 0."""
    cells = {
        ("A", "t"): [0.5, 0.5, 0.5, 0.9],
        ("A", "c"): [0.4, 0.4, 0.4, 0.1],
        ("B", "t"): [0.3, 0.35, 0.3],
        ("B", "c"): [0.22, 0.22, 0.24, 0.5],
    }
    runs = [
        {"status": "completed", "model": m, "strategy": s, "seed": seed, "accuracy": a, "budget_kind": "steps"}
        for (m, s), values in cells.items()
        for seed, a in enumerate(values)
    ]
    (entry,) = rep.difference_of_differences(runs, inner=("strategy", "t", "c"), outer=("model", "A", "B"))
    assert entry["seeds"] == [0, 1, 2] and entry["diffs"] == pytest.approx([0.02, -0.03, 0.04])
    assert entry["mean"] == pytest.approx(0.01) and entry["std"] == pytest.approx(math.sqrt(0.0013))
    assert entry["ci_low"] == pytest.approx(0.01 - T2 * math.sqrt(0.0013 / 3))
    assert entry["verdict"] == "inconclusive at n=3 seeds"


def test_scratch_vs_base_pairs_within_each_model_and_tests_the_interaction(scratch_sweep: Path):
    runs = rep.load_runs(scratch_sweep)
    assert rep.study_kinds("scratch_vs_base", runs) == ["main", "scratch_vs_base"]
    assert rep.study_kinds("2026-01-01_00-00-00", runs) == ["main", "scratch_vs_base"]  # from the models
    comparison = rep.pretraining_comparison(runs)
    by_strategy = {d["strategy"]: d for d in comparison["by_strategy"]}
    assert by_strategy["blockwise"]["mean"] == pytest.approx(0.43) and by_strategy["blockwise"]["verdict"] == "supports"
    assert by_strategy["classical"]["mean"] == pytest.approx(-0.06)
    assert by_strategy["classical"]["verdict"] == "inconclusive at n=3 seeds"
    (verdict,) = comparison["verdicts"]
    assert verdict["from_pretrained"]["mean"] == pytest.approx(0.11)
    assert verdict["from_pretrained"]["verdict"] == "supports"
    assert verdict["from_scratch"]["mean"] == pytest.approx(-0.38)
    assert verdict["from_scratch"]["verdict"] == "contradicts" and verdict["verdict_changed"] is True
    interaction = verdict["interaction"]
    assert interaction["diffs"] == pytest.approx([0.40, 0.49, 0.58]) and interaction["std"] == pytest.approx(0.09)
    assert interaction["ci_low"] == pytest.approx(0.49 - T2 * 0.09 / math.sqrt(3))
    assert interaction["verdict"] == "supports"


def test_under_a_protocol_the_pretraining_rows_describe_and_the_family_decides(scratch_sweep: Path):
    family = {"from_base": {"treatment": {"strategy": "blockwise", "model": "base"},
                            "control": {"strategy": "classical", "model": "base"}}}  # fmt: skip
    protocol = {"seeds": [0, 1, 2], "split": "validation", "min_eval_size": 1, "family": family}
    runs = [r | {"protocol": protocol} for r in rep.load_runs(scratch_sweep)]
    summary = rep.summarize(runs, "scratch_vs_base")
    text = render_markdown(summary, runs, [])
    section = text.split("## Pretraining")[1].split("\n## ")[0]
    assert "unadjusted: the verdicts are the declared comparisons'" in section
    table_rows = [line for line in section.splitlines() if line.startswith("|")]
    assert table_rows and not any("verdict" in line or "supports" in line for line in table_rows)
    assert [c["claim"].split(":")[0] for c in summary["claims"]] == ["from_base"]  # the family's only


def test_write_report_scratch_vs_base(scratch_sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = rep.write_report(scratch_sweep, out)
    assert summary["kinds"] == ["main", "scratch_vs_base"]
    assert summary["group_keys"] == ["strategy", "block_size", "model"]
    paired = {d["model"]: d for d in summary["paired"]}
    assert paired["base"]["mean"] == pytest.approx(0.11) and paired["base_scratch"]["mean"] == pytest.approx(-0.38)
    claims = {c["claim"]: c for c in summary["claims"]}
    assert claims["Blockwise SFT beats classical SFT at an equal steps budget (from base)"]["verdict"] == "supports"
    assert (
        claims["Blockwise SFT beats classical SFT at an equal steps budget (from base_scratch)"]["verdict"]
        == "contradicts"
    )
    interaction = claims[
        "Starting from base rather than base_scratch enlarges blockwise's advantage over classical "
        "at an equal steps budget"
    ]
    assert interaction["verdict"] == "supports" and "same verdict in both arms: no" in interaction["evidence"]
    assert (
        claims["Starting from base rather than base_scratch raises classical's accuracy at an equal steps budget"][
            "verdict"
        ]
        == "inconclusive at n=3 seeds"
    )
    text = (out / "report.md").read_text()
    assert "| model | budget | blockwise | classical | Δ mean |" in text
    assert "within each model and budget kind" in text
    assert "| base_scratch | steps | 12.0 | 50.0 | -38.00 |" in text
    assert "## Pretraining: from the base vs from scratch" in text
    assert "### Does pretraining change the verdict?" in text
    assert "| blockwise | steps | 55.0 | 12.0 | +43.00 |" in text
    assert (
        "| steps | +11.00 [8.52, 13.48] | supports | -38.00 [-57.87, -18.13] | contradicts | **no** | +49.00 "
        "| [26.64, 71.36] | 3 | supports |"
    ) in text
    assert "(ours, steps budget, from base)" in text
    assert _png_ok(out / "bars.png") and not (out / "pareto.png").exists()


def test_termination_section_means_each_arm_over_seeds_at_its_primary_block(tmp_path: Path):
    """results.json's parse_failure_rate and termination (at the run's primary decoding block) per arm; a sweep
    recorded before them (or a run without them) has no such section and no such row."""
    root = tmp_path / "sweep"
    figures = {  # (strategy, seed): (parse failures, early EOS, no EOS, median tokens) at decoding block 8
        ("blockwise", 0): (0.25, 0.125, 0.0, 20.0),
        ("blockwise", 1): (0.75, 0.375, 0.25, 31.0),
        ("classical", 0): (0.5, 0.5, 0.0, 9.0),
    }
    for (strategy, seed), (failures, early, no_eos, median) in figures.items():
        job = write_job(root, f"{strategy}-seed{seed}", strategy=strategy, seed=seed, by_block={4: 0.1, 8: 0.3})
        results = json.loads((job / "results.json").read_text())
        at_8 = {"early_eos_rate": early, "no_eos_rate": no_eos, "answer_tokens_p50": median}
        at_8["eos_share_by_block"] = [0.0, 2 * early] if strategy == "blockwise" else [0.0, 0.5, 1.0]
        results.update(
            parse_failure_rate=1.0,  # at decode_block_length 4: the report counts the run at its training block
            parse_failure_rate_by_decode_block={"4": 1.0, "8": failures},
            termination={"early_eos_rate": 1.0},
            termination_by_decode_block={"4": {"early_eos_rate": 1.0}, "8": at_8},
        )
        (job / "results.json").write_text(json.dumps(results))
    write_job(root, "classical-seed1", strategy="classical", seed=1)  # recorded before the fields
    runs = rep.load_runs(root)
    summary = rep.summarize(runs, "main", root)
    blockwise, classical = summary["termination"]
    assert blockwise["strategy"] == "blockwise" and blockwise["n"] == 2
    assert blockwise["parse_failure_rate"] == pytest.approx(0.5) and blockwise["early_eos_rate"] == pytest.approx(0.25)
    assert blockwise["no_eos_rate"] == pytest.approx(0.125) and blockwise["answer_tokens_p50"] == pytest.approx(25.5)
    assert classical["n"] == 1 and classical["parse_failure_rate"] == 0.5
    text = render_markdown(summary, runs, [])
    assert "## Termination" in text
    assert "| blockwise | 8 | 50.0 | 25.0 | 12.5 | 25.5 | 2 |" in text
    assert "| classical | 8 | 50.0 | 50.0 | 0.0 | 9.0 | 1 |" in text
    # the EOS share of each answer block: element-wise means over seeds, a shorter list padded with a dash
    assert blockwise["eos_share_by_block"] == pytest.approx([0.0, 0.5]) and classical["eos_share_by_block"] == [
        0,
        0.5,
        1,
    ]
    assert "| strategy | block_size | block 0 | block 1 | block 2 |" in text
    assert "| blockwise | 8 | 0.0 | 50.0 | — |" in text and "| classical | 8 | 0.0 | 50.0 | 100.0 |" in text


def test_a_sweep_recorded_before_termination_has_no_such_section(main_sweep: Path):
    runs = rep.load_runs(main_sweep)
    assert all(r["parse_failure_rate"] is None and r["early_eos_rate"] is None for r in runs)
    summary = rep.summarize(runs, "main", main_sweep)
    assert summary["termination"] == [] and "## Termination" not in render_markdown(summary, runs, [])


# budget curves: two arms x two step budgets x two seeds, no comparisons
BUDGETS = {
    ("blockwise", 900): [0.20, 0.30],
    ("blockwise", 1800): [0.70, 0.80],
    ("classical", 900): [0.10, 0.20],
    ("classical", 1800): [0.50, 0.70],
}


def test_write_report_budget_curves_plots_each_arm_against_its_budget(tmp_path: Path):
    root = tmp_path / "budgets"
    for (strategy, steps), values in BUDGETS.items():
        for seed, accuracy in enumerate(values):
            write_job(
                root,
                f"{strategy}-steps{steps}-seed{seed}",
                strategy=strategy,
                seed=seed,
                accuracy=accuracy,
                budget_value=steps,
                study="budgets",
                overrides=[f"+arm={strategy}", f"budget.value={steps}", f"seed={seed}", "study=budgets"],
            )
    out = tmp_path / "out"
    summary = rep.write_report(root, out)
    assert "budget_value" in summary["group_keys"] and "budget_curves.png" in summary["plots"]
    assert _png_ok(out / "budget_curves.png")
    means = {(g["strategy"], g["budget_value"]): round(g["mean"], 6) for g in summary["groups"]}
    assert means == {
        ("blockwise", 900): 0.25,
        ("blockwise", 1800): 0.75,
        ("classical", 900): 0.15,
        ("classical", 1800): 0.6,
    }


def test_budget_curves_need_two_budgets_of_one_arm(tmp_path: Path):
    one_each = [{"strategy": s, "budget_value": 900.0, "mean": 0.5, "std": 0.1, "n": 2} for s in ("a", "b")]
    assert not plot_budget_curves(one_each, tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_budget_axis_names_the_unit_of_each_budget_kind():
    assert budget_axis_label(["steps", "steps"]) == "optimizer steps"
    assert budget_axis_label(["tokens", "steps"]) == "eligible tokens, optimizer steps"
    assert budget_axis_label([None]) == "budget" and budget_axis_label([]) == "budget"
