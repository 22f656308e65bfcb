"""Shared fixtures: Hydra composition of the project's configs, and CLI runs of train.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def share_cores_between_workers() -> int | None:
    """Under pytest-xdist (``-n``), the cores are split between the workers: torch in each worker and in the
    ``train.py`` runs it starts (``OMP_NUM_THREADS`` is inherited) uses its share, instead of every worker
    using every core. Returns the threads per worker, or None outside xdist or where the user set them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return None
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


_threads = share_cores_between_workers()  # before torch is imported (through blocksft below)

import torch  # noqa: E402
from blocksft.runs.compose import compose_config  # noqa: E402, F401 (the fixture below and the test modules use it)
from blocksft.runs.identity import register_resolvers  # noqa: E402

if _threads is not None:
    torch.set_num_threads(_threads)
register_resolvers()

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
#: The project's default before the shipped base (tiny char model, one-operation arithmetic, 32-token
#: responses, block 8): tests whose expectations are in those units (block counts, NFE) pin it.
PREVIOUS_DEFAULT = ["model=tiny", "data=arithmetic", "block=8"]


def run_train(args: list[str], tmp_path: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python train.py <args>`` with its run directory in ``tmp_path``; never raises on failure.
    ``env`` adds or overrides environment variables."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0", **(env or {})}
    command = [sys.executable, str(ROOT / "train.py"), *args]
    if not any(a.startswith("hydra.run.dir=") or a in ("-m", "--multirun") for a in args):
        command.append(f"hydra.run.dir={tmp_path}")
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def compose_cfg():
    return compose_config
