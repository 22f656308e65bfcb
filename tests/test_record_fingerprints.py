"""Every committed study record keeps its identity: composing its job's overrides with today's ``conf/``
gives the fingerprint the job recorded when it ran. A study re-run therefore skips (or reuses) its
finished jobs, and moving a module or deduplicating a config file cannot silently make them new
computations. The recorded config's own view must also hash to the recorded fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from blocksft.runs.compose import compose_config
from blocksft.runs.identity import differing_keys, fingerprint, identity_view, job_identity, short_hash
from helpers.project import ROOT

RECORDS = sorted((ROOT / "experiments" / "records").rglob("run_config.json"))


def test_there_are_committed_records():
    assert len(RECORDS) >= 60


@pytest.mark.parametrize("record_path", RECORDS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_a_committed_record_recomputes_its_fingerprint(record_path: Path):
    record = json.loads(record_path.read_text())
    stored = record["config_fingerprint"]
    assert fingerprint(identity_view(record["config"])) == stored, (
        "the recorded config no longer hashes to its fingerprint"
    )
    overrides = yaml.safe_load(record["hydra_files"]["overrides.yaml"])
    view, digest = job_identity(compose_config(overrides))
    assert digest == stored, (
        f"{overrides} composes to {short_hash(digest)}, recorded {short_hash(stored)}: "
        f"{differing_keys(identity_view(record['config']), view)}"
    )
