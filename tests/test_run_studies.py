"""The study campaign (``python -m experiments.run_studies``): no study after tuning starts while ``conf/arm/`` does
not hold the tuning study's complete, interior Selection; each study restores, sweeps, keeps and reports, and keeps
its records and report when a sweep fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blocksft.runs.compose import compose_config
from experiments import run_studies
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
