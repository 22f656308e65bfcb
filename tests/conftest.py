"""Shared fixtures: the cores split between xdist workers, Hydra composition of the project's configs, and
one smoke-trained run shared by the whole session. Shared code (run helpers, paths) is in ``helpers/``."""

from __future__ import annotations

import os
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
from filelock import FileLock  # noqa: E402 (a dependency of torch)
from omegaconf import OmegaConf  # noqa: E402

from blocksft.folders import read_json  # noqa: E402
from blocksft.runs.compose import compose_config  # noqa: E402
from blocksft.runs.identity import register_resolvers  # noqa: E402
from helpers.runs import SMOKE_RUN, folder_digest, run_in_process  # noqa: E402

if _threads is not None:
    torch.set_num_threads(_threads)
register_resolvers()


@pytest.fixture
def compose_cfg():
    return compose_config


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The folder of one ``debug=smoke`` training run (``SMOKE_RUN``, in process), trained once per test session
    for the tests that only need some trained run: they read it, or evaluate it into a folder of their own.
    Under xdist the workers share it (the first to need it trains it, under a file lock). It is read-only: a
    test that writes into a run copies it first (``helpers.runs.copy_run``); teardown fails if its files changed."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this session's base folder, above the workers' own
    folder = shared / "smoke_run"
    with FileLock(str(shared / "smoke_run.lock")):
        if (read_json(folder / "results.json") or {}).get("status") != "completed":  # (a failed attempt: tried again)
            run_in_process(SMOKE_RUN, folder)
    before = folder_digest(folder)
    yield folder
    assert folder_digest(folder) == before, f"a test wrote into the shared smoke run {folder} (copy it first)"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """``trained_run(overrides)``: the folder of a run of ``overrides`` trained in process, once per test module
    (the same composed config, in whatever order its overrides come, is trained once). Read-only, as
    ``smoke_run``: a test that writes into it copies it first."""
    folders: dict[str, Path] = {}
    digests: dict[Path, str] = {}

    def trained(overrides: list[str]) -> Path:
        key = OmegaConf.to_yaml(compose_config(overrides))
        if key not in folders:
            folder = tmp_path_factory.mktemp("trained") / "run"
            run_in_process(overrides, folder)
            folders[key], digests[folder] = folder, folder_digest(folder)
        return folders[key]

    yield trained
    changed = [str(folder) for folder, digest in digests.items() if folder_digest(folder) != digest]
    assert not changed, f"a test wrote into a shared trained run: {changed} (copy it first)"
