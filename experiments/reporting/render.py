"""report.md: one function per Markdown section, each taking the summary (``summary.summarize``) and
returning its lines (none when the section does not apply); ``render_markdown`` joins them in order."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.reporting.claims import PAPER, SCALE_NOTE
from experiments.reporting.runs import Run
from experiments.reporting.text import duration, fmt_key, p_value, pct, pct_pm, signed, table

Summary = dict[str, Any]


def header(s: Summary) -> list[str]:
    """Title and the sweep's facts: sections, jobs, commits, wall time and where it went, linked jobs."""
    lines = [
        f"# Study report: {s['study']}",
        "",
        f"- Sweep: `{s['sweep_dir']}`",
        f"- Sections: {', '.join(s['kinds']) or 'generic'}",
        f"- Jobs: {s['n_jobs']} ({s['n_completed']} completed / {s['n_failed']} failed"
        + (f" / {s['n_unfinished']} unfinished)" if s.get("n_unfinished") else ")"),
        "- Git commit(s): " + (", ".join(f"`{c}` ({n} jobs)" for c, n in s["git_commits"].items()) or "n/a"),
    ]
    walls = list(s["wall_seconds_per_job"].values())
    if walls:
        lines.append(
            f"- Wall time: total {duration(s['wall_seconds_total'])} (sum over {len(walls)} jobs); "
            f"per job mean {duration(s['wall_seconds_mean'])}, median {duration(statistics.median(walls))}, "
            f"min {duration(min(walls))}, max {duration(max(walls))}"
        )
    if s.get("time_breakdown"):
        t = s["time_breakdown"]
        share = lambda part: f"{duration(t[part])} ({100 * t[part] / t['wall']:.0f} %)" if t["wall"] else "n/a"  # noqa: E731
        lines.append(
            f"- Where the time went ({t['jobs']} jobs): training {share('train')}, decoding and scoring "
            f"{share('decode')}, other (start-up, data, export) {share('other')}"
        )
    if s["linked"]:
        lines.append(
            f"- Linked jobs: {len(s['linked'])}, runs of identical configuration made by another sweep, "
            "symlinked or copied by this one (`reused_from` in results.json; marked † in the job table; "
            "their wall time is counted above)"
        )
    if s.get("training_linked"):
        lines.append(
            f"- Jobs that decoded another sweep's training: {len(s['training_linked'])}, runs trained "
            "identically but decoded otherwise; their last checkpoint was copied and decoded here "
            "(`reused_from.scope: training` in results.json; marked ‡ in the job table; their wall time "
            "above is that training's plus this decoding, `reused_from.wall_seconds_here` the decoding's)"
        )
    return lines + [""]


def failed_jobs(s: Summary) -> list[str]:
    if not s["failed"]:
        return []
    lines = ["## Failed jobs", ""]
    for fail in s["failed"]:
        overrides = " ".join(fail["overrides"]) or "n/a"
        error = (fail["error"] or "").strip().splitlines()
        lines.append(f"- `{fail['job']}` — overrides: `{overrides}` — error: {error[-1] if error else 'n/a'}")
    return lines + [""]


def unfinished_jobs(s: Summary) -> list[str]:
    if not s.get("unfinished"):
        return []
    lines = [
        "## Unfinished jobs",
        "",
        "No `results.json` yet: still running, or killed. Not counted as failed; "
        "the sweep's command resumes each from its `last.ckpt`.",
        "",
    ]
    jobs = [f"- `{job['job']}` — overrides: `{' '.join(job['overrides']) or 'n/a'}`" for job in s["unfinished"]]
    return lines + jobs + [""]


def accuracy_by_configuration(s: Summary) -> list[str]:
    keys = s["group_keys"]
    flexible = {tuple(g.get(k) for k in keys): g for g in s["groups_flexible"]}
    several = " A run decoded at several block lengths counts at its training block." if s.get("grid") else ""
    lines = [
        "## Accuracy by configuration",
        "",
        f"Accuracy in %, mean ± std over seeds (std with ddof=1; n/a for a single seed).{several}",
        "",
    ]
    return lines + table(
        [*keys, "accuracy", "flexible", "n seeds", "seeds"],
        [
            [
                *(fmt_key(k, g.get(k)) for k in keys),
                pct_pm(g),
                pct_pm(flexible.get(tuple(g.get(k) for k in keys))),
                g["n"],
                ",".join(str(x) for x in g["seeds"]),
            ]
            for g in s["groups"]
        ],
    )


def declared_family(s: Summary) -> list[str]:
    """The protocol the sweep file declared and its family of comparisons, Holm-adjusted."""
    if not s.get("protocol"):
        return []
    p = s["protocol"]
    if not s["family"]:
        declared = set(p["seeds"])
        complete = sum(declared <= set(g["seeds"]) for g in s["groups"])
        progress = (
            "Every configuration has all its declared seeds."
            if complete == len(s["groups"])
            else f"**Partial: {complete} of {len(s['groups'])} configurations have all declared seeds**; the "
            "figures above are means over the seeds finished so far."
        )
        return [
            "## Declared protocol",
            "",
            f"Declared before running (the sweep file's `protocol`): seeds {','.join(map(str, p['seeds']))}, the "
            f"{p['split']} split, at least {p['min_eval_size']} problems a job, and no comparison: this study "
            "gives no verdicts (a tuning study selects on validation; budget curves describe). " + progress,
            "",
        ]
    lines = [
        "## Declared comparisons",
        "",
        f"Declared before running (the sweep file's `protocol`): seeds {','.join(map(str, p['seeds']))}; verdicts from "
        f"the {p['split']} split, at least {p['min_eval_size']} problems a job; a family of {p['family_size']} "
        "comparisons. Δ = treatment − control in points of %, paired by seed; the 95% t-interval beside the "
        f"family-wise one (Bonferroni over {p['family_size']}); two-sided paired t-test p and the same p "
        "Holm-adjusted over the family. Verdict: Holm p < 0.05; none until every comparison has its declared seeds.",
        "",
    ]
    rows = [
        [
            d["name"],
            d["treatment"],
            d["control"],
            pct(d["treatment_mean"]),
            pct(d["control_mean"]),
            signed(d["mean"], 2),
            _ci(d),
            _ci({"ci_low": d["family_ci_low"], "ci_high": d["family_ci_high"]}),
            p_value(d["p_value"]),
            p_value(d["holm_p"]),
            f"{d['n_pairs']} / {len(d['declared_seeds'])}",
            len(d["cross_isa_seeds"]) or "—",
            f"**{d['verdict']}**",
        ]
        for d in s["family"]
    ]
    header = ["comparison", "treatment", "control", "treatment %", "control %", "Δ", "95% CI", "family-wise CI"]
    lines += table(header + ["p", "Holm p", "pairs", "pairs across CPU kernels", "verdict"], rows)
    kernels = sorted({k for d in s["family"] for k in d["kernel_isa"]})
    if kernels:
        lines += [f"CPU kernels of the paired runs (`environment.kernel_isa`): {', '.join(kernels)}.", ""]
    return lines


def selection(s: Summary) -> list[str]:
    """A tuning study's settings per strategy, best first, and the one each arm keeps."""
    if not s.get("selection"):
        return []
    lines = [
        "## Selection",
        "",
        "Mean accuracy over the seeds of each setting of the tuned knobs, per strategy, best first. The best "
        "setting with every declared seed is the arm's setting in the other studies (`conf/arm/`); provisional "
        "while a setting lacks a seed.",
        "",
    ]
    for arm in s["selection"]:
        best = arm["best"]
        chosen = ", ".join(f"{k}={fmt_key(k, best[k])}" for k in arm["knobs"]) if best else "none yet"
        status = "" if arm["complete"] else " (provisional: a setting lacks a seed)"
        edges = "".join(
            f"; {e['knob']}={fmt_key(e['knob'], e['value'])} is the {e['side']} value tried: the grid should be "
            "extended past it"
            for e in arm.get("edges") or []
        )
        lines += [f"**{arm['strategy']}**: best {chosen}{status}{edges}", ""]
        rows = [
            [*(fmt_key(k, g[k]) for k in arm["knobs"]), pct_pm(g), g["n"], ",".join(map(str, g["seeds"]))]
            for g in arm["settings"]
        ]
        lines += table([*arm["knobs"], "accuracy", "n", "seeds"], rows)
    return lines


def termination(s: Summary) -> list[str]:
    """How generations end, per configuration (runs recorded before ``results.json: termination``: none)."""
    if not s.get("termination"):
        return []
    keys = s["group_keys"]
    lines = [
        "## Termination",
        "",
        "Mean over seeds, at each run's primary decoding block: generations with no answer under the scoring rule "
        "(parse failures), with an EOS before any answer (early EOS) and without EOS (cut at `gen_length`), in %; "
        "median tokens before the first EOS.",
        "",
    ]
    lines += table(
        [*keys, "parse failures", "early EOS", "no EOS", "median tokens", "n"],
        [
            [
                *(fmt_key(k, g.get(k)) for k in keys),
                pct(g["parse_failure_rate"]),
                pct(g["early_eos_rate"]),
                pct(g["no_eos_rate"]),
                "n/a" if g["answer_tokens_p50"] is None else f"{g['answer_tokens_p50']:.1f}",
                g["n"],
            ]
            for g in s["termination"]
        ],
    )
    return lines + _eos_share_table(s["termination"], keys)


def _eos_share_table(groups: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """The share of EOS among the committed tokens of each answer block, per configuration (none recorded: [])."""
    shared = [g for g in groups if g.get("eos_share_by_block")]
    if not shared:
        return []
    width = max(len(g["eos_share_by_block"]) for g in shared)
    rows = [
        [*(fmt_key(k, g.get(k)) for k in keys), *(pct(v) for v in g["eos_share_by_block"])]
        + ["—"] * (width - len(g["eos_share_by_block"]))
        for g in shared
    ]
    return [
        "",
        "EOS among the committed tokens of each answer block of `gen_length` (block length = the run's decoding "
        "block), in %, mean over seeds: where the model writes its padding.",
        "",
        *table([*keys, *(f"block {i}" for i in range(width))], rows),
    ]


def _ci(diff: dict[str, Any], digits: int = 2) -> str:
    return "n/a" if diff.get("ci_low") is None else f"[{pct(diff['ci_low'], digits)}, {pct(diff['ci_high'], digits)}]"


def main_comparison(s: Summary) -> list[str]:
    if "main" not in s["kinds"] or not s["paired"]:  # a declared protocol's family table replaces this one
        return []
    by_model = any("model" in d for d in s["paired"])  # several models: pairs are formed within each
    lines = [
        "## Main comparison: blockwise − classical",
        "",
        f"Paired by seed within each {'model and ' * by_model}budget kind (means over the paired seeds); "
        "95% t-interval over the paired differences, in points of %.",
        "",
    ]
    rows = []
    for d in s["paired"]:
        model = [d.get("model") or "—"] if by_model else []
        rows.append(
            [
                *model,
                d.get("budget_kind") or "—",
                pct(d["treatment_mean"]),
                pct(d["control_mean"]),
                signed(d["mean"], 2),
                _ci(d),
                d["n_pairs"],
                _verdict(d),
            ]
        )
    header = ["model"] * by_model + ["budget", "blockwise", "classical", "Δ mean", "95% CI", "n pairs", "verdict"]
    return lines + table(header, rows)


def _verdict(diff: dict[str, Any]) -> str:
    return diff["verdict"] + (" (CI includes 0)" if diff["verdict"].startswith("inconclusive") else "")


def block_grid(s: Summary) -> list[str]:
    grid = s.get("grid")
    if not grid or not grid["rows"]:
        return []
    lengths = grid["decode_lengths"]
    lines = [
        "## Block-size consistency: training block × decoding block length",
        "",
        "Cell: accuracy % mean ± std (n seeds); best cell per row in bold.",
        "",
    ]
    rows = []
    for row in grid["rows"]:
        cells = []
        for length in lengths:
            cell = row["cells"][str(length)]
            if cell is None:
                cells.append("—")
                continue
            text = f"{pct_pm(cell)} ({cell['n']})"
            cells.append(f"**{text}**" if length in row["best_decode"] else text)
        diag = {True: "yes", False: "no", None: "n/a"}[row["diagonal_is_max"]]
        tokens = row.get("supervised_tokens")
        rows.append([row["label"], *cells, diag, "—" if tokens is None else f"{tokens:,.0f}"])
    lines += table(
        ["train block \\ decode", *(str(x) for x in lengths), "diagonal is row max?", "supervised tokens per run"], rows
    )
    decided = [row for row in grid["rows"] if row.get("matched") is not None]
    if s.get("protocol"):  # the verdicts are the declared family's, Holm-adjusted
        return lines + ["Whether each row peaks at its training block: the declared comparisons above.", ""]
    if not decided:
        return lines
    lines += [
        "Does each row peak where the blocks match? Δ = accuracy decoded at the training block − at the "
        "column's length, the same models paired by seed, in points of %, with its 95% t-interval; verdict: "
        "every interval above 0 supports, any below 0 contradicts.",
        "",
    ]
    rows = []
    for row in decided:
        by_length = {d["decode"]: d for d in row["matched"]}
        cells = [
            f"{signed(by_length[x]['mean'], 1)} {_ci(by_length[x], 1)} ({by_length[x]['n_pairs']})"
            if x in by_length
            else "—"
            for x in lengths
        ]
        rows.append(
            [row["label"], *cells, row["verdict"], row.get("verdict_longer") or "—", row.get("verdict_shorter") or "—"]
        )
    return lines + table(
        [
            "train block: Δ vs decode",
            *(str(x) for x in lengths),
            "verdict",
            "vs longer decode blocks",
            "vs shorter decode blocks",
        ],
        rows,
    )


def knob_ablations(s: Summary) -> list[str]:
    lines = []
    for kind, knob, title in (
        ("prefix", "prefix_mask_rate", "Prefix ablation"),
        ("suffix", "suffix_mask_prob", "Suffix ablation"),
    ):
        if kind in s["kinds"] and s[kind]:
            paired = {d[knob]: d for d in s.get(f"{kind}_paired") or []}
            reference = {"prefix": "the clean prefix (0)", "suffix": "the hidden suffix (1.0)"}[kind]
            lines += [
                f"## {title}",
                "",
                f"Accuracy %, mean ± std over seeds; Δ = {reference} − this value, "
                "paired by seed, in points of %, with its 95% t-interval.",
                "",
            ]
            rows = []
            for g in s[kind]:
                d = paired.get(g[knob])
                rows.append(
                    [
                        fmt_key(knob, g[knob]),
                        pct_pm(g),
                        g["n"],
                        signed(d["mean"], 2) if d else "reference",
                        _ci(d) if d else "—",
                        d["n_pairs"] if d else "—",
                        _verdict(d) if d else "—",
                    ]
                )
            lines += table([knob, "accuracy", "n seeds", "Δ", "95% CI", "n pairs", "verdict"], rows)
    return lines


def controls(s: Summary) -> list[str]:
    if not s.get("controls"):
        return []
    lines = [
        "## Controls: blockwise vs variants that break its alignment",
        "",
        "Accuracy %, mean ± std over seeds; Δ = blockwise − control paired by seed, 95% t-interval in "
        "points of %; verdict from the interval (mean ± std intervals: blockwise above / below / "
        "overlap).",
        "",
    ]
    rows = []
    for c in s["controls"]:
        d = c["paired"] or {}
        rows.append(
            [
                c["control"],
                f"{pct_pm(c['group'])} ({c['group']['n']})",
                f"{pct_pm(c['reference'])} ({c['reference']['n']})",
                signed(d.get("mean"), 2),
                _ci(d),
                d.get("n_pairs", 0),
                f"blockwise {c['relation']}",
                c["verdict"],
            ]
        )
    return lines + table(
        [
            "control",
            "control accuracy (n)",
            "blockwise accuracy (n)",
            "Δ mean",
            "95% CI",
            "n pairs",
            "mean ± std intervals",
            "verdict",
        ],
        rows,
    )


def corruption_schemes(s: Summary) -> list[str]:
    """Each scheme against blockwise within a budget kind (accuracy, paired Δ, verdict), then what a job
    of each costs and whether it is on the Pareto front of accuracy vs training seconds."""
    if not s.get("schemes"):
        return []
    lines = [
        "## Corruption schemes",
        "",
        "Accuracy %, mean ± std over seeds (n). Δ = blockwise − scheme, paired by seed within the budget "
        'kind, in points of %, with its 95% t-interval; verdict on "blockwise beats the scheme" from '
        "the interval.",
        "",
    ]
    rows = []
    for r in s["schemes"]:
        d = r["paired"] or {}
        rows.append(
            [
                r["budget_kind"] or "—",
                r["strategy"],
                f"{pct_pm(r['accuracy'])} ({r['accuracy']['n']})",
                signed(d.get("mean"), 2) if d else "reference",
                _ci(d) if d else "—",
                d.get("n_pairs", "—"),
                _verdict(d) if d else "—",
            ]
        )
    lines += table(["budget", "scheme", "accuracy (n)", "Δ blockwise − scheme", "95% CI", "n pairs", "verdict"], rows)
    pareto = s.get("pareto") or {"cost": None, "points": []}
    front = {(p["budget_kind"], p["strategy"]): p["on_front"] for p in pareto["points"]}
    lines += [
        "Cost per job, mean over seeds (results.json: `steps`, `supervised_tokens` = loss-bearing "
        "tokens, `eligible_tokens` = response tokens in the loss scope, `train_seconds` = Trainer.fit, "
        "`wall_seconds` = the whole job). Pareto front: no other scheme × budget is at least as cheap in mean "
        f"`{pareto['cost']}` and at least as accurate in mean accuracy, and better on one of the two.",
        "",
    ]
    rows = []
    for r in s["schemes"]:
        cost = r["cost"]
        on_front = front.get((r["budget_kind"], r["strategy"]))
        rows.append(
            [
                r["budget_kind"] or "—",
                r["strategy"],
                _number(cost["steps"]["mean"]),
                _number(cost["supervised_tokens"]["mean"]),
                _number(cost["eligible_tokens"]["mean"]),
                _number(cost["train_seconds"]["mean"]),
                duration(cost["wall_seconds"]["mean"]),
                {True: "**yes**", False: "no", None: "n/a"}[on_front],
            ]
        )
    lines += table(
        ["budget", "scheme", "steps", "supervised tokens", "eligible tokens", "train s", "wall", "Pareto front"], rows
    )
    if pareto["points"]:
        lines += [
            f"`pareto.png`: accuracy (mean ± std over seeds) against training seconds per job "
            f"(`{pareto['cost']}`), one marker per scheme × budget, Pareto-front points ringed. Training "
            "seconds, not supervised tokens: every scheme runs the whole sequence at every step, so equal "
            "steps are equal compute however many tokens carry loss. Seconds depend on the machine's load.",
            "",
        ]
    return lines


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def pretraining(s: Summary) -> list[str]:
    """Each strategy from the pretrained model vs from scratch, then blockwise − classical in each arm
    and their difference of differences: does pretraining change the verdict?"""
    comparison = s.get("pretraining") or {}
    if not comparison.get("by_strategy") and not comparison.get("verdicts"):
        return []
    declared = bool(s.get("protocol"))  # then the verdicts are the declared family's: these rows describe
    verdict = (lambda d: []) if declared else (lambda d: [_verdict(d)])  # noqa: E731
    lines = [
        "## Pretraining: from the base vs from scratch",
        "",
        "Accuracy %, paired by seed; Δ and its 95% t-interval in points of %"
        + (
            ", unadjusted: the verdicts are the declared comparisons' (above); the difference of differences is "
            "outside the family (exploratory)."
            if declared
            else "."
        ),
        "",
    ]
    rows = [
        [
            d["strategy"],
            d.get("budget_kind") or "—",
            pct(d["treatment_mean"]),
            pct(d["control_mean"]),
            signed(d["mean"], 2),
            _ci(d),
            d["n_pairs"],
            *verdict(d),
        ]
        for d in comparison.get("by_strategy", [])
    ]
    if rows:
        first = comparison["by_strategy"][0]
        lines += table(
            [
                "strategy",
                "budget",
                f"from {first['treatment']}",
                f"from {first['control']}",
                "Δ pretrained − scratch",
                "95% CI",
                "n pairs",
                *(["verdict"] * (not declared)),
            ],
            rows,
        )
    lines += [
        "### Does pretraining change the verdict?",
        "",
        "Blockwise − classical paired by seed within each model; the difference of differences "
        "(bw − cl from the pretrained model) − (bw − cl from scratch) is paired by seed over the seeds "
        "that completed all four runs.",
        "",
    ]
    rows = []
    for v in comparison.get("verdicts", []):
        arms = []
        for d in (v["from_pretrained"], v["from_scratch"]):
            arms += [f"{signed(d['mean'], 2)} {_ci(d)}", *verdict(d)] if d else ["n/a", *(["n/a"] * (not declared))]
        i = v["interaction"]
        same = [] if declared else [{None: "n/a", True: "**no**", False: "yes"}[v["verdict_changed"]]]
        interaction = [signed(i["mean"], 2), _ci(i), i["n_pairs"], *verdict(i)]
        rows.append([v.get("budget_kind") or "—", *arms, *same, *interaction])
    first = (comparison.get("verdicts") or [{"pretrained": "pretrained", "scratch": "scratch"}])[0]
    return lines + table(
        [
            "budget",
            f"bw − cl from {first['pretrained']} (95% CI)",
            *(["verdict"] * (not declared)),
            f"bw − cl from {first['scratch']} (95% CI)",
            *(["verdict", "same verdict?"] * (not declared)),
            "difference of differences",
            "95% CI",
            "n",
            *(["verdict (pretraining enlarges bw − cl)"] * (not declared)),
        ],
        rows,
    )


def paper_comparison(s: Summary) -> list[str]:
    """The paper's numbers beside ours, then every claim's verdict."""
    lines = [
        "## Paper comparison",
        "",
        f"> **{SCALE_NOTE[0].upper() + SCALE_NOTE[1:]}.** "
        "The numbers are not comparable in absolute terms; only the direction of the effect is.",
        "",
    ]
    rows = [
        [
            f"{p['benchmark']} (paper)",
            f"{p['blockwise']:.1f}",
            f"{p['baseline']:.1f} (strongest baseline)",
            f"{p['blockwise'] - p['baseline']:+.1f}",
            "n/a",
            PAPER["source"],
        ]
        for p in PAPER["rows"]
    ]
    rows += _our_comparison_rows(s)
    lines += table(["benchmark", "Blockwise SFT", "baseline", "Δ", "95% CI", "source"], rows)
    lines += ["### Claims", ""]
    if s["claims"]:
        lines += [f"- {c['claim']}: **{c['verdict']}** ({c['evidence']})" for c in s["claims"]]
    else:
        lines.append("- No claim of the paper is tested by this study's data.")
    return lines + [""]


def _blockwise_against_baseline(comparison: dict[str, Any]) -> bool:
    """Whether a declared comparison sets a blockwise strategy against another strategy, as the paper's table does
    (a comparison within one strategy, such as a knob's values, is not one)."""
    treatment, control = comparison.get("treatment_strategy"), comparison.get("control_strategy")
    return str(treatment).startswith("blockwise") and control is not None and control != treatment


def _our_comparison_rows(s: Summary) -> list[list[Any]]:
    """Our blockwise vs classical numbers for the paper-comparison table."""
    n_seeds = lambda n: f"this sweep, n={n} seeds"  # noqa: E731
    rows = []
    for d in s.get("family") or []:
        if d["treatment_mean"] is None or d["control_mean"] is None or not _blockwise_against_baseline(d):
            continue
        rows.append(
            [
                f"synthetic arithmetic (ours, {d['name']})",
                f"{pct(d['treatment_mean'])} ({d['treatment']})",
                f"{pct(d['control_mean'])} ({d['control']})",
                signed(d["mean"]),
                _ci(d, 1),
                f"this sweep, n={d['n_pairs']} pairs, Holm p = {p_value(d['holm_p'])}",
            ]
        )
    for d in s.get("paired") or []:
        if d["treatment_mean"] is None or d["control_mean"] is None:
            continue
        start = f", from {d['model']}" if d.get("model") else ""
        rows.append(
            [
                f"synthetic arithmetic (ours, {d.get('budget_kind') or 'equal'} budget{start})",
                pct(d["treatment_mean"]),
                f"{pct(d['control_mean'])} (classical)",
                signed(d["mean"]),
                _ci(d, 1),
                n_seeds(d["n_pairs"]),
            ]
        )
    if rows or s.get("protocol") is not None:  # a declared family: no undeclared best-against-best row
        return rows
    blockwise = [g for g in s["groups"] if g.get("strategy") == "blockwise"]
    classical = [g for g in s["groups"] if g.get("strategy") == "classical"]
    if blockwise:
        best = max(blockwise, key=lambda g: g["mean"])
        base = max(classical, key=lambda g: g["mean"]) if classical else None
        rows.append(
            [
                "synthetic arithmetic (ours, best blockwise config)",
                pct_pm(best),
                f"{pct_pm(base)} (classical)" if base else "—",
                f"{100 * (best['mean'] - base['mean']):+.1f}" if base else "n/a",
                "n/a",
                n_seeds(best["n"]),
            ]
        )
    return rows


def decode_view_losses(s: Summary) -> list[str]:
    """The last decode-view loss per block index per configuration (``diagnostics.decode_view``), when logged."""
    finals = s.get("decode_view_final") or {}
    if not finals:
        return []
    blocks = max(len(f["loss_block"]) for f in finals.values())
    lines = [
        "## Decode-view loss",
        "",
        "Masked cross-entropy in the decoder's view at the last step (prompt and earlier blocks clean, the block "
        "partly masked, later blocks masked; mean over the mask ratios, then over seeds; docs/logging.md).",
        "",
    ]
    rows = []
    for label, final in finals.items():
        losses = final["loss_block"] + [None] * (blocks - len(final["loss_block"]))
        rows.append([label, *("n/a" if v is None else f"{v:.3f}" for v in losses), final["n"]])
    return lines + table(["configuration", *(f"block {k}" for k in range(blocks)), "n seeds"], rows)


def plots_section(plots: Sequence[str]) -> list[str]:
    return ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""] if plots else []


def jobs(runs: Sequence[Run]) -> list[str]:
    lines = ["## Jobs", ""]
    return lines + table(
        ["job", "status", "strategy", "block", "seed", "budget", "accuracy %", "final loss", "wall", "CPU kernels"],
        [
            [
                f"`{r['job']}`" + (" †" if r.get("linked_from") else " ‡" if r.get("training_from") else ""),
                r["status"],
                r.get("strategy") or "?",
                fmt_key("", r.get("block_size")),
                fmt_key("", r.get("seed")),
                r.get("budget_kind") or "?",
                pct(r.get("accuracy")),
                "n/a" if r.get("final_train_loss") is None else f"{r['final_train_loss']:.3f}",
                duration(r.get("wall_seconds")),
                r.get("kernel_isa") or "n/a",
            ]
            for r in runs
        ],
    )


#: The sections of report.md that depend on the summary only, in order.
SUMMARY_SECTIONS = (
    header,
    failed_jobs,
    unfinished_jobs,
    accuracy_by_configuration,
    declared_family,
    selection,
    termination,
    main_comparison,
    block_grid,
    knob_ablations,
    controls,
    corruption_schemes,
    pretraining,
    paper_comparison,
    decode_view_losses,
)


def render_markdown(summary: Summary, runs: Sequence[Run], plots: Sequence[str]) -> str:
    """The report.md text."""
    lines = [line for section in SUMMARY_SECTIONS for line in section(summary)]
    return "\n".join(lines + plots_section(plots) + jobs(runs))
