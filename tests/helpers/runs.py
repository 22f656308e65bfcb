"""Running the task behind ``train.py`` from a test.

* ``run_in_process(overrides, output_dir)``: composes the config as ``train.py`` would and calls the task
  (``blocksft.runs.run.main``) in the test's own process, as lightning-hydra-template's tests call
  ``train(cfg)``. A smoke run takes about a second this way; a ``python train.py`` process pays 5-10 s of
  imports before it starts. The default for a test that needs a run.
* ``run_train(args, output_dir)`` / ``train_cli(args)``: ``python train.py`` in a subprocess, for what only a
  real command shows: its exit code and one-line stderr (``config error: ...``), what Hydra itself does at
  a run (``.hydra/*.yaml``, ``train.log``, the folder it chooses, multirun sweeps), a run SIGKILLed by a test
  callback (``helpers/callbacks.py``, importable by these processes as ``callbacks``), DDP's processes,
  and the W&B logger's own processes and files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from blocksft.runs.compose import compose_config
from blocksft.runs.job import main
from blocksft.runs.results import RunResult
from helpers.project import ROOT

#: The config of the session's shared smoke run (conftest's ``smoke_run``): the project's debug=smoke run
#: (the shipped base's tokenizer, data=chains, block 32)
SMOKE_RUN = ["debug=smoke"]
#: Hydra's job logging format (conf/hydra/default.yaml), for the log an in-process run returns
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"


# ----------------------------------------------------------------------------------------- subprocess
def subprocess_env(env: dict | None = None) -> dict[str, str]:
    """This process's environment for a ``train.py`` process: W&B offline and silent, Hydra's short errors,
    ``env`` on top, and ``tests/helpers`` put ahead of the inherited ``PYTHONPATH`` (never in its place:
    a worktree's ``src/`` stays ahead of the installed checkout), so ``+callbacks.x._target_=callbacks.X``
    names a test callback."""
    merged = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0", **(env or {})}
    paths = [str(ROOT / "tests" / "helpers"), (env or {}).get("PYTHONPATH"), os.environ.get("PYTHONPATH")]
    merged["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return merged


def run_train(
    args: list[str], tmp_path: Path, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python train.py <args>`` with its run directory in ``tmp_path``; never raises on failure.
    ``env`` adds or overrides environment variables (see ``subprocess_env``)."""
    command = [sys.executable, str(ROOT / "train.py"), *args]
    if not any(a.startswith("hydra.run.dir=") or a in ("-m", "--multirun") for a in args):
        command.append(f"hydra.run.dir={tmp_path}")
    return subprocess.run(command, cwd=ROOT, env=subprocess_env(env), capture_output=True, text=True, timeout=timeout)


def train_cli(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """``python train.py <args>`` with Hydra choosing the folder (unlike ``run_train``)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def config_errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("config error:")]


# ----------------------------------------------------------------------------------------- in process
@dataclass
class InProcessRun:
    result: RunResult | None  # what the task returned (None only where it returns nothing)
    log: str  # every log record of the run at INFO and above, one per line, as train.py's log shows them


def run_in_process(overrides: list[str], output_dir: Path) -> InProcessRun:
    """``python train.py <overrides> hydra.run.dir=<output_dir>``, in this process: the config composed as
    ``train.py`` composes it (``blocksft.runs.compose``, ``paths.output_dir=output_dir``), then the task.

    What the run raises is raised here (a failed job's traceback in the test's report); a config error is
    ``SystemExit(2)``, as in ``train.py`` (a test of that message runs ``run_train``). Only Hydra's own work
    is missing: no ``.hydra/`` files and no ``train.log`` in the folder, hence no ``hydra_files`` in its run
    record (tests of those run ``run_train``). The process state a run changes is put back afterwards
    (``isolated_run_state``), so a run never leaks into the next test."""
    cfg = compose_config(overrides, output_dir)
    records = logging.StreamHandler(stream := io.StringIO())
    records.setFormatter(logging.Formatter(LOG_FORMAT))
    with isolated_run_state():
        root = logging.getLogger()
        root.setLevel(logging.INFO)  # Hydra's job logging: every logger at INFO (pytest's capture sees them too)
        root.addHandler(records)
        try:
            result = main(cfg)
        finally:
            root.removeHandler(records)
    return InProcessRun(result, stream.getvalue())


@contextlib.contextmanager
def isolated_run_state():
    """Runs the block in the repository root, with W&B offline and silent, and puts back afterwards what a
    run changes in the process: the working directory, ``os.environ`` (``seed_everything`` sets
    ``PL_GLOBAL_SEED``, a W&B logger ``WANDB_MODE``), the random states (Python, NumPy, torch), torch's
    thread count, grad mode, default dtype, matmul precision and determinism flags, and the root logger's
    level and handlers."""
    cwd, environ = os.getcwd(), dict(os.environ)
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    threads, grad, dtype = torch.get_num_threads(), torch.is_grad_enabled(), torch.get_default_dtype()
    precision = torch.get_float32_matmul_precision()
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)
        torch.set_default_dtype(dtype)
        torch.set_float32_matmul_precision(precision)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        root.setLevel(level)
        root.handlers[:] = handlers


# ----------------------------------------------------------------------------------------- run folders
def copy_run(source: Path, destination: Path) -> Path:
    """A private copy of a run folder (a shared run is never written into: copy it, then write)."""
    shutil.copytree(source, destination, symlinks=True)
    return destination


def folder_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes: a folder changed in any way gets another digest."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
