"""Job folders as a finished study job leaves them (its run record and results.json), without running it."""

from __future__ import annotations

import json
from pathlib import Path

from blocksft.runs.compose import compose_config
from blocksft.runs.identity import RESULTS, RUN_RECORD, job_identity

#: the config the records are made of: a debug=smoke blockwise run (block 16, seed 2)
SMOKE = ["debug=smoke", "strategy=blockwise", "block=16", "seed=2", "progress.every_n_steps=0"]


def view_of(overrides: list[str]) -> tuple[dict, str]:
    """(identity view, fingerprint) of ``SMOKE`` with ``overrides``."""
    return job_identity(compose_config([*SMOKE, *overrides]))


def record_run(folder: Path, overrides: list[str], status: str = "completed", mode: str = "train") -> Path:
    """A job folder as a finished run leaves it: its run record (config + fingerprint) and results.json."""
    view, digest = view_of(overrides)
    folder.mkdir(parents=True)
    (folder / RUN_RECORD).write_text(json.dumps({"config_fingerprint": digest, "config": view}))
    (folder / RESULTS).write_text(
        json.dumps({"status": status, "mode": mode, "study": view.get("study"), "accuracy": 0.5})
    )
    return folder
