"""Where the study campaign stands: ``python -m experiments.run_studies --status [study ...]``.

For each study, the jobs its sweep files launch (Hydra's basic sweeper expands each file's
``hydra.sweeper.params``; a job's folder is its composed ``run_name``), and of those: finished (a completed
``results.json`` in ``outputs/studies/<study>`` or in ``experiments/records/<study>``), failed, and unfinished (a
folder holding ``checkpoints/last.ckpt`` and no completed result: running now, or interrupted, and then the same
campaign command resumes it). The time left is rough: the jobs left times the median wall time of the study's
finished jobs that it ran itself (not copied from another study). Jobs another study supplies (``reuse_runs``) take
less, so it is an upper bound there. Nothing is run or written.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from blocksft.folders import RESULTS, read_json
from blocksft.runs.compose import compose_config


@dataclass(frozen=True)
class StudyProgress:
    """One study's jobs (``run_name`` folders, in launch order) by state."""

    study: str
    planned: tuple[str, ...]
    finished: tuple[str, ...]
    failed: tuple[str, ...]
    unfinished: tuple[str, ...]  # a last.ckpt and no result: running now, or interrupted
    median_job_seconds: float | None  # over the finished jobs this study ran itself; None when there are none

    @property
    def left(self) -> int:
        return len(self.planned) - len(self.finished)

    @property
    def seconds_left(self) -> float | None:
        return None if self.median_job_seconds is None else self.left * self.median_job_seconds


def sweep_overrides(sweep: str) -> tuple[str, list[list[str]]]:
    """(study, each job's overrides) that ``python train.py -m +sweep=<sweep>`` launches, in launch order: the
    sweeper's params as Hydra composes them, so a sweep file that takes another's defaults also sweeps the axes
    it does not set."""
    sweep_config = compose_config([f"+sweep={sweep}"], return_hydra_config=True)
    params = sweep_config.hydra.sweeper.params or {}
    overrides = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    (jobs,) = BasicSweeper.split_arguments(overrides, None)
    return str(sweep_config.study), [list(job) for job in jobs]


def planned_jobs(sweep: str) -> tuple[str, tuple[str, ...]]:
    """(study, each job's ``run_name``) that ``python train.py -m +sweep=<sweep>`` launches, in launch order."""
    study, jobs = sweep_overrides(sweep)
    return study, tuple(str(compose_config([f"+sweep={sweep}", *job]).run_name) for job in jobs)


def _completed(folder: Path) -> dict | None:
    result = read_json(folder / RESULTS)
    return result if result is not None and result.get("status") == "completed" else None


def study_progress(study: str, sweeps: tuple[str, ...], studies_dir: Path, records_dir: Path) -> StudyProgress:
    """``study``'s progress over ``sweeps``, read from its job folders (``studies_dir/<study>``) and committed
    records (``records_dir/<study>``)."""
    planned: list[str] = []
    for sweep in sweeps:
        planned += [name for name in planned_jobs(sweep)[1] if name not in planned]
    finished, failed, unfinished, seconds = [], [], [], []
    for name in planned:
        folder = studies_dir / study / name
        result = _completed(folder) or _completed(records_dir / study / name)
        if result is not None:
            finished.append(name)
            if not result.get("reused_from") and result.get("wall_seconds"):
                seconds.append(float(result["wall_seconds"]))
        elif (read_json(folder / RESULTS) or {}).get("status"):
            failed.append(name)
        elif (folder / "checkpoints" / "last.ckpt").is_file():
            unfinished.append(name)
    median = statistics.median(seconds) if seconds else None
    return StudyProgress(study, tuple(planned), tuple(finished), tuple(failed), tuple(unfinished), median)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def format_progress(rows: list[StudyProgress]) -> str:
    """A table (one line a study, then a total) and one line for each failed or unfinished job."""
    header = f"{'study':<24} {'jobs':>5} {'done':>5} {'left':>5} {'median job':>11} {'time left':>10}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.study:<24} {len(row.planned):>5} {len(row.finished):>5} {row.left:>5} "
            f"{_duration(row.median_job_seconds):>11} {_duration(row.seconds_left):>10}"
        )
    known = [row.seconds_left for row in rows if row.seconds_left is not None]
    unknown = [row.study for row in rows if row.seconds_left is None and row.left]
    total = _duration(sum(known)) + (f" + {', '.join(unknown)} (no job finished yet)" if unknown else "")
    lines.append(
        f"{'total':<24} {sum(len(r.planned) for r in rows):>5} {sum(len(r.finished) for r in rows):>5} "
        f"{sum(r.left for r in rows):>5} {'':>11} {total:>10}"
    )
    for row in rows:
        lines += [f"{row.study}: failed: {name} (its results.json says why)" for name in row.failed]
        lines += [
            f"{row.study}: unfinished: {name} (running now, or resumes from its last.ckpt)" for name in row.unfinished
        ]
    lines.append(
        "time left: jobs left x the median finished job the study ran itself; rough, an upper bound where "
        "jobs are copied from another study"
    )
    return "\n".join(lines)
