"""The report's PNG plots: block-grid heatmap, accuracy bars, mean training-loss curves, decode-view loss per block."""

from __future__ import annotations

import csv
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from blocksft.runs.results import as_float, as_int
from experiments.reporting.runs import Run, completed
from experiments.reporting.stats import Group
from experiments.reporting.text import key_label


def metrics_rows(job_dir: str | Path) -> Iterator[dict[str, str]]:
    """The rows of ``<job_dir>/csv/**/metrics.csv`` (none if there is no readable file)."""
    csv_dir = Path(job_dir) / "csv"
    files = [csv_dir / "metrics.csv"] if (csv_dir / "metrics.csv").is_file() else sorted(csv_dir.rglob("metrics.csv"))
    for path in files:
        try:
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, csv.Error):
            continue
        yield from rows


def load_loss_curve(job_dir: str | Path) -> dict[int, float]:
    """step -> train/loss from ``<job_dir>/csv/**/metrics.csv`` (rows without a loss skipped;
    several rows of one step averaged). Empty if there is no file."""
    per_step: dict[int, list[float]] = defaultdict(list)
    for row in metrics_rows(job_dir):
        step, loss = as_int(row.get("step")), as_float(row.get("train/loss"))
        if step is not None and loss is not None:
            per_step[step].append(loss)
    return {step: statistics.fmean(v) for step, v in sorted(per_step.items())}


def _mean_curves(labelled: Iterable[tuple[str, dict[int, float]]]) -> dict[str, tuple[list[int], list[float], int]]:
    """label -> (steps, value averaged over the jobs that logged that step, number of jobs) from (label, step ->
    value) per job; a job with an empty curve does not count."""
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    jobs: Counter = Counter()
    for label, curve in labelled:
        if not curve:
            continue
        jobs[label] += 1
        for step, value in curve.items():
            values[label][step].append(value)
    return {
        label: (sorted(c), [statistics.fmean(c[s]) for s in sorted(c)], jobs[label])
        for label, c in sorted(values.items())
    }


def mean_loss_curves(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, tuple[list[int], list[float], int]]:
    """label -> (steps, loss averaged over the jobs that logged that step, number of jobs)."""
    return _mean_curves((key_label(run, keys), load_loss_curve(run["dir"])) for run in completed(runs))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_heatmap(grid: dict[str, Any], path: Path) -> bool:
    """Annotated heatmap of the block grid; False if there is nothing to draw."""
    lengths, rows = grid.get("decode_lengths") or [], grid.get("rows") or []
    if not lengths or not rows:
        return False
    import numpy as np

    plt = _pyplot()
    data = np.full((len(rows), len(lengths)), np.nan)
    for i, row in enumerate(rows):
        for j, length in enumerate(lengths):
            cell = row["cells"][str(length)]
            if cell is not None:
                data[i, j] = 100 * cell["mean"]
    fig, ax = plt.subplots(figsize=(1.4 * len(lengths) + 2.5, 0.6 * len(rows) + 1.8))
    image = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", aspect="auto")
    finite = data[np.isfinite(data)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i, row in enumerate(rows):
        for j, length in enumerate(lengths):
            if np.isfinite(data[i, j]):
                cell = row["cells"][str(length)]
                text = f"{data[i, j]:.1f}" + (f"\n±{100 * cell['std']:.1f}" if cell["std"] is not None else "")
                weight = "bold" if length in row["best_decode"] else "normal"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    fontweight=weight,
                    color="black" if data[i, j] > middle else "white",
                )
    ax.set_xticks(range(len(lengths)), [str(x) for x in lengths])
    ax.set_yticks(range(len(rows)), [row["label"] for row in rows])
    ax.set_xlabel("decoding block length")
    ax.set_ylabel("training block size")
    ax.set_title("accuracy % (mean over seeds)")
    fig.colorbar(image, ax=ax, label="accuracy %")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_bars(groups: Sequence[Group], keys: Sequence[str], path: Path, title: str = "") -> bool:
    """Bar per configuration: mean accuracy with std error bars; False if there are no groups."""
    groups = [g for g in groups if g.get("mean") is not None]
    if not groups:
        return False
    plt = _pyplot()
    strategies = sorted({str(g.get("strategy")) for g in groups})
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(strategies)}
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(groups) + 2), 4))
    x = range(len(groups))
    ax.bar(
        x,
        [100 * g["mean"] for g in groups],
        yerr=[100 * (g["std"] or 0) for g in groups],
        capsize=4,
        color=[colors[str(g.get("strategy"))] for g in groups],
    )
    ax.set_xticks(list(x), [key_label(g, keys).replace(", ", "\n") for g in groups], fontsize=7)
    ax.set_ylabel("accuracy % (mean ± std over seeds)")
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[s]) for s in strategies]
    ax.legend(handles, strategies, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


BUDGET_UNITS = {"steps": "optimizer steps", "tokens": "eligible tokens"}


def budget_axis_label(kinds: Iterable[str | None]) -> str:
    """The x-axis label of a budget plot: the unit of each budget kind present ("optimizer steps"), or "budget"."""
    units = sorted({BUDGET_UNITS.get(str(kind), str(kind)) for kind in kinds if kind is not None})
    return ", ".join(units) if units else "budget"


def plot_budget_curves(groups: Sequence[Group], path: Path, title: str = "", runs: Iterable[Run] = ()) -> bool:
    """Accuracy against the budget (``budget_value``: steps or tokens), a line per strategy with std error bars
    over seeds, and each completed run of ``runs`` as a dot of its line's colour (with a handful of seeds the
    spread is part of the answer): where each arm saturates. False unless some strategy has two or more budgets."""
    by_strategy: dict[str, list[Group]] = {}
    for g in groups:
        if g.get("mean") is not None and g.get("budget_value") is not None:
            by_strategy.setdefault(str(g.get("strategy")), []).append(g)
    if not any(len(points) > 1 for points in by_strategy.values()):
        return False
    budgeted = [r for r in completed(runs) if r.get("budget_value") is not None]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, points in sorted(by_strategy.items()):
        points = sorted(points, key=lambda g: g["budget_value"])
        line = ax.errorbar(
            [g["budget_value"] for g in points],
            [100 * g["mean"] for g in points],
            yerr=[100 * (g["std"] or 0) for g in points],
            capsize=4,
            marker="o",
            label=f"{strategy} (n={min(g['n'] for g in points)}-{max(g['n'] for g in points)} seeds)",
        )
        seeds = [(r["budget_value"], 100 * r["accuracy"]) for r in budgeted if str(r.get("strategy")) == strategy]
        if seeds:
            ax.scatter(*zip(*seeds), s=14, alpha=0.45, color=line[0].get_color(), zorder=1)
    kinds = {r.get("budget_kind") for r in budgeted} or {g.get("budget_kind") for p in by_strategy.values() for g in p}
    ax.set_xlabel(budget_axis_label(kinds))
    ax.set_ylabel("accuracy % (mean ± std over seeds; dots: seeds)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_loss_curves(curves: dict[str, tuple[list[int], list[float], int]], path: Path) -> bool:
    """Training-loss curves (mean over seeds); False if no job logged a loss."""
    if not curves:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (steps, losses, n) in curves.items():
        ax.plot(steps, losses, label=f"{label} (n={n})", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("train/loss (mean over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_pareto(pareto: dict[str, Any] | None, path: Path, title: str = "") -> bool:
    """Accuracy against cost (``schemes.scheme_pareto``): one marker per scheme × budget with mean ± std
    error bars on both axes, colour per scheme, shape per budget kind; Pareto-front points ringed and
    joined. False if there is no point."""
    points = (pareto or {}).get("points") or []
    if not points:
        return False
    plt = _pyplot()
    strategies = sorted({p["strategy"] for p in points})
    budgets = sorted({str(p["budget_kind"]) for p in points})
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(strategies)}
    shapes = {b: "osD^v<>"[i % 7] for i, b in enumerate(budgets)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in points:
        ax.errorbar(
            p["cost_mean"],
            100 * p["accuracy_mean"],
            xerr=p["cost_std"] or 0,
            yerr=100 * (p["accuracy_std"] or 0),
            fmt=shapes[str(p["budget_kind"])],
            color=colors[p["strategy"]],
            capsize=3,
            markersize=7,
            label=f"{p['strategy']}, {p['budget_kind']}",
        )
    front = sorted((p for p in points if p["on_front"]), key=lambda p: p["cost_mean"])
    ax.plot(
        [p["cost_mean"] for p in front],
        [100 * p["accuracy_mean"] for p in front],
        "k--",
        linewidth=0.8,
        label="Pareto front",
    )
    ax.scatter(
        [p["cost_mean"] for p in front],
        [100 * p["accuracy_mean"] for p in front],
        s=220,
        facecolors="none",
        edgecolors="black",
        linewidths=1.2,
        zorder=3,
    )
    ax.set_xlabel(f"training cost per job: {pareto['cost']} (mean ± std over seeds)")
    ax.set_ylabel("accuracy % (mean ± std over seeds)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


DECODE_VIEW_BLOCK = re.compile(r"decode_view/loss_block(\d+)")
Curves = dict[str, tuple[list[int], list[float], int]]  # label -> (steps, mean over jobs, number of jobs)


def load_decode_view_curves(job_dir: str | Path) -> dict[int, dict[int, float]]:
    """block index -> step -> ``decode_view/loss_block<k>`` (``diagnostics.decode_view``) from the job's
    metrics.csv; empty if it logged none."""
    curves: dict[int, dict[int, float]] = defaultdict(dict)
    for row in metrics_rows(job_dir):
        step = as_int(row.get("step"))
        for name, value in row.items():
            match = DECODE_VIEW_BLOCK.fullmatch(name or "")
            if match and step is not None and (loss := as_float(value)) is not None:
                curves[int(match.group(1))][step] = loss
    return dict(sorted(curves.items()))


def mean_decode_view_curves(runs: Sequence[Run], keys: Sequence[str]) -> dict[int, Curves]:
    """block index -> label -> (steps, decode-view loss averaged over the jobs that logged that step, jobs)."""
    per_job = [(key_label(run, keys), load_decode_view_curves(run["dir"])) for run in completed(runs)]
    blocks = sorted({block for _, curves in per_job for block in curves})
    return {block: _mean_curves((label, curves.get(block, {})) for label, curves in per_job) for block in blocks}


def final_decode_view_losses(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """label -> {"n": jobs, "loss_block": [block k's last logged decode-view loss, mean over the jobs (None: not
    logged)]}; only labels with a job that logged it."""
    finals: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    jobs: Counter = Counter()
    for run in completed(runs):
        curves = load_decode_view_curves(run["dir"])
        if not curves:
            continue
        label = key_label(run, keys)
        jobs[label] += 1
        for block, curve in curves.items():
            finals[label][block].append(curve[max(curve)])
    return {
        label: {
            "n": jobs[label],
            "loss_block": [statistics.fmean(by_block[k]) if k in by_block else None for k in range(max(by_block) + 1)],
        }
        for label, by_block in sorted(finals.items())
    }


def plot_decode_view_loss(curves: dict[int, Curves], path: Path) -> bool:
    """One panel per block index: the decode-view loss over the steps, a line per configuration (mean over
    seeds); False if no job logged it."""
    if not curves:
        return False
    plt = _pyplot()
    columns = min(len(curves), 4)
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns + 1, 3.2 * rows + 0.6), sharey=True, squeeze=False)
    labels = sorted({label for by_label in curves.values() for label in by_label})
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    for ax, (block, by_label) in zip(axes.flat, curves.items()):
        for label, (steps, losses, n) in by_label.items():
            ax.plot(steps, losses, marker=".", linewidth=1, color=colors[label], label=f"{label} (n={n})")
        ax.set_title(f"block {block}", fontsize=9)
        ax.set_xlabel("step")
    for ax in axes.flat[len(curves) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("decode-view loss (mean over seeds)")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("masked CE in the decoder's view: earlier blocks clean, later ones masked", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
