"""The study campaign (``python -m experiments.run_studies``): no study after tuning starts while ``conf/arm/`` does
not hold the tuning study's complete, interior Selection; each study restores, sweeps, keeps and reports, and keeps
its records and report when a sweep fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blocksft.runs.compose import compose_config
from experiments import campaign_status, run_studies
from experiments.campaign_status import StudyProgress, format_progress, planned_jobs, study_progress
from experiments.run_studies import CAMPAIGN, TUNED_ARMS, arm_setting, untuned_arms
from helpers.project import ROOT

ARM = """# @package _global_
defaults:
  - override /strategy: {strategy}
optim:
  optimizer:
    lr: {lr}
  ema_decay: {ema}
"""


def arms_folder(tmp_path: Path, lr: float = 2e-3, ema: str = "0.995") -> Path:
    for strategy in TUNED_ARMS:
        (tmp_path / f"{strategy}.yaml").write_text(ARM.format(strategy=strategy, lr=lr, ema=ema))
    return tmp_path


def selected(lr=2e-3, ema=0.995, complete=True, edges=()) -> dict:
    arm = {"best": {"lr": lr, "ema_decay": ema, "mean": 0.7, "n": 2}, "complete": complete, "edges": list(edges)}
    return {"selection": [{"strategy": s, "knobs": ["lr", "ema_decay"], **arm} for s in TUNED_ARMS]}


def test_the_shipped_arms_are_read_as_the_report_writes_settings():
    for strategy in TUNED_ARMS:
        setting = arm_setting(strategy)
        assert set(setting) == {"lr", "ema_decay"} and setting["lr"] > 0


def test_arms_at_the_complete_interior_selection_may_run(tmp_path):
    assert untuned_arms(selected(), arms_folder(tmp_path)) == []
    no_average = tmp_path / "no_average"
    no_average.mkdir()
    assert untuned_arms(selected(ema=0.0), arms_folder(no_average, ema="null")) == []  # the report's 0.0


@pytest.mark.parametrize(
    ("summary", "reason"),
    [
        ({}, "has not finished every setting"),
        (selected(complete=False), "has not finished every setting"),
        (selected(edges=[{"knob": "lr", "value": 2e-3, "side": "highest"}]), "lr=0.002 (highest tried)"),
        (selected(lr=4e-3), "sets {'lr': 0.002, 'ema_decay': 0.995}, the Selection {'lr': 0.004"),
    ],
)
def test_a_study_after_tuning_refuses_untuned_arms(tmp_path, summary, reason):
    problems = untuned_arms(summary, arms_folder(tmp_path))
    assert len(problems) == len(TUNED_ARMS) and all(reason in line for line in problems)


def test_main_refuses_to_start_without_the_tuned_arms(tmp_path, monkeypatch, capsys):
    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "summary.json").write_text(json.dumps(selected(complete=False)))
    monkeypatch.setattr(run_studies, "RESULTS", tmp_path)
    monkeypatch.setattr(run_studies, "run_study", lambda *a: pytest.fail("a study started"))
    assert run_studies.main(["main"]) == 2
    assert "main: not started, conf/arm/ is not tuned" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_studies.main(["no_such_study"])


def test_each_study_restores_sweeps_keeps_and_reports_and_keeps_them_when_a_sweep_fails(tmp_path, monkeypatch):
    commands: list[tuple[str, ...]] = []

    def fake_run(*command: str) -> int:
        commands.append(command[1:])
        return 1 if command[-1] == "+sweep=main_arms" else 0

    monkeypatch.setattr(run_studies, "run", fake_run)
    monkeypatch.setattr(run_studies, "ROOT", tmp_path)
    monkeypatch.setattr(run_studies, "RESULTS", tmp_path / "results")
    (tmp_path / "experiments" / "records" / "main").mkdir(parents=True)
    (tmp_path / "outputs" / "studies" / "main").mkdir(parents=True)
    assert run_studies.run_study("main", CAMPAIGN["main"]) == 1
    assert [c[:4] for c in commands] == [
        ("-m", "experiments.reporting.records", "restore", "main"),
        ("train.py", "-m", "+sweep=main"),
        ("train.py", "-m", "+sweep=main_arms"),
        ("-m", "experiments.reporting.records", "keep", "main"),
        ("experiments/report.py", str(tmp_path / "experiments" / "records" / "main"), "--study", "main"),
    ]


def test_every_campaign_sweep_file_exists_and_names_its_study():
    for study, sweeps in CAMPAIGN.items():
        for sweep in sweeps:
            assert (ROOT / "multirun_sweeps" / f"{sweep}.yaml").is_file(), sweep
            assert compose_config([f"+sweep={sweep}"]).study == study, sweep  # main_arms takes main's study


def test_a_campaign_study_holds_only_records_of_the_current_default_task():
    # the campaign restores experiments/records/<study> into the folder its sweep writes; a record of another
    # task there would claim a job's folder for another config and stop the sweep (check_folder)
    default_data = compose_config([]).data.name
    for study in CAMPAIGN:
        for record in sorted((ROOT / "experiments" / "records" / study).glob("*/run_config.json")):
            assert json.loads(record.read_text())["config"]["data"]["name"] == default_data, record


def test_the_planned_jobs_are_the_ones_hydra_launches():
    study, names = planned_jobs("main_arms")
    assert study == "main"
    expected = [f"{arm}-B16-seed{s}" for s in range(5) for arm in ("classical_elbo", "classical_equal_updates")]
    assert list(names) == expected


def write_result(folder: Path, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(fields))


def test_progress_counts_finished_failed_and_interrupted_jobs(tmp_path, monkeypatch):
    names = ("a", "b", "copied", "failed", "interrupted", "not_started")
    monkeypatch.setattr(campaign_status, "planned_jobs", lambda sweep: ("s", names))
    studies, records = tmp_path / "studies", tmp_path / "records"
    write_result(studies / "s" / "a", status="completed", wall_seconds=600.0, reused_from=None)
    write_result(records / "s" / "b", status="completed", wall_seconds=720.0)  # kept, not restored yet
    write_result(studies / "s" / "copied", status="completed", wall_seconds=50.0, reused_from={"run": "x"})
    write_result(studies / "s" / "failed", status="failed", error="RuntimeError: boom")
    (studies / "s" / "interrupted" / "checkpoints").mkdir(parents=True)
    (studies / "s" / "interrupted" / "checkpoints" / "last.ckpt").write_bytes(b"")
    write_result(studies / "s" / "unplanned", status="completed", wall_seconds=1.0)
    row = study_progress("s", ("s", "s"), studies, records)  # a job named by two sweep files counts once
    assert row.planned == names
    assert row.finished == ("a", "b", "copied")
    assert (row.failed, row.unfinished) == (("failed",), ("interrupted",))
    assert row.median_job_seconds == 660.0  # the copied job's wall time is another study's
    assert (row.left, row.seconds_left) == (3, 1980.0)
    text = format_progress([row, StudyProgress("t", ("x",), (), (), (), None)])
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines()}
    assert lines["s"] == ["6", "3", "3", "11m", "33m"]  # 660 s a job, 3 jobs left
    assert lines["t"] == ["1", "0", "1", "-", "-"]
    assert "t: no job finished yet" not in text and "+ t (no job finished yet)" in text
    assert (
        "s: failed: failed" in text
        and "s: unfinished: interrupted (running now, or resumes from its last.ckpt)" in text
    )


def test_status_runs_nothing(monkeypatch, capsys):
    monkeypatch.setattr(run_studies, "run", lambda *command: pytest.fail(f"ran {command}"))
    row = StudyProgress("main", ("j",), ("j",), (), (), 60.0)
    monkeypatch.setattr(run_studies, "study_progress", lambda study, sweeps, studies, records: row)
    assert run_studies.main(["--status", "main"]) == 0
    assert "main" in capsys.readouterr().out
