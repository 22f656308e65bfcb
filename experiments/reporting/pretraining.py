"""Scratch-vs-base study: blockwise vs classical within each model, each strategy from the pretrained
base vs from scratch, and whether starting from the base changes the verdict (difference of differences)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from experiments.reporting.runs import Run, completed
from experiments.reporting.stats import difference_of_differences, paired_difference

#: ``model=X_scratch`` is model X's architecture and tokenizer at random init (conf/model/base_scratch.yaml).
SCRATCH_SUFFIX = "_scratch"


def scratch_pairs(models: Iterable[str | None]) -> list[tuple[str, str]]:
    """``(X, X_scratch)`` for every model name ``X_scratch`` among ``models`` whose ``X`` is there too, sorted."""
    names = {m for m in models if m}
    return sorted(
        (m[: -len(SCRATCH_SUFFIX)], m)
        for m in names
        if m.endswith(SCRATCH_SUFFIX) and m[: -len(SCRATCH_SUFFIX)] in names
    )


def verdict_category(verdict: str | None) -> str | None:
    """``supports`` / ``contradicts`` / ``inconclusive`` (a verdict without its detail), None for None."""
    return verdict.split()[0] if verdict else None


def pretraining_by_strategy(runs: Sequence[Run], pretrained: str, scratch: str) -> list[dict[str, Any]]:
    """Per (strategy, budget kind): ``pretrained − scratch`` accuracy paired by seed (``stats.paired_difference``
    with ``arm="model"``), with its 95% t-interval and verdict (supports: the pretrained start is better)."""
    return paired_difference(runs, treatment=pretrained, control=scratch, by=("strategy", "budget_kind"), arm="model")


def pretraining_verdicts(
    runs: Sequence[Run], pretrained: str, scratch: str, treatment: str = "blockwise", control: str = "classical"
) -> list[dict[str, Any]]:
    """Per budget kind: ``treatment − control`` paired by seed within each model (``from_pretrained``,
    ``from_scratch``: ``stats.paired_difference`` entries), ``verdict_changed`` (the two verdicts differ
    in category; None when an arm has no pair) and ``interaction``: the seed-paired difference of
    differences ``(treatment − control)_pretrained − (treatment − control)_scratch`` with its 95%
    t-interval and verdict (supports: the pretrained start enlarges the treatment's advantage)."""
    done = completed(runs)
    arms = {
        model: {
            d["budget_kind"]: d
            for d in paired_difference([r for r in done if r.get("model") == model], treatment, control)
        }
        for model in (pretrained, scratch)
    }
    out = []
    for interaction in difference_of_differences(
        done, inner=("strategy", treatment, control), outer=("model", pretrained, scratch)
    ):
        budget = interaction["budget_kind"]
        base, cold = arms[pretrained].get(budget), arms[scratch].get(budget)
        changed = None
        if base and cold and base["n_pairs"] and cold["n_pairs"]:
            changed = verdict_category(base["verdict"]) != verdict_category(cold["verdict"])
        out.append(
            {
                "budget_kind": budget,
                "pretrained": pretrained,
                "scratch": scratch,
                "treatment": treatment,
                "control": control,
                "from_pretrained": base,
                "from_scratch": cold,
                "verdict_changed": changed,
                "interaction": interaction,
            }
        )
    return out


def pretraining_comparison(runs: Sequence[Run]) -> dict[str, list[dict[str, Any]]]:
    """For every ``(X, X_scratch)`` pair of models among the completed runs: ``by_strategy``
    (``pretraining_by_strategy``) and ``verdicts`` (``pretraining_verdicts``), each list over all pairs."""
    done = completed(runs)
    out: dict[str, list[dict[str, Any]]] = {"by_strategy": [], "verdicts": []}
    for pretrained, scratch in scratch_pairs(r.get("model") for r in done):
        out["by_strategy"] += pretraining_by_strategy(done, pretrained, scratch)
        out["verdicts"] += pretraining_verdicts(done, pretrained, scratch)
    return out
