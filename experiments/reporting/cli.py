"""Summarise a Hydra multirun sweep: tables, claims, plots.

Usage::

    python experiments/report.py <sweep_dir> [--study NAME] [--out DIR] [--wandb [--wandb-project P]]
    (= python -m experiments.reporting)

Reads every ``results.json`` under ``sweep_dir`` (recursively, following symlinked job folders, which
the report marks as linked; job directories that only have a ``.hydra/overrides.yaml`` count as failed
jobs) and writes ``report.md``, ``summary.json`` and the PNG plots that fit the data (``heatmap.png``,
``bars.png``, ``pareto.png``, ``loss_curves.png``, ``decode_view_loss.png``: the loss in the decoder's view per
block, when the runs logged it) into ``--out`` (default ``<sweep_dir>/report``). With ``--wandb`` it also logs the
study's verdicts as one W&B run in the study's group (``wandb_report``; offline unless ``WANDB_MODE`` says
otherwise, its files under ``<out>/wandb/``), and ``summary.json`` names it (``wandb``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blocksft.folders import portable
from experiments.reporting.plots import (
    final_decode_view_losses,
    mean_decode_view_curves,
    mean_loss_curves,
    plot_bars,
    plot_budget_curves,
    plot_decode_view_loss,
    plot_heatmap,
    plot_loss_curves,
    plot_pareto,
)
from experiments.reporting.render import render_markdown
from experiments.reporting.runs import load_runs
from experiments.reporting.summary import study_name, summarize
from experiments.reporting.wandb_report import default_project, log_report


def write_report(
    sweep_dir: str | Path,
    out: str | Path | None = None,
    study: str | None = None,
    wandb_project: str | None = None,
) -> dict[str, Any]:
    """Load a sweep and write report.md, summary.json and the plots into ``out``; returns the summary. With
    ``wandb_project``, also log the study's verdicts as one W&B run in that project (``wandb_report.log_report``)
    and note it in the summary (``wandb``: id, project, group, mode, the run's folder relative to ``out``)."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(sweep_dir)
    name = study_name(runs, sweep_dir, study)
    summary = summarize(runs, name, sweep_dir)
    plots = []
    if summary["grid"] and plot_heatmap(summary["grid"], out / "heatmap.png"):
        plots.append("heatmap.png")
    bar_kinds = {"main", "prefix", "suffix", "controls", "corruption_schemes", "scratch_vs_base"}
    if (set(summary["kinds"]) & bar_kinds or not summary["grid"]) and plot_bars(
        summary["groups"], summary["group_keys"], out / "bars.png", title=name
    ):
        plots.append("bars.png")
    if "budget_value" in summary["group_keys"] and plot_budget_curves(
        summary["groups"], out / "budget_curves.png", title=f"{name}: accuracy against budget", runs=runs
    ):
        plots.append("budget_curves.png")
    if plot_pareto(summary["pareto"], out / "pareto.png", title=f"{name}: accuracy vs training cost"):
        plots.append("pareto.png")
    curves = mean_loss_curves(runs, summary["group_keys"])
    if plot_loss_curves(curves, out / "loss_curves.png"):
        plots.append("loss_curves.png")
    decode_view = mean_decode_view_curves(runs, summary["group_keys"])
    if plot_decode_view_loss(decode_view, out / "decode_view_loss.png"):
        plots.append("decode_view_loss.png")
    summary["plots"] = plots
    summary["loss_curve_jobs"] = {label: n for label, (_, _, n) in curves.items()}
    summary["decode_view_final"] = final_decode_view_losses(runs, summary["group_keys"])
    (out / "report.md").write_text(portable(render_markdown(summary, runs, plots)))
    (out / "summary.json").write_text(portable(json.dumps(summary, indent=2, default=str)))
    if wandb_project is not None:  # after the report is written, so a W&B failure leaves it whole
        summary["wandb"] = log_report(summary, out, wandb_project, decode_view)
        (out / "summary.json").write_text(portable(json.dumps(summary, indent=2, default=str)))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python experiments/report.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun directory (or any folder of runs)")
    parser.add_argument("--study", default=None, help="study name (default: results' `study` field, else dir name)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <sweep_dir>/report)")
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log the verdicts, tables and plots as one W&B run in the study's group "
        "(offline unless WANDB_MODE says otherwise; files under <out>/wandb/)",
    )
    parser.add_argument(
        "--wandb-project",
        default=None,
        help="W&B project for --wandb (default: the training runs' project, conf/logger/wandb.yaml)",
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"not a directory: {args.sweep_dir}")
    if args.wandb_project is not None and not args.wandb:
        parser.error("--wandb-project needs --wandb")
    project = (args.wandb_project or default_project()) if args.wandb else None
    summary = write_report(args.sweep_dir, args.out, args.study, wandb_project=project)
    out = args.out or args.sweep_dir / "report"
    print(
        f"{summary['study']}: {summary['n_jobs']} jobs ({summary['n_completed']} completed, "
        f"{summary['n_failed']} failed, {summary['n_unfinished']} unfinished) -> {out / 'report.md'}"
    )
    for claim in summary["claims"]:
        print(f"  {claim['verdict']}: {claim['claim']}")
    if "wandb" in summary:
        run = summary["wandb"]
        where = out / run["dir"] if "dir" in run else "no local folder"
        print(f"W&B run {run['id']} ({run['mode']}, project {run['project']}, group {run['group']}): {where}")
    if not summary["n_jobs"]:
        print("warning: no results.json or .hydra/overrides.yaml found", file=sys.stderr)
    return 0
