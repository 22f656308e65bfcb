"""Each arm's best setting in a tuning study: the setting of the tuned knobs with the highest mean accuracy over
the declared seeds, per strategy. Selection reads validation runs; verdicts never come from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.reporting.runs import Run, completed
from experiments.reporting.stats import aggregate, sort_key

#: The knobs a tuning study varies (report fields of ``runs.normalize_run``).
TUNED_KNOBS: tuple[str, ...] = ("lr", "ema_decay")


def tuned_knobs(runs: Sequence[Run]) -> list[str]:
    """The ``TUNED_KNOBS`` that take more than one value among one strategy's completed runs. Arms that each run
    at their own tuned setting (a study after tuning) differ between strategies only: nothing is tuned there."""
    done = completed(runs)
    return [
        knob
        for knob in TUNED_KNOBS
        if any(len({r.get(knob) for r in done if r["strategy"] == s}) > 1 for s in {r["strategy"] for r in done})
    ]


def selection(runs: Sequence[Run], seeds: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Per strategy: every setting of the tuned knobs (mean ± std over seeds, n), best first, and ``best``, the
    setting with the highest mean among those that have every seed of ``seeds`` (all seeds run, when None);
    ``complete`` is False while a setting still lacks a seed (then ``best`` is provisional)."""
    knobs = tuned_knobs(runs)
    if not knobs:
        return []
    out = []
    for strategy in sorted({r["strategy"] for r in completed(runs)}, key=sort_key):
        groups = aggregate([r for r in runs if r["strategy"] == strategy], knobs)
        wanted = set(seeds) if seeds is not None else {s for g in groups for s in g["seeds"]}
        full = [g for g in groups if wanted <= set(g["seeds"])]
        ranked = sorted(groups, key=lambda g: -g["mean"])
        best = max(full, key=lambda g: g["mean"]) if full else None
        out.append(
            {
                "strategy": strategy,
                "knobs": knobs,
                "settings": ranked,
                "best": None if best is None else {k: best[k] for k in knobs} | {"mean": best["mean"], "n": best["n"]},
                "complete": len(full) == len(groups),
                "edges": [] if best is None else grid_edges(best, groups, knobs),
            }
        )
    return out


def grid_edges(best: dict[str, Any], groups: Sequence[dict[str, Any]], knobs: Sequence[str]) -> list[dict[str, Any]]:
    """The knobs, tried at three values or more, whose best value is the lowest or the highest tried: there the
    optimum may lie outside the grid, which should be extended before the setting is used."""
    edges = []
    for knob in knobs:
        values = sorted({g[knob] for g in groups})
        if len(values) >= 3 and best[knob] in (values[0], values[-1]):
            side = "lowest" if best[knob] == values[0] else "highest"
            edges.append({"knob": knob, "value": best[knob], "side": side})
    return edges
