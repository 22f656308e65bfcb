"""Statistics over runs: grouping, mean ± std over seeds, seed-paired differences with 95% t-intervals
and the verdict they give, the train × decode block grid, where the time went."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any, Sequence

from experiments.reporting.runs import Run, completed

Group = dict[str, Any]

#: Knobs that become grouping columns when they take more than one value in a sweep.
ABLATION_KNOBS: tuple[str, ...] = ("prefix_mask_rate", "suffix_mask_prob", "budget_kind", "budget_value")
#: Two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30.
T_975: tuple[float, ...] = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)
SUPPORTS, CONTRADICTS = "supports", "contradicts"


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1); std is None for fewer than 2 values, both None for none."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def t_critical(df: int) -> float:
    """Two-sided 95% t quantile: scipy if installed, else the table for df 1..30, else 1.96."""
    try:
        from scipy import stats

        return float(stats.t.ppf(0.975, df))
    except ImportError:
        return T_975[df - 1] if 1 <= df <= len(T_975) else 1.96


def sort_key(value: Any) -> tuple:
    """Orders None last and values of different types apart."""
    return (value is None, str(type(value)), value if value is not None else 0)


def varying_knobs(runs: Sequence[Run]) -> list[str]:
    """The ablation knobs that take more than one (non-missing) value among ``runs``."""
    knobs = []
    for knob in ABLATION_KNOBS:
        values = {r.get(knob) for r in runs if r.get(knob) is not None}
        if knob == "budget_value":  # a budget value only matters if it varies within one budget kind
            per_kind = defaultdict(set)
            for r in runs:
                if r.get(knob) is not None:
                    per_kind[r.get("budget_kind")].add(r[knob])
            if any(len(v) > 1 for v in per_kind.values()):
                knobs.append(knob)
        elif len(values) > 1:
            knobs.append(knob)
    return knobs


def default_keys(runs: Sequence[Run]) -> list[str]:
    """Grouping keys of the generic table: strategy, block size and the knobs that vary."""
    return ["strategy", "block_size", *varying_knobs(completed(runs))]


def aggregate(runs: Sequence[Run], keys: Sequence[str] | None = None, metric: str = "accuracy") -> list[Group]:
    """Group completed runs by ``keys`` and give mean ± std (ddof=1) of ``metric`` over seeds.

    Each group: the key fields, ``n``, ``seeds``, ``values``, ``mean`` and ``std`` (None for one seed)."""
    keys = list(keys) if keys is not None else default_keys(runs)
    buckets: dict[tuple, list[Run]] = defaultdict(list)
    for run in completed(runs):
        if run.get(metric) is not None:
            buckets[tuple(run.get(k) for k in keys)].append(run)
    groups = []
    for key in sorted(buckets, key=lambda t: tuple(sort_key(v) for v in t)):
        members = sorted(buckets[key], key=lambda r: sort_key(r.get("seed")))
        values = [float(r[metric]) for r in members]
        mean, std = mean_std(values)
        groups.append({**dict(zip(keys, key)), "n": len(values), "seeds": [r.get("seed") for r in members],
                       "values": values, "mean": mean, "std": std})
    return groups


def paired_difference(runs: Sequence[Run], treatment: str = "blockwise", control: str = "classical",
                      by: Sequence[str] = ("budget_kind",), metric: str = "accuracy") -> list[dict[str, Any]]:
    """Per value of ``by``: ``treatment − control`` paired by seed (seeds both completed; duplicate
    runs of one seed are averaged), with mean, std, 95% t-interval and a verdict."""
    cells: dict[tuple, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in completed(runs):
        if run["strategy"] in (treatment, control) and run.get("seed") is not None and run.get(metric) is not None:
            cells[tuple(run.get(k) for k in by)][run["strategy"]][run["seed"]].append(float(run[metric]))
    out = []
    for key in sorted(cells, key=lambda t: tuple(sort_key(v) for v in t)):
        treated, controls = cells[key][treatment], cells[key][control]
        seeds = sorted(set(treated) & set(controls))
        diffs = [statistics.fmean(treated[s]) - statistics.fmean(controls[s]) for s in seeds]
        mean, std = mean_std(diffs)
        low = high = None
        if std is not None:
            half = t_critical(len(diffs) - 1) * std / math.sqrt(len(diffs))
            low, high = mean - half, mean + half
        entry = {**dict(zip(by, key)), "treatment": treatment, "control": control, "n_pairs": len(diffs),
                 "seeds": seeds, "diffs": diffs, "mean": mean, "std": std, "ci_low": low, "ci_high": high,
                 "treatment_mean": mean_std([statistics.fmean(treated[s]) for s in seeds])[0],
                 "control_mean": mean_std([statistics.fmean(controls[s]) for s in seeds])[0]}
        entry["verdict"] = verdict_from_ci(entry)
        out.append(entry)
    return out


def block_grid(runs: Sequence[Run], control: str = "classical") -> dict[str, Any]:
    """Train block × decode block grid of accuracy (mean, std, n over seeds).

    Rows: one per (strategy, training block size) for the non-control strategies, plus one
    ``control`` row pooled over block sizes. Each row names its best decode length(s) and, for
    non-control rows, whether the diagonal (decode == train block) is the row maximum."""
    values: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in completed(runs):
        row = (run["strategy"], None) if run["strategy"] == control else (run["strategy"], run["block_size"])
        for length, accuracy in run["accuracy_by_decode_block"].items():
            values[row][length].append(accuracy)
    lengths = sorted({length for row in values.values() for length in row})
    non_control = sorted({s for s, _ in values if s != control})
    rows = []
    ordered = sorted((k for k in values if k[0] != control), key=lambda k: (k[0], sort_key(k[1])))
    ordered += [k for k in values if k[0] == control]
    for strategy, block in ordered:
        cells: dict[str, dict[str, Any] | None] = {}
        for length in lengths:
            observed = values[(strategy, block)].get(length, [])
            mean, std = mean_std(observed)
            cells[str(length)] = {"mean": mean, "std": std, "n": len(observed)} if observed else None
        means = {int(k): c["mean"] for k, c in cells.items() if c is not None}
        best_value = max(means.values()) if means else None
        best = [k for k, v in means.items() if best_value is not None and v >= best_value - 1e-12]
        diagonal = None
        if strategy != control and block in means:
            diagonal = means[block] >= best_value - 1e-12
        if strategy == control:
            label = control
        else:
            label = f"B={block}" if len(non_control) == 1 else f"{strategy} B={block}"
        rows.append({"label": label, "strategy": strategy, "block_size": block, "cells": cells,
                     "best_decode": best, "diagonal_is_max": diagonal})
    return {"decode_lengths": lengths, "rows": rows}


def inconclusive(n: int | None) -> str:
    return f"inconclusive at n={n} seeds" if n is not None else "inconclusive"


def verdict_from_ci(diff: dict[str, Any]) -> str:
    """CI of (blockwise − classical) above 0 -> supports, below 0 -> contradicts, else inconclusive."""
    low, high = diff.get("ci_low"), diff.get("ci_high")
    if low is not None and low > 0:
        return SUPPORTS
    if high is not None and high < 0:
        return CONTRADICTS
    return inconclusive(diff.get("n_pairs"))


def compare_groups(a: Group, b: Group) -> str:
    """``'above'`` / ``'below'`` when mean ± std intervals of ``a`` and ``b`` do not overlap,
    ``'overlap'`` when they do, ``'unknown'`` when a std is missing (one seed)."""
    if a.get("std") is None or b.get("std") is None or a.get("mean") is None or b.get("mean") is None:
        return "unknown"
    if a["mean"] - a["std"] > b["mean"] + b["std"]:
        return "above"
    if a["mean"] + a["std"] < b["mean"] - b["std"]:
        return "below"
    return "overlap"


def time_breakdown(runs: Sequence[Run]) -> dict[str, float] | None:
    """Seconds summed over jobs that report them: training, decoding + scoring, and the rest
    (start-up, data preparation, export, writing results)."""
    timed = [r for r in runs if None not in (r.get("wall_seconds"), r.get("train_seconds"), r.get("eval_seconds"))]
    if not timed:
        return None
    train = sum(r["train_seconds"] for r in timed)
    decode = sum(r["eval_seconds"] for r in timed)
    wall = sum(r["wall_seconds"] for r in timed)
    return {"jobs": len(timed), "train": train, "decode": decode, "other": max(wall - train - decode, 0.0), "wall": wall}

