"""Corruption-schemes study: each masking scheme against blockwise within a budget kind, what a job of
each costs, and the Pareto front of accuracy against training seconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.reporting.runs import Run, completed
from experiments.reporting.stats import aggregate, mean_std, paired_difference, pareto_front, sort_key

#: The schemes of multirun_sweeps/corruption_schemes.yaml, in report order (others follow by name).
SCHEME_STRATEGIES: tuple[str, ...] = (
    "blockwise",
    "classical",
    "blockwise_all_blocks",
    "blockwise_complementary",
    "blockwise_block_causal",
)
#: The schemes that only this study trains (a study with one of them next to blockwise is this study).
NEW_SCHEMES: tuple[str, ...] = SCHEME_STRATEGIES[2:]
#: Per-job cost fields of a results.json: optimizer steps, loss-bearing (masked) tokens, response tokens
#: in the loss scope, seconds of Trainer.fit, seconds of the whole job.
COST_FIELDS: tuple[str, ...] = ("steps", "supervised_tokens", "eligible_tokens", "train_seconds", "wall_seconds")
#: x axis of the Pareto front: training seconds. Every scheme runs the whole sequence through the model
#: at every step, so at equal steps the compute is equal however many tokens carry loss; supervised
#: tokens would count classical's denser supervision as cost.
PARETO_COST = "train_seconds"


def cost_summary(runs: Sequence[Run], fields: Sequence[str] = COST_FIELDS) -> dict[str, dict[str, Any]]:
    """field -> ``{"mean", "std", "n"}`` over the runs that report it (mean None and n 0 when none does)."""
    out = {}
    for field in fields:
        values = [float(r[field]) for r in runs if r.get(field) is not None]
        mean, std = mean_std(values)
        out[field] = {"mean": mean, "std": std, "n": len(values)}
    return out


def _scheme_order(strategy: str) -> tuple:
    known = strategy in SCHEME_STRATEGIES
    return (not known, SCHEME_STRATEGIES.index(strategy) if known else 0, strategy)


def scheme_comparison(runs: Sequence[Run], reference: str = "blockwise") -> list[dict[str, Any]]:
    """One row per (budget kind, scheme) of the completed runs, budgets in order, ``reference`` first:
    ``accuracy`` (the group: mean ± std over seeds, n, seeds), ``cost`` (``cost_summary`` of its runs),
    and for every scheme but the reference ``paired``: ``reference − scheme`` paired by seed with its
    95% t-interval (``stats.paired_difference``), and ``verdict`` from that interval (supports: the
    reference is better). The reference row has ``paired`` and ``verdict`` None."""
    done = completed(runs)
    groups = aggregate(done, ["budget_kind", "strategy"])
    rows = []
    for group in sorted(groups, key=lambda g: (sort_key(g["budget_kind"]), _scheme_order(g["strategy"]))):
        budget, strategy = group["budget_kind"], group["strategy"]
        members = [r for r in done if r.get("budget_kind") == budget and r.get("strategy") == strategy]
        paired = None
        if strategy != reference:
            scoped = [r for r in done if r.get("budget_kind") == budget]
            found = paired_difference(scoped, treatment=reference, control=strategy, by=("budget_kind",))
            paired = found[0] if found else None
        rows.append(
            {
                "budget_kind": budget,
                "strategy": strategy,
                "accuracy": group,
                "cost": cost_summary(members),
                "paired": paired,
                "verdict": paired["verdict"] if paired else None,
            }
        )
    return rows


def scheme_pareto(rows: Sequence[dict[str, Any]], cost: str = PARETO_COST) -> dict[str, Any]:
    """The plotted points of ``scheme_comparison`` rows: per row with a mean accuracy and a mean ``cost``,
    ``strategy``, ``budget_kind``, ``cost_mean``/``cost_std``, ``accuracy_mean``/``accuracy_std``, ``n`` and
    ``on_front`` (``stats.pareto_front`` over all points: lower cost, higher accuracy)."""
    points = [
        {
            "strategy": r["strategy"],
            "budget_kind": r["budget_kind"],
            "cost_mean": r["cost"][cost]["mean"],
            "cost_std": r["cost"][cost]["std"],
            "accuracy_mean": r["accuracy"]["mean"],
            "accuracy_std": r["accuracy"]["std"],
            "n": r["accuracy"]["n"],
        }
        for r in rows
        if r["cost"].get(cost, {}).get("mean") is not None and r["accuracy"]["mean"] is not None
    ]
    front = pareto_front([(p["cost_mean"], p["accuracy_mean"]) for p in points])
    for point, on_front in zip(points, front):
        point["on_front"] = on_front
    return {"cost": cost, "points": points}
