"""The task behind ``train.py``: validate, build, train, decode, score, write results.

``run(cfg)`` returns the ``RunResult`` it also writes to ``<output_dir>/results.json`` (atomically).
``main(cfg)`` wraps it for the command line: a ``ConfigError`` becomes one line on stderr and exit 2;
loggers (W&B) are always closed, even when the job fails.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EMAWeightAveraging, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from blocksft.runs.checkpointing import (AtomicCheckpointIO, FlushLoggersOnCheckpoint, checkpoint_step,
                                    keep_csv_rows_on_resume, resume_checkpoint)
from blocksft.config.validation import check_runtime, decode_block_lengths, validate_config, with_eval_benchmark
from blocksft.data.documents import datamodule_from_config
from blocksft.data.datamodule import DiffusionSFTDataModule
from blocksft.data.batch_plan import BatchPlan, plan_batches, world_size
from blocksft.errors import ConfigError, DataError
from blocksft.evaluation.metrics import evaluation_fields
from blocksft.training.heldout_loss import DocumentLossModule
from blocksft.masking import MaskingStrategy
from blocksft.models import export_model, load_run_model
from blocksft.training.module import DecodeSettings, DiffusionSFTModule, ScheduleSettings
from blocksft.runs.progress import progress_callbacks
from blocksft.runs.reuse import AdoptedTraining, adopt_run, adopt_training, find_equivalent_run
from blocksft.runs.results import FAILED, RunResult, primary_decode_length, read_result, write_jsonl_atomic, write_result
from blocksft.runs.identity import (RESULTS, apply_run_record, check_folder, completed_results, identity_fields,
                                   job_identity, read_json, recorded_config, remove_unclaimed_folder,
                                   restore_hydra_files, short_hash, write_run_record)

log = logging.getLogger("blocksft")


@functools.cache
def git_commit() -> str | None:
    """HEAD of the checkout this package was imported from, read at the first call of the process: a
    multirun's jobs all run the code imported at its start, so a commit made while a sweep runs is not theirs."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def build_loggers(cfg: DictConfig) -> list:
    loggers = []
    for name, logger_cfg in (cfg.logger or {}).items():
        if name == "wandb" and not os.environ.get("WANDB_API_KEY") and not (Path.home() / ".netrc").exists():
            os.environ.setdefault("WANDB_MODE", "offline")
        loggers.append(instantiate(logger_cfg))
    return loggers


def checkpoint_plugins(cfg: DictConfig) -> list:
    """Atomic checkpoint writes, except where the distribution strategy writes its own (sharded) checkpoints."""
    distribution = cfg.trainer.get("strategy")
    name = distribution if isinstance(distribution, str) else str((distribution or {}).get("_target_", ""))
    return [] if "deepspeed" in name.lower() or "fsdp" in name.lower() else [AtomicCheckpointIO()]


def batch_plan(cfg: DictConfig) -> BatchPlan:
    return plan_batches(cfg.data.batch_size, cfg.data.get("micro_batch_size"), world_size(cfg.trainer))


def planned_steps(cfg: DictConfig, masking: MaskingStrategy, datamodule: DiffusionSFTDataModule) -> tuple[int, int]:
    """(LR-schedule length, trainer max_steps) for the budget. A token budget is converted to an
    expected step count from the masking strategy's expected eligible (or masked) tokens per sample."""
    budget = cfg.budget
    if budget.kind == "steps":
        return budget.value, budget.value
    collated = datamodule.train_collator([datamodule.train_set[i] for i in range(min(len(datamodule.train_set), 2048))])
    per_sample = masking.expected_eligible(collated["loss_scope_len"]).mean().item()
    if budget.count == "masked":
        per_sample *= masking.expected_mask_rate()
    expected = math.ceil(budget.value / (per_sample * cfg.data.batch_size))
    return min(expected, budget.max_steps), budget.max_steps


def describe_masking(masking: MaskingStrategy, datamodule: DiffusionSFTDataModule, tokenizer) -> str:
    """One training row before and after masking (with a copy of the strategy and its own generator,
    so the run's random streams and block pools are untouched): a visual check of the setup."""
    batch = datamodule.train_collator([datamodule.train_set[0]] * 2)  # two copies: strategies that pair rows
    masked = copy.deepcopy(masking).mask_batch(batch, torch.Generator().manual_seed(0))
    start = int(batch["response_start"][0])
    clean = tokenizer.decode(batch["input_ids"][0, start:].tolist())
    lines = [f"response: {clean!r}"]
    for row in range(1 if masked.source_row is None else 2):  # several rows per sample: show two of them
        noisy = tokenizer.decode(masked.noisy_ids[row, start:].tolist()).replace(tokenizer.mask_token, "_")
        lines.append(f"masked:   {noisy!r} (p={float(masked.mask_rate[row]):.2f})")
    return "\n".join(lines)


def run(cfg: DictConfig, trained_by: AdoptedTraining | None = None) -> RunResult:
    """Train (``mode=train``) and decode, or decode only (``mode=eval``); write ``results.json``. ``trained_by``:
    the job's folder holds another run's training of this model (``reuse.adopt_training``), so it resumes at
    the last step and decodes; its results take that training's seconds and loss and say where it came from."""
    validate_config(cfg)
    if (evaluated := with_eval_benchmark(cfg)) is not cfg:  # mode=eval of a preset: its benchmark's data and split
        cfg = evaluated
        validate_config(cfg)
    check_runtime(cfg)
    started = time.perf_counter()
    commit = git_commit()  # the code this process imported, whatever the checkout becomes later
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    logged_config = recorded_config(cfg)
    _, digest = job_identity(cfg)
    log.info("config (%s):\n%s", short_hash(digest), OmegaConf.to_yaml(logged_config))
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    model, tokenizer, model_cfg, started_from = load_run_model(cfg)  # ckpt_path (eval), model.init_from, or fresh
    masking: MaskingStrategy = instantiate(cfg.strategy.masking, mask_id=tokenizer.mask_token_id)
    plan = batch_plan(cfg)
    datamodule = datamodule_from_config(cfg, tokenizer, plan)
    datamodule.setup("fit")
    log.info("example training row (%s):\n%s", cfg.strategy.name, describe_masking(masking, datamodule, tokenizer))
    schedule_steps, max_steps = planned_steps(cfg, masking, datamodule) if cfg.mode == "train" else (1, 0)
    if (source := steps_run_of_token_budget(cfg, schedule_steps, output_dir)) is not None:
        return adopt_run(source, output_dir, logged_config, digest,
                         because=f"budget=steps at {schedule_steps} steps spent exactly budget.value={cfg.budget.value} "
                                 f"eligible tokens, with this token budget's LR schedule")

    block_lengths = decode_block_lengths(cfg)
    module_class = DocumentLossModule if cfg.data.get("format") == "documents" else DiffusionSFTModule
    module = module_class(
        model,
        tokenizer,
        masking,
        optimizer=instantiate(cfg.optim.optimizer),
        schedule=ScheduleSettings(schedule_steps, cfg.optim.warmup_frac, cfg.optim.min_lr_ratio, cfg.optim.warmup_type),
        decode=DecodeSettings(cfg.decode.gen_length, block_lengths, cfg.decode.steps, cfg.decode.temperature,
                              cfg.decode.remasking, cfg.decode.get("prefix_cache", False),
                              cfg.decode.get("confidence_threshold"), cfg.decode.get("attention", "full"),
                              primary_decode_length(cfg.block.size, block_lengths)),
        loss_weighting=cfg.objective.weighting,
        token_budget=cfg.budget.value if cfg.budget.kind == "tokens" else None,
        token_count=cfg.budget.get("count", "eligible"),
        answer_scheme=cfg.data.answer_scheme,
        eval_name=cfg.eval.name,
        seed=cfg.seed,
    )
    resume_from = cfg.ckpt_path if cfg.mode == "train" else None
    if resume_from is None and cfg.mode == "train" and cfg.get("resume", True):
        resume_from = resume_checkpoint(output_dir)
        if resume_from is not None and trained_by is not None:
            log.info("resuming from %s (the copied training, at its last step: nothing to train)", resume_from)
        elif resume_from is not None:
            log.info("resuming from %s (a previous attempt of this run; resume=false starts over)", resume_from)
    loggers = build_loggers(cfg)
    if resume_from is not None:
        kept_from = checkpoint_step(resume_from)
        for logger in loggers:
            if isinstance(logger, CSVLogger):
                kept = keep_csv_rows_on_resume(logger, kept_from)
                log.info("csv log: kept %d rows logged before step %d", kept, kept_from)
    for logger in loggers:
        logger.log_hyperparams(logged_config)
    callbacks = [
        ModelCheckpoint(dirpath=output_dir / "checkpoints", save_last=True, save_top_k=0,
                        every_n_train_steps=cfg.checkpoint.every_n_train_steps),
        FlushLoggersOnCheckpoint(),
        *(instantiate(callback) for callback in (cfg.get("callbacks") or {}).values() if callback is not None),
    ]
    if (ema_decay := cfg.optim.get("ema_decay")) is not None:  # evaluated, checkpointed and exported: the average
        callbacks.append(EMAWeightAveraging(decay=ema_decay))
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    progress, progress_bar = progress_callbacks(cfg.get("progress") or {}, sys.stderr.isatty(),
                                                schedule_steps if cfg.mode == "train" else None)
    trainer: L.Trainer = instantiate(cfg.trainer, max_steps=max_steps, logger=loggers or False,
                                     callbacks=callbacks + progress, enable_progress_bar=progress_bar,
                                     plugins=checkpoint_plugins(cfg), accumulate_grad_batches=plan.accumulate)

    if trainer.is_global_zero:  # the folder belongs to this config from here on
        write_run_record(output_dir, logged_config, digest, commit)
    train_seconds, final_train_loss = 0.0, None
    if cfg.mode == "train":
        fit_started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        train_seconds = time.perf_counter() - fit_started
        if resume_from is not None and trainer.global_step == checkpoint_step(resume_from):
            finish_resumed_at_the_end(module, resume_from, ema=ema_decay is not None)
        if module.last_train_loss is not None:  # this process's last step, else the checkpoint's
            final_train_loss = float(module.last_train_loss)
        elif trained_by is not None:  # a checkpoint written before the loss was kept in checkpoints
            final_train_loss = trained_by.final_train_loss
        if trainer.is_global_zero:
            export_model(module.model, tokenizer, output_dir / "export", model_cfg)

    eval_started = time.perf_counter()
    trainer.test(module, datamodule=datamodule, verbose=False)
    eval_seconds = time.perf_counter() - eval_started

    resumed = str(resume_from) if resume_from is not None else cfg.ckpt_path
    seconds = {"train": train_seconds, "eval": eval_seconds, "wall": time.perf_counter() - started}
    reused_from = None
    if trained_by is not None:  # the times of the computation: that training, and this job's decoding
        reused_from = {**trained_by.origin, "wall_seconds_here": round(seconds["wall"], 2)}
        seconds["train"] = trained_by.train_seconds or 0.0
        seconds["wall"] += seconds["train"]
    result = completed_result(cfg, module, trainer, datamodule, resumed, logged_config, seconds,
                              final_train_loss, started_from, commit, identity_fields(cfg, digest), reused_from)
    if not trainer.is_global_zero:  # every rank decoded the same rows; rank 0 alone writes
        return result
    if result.answer_format_warning:
        log.warning("%s", result.answer_format_warning)
    write_jsonl_atomic(output_dir / "generations.jsonl", module.eval_records)
    write_result(output_dir / "results.json", result)
    log_samples(loggers, module.eval_records)
    log.info("accuracy=%s by decode block=%s wall=%.1fs -> %s", result.accuracy,
             result.accuracy_by_decode_block, result.wall_seconds, output_dir / "results.json")
    return result


def completed_result(cfg: DictConfig, module: DiffusionSFTModule, trainer: L.Trainer,
                     datamodule: DiffusionSFTDataModule, ckpt_path: str | None, logged_config: dict,
                     seconds: dict[str, float], final_train_loss: float | None,
                     started_from: dict | None, commit: str | None, identity: dict,
                     reused_from: dict | None = None) -> RunResult:
    """The record of a finished run: what it started from (``model.init_from``), what it trained on,
    what it scored (per decoding block length), what it cost (``seconds``: train, eval, wall), the
    code it ran (``commit``, read at its start), its identity (``run_identity.identity_fields``) and the
    run whose training it decoded (``reused_from``, ``run(trained_by=...)``)."""
    by_block = module.accuracy_by_decode_block()
    primary = by_block.get(module.decode.primary, {})
    return RunResult(
        status="completed",
        mode=cfg.mode,
        study=cfg.get("study"),
        strategy=cfg.strategy.name,
        block_size=cfg.block.size,
        decode_block_length=module.decode.primary,
        seed=cfg.seed,
        budget=OmegaConf.to_container(cfg.budget, resolve=True),
        steps=trainer.global_step if cfg.mode == "train" else None,
        supervised_tokens=module.supervised_tokens,
        eligible_tokens=module.eligible_tokens,
        accuracy=primary.get("accuracy"),
        accuracy_flexible=primary.get("accuracy_flexible"),
        accuracy_by_decode_block={str(k): v["accuracy"] for k, v in by_block.items()},
        accuracy_flexible_by_decode_block={str(k): v.get("accuracy_flexible") for k, v in by_block.items()},
        eval_split=cfg.eval.split,
        eval_size=len(datamodule.eval_set),
        # decoding cost (NFE, positions fed, problems/s, tokens/s, device) and the answer-format check
        answer_scheme=cfg.data.answer_scheme,
        **evaluation_fields(by_block, module.decode_cost_by_decode_block(), module.decode.primary),
        final_train_loss=final_train_loss,
        eval_loss=getattr(module, "eval_loss", None),
        init_from=started_from,
        active_block_counts={str(k): v for k, v in sorted(module.active_block_counts.items())},
        dropped_rows=dict(datamodule.dropped),
        num_parameters=sum(p.numel() for p in module.model.parameters()),
        train_seconds=round(seconds["train"], 2),
        eval_seconds=round(seconds["eval"], 2),
        wall_seconds=round(seconds["wall"], 2),
        git_commit=commit,
        ckpt_path=ckpt_path,
        config=logged_config,
        reused_from=reused_from,
        **identity,
    )


def log_samples(loggers: list, records: list[dict], count: int = 32) -> None:
    """A table of sample generations for loggers that support tables (W&B)."""
    columns = ["decode_block_length", "prompt", "generation", "extracted", "target", "correct"]
    for logger in loggers:
        if hasattr(logger, "log_table"):
            logger.log_table(key="samples", columns=columns, data=[[r.get(c) for c in columns] for r in records[:count]])


def close_loggers() -> None:
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def record_failure(cfg: DictConfig, error: BaseException) -> None:
    """Write ``results.json`` with ``status: failed`` so a sweep report can list the failed job
    (never over a completed result)."""
    path = Path(cfg.paths.output_dir) / "results.json"
    if (read_json(path) or {}).get("status") == "completed":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_result(path, RunResult(status=FAILED, error=f"{type(error).__name__}: {error}", mode=cfg.mode,
                                 strategy=cfg.strategy.name, block_size=cfg.block.size, seed=cfg.seed,
                                 git_commit=git_commit()))


def reusable_run(cfg: DictConfig, view: dict, output_dir: Path, scope: str = "run") -> Path | None:
    """Another study's completed run of this computation (``scope="run"``), or that trained this model and
    kept its last checkpoint (``scope="training"``; only for a job that resumes from its folder), for a
    single-process study training job with ``reuse_runs`` (``blocksft.runs.reuse``); else None."""
    if not cfg.get("reuse_runs", True) or cfg.get("study") is None or cfg.mode != "train" or world_size(cfg.trainer) > 1:
        return None
    if scope == "training" and (cfg.ckpt_path is not None or not cfg.get("resume", True)):
        return None
    return find_equivalent_run(Path(cfg.paths.root_dir) / "studies", view, output_dir, scope)


def finish_resumed_at_the_end(module: DiffusionSFTModule, checkpoint: str | Path, ema: bool) -> None:
    """A run resumed from a checkpoint of its last step (killed while decoding) trains no step, so
    Lightning's ``EMAWeightAveraging`` never copies the average into the model (it does so when training
    ends) and the model holds the last step's weights. With ``ema``, load the average: the checkpoint's
    ``state_dict``."""
    if ema:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)


def steps_run_of_token_budget(cfg: DictConfig, schedule_steps: int, output_dir: Path) -> Path | None:
    """For a study job with ``budget.kind=tokens`` (``count: eligible``): another study's completed run of
    this config but ``budget={kind: steps, value: schedule_steps}`` (this budget's expected step count, the
    length of its LR schedule) that trained ``schedule_steps`` steps and spent exactly ``budget.value``
    eligible tokens; else None. That run is this job's computation: the token budget stops at the first
    step whose running count reaches ``budget.value``, every step counts at least one eligible token, so
    it stops at that run's last step, after the same steps under the same schedule (the main study's
    blockwise seed 0: the same export bytes both ways). ``reusable_run``'s conditions apply."""
    if cfg.mode != "train" or cfg.budget.kind != "tokens" or cfg.budget.get("count", "eligible") != "eligible":
        return None
    as_steps = copy.deepcopy(cfg)
    with open_dict(as_steps):
        as_steps.budget = {"kind": "steps", "value": schedule_steps}
    source = reusable_run(as_steps, job_identity(as_steps)[0], output_dir)
    if source is None:
        return None
    spent = read_result(source / RESULTS)
    exact = spent is not None and spent.steps == schedule_steps and spent.eligible_tokens == cfg.budget.value
    return source if exact else None


def main(cfg: DictConfig) -> RunResult | None:
    """The command-line task: checks the job (its values, and that its folder holds no other config's
    run), skips it if its folder holds a completed run of this config, else runs it. A ``ConfigError``
    is one line on stderr and exit 2, and removes the folder if this command only just created it."""
    cfg = apply_run_record(cfg)  # mode=eval of a recorded run: labels and model from that run
    output_dir = Path(cfg.paths.output_dir)
    try:
        validate_config(cfg)
        view, digest = job_identity(cfg)
        check_folder(output_dir, view, digest)
        if cfg.get("skip_completed", True) and (done := completed_results(output_dir, cfg.mode, digest)) is not None:
            log.info("skipping: %s already holds a completed results.json of this config (%s)", output_dir,
                     short_hash(digest))
            return RunResult.from_json(done)
        if (source := reusable_run(cfg, view, output_dir)) is not None:
            return adopt_run(source, output_dir, recorded_config(cfg), digest)
        if (source := reusable_run(cfg, view, output_dir, scope="training")) is not None:
            return run(cfg, trained_by=adopt_training(source, output_dir, recorded_config(cfg), digest, git_commit()))
        return run(cfg)
    except ConfigError as error:
        remove_unclaimed_folder(output_dir, Path(cfg.paths.log_dir))
        restore_hydra_files(output_dir)
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(2)
    except DataError as error:  # the message names the file; recorded so a sweep report lists the job
        record_failure(cfg, error)
        print(f"data error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        record_failure(cfg, error)
        raise
    finally:
        close_loggers()
