"""Committed records, reports and the shipped base's provenance name no path of the machine that wrote them:
paths inside the checkout are relative (``blocksft.folders.portable``), so a record reads the same anywhere."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from blocksft.folders import portable
from experiments.reporting.records import copy_record
from helpers.project import ROOT

#: An absolute path into a checkout: ``/<anything>/outputs/``, ``/<anything>/experiments/`` or ``/<anything>/conf``.
ABSOLUTE = re.compile(r"(?<![\w.~])/(?:[\w.+-]+/)+(?:outputs|experiments|conf)(?:/|\b)")


def committed_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "experiments", "docs", "README.md"], cwd=ROOT, capture_output=True)
    paths = [ROOT / line for line in listed.stdout.decode().splitlines()]
    return [p for p in paths if p.suffix in (".json", ".jsonl", ".csv", ".yaml", ".md") and p.is_file()]


def test_no_committed_record_or_report_names_a_machine_path():
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in committed_text_files()
        if (match := ABSOLUTE.search(path.read_text()))
    ]
    assert not offenders, offenders[:5]


def test_portable_makes_paths_inside_the_checkout_relative(tmp_path):
    root = tmp_path / "checkout"
    text = f'{{"dir": "{root}/outputs/studies/main/x", "cwd": "{root}", "other": "/data/set"}}'
    assert portable(text, root) == '{"dir": "outputs/studies/main/x", "cwd": ".", "other": "/data/set"}'


def test_a_kept_record_is_portable(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "results.json").write_text(f'{{"ckpt_path": "{ROOT}/outputs/studies/s/job/checkpoints/last.ckpt"}}')
    (job / "generations.jsonl").write_text('{"text": "7 + 5 = 12"}\n')
    copy_record(job, tmp_path / "record")
    assert (tmp_path / "record" / "results.json").read_text() == (
        '{"ckpt_path": "outputs/studies/s/job/checkpoints/last.ckpt"}'
    )
    assert (tmp_path / "record" / "generations.jsonl").read_text() == '{"text": "7 + 5 = 12"}\n'
