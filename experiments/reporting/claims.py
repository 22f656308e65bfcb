"""The paper's claims that a study's data speaks to, each with a verdict and its evidence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.reporting.runs import Run
from experiments.reporting.stats import (
    CONTRADICTS,
    SUPPORTS,
    Group,
    aggregate,
    compare_groups,
    inconclusive,
    paired_difference,
    verdict_from_ci,
)
from experiments.reporting.text import p_value, pct, pct_pm, signed

#: Numbers reported by the paper (accuracy %, LLaDA-8B-Instruct + LoRA).
PAPER = {
    "source": "arXiv 2508.19529 (Blockwise SFT), LLaDA-8B-Instruct + LoRA",
    "rows": [
        {"benchmark": "GSM8K", "blockwise": 76.0, "baseline": 70.8},
        {"benchmark": "MATH", "blockwise": 34.2, "baseline": 32.6},
    ],
}
SCALE_NOTE = (
    "different scale: our 0.95M-parameter model (the shipped base, pretrained on 2 CPU cores, unless the "
    "study says scratch) on synthetic multi-step arithmetic vs LLaDA-8B on GSM8K/MATH"
)
#: Strategies that keep blockwise's masking statistics but break its alignment (conf/strategy/).
CONTROL_STRATEGIES: tuple[str, ...] = ("blockwise_unaligned", "classical_matched", "blockwise_visible_future")


def verdict_block_diagonal(grid: dict[str, Any], key: str = "verdict") -> str:
    """From the rows' seed-paired verdicts (``stats.block_grid``: matched decode − each other decode
    length; ``key="verdict_longer"`` / ``"verdict_shorter"``: only the longer / shorter decode lengths):
    every row supports -> supports, every row contradicts -> contradicts, else inconclusive, naming how
    many rows support and contradict when some do."""
    verdicts = [row[key] for row in grid.get("rows", []) if row.get(key) is not None]
    if not verdicts:
        return "inconclusive (no row has its training block among the decode lengths)"
    if all(v == SUPPORTS for v in verdicts):
        return SUPPORTS
    if all(v == CONTRADICTS for v in verdicts):
        return CONTRADICTS
    supporting, contradicting = verdicts.count(SUPPORTS), verdicts.count(CONTRADICTS)
    if supporting or contradicting:
        return (
            f"inconclusive (partly: {supporting}/{len(verdicts)} rows support, "
            f"{contradicting}/{len(verdicts)} contradict)"
        )
    return "inconclusive (no row decided)"


def endpoint(differences: Sequence[dict[str, Any]], knob: str, last: bool) -> dict[str, Any] | None:
    """The difference against the highest (``last``) or lowest value of ``knob``; None when there is none."""
    present = [d for d in differences if d.get(knob) is not None]
    if not present:
        return None
    return (max if last else min)(present, key=lambda d: d[knob])


def verdict_prefix(differences: Sequence[dict[str, Any]], knob: str = "prefix_mask_rate") -> str:
    """A clean prefix matters: clean − the highest rate, paired by seed (``stats.knob_differences``
    against the clean arm), interval above 0 -> supports, below 0 -> contradicts, else inconclusive."""
    noisiest = endpoint(differences, knob, last=True)
    if noisiest is None:
        return f"inconclusive (needs {knob}=0 and another rate)"
    return verdict_from_ci(noisiest)


def verdict_suffix(differences: Sequence[dict[str, Any]], knob: str = "suffix_mask_prob") -> str:
    """A hidden future matters: hidden (1.0) − the most visible (lowest) probability, paired by seed
    (``stats.knob_differences`` against 1.0), interval above 0 -> supports, below 0 -> contradicts, else
    inconclusive."""
    visible = endpoint(differences, knob, last=False)
    if visible is None:
        return f"inconclusive (needs {knob}=1.0 and another value)"
    return verdict_from_ci(visible)


def control_comparisons(runs: Sequence[Run], reference: str = "blockwise") -> list[dict[str, Any]]:
    """Each control strategy against ``reference``: both groups (mean ± std over seeds), the relation
    of their mean ± std intervals and the seed-paired difference ``reference − control`` with its
    95% t-interval. ``verdict`` from that interval: above 0 -> supports (alignment matters), below 0
    -> contradicts, else inconclusive (with 2 seeds the interval is wide: t_{0.975,1} = 12.7)."""
    groups = {g["strategy"]: g for g in aggregate(runs, ["strategy"])}
    if reference not in groups:
        return []
    out = []
    for control in sorted(set(groups) - {reference}, key=lambda name: (name not in CONTROL_STRATEGIES, name)):
        relation = compare_groups(groups[reference], groups[control])
        paired = paired_difference(runs, treatment=reference, control=control, by=())
        verdict = verdict_from_ci(paired[0]) if paired else inconclusive(None)
        out.append(
            {
                "control": control,
                "reference": groups[reference],
                "group": groups[control],
                "relation": relation,
                "paired": paired[0] if paired else None,
                "verdict": verdict,
            }
        )
    return out


def claims(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The paper's claims that the study's data speaks to, each with a verdict and its evidence."""
    out = []
    for diff in summary.get("paired") or []:
        budget = diff.get("budget_kind") or "equal"
        start = f" (from {diff['model']})" if diff.get("model") else ""
        out.append(
            {
                "claim": f"Blockwise SFT beats classical SFT at an equal {budget} budget{start}",
                "verdict": verdict_from_ci(diff),
                "evidence": _diff_evidence(diff),
            }
        )
    grid = summary.get("grid")
    if grid and grid.get("rows"):
        decided = [r for r in grid["rows"] if r.get("verdict") is not None]
        evidence = (
            "; ".join(
                f"{r['label']}: {r['verdict']} ("
                + ", ".join(f"vs decode {d['decode']}: {_short_diff(d)}" for d in r["matched"])
                + ")"
                for r in decided
            )
            or "no row has its training block among the decode lengths"
        )
        out.append(
            {
                "claim": "Accuracy peaks when the decoding block length equals the training block size",
                "verdict": verdict_block_diagonal(grid),
                "evidence": "matched decode − other decode length, paired by seed: " + evidence,
            }
        )
        for side in ("longer", "shorter"):
            sided = [r for r in decided if r.get(f"verdict_{side}") is not None]
            if sided:
                out.append(
                    {
                        "claim": f"... decoding with blocks {side} than the training block lowers accuracy",
                        "verdict": verdict_block_diagonal(grid, f"verdict_{side}"),
                        "evidence": "; ".join(f"{r['label']}: {r[f'verdict_{side}']}" for r in sided),
                    }
                )
    if summary.get("prefix"):
        differences = summary.get("prefix_paired") or []
        out.append(
            {
                "claim": "A clean prefix matters: noising earlier blocks (prefix_mask_rate > 0) lowers accuracy",
                "verdict": verdict_prefix(differences),
                "evidence": _knob_evidence(summary["prefix"], differences, "prefix_mask_rate", "clean"),
            }
        )
    if summary.get("suffix"):
        differences = summary.get("suffix_paired") or []
        out.append(
            {
                "claim": "Hiding the future matters: a visible suffix (suffix_mask_prob < 1.0) lowers accuracy",
                "verdict": verdict_suffix(differences),
                "evidence": _knob_evidence(summary["suffix"], differences, "suffix_mask_prob", "hidden"),
            }
        )
    for c in summary.get("controls") or []:
        out.append(
            {
                "claim": f"Blockwise's gain is its alignment, not incidental masking statistics: "
                f"blockwise beats {c['control']}",
                "verdict": c["verdict"],
                "evidence": f"blockwise {pct_pm(c['reference'])} (n={c['reference']['n']}) vs {c['control']} "
                f"{pct_pm(c['group'])} (n={c['group']['n']}); "
                + (
                    f"paired by seed, blockwise − {c['control']}: {_diff_evidence(c['paired'])}; "
                    if c.get("paired")
                    else ""
                )
                + f"mean ± std intervals: blockwise {c['relation']}",
            }
        )
    out += scheme_claims(summary.get("schemes") or [])
    out += pretraining_claims(summary.get("pretraining") or {})
    return out


def family_claims(family: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The declared comparisons (``protocol.family_verdicts``) as claims "<treatment> beats <control>", each with
    its Holm verdict and, as evidence, its raw and family-wise intervals and both p-values."""
    return [
        {
            "claim": f"{row['name']}: {row['treatment']} beats {row['control']}",
            "verdict": row["verdict"],
            "evidence": (
                f"Δ = {signed(row['mean'])} pts, 95% CI [{pct(row['ci_low'])}, {pct(row['ci_high'])}], family-wise "
                f"[{pct(row['family_ci_low'])}, {pct(row['family_ci_high'])}], p = {p_value(row['p_value'])}, "
                f"Holm p = {p_value(row['holm_p'])}, n={row['n_pairs']} of {len(row['declared_seeds'])} declared pairs"
                + (f", {len(row['cross_isa_seeds'])} across CPU kernels" if row["cross_isa_seeds"] else "")
            ),
        }
        for row in family
    ]


def _diff_evidence(diff: dict[str, Any]) -> str:
    return (
        f"Δ = {signed(diff['mean'])} pts, 95% CI [{pct(diff['ci_low'])}, {pct(diff['ci_high'])}], "
        f"n={diff['n_pairs']} pairs"
    )


def scheme_claims(rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """ "Blockwise beats <scheme> at an equal <budget> budget" for every ``schemes.scheme_comparison`` row
    with a seed-paired difference; verdict from its 95% t-interval (blockwise − scheme)."""
    out = []
    for row in rows:
        diff = row.get("paired")
        if not diff:
            continue
        out.append(
            {
                "claim": f"Blockwise beats {row['strategy']} at an equal {row['budget_kind'] or 'equal'} budget "
                "(corruption schemes)",
                "verdict": diff["verdict"],
                "evidence": f"blockwise − {row['strategy']}: " + _diff_evidence(diff),
            }
        )
    return out


def pretraining_claims(comparison: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
    """From ``pretraining.pretraining_comparison``: per strategy "pretraining raises its accuracy"
    (pretrained − scratch), and per budget "starting from the pretrained model enlarges blockwise's
    advantage over classical" (the difference of differences), each verdict from its 95% t-interval; the
    latter's evidence gives both arms' blockwise − classical and whether their verdicts agree."""
    out = []
    for diff in comparison.get("by_strategy") or []:
        out.append(
            {
                "claim": f"Starting from {diff['treatment']} rather than {diff['control']} raises "
                f"{diff['strategy']}'s accuracy at an equal {diff.get('budget_kind') or 'equal'} budget",
                "verdict": diff["verdict"],
                "evidence": _diff_evidence(diff),
            }
        )
    for v in comparison.get("verdicts") or []:
        arms = [(v["pretrained"], v["from_pretrained"]), (v["scratch"], v["from_scratch"])]
        evidence = "; ".join(
            f"{v['treatment']} − {v['control']} from {model}: "
            + (f"{_diff_evidence(d)} ({d['verdict']})" if d else "no runs")
            for model, d in arms
        )
        same = {None: "n/a", True: "no", False: "yes"}[v["verdict_changed"]]
        interaction = v["interaction"]
        out.append(
            {
                "claim": f"Starting from {v['pretrained']} rather than {v['scratch']} enlarges "
                f"{v['treatment']}'s advantage over {v['control']} at an equal "
                f"{v['budget_kind'] or 'equal'} budget",
                "verdict": interaction["verdict"],
                "evidence": f"{evidence}; same verdict in both arms: {same}; difference of differences: "
                + _diff_evidence(interaction),
            }
        )
    return out


def _short_diff(diff: dict[str, Any]) -> str:
    return f"{signed(diff['mean'])} [{pct(diff['ci_low'])}, {pct(diff['ci_high'])}]"


def _knob_evidence(groups: Sequence[Group], differences: Sequence[dict[str, Any]], knob: str, reference: str) -> str:
    """Each value's accuracy, then ``reference`` minus each other value paired by seed."""
    accuracy = "; ".join(f"{knob}={g[knob]:g}: {pct_pm(g)} (n={g['n']})" for g in groups if g.get(knob) is not None)
    paired = "; ".join(f"{reference} − {knob}={d[knob]:g}: {_diff_evidence(d)}" for d in differences)
    return accuracy + (f". Paired by seed: {paired}" if paired else "")
