"""Training and decoding of one job: ``run(cfg)`` builds the model, data, module and trainer, fits, evaluates
and records; it returns the ``RunResult`` it also writes to ``<output_dir>/results.json`` (atomically).

The decision whether a job runs at all (skip, copy another study's run or training) is
``blocksft.runs.job.plan_job``'s, and so is the config's validation; ``train.py`` calls ``runs.job.main``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EMAWeightAveraging, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from blocksft.config.validation import check_runtime, decode_block_lengths
from blocksft.data.batch_plan import BatchPlan, plan_batches, world_size
from blocksft.data.datamodule import DiffusionSFTDataModule
from blocksft.data.documents import datamodule_from_config
from blocksft.evaluation.decoding import DecodePlan
from blocksft.evaluation.environment import environment
from blocksft.evaluation.metrics import evaluation_fields
from blocksft.folders import checkpoint_step
from blocksft.masking import MaskingStrategy
from blocksft.models import export_model, load_run_model
from blocksft.models.loader import load_initial_model
from blocksft.runs.checkpointing import (
    AtomicCheckpointIO,
    FlushLoggersOnCheckpoint,
    TrainingClock,
    keep_csv_rows_on_resume,
    resume_checkpoint,
)
from blocksft.runs.identity import identity_fields, job_identity, recorded_config, short_hash, write_run_record
from blocksft.runs.progress import progress_callbacks
from blocksft.runs.results import RunResult, git_commit, primary_decode_length, write_jsonl_atomic, write_result
from blocksft.runs.reuse import AdoptedTraining
from blocksft.training.decode_view import DecodeViewSettings
from blocksft.training.decode_view_callback import DecodeViewLoss
from blocksft.training.heldout_loss import DocumentLossModule
from blocksft.training.module import DiffusionSFTModule, ScheduleSettings

log = logging.getLogger("blocksft")


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


def decode_plan(cfg: DictConfig) -> DecodePlan:
    """The decodings the run scores (``decode.*``, one per ``decode.block_length``); its headline numbers are at
    the training block when it is among them (``results.primary_decode_length``)."""
    decode, lengths = cfg.decode, decode_block_lengths(cfg)
    return DecodePlan.of(
        lengths,
        primary_decode_length(cfg.block.size, lengths),
        gen_length=decode.gen_length,
        steps=decode.steps,
        temperature=decode.temperature,
        remasking=decode.remasking,
        prefix_cache=decode.get("prefix_cache", False),
        confidence_threshold=decode.get("confidence_threshold"),
        attention=decode.get("attention", "full"),
    )


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
    """Train (``mode=train``) and decode, or decode only (``mode=eval``), a config ``runs.job.plan_job`` validated;
    write ``results.json``: build -> fit -> evaluate -> record. ``trained_by``: the job's folder holds another
    run's training of this model (``reuse.adopt_training``), so it resumes at the last step and decodes; its
    results take that training's seconds and loss and say where it came from."""
    check_runtime(cfg)
    started = time.perf_counter()
    commit = git_commit()  # the code this process imported, whatever the checkout becomes later
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    logged_config = recorded_config(cfg)
    _, digest = job_identity(cfg)
    log.info("config (%s):\n%s", short_hash(digest), OmegaConf.to_yaml(logged_config))
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    job = build(cfg, output_dir, logged_config, trained_by)
    if job.trainer.is_global_zero:  # the folder belongs to this config from here on
        write_run_record(output_dir, logged_config, digest, commit)
    train_seconds, earlier_seconds, final_train_loss = fit(cfg, job, output_dir, trained_by)
    eval_started = time.perf_counter()
    job.trainer.test(job.module, datamodule=job.datamodule, verbose=False)
    seconds = {
        "train": train_seconds,
        "eval": time.perf_counter() - eval_started,
        # with the training of earlier attempts (an adopted training's time is added by ``record``)
        "wall": time.perf_counter() - started + (earlier_seconds if trained_by is None else 0.0),
    }
    return record(cfg, job, output_dir, logged_config, digest, commit, seconds, final_train_loss, trained_by)


@dataclass
class BuiltJob:
    """What ``build`` makes of a config: the module (model, masking, decoding), its data, the trainer and
    loggers, the checkpoint the run resumes from and where its model came from."""

    module: DiffusionSFTModule
    datamodule: DiffusionSFTDataModule
    trainer: L.Trainer
    loggers: list
    tokenizer: object
    model_cfg: DictConfig
    started_from: dict | None
    resume_from: str | Path | None
    ema: bool


def build(cfg: DictConfig, output_dir: Path, logged_config: dict, trained_by: AdoptedTraining | None) -> BuiltJob:
    """Model and tokenizer (a trained run's for ``mode=eval``, else ``model.init_from`` or a fresh model), masking,
    data, the Lightning module, loggers (CSV rows after the resumed step dropped), callbacks and the trainer."""
    model, tokenizer, model_cfg, started_from = load_run_model(cfg)  # ckpt_path (eval), model.init_from, or fresh
    masking: MaskingStrategy = instantiate(cfg.strategy.masking, mask_id=tokenizer.mask_token_id)
    plan = batch_plan(cfg)
    datamodule = datamodule_from_config(cfg, tokenizer, plan)
    datamodule.setup("fit")
    log.info("example training row (%s):\n%s", cfg.strategy.name, describe_masking(masking, datamodule, tokenizer))
    schedule_steps, max_steps = planned_steps(cfg, masking, datamodule) if cfg.mode == "train" else (1, 0)
    module = build_module(cfg, model, tokenizer, masking, schedule_steps)
    resume_from = resume_point(cfg, output_dir, trained_by)
    loggers = build_loggers(cfg)
    if resume_from is not None:
        kept_from = checkpoint_step(resume_from)
        for logger in loggers:
            if isinstance(logger, CSVLogger):
                kept = keep_csv_rows_on_resume(logger, kept_from)
                log.info("csv log: kept %d rows logged before step %d", kept, kept_from)
    for logger in loggers:
        logger.log_hyperparams(logged_config)
    ema = cfg.optim.get("ema_decay") is not None
    callbacks = build_callbacks(cfg, output_dir, loggers)
    progress, progress_bar = progress_callbacks(
        cfg.get("progress") or {}, sys.stderr.isatty(), schedule_steps if cfg.mode == "train" else None
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_steps=max_steps,
        logger=loggers or False,
        callbacks=callbacks + progress,
        enable_progress_bar=progress_bar,
        plugins=checkpoint_plugins(cfg),
        accumulate_grad_batches=plan.accumulate,
    )
    return BuiltJob(module, datamodule, trainer, loggers, tokenizer, model_cfg, started_from, resume_from, ema)


def build_module(
    cfg: DictConfig, model, tokenizer, masking: MaskingStrategy, schedule_steps: int
) -> DiffusionSFTModule:
    """The Lightning module of the run (held-out loss evaluation for ``data.format=documents``)."""
    module_class = DocumentLossModule if cfg.data.get("format") == "documents" else DiffusionSFTModule
    return module_class(
        model,
        tokenizer,
        masking,
        optimizer=instantiate(cfg.optim.optimizer),
        schedule=ScheduleSettings(schedule_steps, cfg.optim.warmup_frac, cfg.optim.min_lr_ratio, cfg.optim.warmup_type),
        decode=decode_plan(cfg),
        loss_weighting=cfg.objective.weighting,
        token_budget=cfg.budget.value if cfg.budget.kind == "tokens" else None,
        token_count=cfg.budget.get("count", "eligible"),
        answer_scheme=cfg.data.answer_scheme,
        eval_name=cfg.eval.name,
        seed=cfg.seed,
    )


def resume_point(cfg: DictConfig, output_dir: Path, trained_by: AdoptedTraining | None) -> str | Path | None:
    """The checkpoint training resumes from: ``ckpt_path`` in ``mode=train``, else the last checkpoint a
    previous attempt (or the adopted training) left in the folder (unless ``resume=false``)."""
    resume_from = cfg.ckpt_path if cfg.mode == "train" else None
    if resume_from is None and cfg.mode == "train" and cfg.get("resume", True):
        resume_from = resume_checkpoint(output_dir)
        if resume_from is not None and trained_by is not None:
            log.info("resuming from %s (the copied training, at its last step: nothing to train)", resume_from)
        elif resume_from is not None:
            log.info("resuming from %s (a previous attempt of this run; resume=false starts over)", resume_from)
    return resume_from


def build_callbacks(cfg: DictConfig, output_dir: Path, loggers: list) -> list:
    """Checkpoints (last step, every ``checkpoint.every_n_train_steps``), logger flushes with them, the config's
    ``callbacks``, the weight average (``optim.ema_decay``: evaluated, checkpointed and exported), the LR monitor
    and the decode-view loss (``diagnostics.decode_view``, when there is a logger to write it to)."""
    callbacks = [
        ModelCheckpoint(
            dirpath=output_dir / "checkpoints",
            save_last=True,
            save_top_k=0,
            every_n_train_steps=cfg.checkpoint.every_n_train_steps,
        ),
        FlushLoggersOnCheckpoint(),
        TrainingClock(),
        *(instantiate(callback) for callback in (cfg.get("callbacks") or {}).values() if callback is not None),
    ]
    if (ema_decay := cfg.optim.get("ema_decay")) is not None:
        callbacks.append(EMAWeightAveraging(decay=ema_decay))
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    decode_view = DecodeViewSettings.from_config(cfg)
    if decode_view.enabled and loggers:
        callbacks.append(DecodeViewLoss(decode_view))
    return callbacks


def fit(
    cfg: DictConfig, job: BuiltJob, output_dir: Path, trained_by: AdoptedTraining | None
) -> tuple[float, float, float | None]:
    """Train (``mode=train``) and export the model; (training seconds of every attempt, of the attempts before
    this one (``TrainingClock``), the last step's loss)."""
    if cfg.mode != "train":
        return 0.0, 0.0, None
    module, trainer, resume_from = job.module, job.trainer, job.resume_from
    fit_started = time.perf_counter()
    trainer.fit(module, datamodule=job.datamodule, ckpt_path=resume_from)
    clock = next(c for c in trainer.callbacks if isinstance(c, TrainingClock))
    train_seconds = time.perf_counter() - fit_started + clock.earlier  # earlier attempts' training included
    if resume_from is not None and trainer.global_step == checkpoint_step(resume_from):
        finish_resumed_at_the_end(module, resume_from, ema=job.ema)
    final_train_loss = None
    if module.last_train_loss is not None:  # this process's last step, else the checkpoint's
        final_train_loss = float(module.last_train_loss)
    elif trained_by is not None:  # a checkpoint written before the loss was kept in checkpoints
        final_train_loss = trained_by.final_train_loss
    if trainer.is_global_zero:
        export_model(module.model, job.tokenizer, output_dir / "export", job.model_cfg)
    return train_seconds, clock.earlier, final_train_loss


def record(
    cfg: DictConfig,
    job: BuiltJob,
    output_dir: Path,
    logged_config: dict,
    digest: str,
    commit: str | None,
    seconds: dict[str, float],
    final_train_loss: float | None,
    trained_by: AdoptedTraining | None,
) -> RunResult:
    """The run's ``RunResult``; rank 0 writes it (``results.json``), the generations and the loggers' samples."""
    resumed = str(job.resume_from) if job.resume_from is not None else cfg.ckpt_path
    reused_from = None
    if trained_by is not None:  # the times of the computation: that training, and this job's decoding
        reused_from = {**trained_by.origin, "wall_seconds_here": round(seconds["wall"], 2)}
        seconds["train"] = trained_by.train_seconds or 0.0
        seconds["wall"] += seconds["train"]
    result = completed_result(
        cfg,
        job.module,
        job.trainer,
        job.datamodule,
        resumed,
        logged_config,
        seconds,
        final_train_loss,
        job.started_from,
        commit,
        identity_fields(cfg, digest),
        reused_from,
    )
    if not job.trainer.is_global_zero:  # every rank decoded the same rows; rank 0 alone writes
        return result
    if result.answer_format_warning:
        log.warning("%s", result.answer_format_warning)
    write_jsonl_atomic(output_dir / "generations.jsonl", job.module.eval_records)
    write_result(output_dir / "results.json", result)
    log_samples(job.loggers, job.module.eval_records)
    log.info(
        "accuracy=%s by decode block=%s wall=%.1fs -> %s",
        result.accuracy,
        result.accuracy_by_decode_block,
        result.wall_seconds,
        output_dir / "results.json",
    )
    return result


def token_budget_schedule_steps(cfg: DictConfig) -> int:
    """The LR-schedule length of a ``budget.kind=tokens`` config: its expected step count (``planned_steps``),
    from the run's tokenizer (``model.init_from``'s when set: the one the run trains with), masking and data."""
    _, tokenizer, _, _ = load_initial_model(cfg, train=True)
    masking: MaskingStrategy = instantiate(cfg.strategy.masking, mask_id=tokenizer.mask_token_id)
    datamodule = datamodule_from_config(cfg, tokenizer, batch_plan(cfg))
    datamodule.setup("fit")
    return planned_steps(cfg, masking, datamodule)[0]


def completed_result(
    cfg: DictConfig,
    module: DiffusionSFTModule,
    trainer: L.Trainer,
    datamodule: DiffusionSFTDataModule,
    ckpt_path: str | None,
    logged_config: dict,
    seconds: dict[str, float],
    final_train_loss: float | None,
    started_from: dict | None,
    commit: str | None,
    identity: dict,
    reused_from: dict | None = None,
) -> RunResult:
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
        # decoding cost (NFE, positions fed, problems/s, tokens/s, device), the answer-format check and how
        # generations end (parse failures, early EOS, answer lengths, EOS per decoding block)
        answer_scheme=cfg.data.answer_scheme,
        **evaluation_fields(
            by_block, module.decode_cost_by_decode_block(), module.decode.primary, module.termination_by_decode_block()
        ),
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
        environment=environment(module.device),
        reused_from=reused_from,
        **identity,
    )


def log_samples(loggers: list, records: list[dict], count: int = 32) -> None:
    """A table of sample generations for loggers that support tables (W&B)."""
    columns = ["decode_block_length", "prompt", "generation", "extracted", "target", "correct"]
    for logger in loggers:
        if hasattr(logger, "log_table"):
            logger.log_table(
                key="samples", columns=columns, data=[[r.get(c) for c in columns] for r in records[:count]]
            )


def finish_resumed_at_the_end(module: DiffusionSFTModule, checkpoint: str | Path, ema: bool) -> None:
    """A run resumed from a checkpoint of its last step (killed while decoding) trains no step, so
    Lightning's ``EMAWeightAveraging`` never copies the average into the model (it does so when training
    ends) and the model holds the last step's weights. With ``ema``, load the average: the checkpoint's
    ``state_dict``."""
    if ema:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
