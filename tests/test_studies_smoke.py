"""A debug=smoke version of every study (one seed) runs as a real Hydra multirun (a ``train.py -m`` process),
and its report is built (in process: ``experiments/report.py`` itself runs in test_report.py)."""

from __future__ import annotations

import json

import pytest

from experiments.bench import threshold as bench_threshold
from experiments.reporting import cli as report
from helpers.runs import run_train
from helpers.studies import EVAL_ONLY, EXPECTED_JOBS, STUDY_OF, sweep_jobs

#: Extra overrides of a study's smoke run, and its job count then: the budget curves at 5 and 10 steps, not 3,600;
#: tuning (and its extension to main's extra arms) at one learning rate and the EOS study at two of its values
#: (the sweep's shape, at a fraction of the jobs).
SMOKE_SWEEPS = {
    "budgets": ["budget.value=5,10"],
    "tuning": ["optim.optimizer.lr=1e-3"],
    "tuning_main_arms": ["optim.optimizer.lr=1e-3"],
    "eos_supervision": ["strategy.masking.tail_eos_in_loss=null,0"],
}
SMOKE_JOBS = {"budgets": 4, "tuning": 4, "tuning_main_arms": 2, "eos_supervision": 4}


def seeds_in_study(study: str) -> int:
    """Number of seeds a study file sweeps (``seed: 0,1,2`` -> 3; 1 if it sweeps none); the smoke run keeps one."""
    return max(1, len({override for job in sweep_jobs(study) for override in job if override.startswith("seed=")}))


@pytest.mark.slow
@pytest.mark.parametrize("study", sorted(EXPECTED_JOBS))
def test_smoke_study_runs_and_reports(study, tmp_path, request):
    trained = []
    if study in EVAL_ONLY:  # the model it decodes: the session's smoke training run
        trained = [f"ckpt_path={request.getfixturevalue('smoke_run')}"]
    extra = SMOKE_SWEEPS.get(study, [])
    result = run_train(
        ["-m", f"+sweep={study}", "debug=smoke", "seed=0", f"paths.log_dir={tmp_path}", *trained, *extra], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "studies").exists(), "a smoke sweep must not write into the real study's folder"
    sweep_dir = tmp_path / "debug" / "studies" / STUDY_OF.get(study, study)
    results = [json.loads(p.read_text()) for p in sweep_dir.glob("*/results.json")]
    assert len(results) == SMOKE_JOBS.get(study, EXPECTED_JOBS[study] // seeds_in_study(study))
    assert all(r["status"] == "completed" and r["study"] == STUDY_OF.get(study, study) for r in results)
    if study == "block_size_consistency":
        assert all(set(r["accuracy_by_decode_block"]) == {"4", "8", "16", "64"} for r in results)

    assert report.main([str(sweep_dir)]) == 0
    summary = json.loads((sweep_dir / "report" / "summary.json").read_text())
    markdown = (sweep_dir / "report" / "report.md").read_text()
    assert "Paper comparison" in markdown and f"{len(results)} completed" in markdown
    assert summary["plots"], "the report draws at least one plot"
    if study == "block_size_consistency":
        assert (sweep_dir / "report" / "heatmap.png").stat().st_size > 0
    if study == "threshold_decoding":
        assert bench_threshold.main(["--study", str(sweep_dir)]) == 0
        rows = [line for line in (sweep_dir / "threshold_report.md").read_text().splitlines() if line.startswith("| ")]
        assert [row.split(" | ")[0] for row in rows[1:]] == ["| exact", "| 0.5", "| 0.7", "| 0.9", "| 0.95"]
        assert all(r["mode"] == "eval" and r["decode_cost"]["problems"] == 16 for r in results)
