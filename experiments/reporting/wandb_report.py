"""A study's verdicts as one W&B run (``python experiments/report.py <study folder> --wandb``).

The run sits in the W&B group of the study's training runs (``conf/logger/wandb.yaml``: ``group: ${study}``),
named ``<study>-report`` with job type ``study-report``, and holds what the report says:

* ``arms``: accuracy per configuration (mean, std over seeds, n) as in ``summary["groups"]``;
* ``verdicts/family``: the declared family (``summary["family"]``: Δ, raw and family-wise intervals, p, Holm p,
  verdict) when the study declared a protocol, else ``verdicts/paired``: every seed-paired difference of the
  report with its 95 % interval and verdict; ``verdicts/claims``: each claim, its verdict and evidence;
* ``plots/<name>``: the report's PNGs; ``decode_view/final`` and a line chart per block
  (``decode_view/block<k>``) when the runs logged the decode-view loss; ``termination`` when they recorded it;
* config: the study, its protocol, the commits and the job counts; summary: the job counts and each declared
  comparison's Δ, Holm p and verdict.

Accuracies and differences are fractions (0.05 = 5 points), as in ``summary.json``. ``report_payload`` builds all of
it from the summary alone (no W&B: tests read it); ``log_report`` logs it. The run is offline unless
``WANDB_MODE`` says otherwise, and its files, W&B's cache and staging included, land under
``<out>/wandb/`` (``wandb sync <out>/wandb/offline-run-*`` uploads it later).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from blocksft.folders import portable
from experiments.reporting.plots import Curves
from experiments.reporting.stats import verdict_from_ci
from experiments.reporting.text import key_label

#: The training runs' W&B logger config: the project the report's run joins by default.
WANDB_LOGGER = Path(__file__).resolve().parents[2] / "conf" / "logger" / "wandb.yaml"
JOB_TYPE = "study-report"
Table = dict[str, list]  # {"columns": [...], "data": [[...], ...]}: what a W&B table file holds

FAMILY_COLUMNS = (
    "name",
    "treatment",
    "control",
    "delta_mean",
    "ci_low",
    "ci_high",
    "family_ci_low",
    "family_ci_high",
    "p_value",
    "holm_p",
    "n_pairs",
    "declared_seeds",
    "treatment_mean",
    "control_mean",
    "verdict",
)
PAIRED_COLUMNS = (
    "comparison",
    "within",
    "treatment",
    "control",
    "delta_mean",
    "ci_low",
    "ci_high",
    "n_pairs",
    "treatment_mean",
    "control_mean",
    "verdict",
)
#: The fields of a ``stats.paired_difference`` entry; any other field is a key the pairs were made within.
PAIR_FIELDS = frozenset(
    ("treatment", "control", "seeds", "n_pairs", "diffs", "mean", "std", "ci_low", "ci_high")
    + ("treatment_mean", "control_mean", "verdict")
)
#: summary key -> the knob whose reference value the differences start from (``stats.knob_differences``).
KNOB_PAIRED = {"prefix_paired": "prefix_mask_rate", "suffix_paired": "suffix_mask_prob"}


def default_project() -> str:
    """The W&B project of the training runs (``conf/logger/wandb.yaml``)."""
    return str(yaml.safe_load(WANDB_LOGGER.read_text())["wandb"]["project"])


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A W&B table's columns and rows. A column that mixes text with numbers (a knob's values 0, 1 and "all")
    becomes text throughout, since a ``wandb.Table`` column holds one type (None aside)."""
    data = [list(row) for row in rows]
    for j in range(len(columns)):
        kinds = {isinstance(row[j], str) for row in data if row[j] is not None}
        if kinds == {True, False}:
            for row in data:
                row[j] = None if row[j] is None else str(row[j])
    return {"columns": list(columns), "data": data}


def arms_table(summary: dict[str, Any]) -> Table:
    """One row per configuration: its label, its key fields, mean and std of the accuracy over seeds, n, seeds."""
    keys = list(summary["group_keys"])
    rows = [
        [key_label(g, keys), *(g.get(k) for k in keys), g["mean"], g["std"], g["n"], ", ".join(map(str, g["seeds"]))]
        for g in summary["groups"]
    ]
    return _table(["arm", *keys, "mean", "std", "n", "seeds"], rows)


def family_table(family: Sequence[dict[str, Any]]) -> Table:
    """The declared comparisons (``protocol.family_verdicts``), Δ = treatment − control."""
    rows = [
        [
            row["name"],
            row["treatment"],
            row["control"],
            row["mean"],
            *(row[k] for k in ("ci_low", "ci_high", "family_ci_low", "family_ci_high", "p_value", "holm_p")),
            row["n_pairs"],
            len(row["declared_seeds"]),
            row["treatment_mean"],
            row["control_mean"],
            row["verdict"],
        ]
        for row in family
    ]
    return _table(FAMILY_COLUMNS, rows)


def _pair_row(comparison: str, entry: dict[str, Any], within: str = "", arm: str | None = None) -> list[Any]:
    """A row of ``verdicts/paired`` from a ``stats.paired_difference``-shaped entry; ``arm``: the field whose
    values the treatment and control are (a knob), named in their cells."""
    within = within or ", ".join(f"{k}={v}" for k, v in entry.items() if k not in PAIR_FIELDS and k != arm)
    treatment, control = entry["treatment"], entry["control"]
    if arm is not None:
        treatment, control = f"{arm}={treatment}", f"{arm}={control}"
    return [
        comparison,
        within,
        str(treatment),
        str(control),
        entry["mean"],
        entry["ci_low"],
        entry["ci_high"],
        entry["n_pairs"],
        entry.get("treatment_mean"),
        entry.get("control_mean"),
        entry.get("verdict") or verdict_from_ci(entry),
    ]


def paired_table(summary: dict[str, Any]) -> Table:
    """Every seed-paired difference (treatment − control, 95 % t-interval) of a study without a declared family,
    as its report reads them: blockwise − classical (``main``), the clean prefix − each rate, the hidden suffix −
    each probability, decoding at the training block − at each other length (``block_grid``), blockwise − each
    control, the reference − each scheme, pretrained − from scratch."""
    rows = [_pair_row("main", entry) for entry in summary.get("paired") or []]
    for key, knob in KNOB_PAIRED.items():
        rows += [_pair_row(knob, entry, arm=knob) for entry in summary.get(key) or []]
    for row in (summary.get("grid") or {}).get("rows") or []:
        block = row.get("block_size")
        rows += [
            _pair_row(
                "block_grid", {**m, "treatment": f"decode {block}", "control": f"decode {m['decode']}"}, row["label"]
            )
            for m in row.get("matched") or []
        ]
    rows += [_pair_row("controls", c["paired"]) for c in summary.get("controls") or [] if c.get("paired")]
    rows += [_pair_row("schemes", s["paired"]) for s in summary.get("schemes") or [] if s.get("paired")]
    rows += [_pair_row("pretraining", p) for p in (summary.get("pretraining") or {}).get("by_strategy") or []]
    return _table(PAIRED_COLUMNS, rows)


def claims_table(claims: Sequence[dict[str, Any]]) -> Table:
    return _table(["claim", "verdict", "evidence"], [[c["claim"], c["verdict"], c.get("evidence", "")] for c in claims])


def termination_table(summary: dict[str, Any]) -> Table:
    """Per configuration, how its generations ended (``stats.termination_groups``: the scalar columns as recorded,
    then the EOS share of each answer block as ``eos_share_block<k>``)."""
    rows = summary.get("termination") or []
    keys = list(summary["group_keys"])
    shares = "eos_share_by_block"
    metrics = [k for k in rows[0] if k not in keys and k not in ("n", shares)] if rows else []
    blocks = max((len(r.get(shares) or []) for r in rows), default=0)
    return _table(
        ["arm", *keys, "n", *metrics, *(f"eos_share_block{k}" for k in range(blocks))],
        [
            [key_label(r, keys), *(r.get(k) for k in [*keys, "n", *metrics])]
            + [*(r.get(shares) or []), *[None] * (blocks - len(r.get(shares) or []))]
            for r in rows
        ],
    )


def decode_view_final_table(finals: dict[str, dict[str, Any]]) -> Table:
    """Per configuration, each block's decode-view loss at the last logged step (mean over its jobs)."""
    blocks = max((len(f["loss_block"]) for f in finals.values()), default=0)
    rows = [[label, f["n"], *f["loss_block"], *[None] * (blocks - len(f["loss_block"]))] for label, f in finals.items()]
    return _table(["arm", "n", *(f"block {k}" for k in range(blocks))], rows)


def decode_view_charts(curves: dict[int, Curves]) -> dict[str, dict[str, Any]]:
    """``decode_view/block<k>`` -> a line chart over the steps, one line per configuration (mean over seeds)."""
    return {
        f"decode_view/block{block}": {
            "table": _table(
                ["step", "loss", "arm", "n"],
                [
                    [s, loss, label, n]
                    for label, (steps, losses, n) in by_label.items()
                    for s, loss in zip(steps, losses)
                ],
            ),
            "x": "step",
            "y": "loss",
            "stroke": "arm",
            "title": f"decode-view loss, block {block} (mean over seeds)",
        }
        for block, by_label in curves.items()
    }


def report_payload(summary: dict[str, Any], decode_view_curves: dict[int, Curves] | None = None) -> dict[str, Any]:
    """What the study's W&B run holds, from its summary (``write_report``'s, with ``plots`` and
    ``decode_view_final``) and, optionally, the decode-view curves (``plots.mean_decode_view_curves``):
    ``init`` (name, group, job_type, config), ``tables`` (key -> table), ``images`` (key -> PNG name in the
    report folder), ``charts`` (key -> line chart: table, x, y, stroke, title) and ``summary`` (scalars)."""
    study = summary["study"]
    family = summary.get("family") or []
    tables = {"arms": arms_table(summary)}
    if family:
        tables["verdicts/family"] = family_table(family)
    else:
        tables["verdicts/paired"] = paired_table(summary)
    tables["verdicts/claims"] = claims_table(summary.get("claims") or [])
    if summary.get("decode_view_final"):
        tables["decode_view/final"] = decode_view_final_table(summary["decode_view_final"])
    if summary.get("termination"):
        tables["termination"] = termination_table(summary)
    counts = {k: summary[k] for k in ("n_jobs", "n_completed", "n_failed", "n_unfinished")}
    config = {
        "study": study,
        "kinds": summary.get("kinds", []),
        "protocol": summary.get("protocol"),
        "git_commits": summary.get("git_commits", {}),
        "group_keys": summary["group_keys"],
        "sweep_dir": portable(str(summary.get("sweep_dir", ""))),
        **counts,
    }
    scalars: dict[str, Any] = {**counts, "wall_seconds_total": summary.get("wall_seconds_total")}
    for row in family:
        scalars |= {
            f"family/{row['name']}/delta_mean": row["mean"],
            f"family/{row['name']}/holm_p": row["holm_p"],
            f"family/{row['name']}/verdict": row["verdict"],
        }
    return {
        "init": {"name": f"{study}-report", "group": study, "job_type": JOB_TYPE, "config": config},
        "tables": tables,
        "images": {f"plots/{Path(name).stem}": name for name in summary.get("plots") or []},
        "charts": decode_view_charts(decode_view_curves or {}),
        "summary": scalars,
    }


@contextlib.contextmanager
def _wandb_folders(root: Path) -> Iterator[None]:
    """W&B's cache and data folders (its logs, artifact staging) under ``root`` while inside, unless the
    environment already names them; the environment restored afterwards."""
    names = {"WANDB_CACHE_DIR": root / "cache", "WANDB_DATA_DIR": root / "data"}
    saved = {name: os.environ.get(name) for name in names}
    for name, folder in names.items():
        os.environ.setdefault(name, str(folder))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def log_report(
    summary: dict[str, Any],
    out: str | Path,
    project: str | None = None,
    decode_view_curves: dict[int, Curves] | None = None,
) -> dict[str, Any]:
    """Log ``report_payload`` as one W&B run with its files under ``<out>/wandb/`` (the PNGs read from ``out``);
    offline unless ``WANDB_MODE`` says otherwise. Returns where it went: ``id``, ``project``, ``group``,
    ``mode`` and ``dir`` (the run's folder relative to ``out``)."""
    import wandb

    out = Path(out)
    payload = report_payload(summary, decode_view_curves)
    project = project or default_project()
    mode = os.environ.get("WANDB_MODE") or "offline"
    with _wandb_folders(out / "wandb"):
        run = wandb.init(
            project=project,
            dir=str(out),
            mode=mode,
            settings=wandb.Settings(console="off", silent=True),
            **payload["init"],
        )
        try:
            logged: dict[str, Any] = {
                key: wandb.Table(columns=t["columns"], data=t["data"]) for key, t in payload["tables"].items()
            }
            logged |= {key: wandb.Image(str(out / name), caption=name) for key, name in payload["images"].items()}
            for key, chart in payload["charts"].items():
                table = wandb.Table(columns=chart["table"]["columns"], data=chart["table"]["data"])
                logged[key] = wandb.plot.line(
                    table, chart["x"], chart["y"], stroke=chart["stroke"], title=chart["title"]
                )
            run.log(logged)
            run.summary.update(payload["summary"])
            folder = Path(run.dir).parent
        finally:
            run.finish()
            if wandb.run is None:  # no run of the caller's left: wait until W&B has written the run's files
                wandb.teardown()
    where = {"id": run.id, "project": project, "group": payload["init"]["group"], "mode": mode}
    if folder.resolve().is_relative_to(out.resolve()):
        where["dir"] = folder.resolve().relative_to(out.resolve()).as_posix()
    return where
