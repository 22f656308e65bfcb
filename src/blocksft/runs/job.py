"""One job of ``train.py``: ``plan_job`` decides what it is, ``main`` carries it out for the command line.

``plan_job(cfg)`` validates the config (once) and decides, in this order, whether the job is

* ``skip``: its folder holds a completed run of this config (``skip_completed``);
* ``copy``: another study's completed run is this computation (``reuse_runs``; ``blocksft.runs.reuse``), or,
  for a token budget, the steps run that spent exactly that budget under the same schedule;
* ``adopt_training``: another study trained this model and kept its last checkpoint, so the job copies
  that training and only decodes;
* ``run``: train and decode (``mode=train``) or decode (``mode=eval``), by ``blocksft.runs.run.run``.

This module imports no Lightning: a config error, a skipped or a copied job never pays its start-up.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from omegaconf import DictConfig, open_dict

from blocksft.config.validation import validate_config, with_eval_benchmark
from blocksft.data.batch_plan import world_size
from blocksft.errors import ConfigError, DataError
from blocksft.folders import RESULTS, read_json
from blocksft.runs.identity import (
    apply_run_record,
    check_folder,
    completed_results,
    job_identity,
    recorded_config,
    remove_unclaimed_folder,
    restore_hydra_files,
    short_hash,
)
from blocksft.runs.results import FAILED, RunResult, git_commit, read_result, write_result
from blocksft.runs.reuse import adopt_run, adopt_training, find_equivalent_run

log = logging.getLogger("blocksft")

Action = Literal["skip", "copy", "adopt_training", "run"]


@dataclass(frozen=True)
class JobPlan:
    """What a job does. ``cfg``: the config it runs (a recorded run's keys applied for ``mode=eval``; for an
    evaluation preset, its benchmark's data and split); ``digest``: the fingerprint of the job as composed
    (its folder's owner); ``source``: the run to copy or whose training to adopt; ``completed``: the
    ``results.json`` of a skipped job; ``because``: why a run of another config is this computation."""

    action: Action
    cfg: DictConfig
    digest: str
    source: Path | None = None
    completed: dict | None = None
    because: str | None = None


def plan_job(cfg: DictConfig) -> JobPlan:
    """Validate ``cfg`` and decide the job (module docstring). Raises ``ConfigError`` (one line) for a bad
    value or a folder that holds another config's run."""
    cfg = apply_run_record(cfg)  # mode=eval of a recorded run: labels and model from that run
    validate_config(cfg)
    view, digest = job_identity(cfg)
    output_dir = Path(cfg.paths.output_dir)
    check_folder(output_dir, view, digest)
    if cfg.get("skip_completed", True) and (done := completed_results(output_dir, cfg.mode, digest)) is not None:
        return JobPlan("skip", cfg, digest, completed=done)
    if (source := reusable_run(cfg, view, output_dir)) is not None:
        return JobPlan("copy", cfg, digest, source=source)
    if (found := steps_run_of_token_budget(cfg, output_dir)) is not None:
        source, steps = found
        return JobPlan(
            "copy",
            cfg,
            digest,
            source=source,
            because=f"budget=steps at {steps} steps spent exactly budget.value={cfg.budget.value} "
            f"eligible tokens, with this token budget's LR schedule",
        )
    if (source := reusable_run(cfg, view, output_dir, scope="training")) is not None:
        return JobPlan("adopt_training", cfg, digest, source=source)
    if (evaluated := with_eval_benchmark(cfg)) is not cfg:  # mode=eval of a preset: its benchmark's data and split
        validate_config(evaluated)
    return JobPlan("run", evaluated, digest)


def carry_out(plan: JobPlan) -> RunResult:
    """Do what ``plan`` says; returns the job's ``RunResult`` (written to its folder's ``results.json``)."""
    output_dir = Path(plan.cfg.paths.output_dir)
    if plan.action == "skip":
        log.info(
            "skipping: %s already holds a completed results.json of this config (%s)",
            output_dir,
            short_hash(plan.digest),
        )
        return RunResult.from_json(plan.completed)
    if plan.action == "copy":
        return adopt_run(plan.source, output_dir, recorded_config(plan.cfg), plan.digest, because=plan.because)
    from blocksft.runs.run import run  # Lightning is imported only by a job that trains or decodes

    if plan.action == "adopt_training":
        trained_by = adopt_training(plan.source, output_dir, recorded_config(plan.cfg), plan.digest, git_commit())
        return run(plan.cfg, trained_by=trained_by)
    return run(plan.cfg)


def main(cfg: DictConfig) -> RunResult | None:
    """The command-line task: plan the job and carry it out. A ``ConfigError`` is one line on stderr and exit 2,
    and removes the folder if this command only just created it; a ``DataError`` (its message names the file)
    or any other failure is recorded in ``results.json`` so a sweep report lists the job. Loggers (W&B) are
    always closed."""
    output_dir = Path(cfg.paths.output_dir)
    plan = None
    try:
        plan = plan_job(cfg)
        return carry_out(plan)
    except ConfigError as error:  # Hydra created the folder (and log_dir, if new) for this job: leave none behind
        remove_unclaimed_folder(output_dir, Path(os.path.abspath(cfg.paths.log_dir)).parent)
        restore_hydra_files(output_dir)
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(2)
    except DataError as error:
        record_failure(plan.cfg if plan else apply_run_record(cfg), error)
        print(f"data error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        record_failure(plan.cfg if plan else apply_run_record(cfg), error)
        raise
    finally:
        close_loggers()


def may_reuse(cfg: DictConfig, scope: str = "run") -> bool:
    """Whether the job may take another run's work: a single-process study training job with ``reuse_runs``;
    for ``scope="training"`` also one that resumes from its own folder (no ``ckpt_path``, ``resume``)."""
    if (
        not cfg.get("reuse_runs", True)
        or cfg.get("study") is None
        or cfg.mode != "train"
        or world_size(cfg.trainer) > 1
    ):
        return False
    return scope != "training" or (cfg.ckpt_path is None and cfg.get("resume", True))


def reusable_run(cfg: DictConfig, view: dict, output_dir: Path, scope: str = "run") -> Path | None:
    """Another study's completed run of this computation (``scope="run"``), or that trained this model and
    kept its last checkpoint (``scope="training"``), when the job ``may_reuse`` (``blocksft.runs.reuse``);
    else None."""
    if not may_reuse(cfg, scope):
        return None
    return find_equivalent_run(Path(cfg.paths.root_dir) / "studies", view, output_dir, scope)


def steps_run_of_token_budget(cfg: DictConfig, output_dir: Path) -> tuple[Path, int] | None:
    """For a study job with ``budget.kind=tokens`` (``count: eligible``): (another study's completed run of
    this config but ``budget={kind: steps, value: S}``, S) where S is this budget's expected step count (the
    length of its LR schedule), if that run trained S steps and spent exactly ``budget.value`` eligible
    tokens; else None. That run is this job's computation: the token budget stops at the first step whose
    running count reaches ``budget.value``, every step counts at least one eligible token, so it stops at
    that run's last step, after the same steps under the same schedule (the main study's blockwise seed 0:
    the same export bytes both ways). ``reusable_run``'s conditions apply; S needs the data, so it is
    computed only for a job that may reuse."""
    if cfg.mode != "train" or cfg.budget.kind != "tokens" or cfg.budget.get("count", "eligible") != "eligible":
        return None
    if not may_reuse(cfg):
        return None
    from blocksft.runs.run import token_budget_schedule_steps  # builds the tokenizer and the data

    steps = token_budget_schedule_steps(cfg)
    as_steps = copy.deepcopy(cfg)
    with open_dict(as_steps):
        as_steps.budget = {"kind": "steps", "value": steps}
    source = reusable_run(as_steps, job_identity(as_steps)[0], output_dir)
    if source is None:
        return None
    spent = read_result(source / RESULTS)
    exact = spent is not None and spent.steps == steps and spent.eligible_tokens == cfg.budget.value
    return (source, steps) if exact else None


def close_loggers() -> None:
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def record_failure(cfg: DictConfig, error: BaseException) -> None:
    """Write ``results.json`` with ``status: failed`` so a sweep report can list the failed job
    (never over a completed result)."""
    path = Path(cfg.paths.output_dir) / RESULTS
    if (read_json(path) or {}).get("status") == "completed":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_result(
        path,
        RunResult(
            status=FAILED,
            error=f"{type(error).__name__}: {error}",
            mode=cfg.mode,
            strategy=cfg.strategy.name,
            block_size=cfg.block.size,
            seed=cfg.seed,
            git_commit=git_commit(),
        ),
    )
