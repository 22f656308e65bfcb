"""Statistics over runs: grouping, mean ± std over seeds, seed-paired differences (and differences of
differences) with 95% t-intervals and the verdict they give, the train × decode block grid, the Pareto
front of accuracy against cost, where the time went."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from experiments.reporting.runs import Run, completed

Group = dict[str, Any]

#: Knobs that become grouping columns when they take more than one value in a sweep (``model``: the
#: backbone config's name, e.g. ``base`` vs ``base_scratch``).
ABLATION_KNOBS: tuple[str, ...] = (
    "model",
    "prefix_mask_rate",
    "suffix_mask_prob",
    "budget_kind",
    "budget_value",
    "weighting",
    "batch_size",
    "tail_eos_in_loss",
    "lr",
    "ema_decay",
)
SUPPORTS, CONTRADICTS = "supports", "contradicts"


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1); std is None for fewer than 2 values, both None for none."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def t_critical(df: int, level: float = 0.95) -> float:
    """Two-sided ``level`` Student t quantile, t_{(1 + level) / 2, df}."""
    return t_quantile(1 - (1 - level) / 2, df)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, result = 1e-300, 1.0
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile (0.5 < q < 1) of Student's t with ``df`` degrees of freedom, by bisection."""
    target = 2.0 * (1.0 - q)  # the two-sided tail probability beyond the quantile
    low, high = 0.0, 1.0
    while t_two_sided_p(high, df) > target:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        low, high = (middle, high) if t_two_sided_p(middle, df) > target else (low, middle)
        if high - low < 1e-12:
            break
    return (low + high) / 2.0


def paired_t_test(diffs: Sequence[float]) -> float | None:
    """Two-sided p-value of the one-sample t test that the mean of ``diffs`` is 0 (None for fewer than 2;
    0 or 1 when every difference is equal: non-zero or zero)."""
    mean, std = mean_std(diffs)
    if std is None:
        return None
    if std == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return t_two_sided_p(mean / (std / math.sqrt(len(diffs))), len(diffs) - 1)


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family's p-values (same order; None stays None and does not count
    in the family's size): p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j)) over the ascending order."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(present)
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """The ``level`` t-interval of the mean of ``diffs`` ((None, None) for fewer than 2 values)."""
    mean, std = mean_std(diffs)
    if std is None:
        return None, None
    half = t_critical(len(diffs) - 1, level) * std / math.sqrt(len(diffs))
    return mean - half, mean + half


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
        groups.append(
            {
                **dict(zip(keys, key)),
                "n": len(values),
                "seeds": [r.get("seed") for r in members],
                "values": values,
                "mean": mean,
                "std": std,
            }
        )
    return groups


def termination_groups(
    runs: Sequence[Run], keys: Sequence[str], metrics: Sequence[str], series: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Per group of ``keys`` (as :func:`aggregate`), the mean over seeds of each of ``metrics`` (None where
    none of its runs recorded it) and the element-wise mean of each list field of ``series`` over the runs that
    recorded it with the group's most common length (None where none did); only groups with at least one metric,
    so [] for records before them."""
    rows: dict[tuple, dict[str, Any]] = {}
    for metric in metrics:
        for group in aggregate(runs, keys, metric=metric):
            key = tuple(group.get(k) for k in keys)
            rows.setdefault(key, {**{k: group.get(k) for k in keys}, "n": group["n"]})[metric] = group["mean"]
    for name in series:
        lists: dict[tuple, list[list[float]]] = defaultdict(list)
        for run in completed(runs):
            if run.get(name):
                lists[tuple(run.get(k) for k in keys)].append([float(v) for v in run[name]])
        for key, values in lists.items():
            if key in rows:
                length = max({len(v) for v in values}, key=[len(v) for v in values].count)
                same = [v for v in values if len(v) == length]
                rows[key][name] = [statistics.fmean(column) for column in zip(*same, strict=True)]
    ordered = sorted(rows, key=lambda t: tuple(sort_key(v) for v in t))
    return [{**dict.fromkeys([*metrics, *series]), **rows[key]} for key in ordered]


def pairing_keys(runs: Sequence[Run], by: Sequence[str] = ("budget_kind",)) -> tuple[str, ...]:
    """``by``, preceded by ``model`` when the completed runs come from more than one model: a seed-paired
    comparison never pairs runs of different models. With one model the keys are ``by`` unchanged."""
    models = {r.get("model") for r in completed(runs)}
    return ("model", *by) if len(models) > 1 and "model" not in by else tuple(by)


def t_interval(diffs: Sequence[float]) -> dict[str, Any]:
    """``n_pairs``, ``diffs``, ``mean``, ``std`` (ddof=1) and the 95% t-interval ``ci_low``/``ci_high`` of
    the mean of ``diffs`` (interval None for fewer than 2 values, all None but n for none)."""
    mean, std = mean_std(diffs)
    low = high = None
    if std is not None:
        half = t_critical(len(diffs) - 1) * std / math.sqrt(len(diffs))
        low, high = mean - half, mean + half
    return {"n_pairs": len(diffs), "diffs": list(diffs), "mean": mean, "std": std, "ci_low": low, "ci_high": high}


SeedCells = dict[tuple, dict[tuple, dict[Any, float]]]


def seed_cells(runs: Sequence[Run], arm: Sequence[str], by: Sequence[str], metric: str = "accuracy") -> SeedCells:
    """by-key -> arm-key -> seed -> ``metric`` of the completed runs that have a seed and the metric
    (duplicate runs of one seed averaged). Keys are tuples of the runs' values of ``by`` and ``arm``."""
    values: dict[tuple, dict[tuple, dict[Any, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for run in completed(runs):
        if run.get("seed") is not None and run.get(metric) is not None:
            cell = values[tuple(run.get(k) for k in by)][tuple(run.get(k) for k in arm)]
            cell[run["seed"]].append(float(run[metric]))
    return {
        key: {cell: {seed: statistics.fmean(v) for seed, v in seeds.items()} for cell, seeds in cells.items()}
        for key, cells in values.items()
    }


def _sorted_keys(keys: Iterable[tuple]) -> list[tuple]:
    return sorted(keys, key=lambda t: tuple(sort_key(v) for v in t))


def paired_difference(
    runs: Sequence[Run],
    treatment: Any = "blockwise",
    control: Any = "classical",
    by: Sequence[str] = ("budget_kind",),
    metric: str = "accuracy",
    arm: str = "strategy",
) -> list[dict[str, Any]]:
    """Per value of ``by``: ``treatment − control`` paired by seed, where ``arm`` (default the strategy;
    ``model`` to compare models) takes the values ``treatment`` and ``control``. Seeds both completed
    count; duplicate runs of one seed are averaged. Each entry: the ``by`` fields, ``treatment``,
    ``control``, ``seeds``, ``t_interval``'s fields, both arms' means over the paired seeds and a verdict."""
    cells = seed_cells(runs, (arm,), by, metric)
    out = []
    for key in _sorted_keys(k for k, c in cells.items() if (treatment,) in c or (control,) in c):
        treated, controls = cells[key].get((treatment,), {}), cells[key].get((control,), {})
        seeds = sorted(set(treated) & set(controls), key=sort_key)
        entry = {
            **dict(zip(by, key)),
            "treatment": treatment,
            "control": control,
            "seeds": seeds,
            **t_interval([treated[s] - controls[s] for s in seeds]),
            "treatment_mean": mean_std([treated[s] for s in seeds])[0],
            "control_mean": mean_std([controls[s] for s in seeds])[0],
        }
        entry["verdict"] = verdict_from_ci(entry)
        out.append(entry)
    return out


def difference_of_differences(
    runs: Sequence[Run],
    inner: tuple[str, Any, Any],
    outer: tuple[str, Any, Any],
    by: Sequence[str] = ("budget_kind",),
    metric: str = "accuracy",
) -> list[dict[str, Any]]:
    """Per value of ``by``, seed-paired: ``(t − c | T) − (t − c | C)`` for ``inner = (field, t, c)`` and
    ``outer = (field, T, C)``; e.g. ``inner=("strategy", "blockwise", "classical")``, ``outer=("model",
    "base", "base_scratch")`` asks whether starting from the base changes blockwise's advantage. Only
    seeds that completed all four cells count. Each entry: the ``by`` fields, ``inner``, ``outer``,
    ``seeds``, ``t_interval``'s fields (the per-seed differences of differences) and a verdict (CI above
    0: the inner difference is larger under ``T``)."""
    (inner_key, t, c), (outer_key, big_t, big_c) = inner, outer
    cells = seed_cells(runs, (outer_key, inner_key), by, metric)
    corners = [(big_t, t), (big_t, c), (big_c, t), (big_c, c)]
    out = []
    for key in _sorted_keys(k for k, cell in cells.items() if any(corner in cell for corner in corners)):
        tt, tc, ct, cc = (cells[key].get(corner, {}) for corner in corners)
        seeds = sorted(set(tt) & set(tc) & set(ct) & set(cc), key=sort_key)
        entry = {
            **dict(zip(by, key)),
            "inner": list(inner),
            "outer": list(outer),
            "seeds": seeds,
            **t_interval([(tt[s] - tc[s]) - (ct[s] - cc[s]) for s in seeds]),
        }
        entry["verdict"] = verdict_from_ci(entry)
        out.append(entry)
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (cost, value) points, lower cost and higher value better: ``True`` where no other point is
    at least as good on both and strictly better on one (a point equal to another stays on the front).
    Same order as ``points``; O(n²), for a handful of configurations."""

    def dominated(i: int) -> bool:
        x, y = points[i]
        return any(ox <= x and oy >= y and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)

    return [not dominated(i) for i in range(len(points))]


def block_grid(runs: Sequence[Run], control: str = "classical") -> dict[str, Any]:
    """Train block × decode block grid of accuracy (mean, std, n over seeds).

    Rows: one per (strategy, training block size) for the non-control strategies, plus one
    ``control`` row pooled over block sizes. Each row names its best decode length(s) and, for
    non-control rows, whether the diagonal (decode == train block) is the row maximum, and the mean
    ``supervised_tokens`` of its runs (at equal steps a smaller training block supervises fewer tokens,
    which the grid cannot tell apart from the block's alignment). A non-control
    row whose training block is among two or more decode lengths also holds ``matched``: per other decode length
    ``decode``, the same models' accuracy at the training block minus at ``decode``, paired by seed
    (``t_interval``'s fields; one model decoded twice, so the pairs share everything but the decoding),
    and ``verdict``: every interval above 0 -> supports (the row peaks where the blocks match), any
    below 0 -> contradicts (another decode length is better), else inconclusive; ``verdict_longer`` and
    ``verdict_shorter`` the same over the decode lengths longer / shorter than the training block (None
    when there are none)."""
    by_seed: dict[tuple, dict[int, dict[Any, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    supervised: dict[tuple, list[float]] = defaultdict(list)
    for run in completed(runs):
        row = (run["strategy"], None) if run["strategy"] == control else (run["strategy"], run["block_size"])
        for length, accuracy in run["accuracy_by_decode_block"].items():
            by_seed[row][length][run.get("seed")].append(accuracy)
        if run.get("supervised_tokens") is not None:
            supervised[row].append(float(run["supervised_tokens"]))
    values = {
        row: {length: [a for runs_of_seed in seeds.values() for a in runs_of_seed] for length, seeds in cells.items()}
        for row, cells in by_seed.items()
    }
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
        row = {
            "label": label,
            "strategy": strategy,
            "block_size": block,
            "cells": cells,
            "best_decode": best,
            "diagonal_is_max": diagonal,
            "supervised_tokens": mean_std(supervised[(strategy, block)])[0],
        }
        if diagonal is not None and len(means) > 1:  # scored at its training block and at another length
            row["matched"] = matched_differences(by_seed[(strategy, block)], block)
            row["verdict"] = verdict_all_above(row["matched"])
            for side, longer in (("longer", True), ("shorter", False)):
                part = [d for d in row["matched"] if (d["decode"] > block) == longer]
                row[f"verdict_{side}"] = verdict_all_above(part) if part else None
        rows.append(row)
    return {"decode_lengths": lengths, "rows": rows}


def matched_differences(cells: dict[int, dict[Any, list[float]]], block: int) -> list[dict[str, Any]]:
    """Per decode length other than ``block`` (ascending): accuracy at ``block`` minus at that length,
    paired by seed (seeds with both; duplicate runs of a seed averaged), with ``t_interval``'s fields."""
    matched = {seed: statistics.fmean(v) for seed, v in cells[block].items() if seed is not None}
    out = []
    for length in sorted(cells):
        if length == block:
            continue
        other = {seed: statistics.fmean(v) for seed, v in cells[length].items() if seed is not None}
        seeds = sorted(set(matched) & set(other), key=sort_key)
        out.append({"decode": length, "seeds": seeds, **t_interval([matched[s] - other[s] for s in seeds])})
    return out


def knob_differences(runs: Sequence[Run], knob: str, reference: Any) -> list[dict[str, Any]]:
    """Per other value of ``knob`` (ascending) sharing a seed with ``reference``: accuracy at ``reference``
    minus at that value, paired by seed (``paired_difference`` with ``arm=knob``); each entry also holds
    ``knob`` (that value) and ``verdict`` (interval above 0: ``reference`` is better). Empty without runs at
    ``reference``."""
    present = {r[knob] for r in completed(runs) if r.get(knob) is not None}
    if reference not in present:
        return []
    out = []
    for value in sorted(present - {reference}, key=sort_key):
        for entry in paired_difference(runs, treatment=reference, control=value, by=(), arm=knob):
            if entry["n_pairs"]:
                out.append({knob: value, **entry})
    return out


def verdict_all_above(differences: Sequence[dict[str, Any]]) -> str:
    """Differences ``reference − other``: every 95% interval above 0 -> supports, any below 0 ->
    contradicts, else inconclusive (at the fewest pairs)."""
    verdicts = [verdict_from_ci(d) for d in differences]
    if verdicts and all(v == SUPPORTS for v in verdicts):
        return SUPPORTS
    if CONTRADICTS in verdicts:
        return CONTRADICTS
    return inconclusive(min((d["n_pairs"] for d in differences), default=None))


def inconclusive(n: int | None) -> str:
    return f"inconclusive at n={n} seeds" if n is not None else "inconclusive"


def verdict_from_ci(diff: dict[str, Any]) -> str:
    """CI of a difference (e.g. blockwise − classical) above 0 -> supports, below 0 -> contradicts,
    else inconclusive."""
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
    return {
        "jobs": len(timed),
        "train": train,
        "decode": decode,
        "other": max(wall - train - decode, 0.0),
        "wall": wall,
    }
