"""No data loss when a sweep dies: a study killed with SIGKILL in its second job, then run again.

Finished jobs are kept (skipped, byte for byte), the killed job resumes from its checkpoint, a re-run
with another config reuses nothing (refused in one line, nothing written), and the report counts each
job once, also when a job has been evaluated again (``<job>/eval/...``).
"""

from __future__ import annotations

import json

import pytest

from experiments.reporting import cli as report
from helpers.runs import run_train, train_cli

STUDY = "ablation_suffix"  # 3 jobs at one seed: suffix_mask_prob 1.0, 0.5, 0.0 (in this order)
JOBS = [f"blockwise-B16-suffix{p}-seed0" for p in ("1.0", "0.5", "0.0")]


@pytest.mark.slow
def test_a_sigkilled_sweep_rerun_keeps_finished_jobs_resumes_the_killed_one_and_reuses_nothing_else(tmp_path):
    marker = tmp_path / "killed-once"
    sweep = [
        "-m",
        f"+sweep={STUDY}",
        "debug=smoke",
        "seed=0",
        f"paths.log_dir={tmp_path}",
        "checkpoint.every_n_train_steps=2",
        "+callbacks.kill._target_=callbacks.KillOnceAtStep",
        "+callbacks.kill.step=5",
        "+callbacks.kill.job=suffix0.5",
        f"+callbacks.kill.marker={marker}",
    ]
    study_dir = tmp_path / "debug" / "studies" / STUDY
    first, killed, never_started = (study_dir / job for job in JOBS)

    died = run_train(sweep, tmp_path)
    assert died.returncode == -9, died.stderr[-2000:]
    assert json.loads((first / "results.json").read_text())["status"] == "completed"
    assert (killed / "checkpoints" / "last.ckpt").is_file() and not (killed / "results.json").exists()
    assert not never_started.exists()
    kept = (first / "results.json").read_bytes()

    other = run_train([*sweep, "optim.optimizer.lr=0.01"], tmp_path)
    assert other.returncode == 2
    errors = [line for line in other.stderr.splitlines() if line.startswith("config error:")]
    assert len(errors) == 1 and JOBS[0] in errors[0] and "optim.optimizer.lr: 0.001 -> 0.01" in errors[0]
    assert (first / "results.json").read_bytes() == kept
    assert not (killed / "results.json").exists() and not never_started.exists()

    again = run_train(sweep, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    output = again.stdout + again.stderr
    assert f"skipping: {first}" in output and "resuming from" in output
    assert (first / "results.json").read_bytes() == kept
    resumed = json.loads((killed / "results.json").read_text())
    assert resumed["status"] == "completed" and resumed["steps"] == 10 and resumed["ckpt_path"].endswith("last.ckpt")
    assert json.loads((never_started / "results.json").read_text())["status"] == "completed"

    evaluated = train_cli(["mode=eval", f"ckpt_path={first}", "debug=smoke"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert list(first.glob("eval/*/results.json")), "the evaluation is written inside the job"

    assert report.main([str(study_dir)]) == 0  # (in process: report.py's script runs in test_report.py)
    summary = json.loads((study_dir / "report" / "summary.json").read_text())
    assert (summary["n_jobs"], summary["n_completed"], summary["n_failed"]) == (3, 3, 0)
    assert sorted(summary["wall_seconds_per_job"]) == sorted(JOBS)
