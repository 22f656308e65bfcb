"""experiments/reporting/records.py (``python -m experiments.reporting.records keep|restore <study>``): a study's
job records go to git without checkpoints, come back without overwriting this machine's folders, and a
restored job is skipped by a re-run of its sweep."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blocksft.runs.identity import completed_results
from experiments.reporting import records as study_records
from helpers.project import ROOT
from helpers.records import record_run, view_of


def job_folder(study: Path, name: str, finished: bool = True) -> Path:
    """A job folder as a sweep leaves it: records, a checkpoint, an export, logs, Hydra's files."""
    job = study / name
    for relative, text in {
        "run_config.json": "{}",
        "csv/version_0/metrics.csv": "step,train/loss\n1,2.0\n",
        "generations.jsonl": "{}\n",
        "checkpoints/last.ckpt": "weights",
        "export/model.safetensors": "weights",
        "train.log": "log",
        ".hydra/overrides.yaml": "- seed=0\n",
    }.items():
        (job / relative).parent.mkdir(parents=True, exist_ok=True)
        (job / relative).write_text(text)
    if finished:
        (job / "results.json").write_text(json.dumps({"status": "completed"}))
    return job


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def test_keep_copies_the_records_of_finished_jobs_only(tmp_path: Path):
    study, records = tmp_path / "studies" / "s", tmp_path / "records" / "s"
    job_folder(study, "a-seed0")
    job_folder(study, "a-seed1", finished=False)
    assert study_records.keep(study, records) == 1
    assert files_under(records) == {
        "a-seed0/results.json",
        "a-seed0/run_config.json",
        "a-seed0/csv/version_0/metrics.csv",
        "a-seed0/generations.jsonl",
    }


def test_keep_replaces_a_jobs_earlier_record(tmp_path: Path):
    study, records = tmp_path / "studies" / "s", tmp_path / "records" / "s"
    job = job_folder(study, "a-seed0")
    (records / "a-seed0" / "csv" / "version_9").mkdir(parents=True)
    (records / "a-seed0" / "csv" / "version_9" / "metrics.csv").write_text("stale")
    (job / "results.json").write_text(json.dumps({"status": "failed"}))
    study_records.keep(study, records)
    assert not (records / "a-seed0" / "csv" / "version_9").exists()
    assert json.loads((records / "a-seed0" / "results.json").read_text()) == {"status": "failed"}


def test_restore_adds_missing_jobs_and_never_touches_a_folder_already_there(tmp_path: Path):
    study, records = tmp_path / "studies" / "s", tmp_path / "records" / "s"
    job_folder(study, "a-seed0")
    job_folder(study, "a-seed1")
    study_records.keep(study, records)
    (study / "a-seed0" / "results.json").write_text("mine")
    shutil.rmtree(study / "a-seed1")
    assert study_records.restore(records, study) == (1, 1)
    assert (study / "a-seed0" / "results.json").read_text() == "mine"
    assert files_under(study / "a-seed1") == files_under(records / "a-seed1")


def test_a_restored_job_is_a_completed_run_of_its_config(tmp_path: Path):
    overrides = ["study=s", "seed=3"]
    study, records = tmp_path / "studies" / "s", tmp_path / "records" / "s"
    job = record_run(study / "blockwise-seed3", overrides)
    (job / "checkpoints").mkdir()
    (job / "checkpoints" / "last.ckpt").write_text("weights")
    study_records.keep(study, records)
    restored = tmp_path / "elsewhere" / "s"
    assert study_records.restore(records, restored) == (1, 0)
    assert not (restored / "blockwise-seed3" / "checkpoints").exists()
    _, digest = view_of(overrides)
    assert completed_results(restored / "blockwise-seed3", "train", digest) is not None


@pytest.mark.parametrize("action", ["keep", "restore"])
def test_a_missing_study_folder_is_one_line_naming_it(action: str, tmp_path: Path):
    with pytest.raises(SystemExit, match=f"{action} nothing: .* is not a folder"):
        study_records.main([action, "nothing", "--studies", str(tmp_path / "a"), "--records", str(tmp_path / "b")])


def test_the_documented_command_keeps_a_study(tmp_path: Path):
    job_folder(tmp_path / "studies" / "s", "a-seed0")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.reporting.records",
            "keep",
            "s",
            "--studies",
            str(tmp_path / "studies"),
            "--records",
            str(tmp_path / "records"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "kept 1 finished jobs" in done.stdout and (tmp_path / "records" / "s" / "a-seed0" / "results.json").is_file()
