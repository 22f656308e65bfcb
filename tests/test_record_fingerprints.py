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
#: The default task these records ran on before the current one (data=chains, block 32): a record whose data is
#: that task is composed with these overrides first, unless its own overrides choose the block (a blockwise arm
#: does), and its study's sweep file as it was then (``multirun_sweeps/previous/``) where the study changed.
CHAINS_DEFAULT = {"data": "chains", "block": "32"}
PREVIOUS_SWEEPS = {"block_size_consistency"}


def recorded_overrides(record: dict) -> list[str]:
    """The job's overrides, with the previous default's choices the job took from the root config."""
    overrides = yaml.safe_load(record["hydra_files"]["overrides.yaml"])
    if record["config"]["data"]["name"] != CHAINS_DEFAULT["data"]:
        return overrides
    overrides = [
        f"+sweep=previous/{item.split('=', 1)[1]}"
        if item.startswith("+sweep=") and item.split("=", 1)[1] in PREVIOUS_SWEEPS
        else item
        for item in overrides
    ]
    keys = {item.lstrip("+~").split("=", 1)[0] for item in overrides}
    implied = [] if "data" in keys else [f"data={CHAINS_DEFAULT['data']}"]
    if "block" not in keys and not any(item.startswith("+arm=blockwise_b") for item in overrides):
        implied.append(f"block={CHAINS_DEFAULT['block']}")
    return implied + overrides


def test_there_are_committed_records():
    assert len(RECORDS) >= 60


@pytest.mark.parametrize("record_path", RECORDS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_a_committed_record_recomputes_its_fingerprint(record_path: Path):
    record = json.loads(record_path.read_text())
    stored = record["config_fingerprint"]
    assert fingerprint(identity_view(record["config"])) == stored, (
        "the recorded config no longer hashes to its fingerprint"
    )
    overrides = recorded_overrides(record)
    view, digest = job_identity(compose_config(overrides))
    assert digest == stored, (
        f"{overrides} composes to {short_hash(digest)}, recorded {short_hash(stored)}: "
        f"{differing_keys(identity_view(record['config']), view)}"
    )
