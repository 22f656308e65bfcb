"""A study's verdicts as one W&B run (``python experiments/report.py <study folder> --wandb``): the payload built
from a summary without W&B (arms, the declared family or the paired differences, claims, decode-view loss,
termination, plots, config), and one offline run of a committed study's records, read back from its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.reporting.cli import main
from experiments.reporting.protocol import NO_DIFFERENCE, TREATMENT_BETTER
from experiments.reporting.summary import summarize
from experiments.reporting.wandb_report import (
    FAMILY_COLUMNS,
    JOB_TYPE,
    PAIRED_COLUMNS,
    default_project,
    report_payload,
)
from helpers.project import ROOT
from helpers.wandb_offline import logged_table, offline_run
from test_protocol import BLOCKWISE, CLASSICAL, run, study
from test_report import write_job
from test_report_decode_view import CURVES, write_decode_view_csv


def column(table: dict, name: str) -> list:
    index = table["columns"].index(name)
    return [row[index] for row in table["data"]]


def test_a_declared_family_becomes_the_verdict_table_and_summary_scalars():
    summary = summarize(study(), "main") | {"plots": ["bars.png", "loss_curves.png"]}
    payload = report_payload(summary)
    assert payload["init"] == {
        "name": "main-report",
        "group": "main",  # the training runs' group: conf/logger/wandb.yaml sets group: ${study}
        "job_type": JOB_TYPE,
        "config": payload["init"]["config"],
    }
    config = payload["init"]["config"]
    assert config["study"] == "main" and config["protocol"] == summary["protocol"] and config["n_jobs"] == 10
    tables = payload["tables"]
    assert list(tables) == ["arms", "verdicts/family", "verdicts/claims"]  # the family replaces the unadjusted pairs
    family = tables["verdicts/family"]
    assert family["columns"] == list(FAMILY_COLUMNS)
    assert column(family, "name") == ["equal_steps", "matched_decode"]
    assert column(family, "verdict") == [TREATMENT_BETTER, NO_DIFFERENCE]
    assert column(family, "delta_mean") == [row["mean"] for row in summary["family"]]
    assert column(family, "holm_p") == [row["holm_p"] for row in summary["family"]]
    assert column(family, "family_ci_low") == [row["family_ci_low"] for row in summary["family"]]
    assert column(family, "declared_seeds") == [5, 3]
    assert column(tables["verdicts/claims"], "verdict") == [TREATMENT_BETTER, NO_DIFFERENCE]
    assert payload["summary"]["family/equal_steps/verdict"] == TREATMENT_BETTER
    assert payload["summary"]["family/matched_decode/holm_p"] == summary["family"][1]["holm_p"]
    assert payload["images"] == {"plots/bars": "bars.png", "plots/loss_curves": "loss_curves.png"}
    assert payload["charts"] == {}
    arms = tables["arms"]
    assert arms["columns"] == ["arm", *summary["group_keys"], "mean", "std", "n", "seeds"]
    assert column(arms, "mean") == pytest.approx([sum(BLOCKWISE) / 5, sum(CLASSICAL) / 5])
    assert column(arms, "n") == [5, 5] and column(arms, "seeds") == ["0, 1, 2, 3, 4"] * 2


def test_without_a_protocol_the_seed_paired_differences_are_the_verdict_table():
    runs = [run("blockwise", s, a, protocol=None) for s, a in enumerate(BLOCKWISE)]
    runs += [run("classical", s, a, protocol=None) for s, a in enumerate(CLASSICAL)]
    summary = summarize(runs, "main")
    payload = report_payload(summary)
    assert "verdicts/family" not in payload["tables"] and payload["init"]["config"]["protocol"] is None
    paired = payload["tables"]["verdicts/paired"]
    assert paired["columns"] == list(PAIRED_COLUMNS)
    (entry,) = summary["paired"]
    (row,) = paired["data"]
    assert dict(zip(PAIRED_COLUMNS, row)) == {
        "comparison": "main",
        "within": "budget_kind=None",  # the pairing key, as the runs recorded it
        "treatment": "blockwise",
        "control": "classical",
        "delta_mean": entry["mean"],
        "ci_low": entry["ci_low"],
        "ci_high": entry["ci_high"],
        "n_pairs": 5,
        "treatment_mean": entry["treatment_mean"],
        "control_mean": entry["control_mean"],
        "verdict": "supports",
    }
    claims = payload["tables"]["verdicts/claims"]
    assert column(claims, "claim") == [c["claim"] for c in summary["claims"]]


def test_knob_and_grid_differences_name_their_arms():
    summary = {
        "study": "s",
        "group_keys": ["strategy"],
        "groups": [],
        "n_jobs": 0,
        "n_completed": 0,
        "n_failed": 0,
        "n_unfinished": 0,
        "claims": [],
        "suffix_paired": [
            {"suffix_mask_prob": 0.0, "treatment": 1.0, "control": 0.0, "seeds": [0, 1], "n_pairs": 2, "mean": 0.4}
            | {"ci_low": 0.1, "ci_high": 0.7, "treatment_mean": 0.9, "control_mean": 0.5, "verdict": "supports"}
        ],
        "grid": {
            "rows": [
                {
                    "label": "B=8",
                    "block_size": 8,
                    "matched": [{"decode": 32, "n_pairs": 2, "mean": -0.1, "ci_low": -0.2, "ci_high": -0.05}],
                }
            ]
        },
    }
    rows = [dict(zip(PAIRED_COLUMNS, r)) for r in report_payload(summary)["tables"]["verdicts/paired"]["data"]]
    assert [(r["comparison"], r["within"], r["treatment"], r["control"], r["verdict"]) for r in rows] == [
        ("suffix_mask_prob", "", "suffix_mask_prob=1.0", "suffix_mask_prob=0.0", "supports"),
        ("block_grid", "B=8", "decode 8", "decode 32", "contradicts"),  # the verdict from its interval
    ]


def test_a_column_mixing_text_and_numbers_becomes_text_that_a_wandb_table_accepts():
    import wandb

    from experiments.reporting.wandb_report import _table

    table = _table(["tail", "mean"], [[0, 0.0], [1, 0.0], ["all", 0.78], [None, 0.5]])
    assert table["data"] == [["0", 0.0], ["1", 0.0], ["all", 0.78], [None, 0.5]]
    wandb.Table(columns=table["columns"], data=table["data"])  # raised "incompatible types" before
    assert _table(["n"], [[1], [2.5]])["data"] == [[1], [2.5]]  # numbers alone stay numbers


def test_decode_view_loss_and_termination_become_tables_and_charts():
    summary = summarize(study(), "main") | {
        "decode_view_final": {
            "blockwise": {"n": 2, "loss_block": [1.5, 0.5]},
            "classical": {"n": 1, "loss_block": [3.0]},
        },
        "termination": [
            {"strategy": "blockwise", "block_size": 16, "n": 5, "parse_failure_rate": 0.0}
            | {"early_eos_rate": 0.1, "no_eos_rate": None, "eos_share_by_block": [0.0, 0.25]},
        ],
    }
    curves = {0: {"blockwise": ([199, 399], [2.0, 1.5], 2), "classical": ([199], [3.0], 1)}}
    payload = report_payload(summary, curves)
    final = payload["tables"]["decode_view/final"]
    assert final == {
        "columns": ["arm", "n", "block 0", "block 1"],
        "data": [["blockwise", 2, 1.5, 0.5], ["classical", 1, 3.0, None]],
    }
    chart = payload["charts"]["decode_view/block0"]
    assert (chart["x"], chart["y"], chart["stroke"]) == ("step", "loss", "arm")
    assert chart["table"]["data"] == [
        [199, 2.0, "blockwise", 2],
        [399, 1.5, "blockwise", 2],
        [199, 3.0, "classical", 1],
    ]
    termination = payload["tables"]["termination"]
    assert summary["group_keys"] == ["strategy", "block_size"]
    assert termination["columns"] == ["arm", "strategy", "block_size", "n"] + [
        "parse_failure_rate",
        "early_eos_rate",
        "no_eos_rate",
        "eos_share_block0",
        "eos_share_block1",
    ]
    assert termination["data"] == [["blockwise, block_size=16", "blockwise", 16, 5, 0.0, 0.1, None, 0.0, 0.25]]


def test_the_default_project_is_the_training_runs_one():
    text = (ROOT / "conf" / "logger" / "wandb.yaml").read_text()
    assert f"project: {default_project()}\n" in text


def test_wandb_project_without_wandb_is_refused(capsys):
    with pytest.raises(SystemExit):
        main([str(ROOT / "experiments" / "records" / "ablation_suffix"), "--wandb-project", "x"])
    assert "--wandb-project needs --wandb" in capsys.readouterr().err


def test_an_offline_run_of_a_committed_study_holds_its_verdicts(tmp_path, monkeypatch):
    """The report of ``experiments/records/ablation_suffix`` with ``--wandb`` and no W&B settings: an offline run
    under ``<out>/wandb/``, read back from its transaction log and the table files it points at."""
    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_PROJECT", "WANDB_RUN_GROUP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # W&B writes nothing there (matplotlib caches its fonts)
    (tmp_path / "home").mkdir()
    out = tmp_path / "report"
    records = ROOT / "experiments" / "records" / "ablation_suffix"
    assert main([str(records), "--study", "ablation_suffix", "--out", str(out), "--wandb"]) == 0

    summary = json.loads((out / "summary.json").read_text())
    where = summary["wandb"]
    assert where["mode"] == "offline" and where["project"] == default_project() and where["group"] == "ablation_suffix"
    assert where["dir"] == f"wandb/offline-run-{where['dir'].split('offline-run-')[1]}" and where["dir"].endswith(
        where["id"]
    )
    run_dir = out / where["dir"]
    logged = offline_run(run_dir)
    assert logged["exit_code"] == 0, "the run's transaction log is complete when the report returns"
    record = logged["run"]
    assert (record.run_id, record.project, record.run_group) == (where["id"], default_project(), "ablation_suffix")
    assert (record.display_name, record.job_type) == ("ablation_suffix-report", JOB_TYPE)
    assert logged["config"]["study"] == "ablation_suffix" and logged["config"]["n_jobs"] == 9
    assert logged["summary"]["n_completed"] == 9

    payload = report_payload(summary)
    for key, table in payload["tables"].items():
        assert logged_table(run_dir, logged["history"][key]) == json.loads(json.dumps(table)), key
    paired = logged_table(run_dir, logged["history"]["verdicts/paired"])
    assert [row[2:4] + row[-1:] for row in paired["data"]] == [
        ["suffix_mask_prob=1.0", "suffix_mask_prob=0.0", "supports"],
        ["suffix_mask_prob=1.0", "suffix_mask_prob=0.5", "supports"],
    ]
    claims = logged_table(run_dir, logged["history"]["verdicts/claims"])
    assert [row[1] for row in claims["data"]] == [c["verdict"] for c in summary["claims"]]
    for name in summary["plots"]:
        image = logged["history"][f"plots/{Path(name).stem}"]
        assert image["_type"] == "image-file" and (run_dir / "files" / image["path"]).is_file()
    outside = [p for p in (tmp_path / "home").rglob("*") if "wandb" in p.name]
    assert not outside, f"W&B wrote outside the report folder: {outside}"


def test_the_decode_view_loss_is_logged_as_a_table_and_a_chart_per_block(tmp_path, monkeypatch):
    """A sweep whose jobs logged the decode-view loss (``test_report_decode_view``'s): its last values as a table
    and one line chart per block, each chart's table file holding the mean curves."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = tmp_path / "sweep"
    for (strategy, seed), curve in CURVES.items():
        write_decode_view_csv(write_job(sweep, f"{strategy}-seed{seed}", strategy=strategy, seed=seed), curve)
    assert main([str(sweep), "--study", "main", "--out", str(tmp_path / "report"), "--wandb"]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    run_dir = tmp_path / "report" / summary["wandb"]["dir"]
    logged = offline_run(run_dir)
    final = logged_table(run_dir, logged["history"]["decode_view/final"])
    assert final["columns"] == ["arm", "n", "block 0", "block 1"]
    blockwise, classical = "blockwise, block_size=8", "classical, block_size=8"
    assert final["data"] == [[blockwise, 2, 1.5, 1.5], [classical, 2, 3.0, 2.0]]  # the last values, mean of 2 jobs
    chart = logged["history"]["decode_view/block0_table"]  # W&B logs a chart's table beside the chart's key
    assert logged_table(run_dir, chart)["data"] == [
        [199, 2.0, blockwise, 2],
        [399, 1.0, blockwise, 2],  # the one job that logged step 399
        [199, 4.0, classical, 2],
        [399, 3.0, classical, 2],
    ]
    assert "decode_view/block1" in logged["config"]["_wandb"]["visualize"]
