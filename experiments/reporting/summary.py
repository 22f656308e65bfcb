"""Everything a sweep's report says, as one dict (``summary.json``): which study it is, which sections
apply, the aggregated numbers and the claims."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.reporting.claims import CONTROL_STRATEGIES, PAPER, claims, control_comparisons, family_claims
from experiments.reporting.pretraining import pretraining_comparison, scratch_pairs
from experiments.reporting.protocol import family_verdicts, study_protocol
from experiments.reporting.runs import TERMINATION_FIELDS, UNFINISHED, Run, completed
from experiments.reporting.schemes import NEW_SCHEMES, scheme_comparison, scheme_pareto
from experiments.reporting.selection import selection
from experiments.reporting.stats import (
    aggregate,
    block_grid,
    default_keys,
    knob_differences,
    paired_difference,
    pairing_keys,
    termination_groups,
    time_breakdown,
    varying_knobs,
)

#: The ablations' reference arms, the method itself: a clean prefix, a fully hidden suffix.
CLEAN_PREFIX, HIDDEN_SUFFIX = 0.0, 1.0


def study_name(runs: Sequence[Run], sweep_dir: str | Path, study: str | None = None) -> str:
    """``study`` if given, else the most common ``study`` field of the runs, else the sweep dir name."""
    if study:
        return study
    names = Counter(r["study"] for r in runs if r.get("study"))
    return names.most_common(1)[0][0] if names else Path(sweep_dir).resolve().name


def study_kinds(study: str, runs: Sequence[Run]) -> list[str]:
    """Which specific sections apply: ``main``, ``block_size_consistency``, ``prefix``, ``suffix``,
    ``controls``, ``corruption_schemes``, ``scratch_vs_base``.

    From the study name when it names one, else from the data (what varies). A controls study varies
    ``suffix_mask_prob`` only through ``blockwise_visible_future``, so it gets no suffix section. A
    scratch-vs-base study (a model ``X`` next to ``X_scratch``) also gets ``main`` when it has both
    blockwise and classical runs; its main comparison pairs within each model."""
    tokens = set(re.split(r"[^a-z0-9]+", study.lower()))
    done = completed(runs)
    strategies = {r["strategy"] for r in done}
    blocks = {r["block_size"] for r in done if r["strategy"] != "classical"}
    lengths = {k for r in done for k in r["accuracy_by_decode_block"]}
    knobs = varying_knobs(done)
    is_main = "main" in tokens
    is_grid = bool({"consistency", "grid"} & tokens) or "block_size" in study.lower()
    is_controls = "controls" in tokens or ("blockwise" in strategies and bool(strategies & set(CONTROL_STRATEGIES)))
    is_schemes = bool({"corruption", "schemes"} & tokens) or (
        "blockwise" in strategies and bool(strategies & set(NEW_SCHEMES))
    )
    is_scratch = "scratch" in tokens or bool(scratch_pairs(r.get("model") for r in done))
    named = is_main or is_grid or is_controls or is_schemes or is_scratch
    kinds = []
    if (
        is_main
        or (is_scratch and {"blockwise", "classical"} <= strategies)
        or (not named and {"blockwise", "classical"} <= strategies and len(blocks) <= 1)
    ):
        kinds.append("main")
    if is_grid or (not named and len(blocks) > 1 and len(lengths) > 1):
        kinds.append("block_size_consistency")
    if "prefix" in tokens or ("prefix_mask_rate" in knobs and not is_controls):
        kinds.append("prefix")
    if "suffix" in tokens or ("suffix_mask_prob" in knobs and not is_controls):
        kinds.append("suffix")
    if is_controls:
        kinds.append("controls")
    if is_schemes:
        kinds.append("corruption_schemes")
    if is_scratch:
        kinds.append("scratch_vs_base")
    return kinds


def _declared(protocol) -> dict[str, Any]:
    return {
        "seeds": list(protocol.seeds),
        "split": protocol.split,
        "min_eval_size": protocol.min_eval_size,
        "family_size": len(protocol.family),
    }


def summarize(runs: Sequence[Run], study: str, sweep_dir: str | Path = "") -> dict[str, Any]:
    """All aggregated numbers of a sweep (what ``summary.json`` holds)."""
    done = completed(runs)
    failed = [r for r in runs if r["status"] not in ("completed", UNFINISHED)]
    unfinished = [r for r in runs if r["status"] == UNFINISHED]
    walls = {r["job"]: r["wall_seconds"] for r in runs if r.get("wall_seconds") is not None}
    kinds = study_kinds(study, runs)
    protocol = study_protocol(runs)
    keys = default_keys(runs)
    summary: dict[str, Any] = {
        "study": study,
        "sweep_dir": str(sweep_dir),
        "kinds": kinds,
        "n_jobs": len(runs),
        "n_completed": len([r for r in runs if r["status"] == "completed"]),
        "n_failed": len(failed),
        "failed": [{"job": r["job"], "error": r["error"], "overrides": r["overrides"]} for r in failed],
        "n_unfinished": len(unfinished),
        "unfinished": [{"job": r["job"], "overrides": r["overrides"]} for r in unfinished],
        "linked": {r["job"]: r["linked_from"] for r in runs if r.get("linked_from")},
        "training_linked": {r["job"]: r["training_from"] for r in runs if r.get("training_from")},
        "git_commits": dict(Counter(r["git_commit"] for r in runs if r.get("git_commit"))),
        "wall_seconds_total": sum(walls.values()),
        "wall_seconds_per_job": walls,
        "wall_seconds_mean": statistics.fmean(walls.values()) if walls else None,
        "time_breakdown": time_breakdown(runs),
        "group_keys": keys,
        "groups": aggregate(runs, keys),
        "groups_flexible": aggregate(runs, keys, metric="accuracy_flexible"),
        "termination": termination_groups(
            runs, keys, ("parse_failure_rate", *TERMINATION_FIELDS), series=("eos_share_by_block",)
        ),
        # A declared protocol's family is the only verdict table; without one, blockwise − classical by seed.
        "paired": paired_difference(runs, by=pairing_keys(runs)) if "main" in kinds and protocol is None else [],
        "grid": block_grid(runs) if "block_size_consistency" in kinds else None,
        "prefix": aggregate([r for r in done if r["prefix_mask_rate"] is not None], ["prefix_mask_rate"])
        if "prefix" in kinds
        else [],
        "prefix_paired": knob_differences(done, "prefix_mask_rate", CLEAN_PREFIX) if "prefix" in kinds else [],
        "suffix": aggregate([r for r in done if r["suffix_mask_prob"] is not None], ["suffix_mask_prob"])
        if "suffix" in kinds
        else [],
        "suffix_paired": knob_differences(done, "suffix_mask_prob", HIDDEN_SUFFIX) if "suffix" in kinds else [],
        "controls": control_comparisons(runs) if "controls" in kinds else [],
        "schemes": scheme_comparison(runs) if "corruption_schemes" in kinds else [],
        "pretraining": pretraining_comparison(runs)
        if "scratch_vs_base" in kinds
        else {"by_strategy": [], "verdicts": []},
        "paper": PAPER,
    }
    summary["pareto"] = scheme_pareto(summary["schemes"]) if summary["schemes"] else None
    summary["protocol"] = None if protocol is None else _declared(protocol)
    summary["family"] = family_verdicts(runs, protocol) if protocol is not None else []
    summary["claims"] = family_claims(summary["family"]) if protocol is not None else claims(summary)
    summary["selection"] = selection(runs, protocol.seeds if protocol is not None else None)
    return summary
