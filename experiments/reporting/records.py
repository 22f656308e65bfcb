"""A study's job records in git, so its report can be rebuilt and its sweep continued on another machine.

``python -m experiments.reporting.records keep <study>`` copies, for every finished job of
``outputs/studies/<study>`` (a sub-folder holding ``results.json``), the files a report and a re-run sweep read
(``RECORD_FILES``: results, the run record that claims the folder for its config, the training metrics,
the decoded answers) into ``experiments/records/<study>``; checkpoints, exports and logs stay behind.
``... restore <study>`` copies those job records back into ``outputs/studies/<study>``, for the jobs
that folder does not hold yet. A re-run of the study's sweep then skips the restored jobs
(``skip_completed``: a folder holding a completed run of the job's config), copies them where another
study shares them (``reuse_runs``, scope run), and runs only what is missing. A restored job has no
checkpoint, so a job that only decodes another run's training (scope training) trains it again.

``python experiments/report.py experiments/records/<study> --study <study>`` builds the report from the
records alone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from blocksft.folders import portable
from blocksft.runs.identity import RESULTS, RUN_RECORD

ROOT = Path(__file__).resolve().parents[2]

STUDIES = ROOT / "outputs" / "studies"
RECORDS = ROOT / "experiments" / "records"
#: Glob patterns, relative to a job folder, of what a record holds.
RECORD_FILES: tuple[str, ...] = (RESULTS, RUN_RECORD, "csv/**/metrics.csv", "generations.jsonl")
#: Record files whose text is made portable (``folders.portable``): no path of this machine is committed.
TEXT_SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".csv", ".yaml")


def finished_jobs(study_dir: Path) -> list[Path]:
    """The job folders of ``study_dir`` (its sub-folders, as a sweep writes them) holding ``results.json``,
    sorted."""
    return sorted(path.parent for path in study_dir.glob(f"*/{RESULTS}"))


def copy_record(job: Path, target: Path) -> None:
    """Replace ``target`` by the record files of ``job``, their paths inside the checkout made relative."""
    shutil.rmtree(target, ignore_errors=True)
    for pattern in RECORD_FILES:
        for source in sorted(job.glob(pattern)):
            destination = target / source.relative_to(job)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.suffix in TEXT_SUFFIXES:
                destination.write_text(portable(source.read_text()))
            else:
                shutil.copy2(source, destination)


def keep(study_dir: Path, records_dir: Path) -> int:
    """Copy the record of every finished job of ``study_dir`` into ``records_dir`` (the same relative
    folder; a job's earlier record is replaced); returns the number of jobs kept."""
    jobs = finished_jobs(study_dir)
    for job in jobs:
        copy_record(job, records_dir / job.relative_to(study_dir))
    return len(jobs)


def restore(records_dir: Path, study_dir: Path) -> tuple[int, int]:
    """Copy every job record of ``records_dir`` into ``study_dir`` where that job folder does not exist
    (a folder already there is never touched: it is this machine's, newer or unfinished); returns
    (restored, left as they were)."""
    restored = present = 0
    for record in finished_jobs(records_dir):
        target = study_dir / record.relative_to(records_dir)
        if target.exists():
            present += 1
            continue
        shutil.copytree(record, target)
        restored += 1
    return restored, present


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.reporting.records", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("action", choices=("keep", "restore"))
    parser.add_argument("study", help="the study's name: outputs/studies/<study>, experiments/records/<study>")
    parser.add_argument("--studies", type=Path, default=STUDIES, help="where sweeps write their studies")
    parser.add_argument("--records", type=Path, default=RECORDS, help="where the records are kept")
    args = parser.parse_args(argv)
    study_dir, records_dir = args.studies / args.study, args.records / args.study
    source = study_dir if args.action == "keep" else records_dir
    if not source.is_dir():
        sys.exit(f"{args.action} {args.study}: {source} is not a folder")
    if args.action == "keep":
        print(f"kept {keep(study_dir, records_dir)} finished jobs of {study_dir} in {records_dir}")
    else:
        restored, present = restore(records_dir, study_dir)
        print(f"restored {restored} jobs into {study_dir} ({present} already there, left as they were)")


if __name__ == "__main__":
    main()
