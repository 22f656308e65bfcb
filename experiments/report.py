"""Summarise a Hydra multirun sweep: tables, claims, plots.

Usage::

    python experiments/report.py <sweep_dir> [--study NAME] [--out DIR]

Reads every ``results.json`` under ``sweep_dir`` (recursively, following symlinked job folders, which
the report marks as linked; job directories that only have a ``.hydra/overrides.yaml`` count as failed
jobs) and writes ``report.md``, ``summary.json`` and the PNG plots that fit the data (``heatmap.png``,
``bars.png``, ``loss_curves.png``) into ``--out`` (default ``<sweep_dir>/report``).

The aggregation and claim functions are pure and importable: ``load_runs``, ``aggregate``,
``paired_difference``, ``block_grid``, ``claims``, ``write_report``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

Run = dict[str, Any]
Group = dict[str, Any]

#: Knobs that become grouping columns when they take more than one value in a sweep.
ABLATION_KNOBS: tuple[str, ...] = ("prefix_mask_rate", "suffix_mask_prob", "budget_kind", "budget_value")
#: Two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30.
T_975: tuple[float, ...] = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)
#: Numbers reported by the paper (accuracy %, LLaDA-8B-Instruct + LoRA).
PAPER = {
    "source": "arXiv 2508.19529 (Blockwise SFT), LLaDA-8B-Instruct + LoRA",
    "rows": [
        {"benchmark": "GSM8K", "blockwise": 76.0, "baseline": 70.8},
        {"benchmark": "MATH", "blockwise": 34.2, "baseline": 32.6},
    ],
}
SCALE_NOTE = ("different scale: our tiny char-level model on synthetic arithmetic "
              "vs LLaDA-8B on GSM8K/MATH")
SUPPORTS, CONTRADICTS = "supports", "contradicts"
#: Strategies that keep blockwise's masking statistics but break its alignment (conf/strategy/).
CONTROL_STRATEGIES: tuple[str, ...] = ("blockwise_unaligned", "classical_matched", "blockwise_visible_future")


# ----------------------------------------------------------------------------------------- loading

def _to_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _to_int(value: Any) -> int | None:
    number = _to_float(value)
    return int(number) if number is not None and number == int(number) else None


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def read_overrides(job_dir: Path) -> list[str]:
    """The override strings of ``<job_dir>/.hydra/overrides.yaml`` ([] if absent or unreadable)."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except OSError:
        return []
    try:
        import yaml

        loaded = yaml.safe_load(text)
        if isinstance(loaded, list):
            return [str(item) for item in loaded]
    except Exception:  # noqa: BLE001 - fall back to a line parser
        pass
    return [_unquote(line.strip()[2:]) for line in text.splitlines() if line.strip().startswith("- ")]


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Run fields recoverable from override strings (``strategy=blockwise``, ``block='8'``, ``seed=1``...)."""
    fields: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        key, value = key.lstrip("+~").strip(), _unquote(value)
        if key in ("strategy", "strategy.name"):
            fields["strategy"] = value
        elif key in ("block", "block.size"):
            fields["block_size"] = _to_int(value)
        elif key == "seed":
            fields["seed"] = _to_int(value)
        elif key in ("budget", "budget.kind"):
            fields["budget_kind"] = value
        elif key == "budget.value":
            fields["budget_value"] = _to_float(value)
        elif key.endswith("prefix_mask_rate"):
            fields["prefix_mask_rate"] = _to_float(value)
        elif key.endswith("suffix_mask_prob"):
            fields["suffix_mask_prob"] = _to_float(value)
        elif key == "study":
            fields["study"] = None if value in ("null", "") else value
    return fields


def normalize_run(raw: dict[str, Any], job: str, job_dir: Path, overrides: list[str]) -> Run:
    """Flatten one results.json (possibly partial) into the fields the report uses."""
    config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    strategy_cfg = config.get("strategy") if isinstance(config.get("strategy"), dict) else {}
    masking = strategy_cfg.get("masking") if isinstance(strategy_cfg.get("masking"), dict) else {}
    budget = raw.get("budget") if isinstance(raw.get("budget"), dict) else (config.get("budget") or {})
    block_cfg = config.get("block") if isinstance(config.get("block"), dict) else {}
    by_block_raw = raw.get("accuracy_by_decode_block") or {}
    by_block = {}
    for key, value in (by_block_raw.items() if isinstance(by_block_raw, dict) else []):
        length, accuracy = _to_int(key), _to_float(value)
        if length is not None and accuracy is not None:
            by_block[length] = accuracy
    status = raw.get("status")
    run: Run = {
        "job": job,
        "dir": str(job_dir),
        "status": "completed" if status == "completed" else "failed",
        "error": raw.get("error") if status != "completed" else None,
        "overrides": overrides,
        "strategy": raw.get("strategy") or strategy_cfg.get("name"),
        "block_size": _to_int(raw.get("block_size", block_cfg.get("size"))),
        "decode_block_length": _to_int(raw.get("decode_block_length")),
        "seed": _to_int(raw.get("seed", config.get("seed"))),
        "budget_kind": budget.get("kind") if isinstance(budget, dict) else None,
        "budget_value": _to_float(budget.get("value")) if isinstance(budget, dict) else None,
        "prefix_mask_rate": _to_float(masking.get("prefix_mask_rate")),
        "suffix_mask_prob": _to_float(masking.get("suffix_mask_prob")),
        "accuracy": _to_float(raw.get("accuracy")),
        "accuracy_flexible": _to_float(raw.get("accuracy_flexible")),
        "accuracy_by_decode_block": by_block,
        "final_train_loss": _to_float(raw.get("final_train_loss")),
        "steps": _to_int(raw.get("steps")),
        "wall_seconds": _to_float(raw.get("wall_seconds")),
        "train_seconds": _to_float(raw.get("train_seconds")),
        "eval_seconds": _to_float(raw.get("eval_seconds")),
        "git_commit": raw.get("git_commit"),
        "study": raw.get("study", config.get("study")),
    }
    if run["status"] == "failed" and run["error"] is None:
        run["error"] = "status=%s" % status if status else "no results.json"
    for key, value in parse_overrides(overrides).items():  # fill what a partial results.json lacks
        if run.get(key) is None and value is not None:
            run[key] = value
    if not by_block and run["accuracy"] is not None and run["decode_block_length"] is not None:
        run["accuracy_by_decode_block"] = {run["decode_block_length"]: run["accuracy"]}
    return run


def load_runs(sweep_dir: str | Path) -> list[Run]:
    """Every job under ``sweep_dir``: one normalised dict per ``results.json`` plus one failed entry
    per job directory that has ``.hydra/overrides.yaml`` but no ``results.json``; sorted by job path."""
    root = Path(sweep_dir)
    job_dirs: dict[Path, Path | None] = {}
    for path in _walk_files(root, {"results.json", "overrides.yaml"}):
        if path.name == "results.json":
            job_dirs[path.parent] = path
        elif path.parent.name == ".hydra":
            job_dirs.setdefault(path.parent.parent, None)
    runs = []
    real_root = root.resolve()
    for job_dir, results_path in job_dirs.items():
        if "eval" in job_dir.relative_to(root).parts[:-1]:
            continue  # <job>/eval/<settings>: a mode=eval scoring of a job, not another job
        job = job_dir.relative_to(root).as_posix()
        raw: dict[str, Any] = {"status": "failed", "error": "no results.json"}
        if results_path is not None:
            try:
                loaded = json.loads(results_path.read_text())
                raw = loaded if isinstance(loaded, dict) else {"status": "failed", "error": "malformed results.json"}
            except (OSError, ValueError) as exc:
                raw = {"status": "failed", "error": f"unreadable results.json: {exc}"}
        run = normalize_run(raw, job, job_dir, read_overrides(job_dir))
        real = job_dir.resolve()
        run["linked_from"] = None if real.is_relative_to(real_root) else str(real)
        runs.append(run)
    return sorted(runs, key=lambda r: r["job"])


def _walk_files(root: Path, names: set[str]) -> Iterable[Path]:
    """Files called one of ``names`` under ``root``, following symlinked folders (a study may link a run
    of identical configuration from another study) and visiting each real folder once."""
    seen: set[str] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        yield from (Path(folder) / name for name in files if name in names)


def completed(runs: Iterable[Run]) -> list[Run]:
    """Completed runs that have an accuracy."""
    return [r for r in runs if r["status"] == "completed" and r["accuracy"] is not None]


# ------------------------------------------------------------------------------------- statistics

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


def _sort_key(value: Any) -> tuple:
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
    for key in sorted(buckets, key=lambda t: tuple(_sort_key(v) for v in t)):
        members = sorted(buckets[key], key=lambda r: _sort_key(r.get("seed")))
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
    for key in sorted(cells, key=lambda t: tuple(_sort_key(v) for v in t)):
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
    ordered = sorted((k for k in values if k[0] != control), key=lambda k: (k[0], _sort_key(k[1])))
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


# ------------------------------------------------------------------------------------------ claims

def _inconclusive(n: int | None) -> str:
    return f"inconclusive at n={n} seeds" if n is not None else "inconclusive"


def verdict_from_ci(diff: dict[str, Any]) -> str:
    """CI of (blockwise − classical) above 0 -> supports, below 0 -> contradicts, else inconclusive."""
    low, high = diff.get("ci_low"), diff.get("ci_high")
    if low is not None and low > 0:
        return SUPPORTS
    if high is not None and high < 0:
        return CONTRADICTS
    return _inconclusive(diff.get("n_pairs"))


def verdict_block_diagonal(grid: dict[str, Any]) -> str:
    """Diagonal is the row max for every blockwise row -> supports, for none -> contradicts, else partly."""
    flags = [row["diagonal_is_max"] for row in grid.get("rows", []) if row.get("diagonal_is_max") is not None]
    if not flags:
        return "inconclusive (no row has its training block among the decode lengths)"
    if all(flags):
        return SUPPORTS
    if not any(flags):
        return CONTRADICTS
    return f"inconclusive (partly: {sum(flags)}/{len(flags)} rows)"


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


def verdict_prefix(groups: Sequence[Group], knob: str = "prefix_mask_rate") -> str:
    """Clean prefix helps: mean at the lowest rate above mean at the highest rate (non-overlapping
    mean ± std) -> supports; the reverse -> contradicts; else inconclusive."""
    present = [g for g in groups if g.get(knob) is not None and g.get("mean") is not None]
    if len({g[knob] for g in present}) < 2:
        return "inconclusive (a single prefix_mask_rate)"
    low = min(present, key=lambda g: g[knob])
    high = max(present, key=lambda g: g[knob])
    relation = compare_groups(low, high)
    if relation == "above":
        return SUPPORTS
    if relation == "below":
        return CONTRADICTS
    return _inconclusive(min(low["n"], high["n"]))


def verdict_suffix(groups: Sequence[Group], knob: str = "suffix_mask_prob", best: float = 1.0) -> str:
    """Hidden suffix helps: the group at ``best`` (1.0) above every other (non-overlapping mean ± std)
    -> supports; below any other -> contradicts; else inconclusive."""
    present = [g for g in groups if g.get(knob) is not None and g.get("mean") is not None]
    target = [g for g in present if math.isclose(g[knob], best)]
    others = [g for g in present if not math.isclose(g[knob], best)]
    if not target or not others:
        return f"inconclusive (needs {knob}={best} and another value)"
    relations = [compare_groups(target[0], other) for other in others]
    if all(r == "above" for r in relations):
        return SUPPORTS
    if any(r == "below" for r in relations):
        return CONTRADICTS
    return _inconclusive(min(g["n"] for g in present))


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
        verdict = verdict_from_ci(paired[0]) if paired else _inconclusive(None)
        out.append({"control": control, "reference": groups[reference], "group": groups[control],
                    "relation": relation, "paired": paired[0] if paired else None, "verdict": verdict})
    return out


def claims(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The paper's claims that the study's data speaks to, each with a verdict and its evidence."""
    out = []
    for diff in summary.get("paired") or []:
        budget = diff.get("budget_kind") or "equal"
        evidence = (f"Δ = {_signed(diff['mean'])} pts, 95% CI [{_pct(diff['ci_low'])}, {_pct(diff['ci_high'])}], "
                    f"n={diff['n_pairs']} pairs")
        out.append({"claim": f"Blockwise SFT beats classical SFT at an equal {budget} budget",
                    "verdict": verdict_from_ci(diff), "evidence": evidence})
    grid = summary.get("grid")
    if grid and grid.get("rows"):
        flags = [(r["label"], r["diagonal_is_max"]) for r in grid["rows"] if r["diagonal_is_max"] is not None]
        evidence = ", ".join(f"{label}: {'yes' if flag else 'no'}" for label, flag in flags) or "no diagonal cells"
        out.append({"claim": "Accuracy peaks when the decoding block length equals the training block size",
                    "verdict": verdict_block_diagonal(grid), "evidence": "diagonal is row max: " + evidence})
    if summary.get("prefix"):
        out.append({"claim": "A clean prefix matters: noising earlier blocks (prefix_mask_rate > 0) lowers accuracy",
                    "verdict": verdict_prefix(summary["prefix"]),
                    "evidence": _knob_evidence(summary["prefix"], "prefix_mask_rate")})
    if summary.get("suffix"):
        out.append({"claim": "Hiding the future matters: suffix_mask_prob = 1.0 (suffix fully masked) is best",
                    "verdict": verdict_suffix(summary["suffix"]),
                    "evidence": _knob_evidence(summary["suffix"], "suffix_mask_prob")})
    for c in summary.get("controls") or []:
        out.append({"claim": f"Blockwise's gain is its alignment, not incidental masking statistics: "
                             f"blockwise beats {c['control']}",
                    "verdict": c["verdict"],
                    "evidence": f"blockwise {_pct_pm(c['reference'])} (n={c['reference']['n']}) vs {c['control']} "
                                f"{_pct_pm(c['group'])} (n={c['group']['n']}); mean ± std intervals: blockwise "
                                f"{c['relation']}"})
    return out


def _knob_evidence(groups: Sequence[Group], knob: str) -> str:
    return "; ".join(f"{knob}={g[knob]:g}: {_pct_pm(g)} (n={g['n']})" for g in groups if g.get(knob) is not None)


# ----------------------------------------------------------------------------------------- studies

def study_name(runs: Sequence[Run], sweep_dir: str | Path, study: str | None = None) -> str:
    """``study`` if given, else the most common ``study`` field of the runs, else the sweep dir name."""
    if study:
        return study
    names = Counter(r["study"] for r in runs if r.get("study"))
    return names.most_common(1)[0][0] if names else Path(sweep_dir).resolve().name


def study_kinds(study: str, runs: Sequence[Run]) -> list[str]:
    """Which specific sections apply: ``main``, ``block_size_consistency``, ``prefix``, ``suffix``,
    ``controls``.

    From the study name when it names one, else from the data (what varies). A controls study varies
    ``suffix_mask_prob`` only through ``blockwise_visible_future``, so it gets no suffix section."""
    tokens = set(re.split(r"[^a-z0-9]+", study.lower()))
    done = completed(runs)
    strategies = {r["strategy"] for r in done}
    blocks = {r["block_size"] for r in done if r["strategy"] != "classical"}
    lengths = {k for r in done for k in r["accuracy_by_decode_block"]}
    knobs = varying_knobs(done)
    is_main = "main" in tokens
    is_grid = bool({"consistency", "grid"} & tokens) or "block_size" in study.lower()
    is_controls = "controls" in tokens or ("blockwise" in strategies and bool(strategies & set(CONTROL_STRATEGIES)))
    named = is_main or is_grid or is_controls
    kinds = []
    if is_main or (not named and {"blockwise", "classical"} <= strategies and len(blocks) <= 1):
        kinds.append("main")
    if is_grid or (not named and len(blocks) > 1 and len(lengths) > 1):
        kinds.append("block_size_consistency")
    if "prefix" in tokens or ("prefix_mask_rate" in knobs and not is_controls):
        kinds.append("prefix")
    if "suffix" in tokens or ("suffix_mask_prob" in knobs and not is_controls):
        kinds.append("suffix")
    if is_controls:
        kinds.append("controls")
    return kinds


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


def summarize(runs: Sequence[Run], study: str, sweep_dir: str | Path = "") -> dict[str, Any]:
    """All aggregated numbers of a sweep (what ``summary.json`` holds)."""
    done = completed(runs)
    failed = [r for r in runs if r["status"] != "completed"]
    walls = {r["job"]: r["wall_seconds"] for r in runs if r.get("wall_seconds") is not None}
    kinds = study_kinds(study, runs)
    keys = default_keys(runs)
    summary: dict[str, Any] = {
        "study": study,
        "sweep_dir": str(sweep_dir),
        "kinds": kinds,
        "n_jobs": len(runs),
        "n_completed": len([r for r in runs if r["status"] == "completed"]),
        "n_failed": len(failed),
        "failed": [{"job": r["job"], "error": r["error"], "overrides": r["overrides"]} for r in failed],
        "linked": {r["job"]: r["linked_from"] for r in runs if r.get("linked_from")},
        "git_commits": dict(Counter(r["git_commit"] for r in runs if r.get("git_commit"))),
        "wall_seconds_total": sum(walls.values()),
        "wall_seconds_per_job": walls,
        "wall_seconds_mean": statistics.fmean(walls.values()) if walls else None,
        "time_breakdown": time_breakdown(runs),
        "group_keys": keys,
        "groups": aggregate(runs, keys),
        "groups_flexible": aggregate(runs, keys, metric="accuracy_flexible"),
        "paired": paired_difference(runs) if "main" in kinds else [],
        "grid": block_grid(runs) if "block_size_consistency" in kinds else None,
        "prefix": aggregate([r for r in done if r["prefix_mask_rate"] is not None], ["prefix_mask_rate"])
        if "prefix" in kinds else [],
        "suffix": aggregate([r for r in done if r["suffix_mask_prob"] is not None], ["suffix_mask_prob"])
        if "suffix" in kinds else [],
        "controls": control_comparisons(runs) if "controls" in kinds else [],
        "paper": PAPER,
    }
    summary["claims"] = claims(summary)
    return summary


# --------------------------------------------------------------------------------------- markdown

def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def _signed(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:+.{digits}f}"


def _pct_pm(group: dict[str, Any] | None) -> str:
    if not group or group.get("mean") is None:
        return "—"
    return f"{_pct(group['mean'])} ± {_pct(group.get('std'))}"


def _fmt_key(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


def _key_label(group: Group, keys: Sequence[str]) -> str:
    return ", ".join(_fmt_key(k, group.get(k)) if k == "strategy" else f"{k}={_fmt_key(k, group.get(k))}"
                     for k in keys)


def render_markdown(summary: dict[str, Any], runs: Sequence[Run], plots: Sequence[str]) -> str:
    """The report.md text."""
    s = summary
    lines = [f"# Study report: {s['study']}", "",
             f"- Sweep: `{s['sweep_dir']}`",
             f"- Sections: {', '.join(s['kinds']) or 'generic'}",
             f"- Jobs: {s['n_jobs']} ({s['n_completed']} completed / {s['n_failed']} failed)",
             "- Git commit(s): " + (", ".join(f"`{c}` ({n} jobs)" for c, n in s["git_commits"].items()) or "n/a")]
    walls = list(s["wall_seconds_per_job"].values())
    if walls:
        lines.append(f"- Wall time: total {_duration(s['wall_seconds_total'])} (sum over {len(walls)} jobs); "
                     f"per job mean {_duration(s['wall_seconds_mean'])}, median {_duration(statistics.median(walls))}, "
                     f"min {_duration(min(walls))}, max {_duration(max(walls))}")
    if s.get("time_breakdown"):
        t = s["time_breakdown"]
        share = lambda part: f"{_duration(t[part])} ({100 * t[part] / t['wall']:.0f} %)" if t["wall"] else "n/a"  # noqa: E731
        lines.append(f"- Where the time went ({t['jobs']} jobs): training {share('train')}, decoding and scoring "
                     f"{share('decode')}, other (start-up, data, export) {share('other')}")
    if s["linked"]:
        lines.append(f"- Linked jobs: {len(s['linked'])}, symlinks to runs of identical configuration made by another "
                     "sweep (marked † in the job table; their wall time is counted above)")
    lines.append("")
    if s["failed"]:
        lines += ["## Failed jobs", ""]
        for fail in s["failed"]:
            overrides = " ".join(fail["overrides"]) or "n/a"
            error = (fail["error"] or "").strip().splitlines()
            lines.append(f"- `{fail['job']}` — overrides: `{overrides}` — error: {error[-1] if error else 'n/a'}")
        lines.append("")

    keys = s["group_keys"]
    flexible = {tuple(g.get(k) for k in keys): g for g in s["groups_flexible"]}
    lines += ["## Accuracy by configuration", "",
              "Accuracy in %, mean ± std over seeds (std with ddof=1; n/a for a single seed).", ""]
    lines += _table([*keys, "accuracy", "flexible", "n seeds", "seeds"],
                    [[*(_fmt_key(k, g.get(k)) for k in keys), _pct_pm(g),
                      _pct_pm(flexible.get(tuple(g.get(k) for k in keys))), g["n"],
                      ",".join(str(x) for x in g["seeds"])] for g in s["groups"]])

    if "main" in s["kinds"]:
        lines += ["## Main comparison: blockwise − classical", "",
                  "Paired by seed within each budget kind (means over the paired seeds); "
                  "95% t-interval over the paired differences, in points of %.", ""]
        rows = []
        for d in s["paired"]:
            ci = "n/a" if d["ci_low"] is None else f"[{_pct(d['ci_low'], 2)}, {_pct(d['ci_high'], 2)}]"
            verdict = d["verdict"] + (" (CI includes 0)" if d["verdict"].startswith("inconclusive") else "")
            rows.append([d.get("budget_kind") or "—", _pct(d["treatment_mean"]), _pct(d["control_mean"]),
                         _signed(d["mean"], 2), ci, d["n_pairs"], verdict])
        lines += _table(["budget", "blockwise", "classical", "Δ mean", "95% CI", "n pairs", "verdict"], rows)

    grid = s.get("grid")
    if grid and grid["rows"]:
        lengths = grid["decode_lengths"]
        lines += ["## Block-size consistency: training block × decoding block length", "",
                  "Cell: accuracy % mean ± std (n seeds); best cell per row in bold.", ""]
        rows = []
        for row in grid["rows"]:
            cells = []
            for length in lengths:
                cell = row["cells"][str(length)]
                if cell is None:
                    cells.append("—")
                    continue
                text = f"{_pct_pm(cell)} ({cell['n']})"
                cells.append(f"**{text}**" if length in row["best_decode"] else text)
            diag = {True: "yes", False: "no", None: "n/a"}[row["diagonal_is_max"]]
            rows.append([row["label"], *cells, diag])
        lines += _table(["train block \\ decode", *(str(x) for x in lengths), "diagonal is row max?"], rows)

    for kind, knob, title in (("prefix", "prefix_mask_rate", "Prefix ablation"),
                              ("suffix", "suffix_mask_prob", "Suffix ablation")):
        if kind in s["kinds"] and s[kind]:
            lines += [f"## {title}", ""]
            lines += _table([knob, "accuracy", "n seeds"],
                            [[_fmt_key(knob, g[knob]), _pct_pm(g), g["n"]] for g in s[kind]])

    if s.get("controls"):
        lines += ["## Controls: blockwise vs variants that break its alignment", "",
                  "Accuracy %, mean ± std over seeds; Δ = blockwise − control paired by seed, 95% t-interval in "
                  "points of %; verdict from the interval (mean ± std intervals: blockwise above / below / "
                  "overlap).", ""]
        rows = []
        for c in s["controls"]:
            d = c["paired"] or {}
            ci = "n/a" if d.get("ci_low") is None else f"[{_pct(d['ci_low'], 2)}, {_pct(d['ci_high'], 2)}]"
            rows.append([c["control"], f"{_pct_pm(c['group'])} ({c['group']['n']})",
                         f"{_pct_pm(c['reference'])} ({c['reference']['n']})", _signed(d.get("mean"), 2), ci,
                         d.get("n_pairs", 0), f"blockwise {c['relation']}", c["verdict"]])
        lines += _table(["control", "control accuracy (n)", "blockwise accuracy (n)", "Δ mean", "95% CI", "n pairs",
                         "mean ± std intervals", "verdict"], rows)

    lines += ["## Paper comparison", "", f"> **{SCALE_NOTE[0].upper() + SCALE_NOTE[1:]}.** "
              "The numbers are not comparable in absolute terms; only the direction of the effect is.", ""]
    rows = [[f"{p['benchmark']} (paper)", f"{p['blockwise']:.1f}", f"{p['baseline']:.1f} (strongest baseline)",
             f"{p['blockwise'] - p['baseline']:+.1f}", "n/a", PAPER["source"]] for p in PAPER["rows"]]
    rows += _our_comparison_rows(s)
    lines += _table(["benchmark", "Blockwise SFT", "baseline", "Δ", "95% CI", "source"], rows)
    lines += ["### Claims", ""]
    if s["claims"]:
        lines += [f"- {c['claim']}: **{c['verdict']}** ({c['evidence']})" for c in s["claims"]]
    else:
        lines.append("- No claim of the paper is tested by this study's data.")
    lines.append("")

    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]

    lines += ["## Jobs", ""]
    lines += _table(["job", "status", "strategy", "block", "seed", "budget", "accuracy %", "final loss", "wall"],
                    [[f"`{r['job']}`" + (" †" if r.get("linked_from") else ""), r["status"], r.get("strategy") or "?",
                      _fmt_key("", r.get("block_size")),
                      _fmt_key("", r.get("seed")), r.get("budget_kind") or "?", _pct(r.get("accuracy")),
                      "n/a" if r.get("final_train_loss") is None else f"{r['final_train_loss']:.3f}",
                      _duration(r.get("wall_seconds"))] for r in runs])
    return "\n".join(lines)


def _our_comparison_rows(s: dict[str, Any]) -> list[list[Any]]:
    """Our blockwise vs classical numbers for the paper-comparison table."""
    n_seeds = lambda n: f"this sweep, n={n} seeds"  # noqa: E731
    rows = []
    for d in s.get("paired") or []:
        if d["treatment_mean"] is None or d["control_mean"] is None:
            continue
        ci = "n/a" if d["ci_low"] is None else f"[{_pct(d['ci_low'])}, {_pct(d['ci_high'])}]"
        rows.append([f"synthetic arithmetic (ours, {d.get('budget_kind') or 'equal'} budget)",
                     _pct(d["treatment_mean"]), f"{_pct(d['control_mean'])} (classical)",
                     _signed(d["mean"]), ci, n_seeds(d["n_pairs"])])
    if rows:
        return rows
    blockwise = [g for g in s["groups"] if g.get("strategy") == "blockwise"]
    classical = [g for g in s["groups"] if g.get("strategy") == "classical"]
    if blockwise:
        best = max(blockwise, key=lambda g: g["mean"])
        base = max(classical, key=lambda g: g["mean"]) if classical else None
        rows.append(["synthetic arithmetic (ours, best blockwise config)", _pct_pm(best),
                     f"{_pct_pm(base)} (classical)" if base else "—",
                     f"{100 * (best['mean'] - base['mean']):+.1f}" if base else "n/a", "n/a", n_seeds(best["n"])])
    return rows


# ------------------------------------------------------------------------------------------- plots

def load_loss_curve(job_dir: str | Path) -> dict[int, float]:
    """step -> train/loss from ``<job_dir>/csv/**/metrics.csv`` (rows without a loss skipped;
    several rows of one step averaged). Empty if there is no file."""
    csv_dir = Path(job_dir) / "csv"
    files = [csv_dir / "metrics.csv"] if (csv_dir / "metrics.csv").is_file() else sorted(csv_dir.rglob("metrics.csv"))
    per_step: dict[int, list[float]] = defaultdict(list)
    for path in files:
        try:
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    step, loss = _to_int(row.get("step")), _to_float(row.get("train/loss"))
                    if step is not None and loss is not None:
                        per_step[step].append(loss)
        except (OSError, csv.Error):
            continue
    return {step: statistics.fmean(v) for step, v in sorted(per_step.items())}


def mean_loss_curves(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, tuple[list[int], list[float], int]]:
    """label -> (steps, loss averaged over the jobs that logged that step, number of jobs)."""
    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    jobs: Counter = Counter()
    for run in completed(runs):
        curve = load_loss_curve(run["dir"])
        if not curve:
            continue
        label = _key_label(run, keys)
        jobs[label] += 1
        for step, loss in curve.items():
            curves[label][step].append(loss)
    return {label: (sorted(c), [statistics.fmean(c[s]) for s in sorted(c)], jobs[label])
            for label, c in sorted(curves.items())}


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
                ax.text(j, i, text, ha="center", va="center", fontsize=8, fontweight=weight,
                        color="black" if data[i, j] > middle else "white")
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
    ax.bar(x, [100 * g["mean"] for g in groups], yerr=[100 * (g["std"] or 0) for g in groups], capsize=4,
           color=[colors[str(g.get("strategy"))] for g in groups])
    ax.set_xticks(list(x), [_key_label(g, keys).replace(", ", "\n") for g in groups], fontsize=7)
    ax.set_ylabel("accuracy % (mean ± std over seeds)")
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[s]) for s in strategies]
    ax.legend(handles, strategies, fontsize=8)
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


# ---------------------------------------------------------------------------------------- entry

def write_report(sweep_dir: str | Path, out: str | Path | None = None, study: str | None = None) -> dict[str, Any]:
    """Load a sweep and write report.md, summary.json and the plots into ``out``; returns the summary."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(sweep_dir)
    name = study_name(runs, sweep_dir, study)
    summary = summarize(runs, name, sweep_dir)
    plots = []
    if summary["grid"] and plot_heatmap(summary["grid"], out / "heatmap.png"):
        plots.append("heatmap.png")
    if (set(summary["kinds"]) & {"main", "prefix", "suffix", "controls"} or not summary["grid"]) and plot_bars(
            summary["groups"], summary["group_keys"], out / "bars.png", title=name):
        plots.append("bars.png")
    curves = mean_loss_curves(runs, summary["group_keys"])
    if plot_loss_curves(curves, out / "loss_curves.png"):
        plots.append("loss_curves.png")
    summary["plots"] = plots
    summary["loss_curve_jobs"] = {label: n for label, (_, _, n) in curves.items()}
    (out / "report.md").write_text(render_markdown(summary, runs, plots))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun directory (or any folder of runs)")
    parser.add_argument("--study", default=None, help="study name (default: results' `study` field, else dir name)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <sweep_dir>/report)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"not a directory: {args.sweep_dir}")
    summary = write_report(args.sweep_dir, args.out, args.study)
    out = args.out or args.sweep_dir / "report"
    print(f"{summary['study']}: {summary['n_jobs']} jobs ({summary['n_completed']} completed, "
          f"{summary['n_failed']} failed) -> {out / 'report.md'}")
    for claim in summary["claims"]:
        print(f"  {claim['verdict']}: {claim['claim']}")
    if not summary["n_jobs"]:
        print("warning: no results.json or .hydra/overrides.yaml found", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
