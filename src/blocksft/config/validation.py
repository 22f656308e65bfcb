"""Validation of a composed run config, before any model or data is built.

``validate_config(cfg)`` raises ``ConfigError`` (``blocksft.errors``) whose message is one line naming the key, its
value and what is allowed; ``train.py`` prints it and exits with status 2.

One validator per config group (data, strategy, decode, budget, optim, eval and progress, checkpoint, model).
A rule has one owner: where an object owns its arguments' rules, the validator builds that cheap object and
its ``InvalidValue`` is the error: the masking strategy (``hydra.utils.instantiate(cfg.strategy.masking,
mask_id=0)``), the decoder's argument check (``blocksft.evaluation.decoding._check_args``), the data module's
settings (``blocksft.data.settings``), the batch plan (``blocksft.data.batch_plan.plan_batches``). What a
strategy needs of the rest of the run it declares as class attributes (``attention``, ``paired_rows``,
``whole_sequence``: ``blocksft.masking.base.MaskingStrategy``); nothing here recognises a class by its name.
Nothing here imports Lightning.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from blocksft.data.batch_plan import BatchPlan, plan_batches, world_size
from blocksft.data.formats import validate_data_format
from blocksft.data.settings import LoaderSettings, RowSettings
from blocksft.errors import ConfigError
from blocksft.errors import is_int as _is_int
from blocksft.errors import is_number as _is_number
from blocksft.errors import require as _require
from blocksft.evaluation.decoding import _check_args as check_decode_args
from blocksft.folders import read_json, require_path
from blocksft.masking import MaskingStrategy
from blocksft.masking.base import check_block_size
from blocksft.models.build import check_model_kind
from blocksft.models.hf import ATTENTION_MASK_FORMATS, AUTO_CLASSES, DTYPES
from blocksft.models.init_from import validate_init_from
from blocksft.models.lora import LORA_EXPORTS
from blocksft.models.tokenizers import validate_tokenizer_choice
from blocksft.training.decode_view import DecodeViewSettings
from blocksft.training.objective import check_loss_weighting
from blocksft.training.optim import check_warmup_type

MODES = ("train", "eval")
BUDGET_KINDS = ("steps", "tokens")
TOKEN_COUNTS = ("eligible", "masked")
BAR_MODES = ("auto", True, False)  # progress.bar (blocksft.runs.progress)
#: What ``ckpt_path`` may be in each mode (blocksft.folders): train resumes from a checkpoint file
#: (a run folder resumes by itself); eval loads a run's export, an export folder or a checkpoint.
CKPT_PATH_KINDS = {"train": ("checkpoint",), "eval": ("run_dir", "export", "checkpoint")}


def decode_block_lengths(cfg: DictConfig) -> tuple[int, ...]:
    """``decode.block_length`` as a tuple (it may be an int or a list)."""
    value = cfg.decode.block_length
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    return tuple(values)


def with_eval_benchmark(cfg: DictConfig) -> DictConfig:
    """The config an evaluation runs with: in ``mode=eval`` with ``eval.benchmark`` set (the paper
    presets set GSM8K or MATH test), a copy whose ``data`` is ``eval.benchmark.data`` (resolved in the
    original config, so ``${data.response_len}`` there means the training data's) and whose
    ``eval.split`` is ``eval.benchmark.split``; otherwise ``cfg`` itself. Raises ``ConfigError`` for a
    malformed ``eval.benchmark``."""
    benchmark = cfg.eval.get("benchmark")
    if benchmark is None:
        return cfg
    _require(
        isinstance(benchmark, DictConfig)
        and isinstance(benchmark.get("data"), DictConfig)
        and isinstance(benchmark.get("split"), str),
        "eval.benchmark",
        benchmark,
        "null or {data: <a data config, e.g. /data@eval.benchmark.data: gsm8k>, split: <its split>}",
    )
    if cfg.mode != "eval":
        return cfg
    data = OmegaConf.to_container(benchmark.data, resolve=True)
    evaluated = copy.deepcopy(cfg)
    with open_dict(evaluated):
        evaluated.data = data
        evaluated.eval.split = benchmark.split
    return evaluated


def validate_config(cfg: DictConfig) -> None:
    """Check every value a run depends on; raise ``ConfigError`` on the first bad one."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"{missing[0]} is required but not set (it is ??? in its config file); "
            f"set it on the command line, e.g. {missing[0]}=..."
        )
    _require(cfg.mode in MODES, "mode", cfg.mode, f"one of {', '.join(MODES)}")
    _require(_is_int(cfg.seed), "seed", cfg.seed, "an integer")
    plan = validate_data(cfg)
    masking = validate_strategy(cfg, plan)
    validate_decode(cfg, masking)
    validate_budget(cfg.budget)
    validate_optim(cfg.optim)
    validate_eval_and_progress(cfg)
    validate_checkpoint(cfg)
    validate_model(cfg)
    validate_diagnostics(cfg)


def validate_data(cfg: DictConfig) -> BatchPlan:
    """``data.*`` (and ``eval.size``): the batch plan over the devices, the data module's settings
    (``LoaderSettings``, ``RowSettings``: lengths, batches, template, fields, scheme, tokenisation and row
    limits), the training block against the response and the source's files. Returns the plan.
    (``data.format`` is checked with the strategy, whose ``whole_sequence`` it must agree with.)"""
    data = cfg.data
    plan = plan_batches(data.batch_size, data.get("micro_batch_size"), world_size(cfg.trainer))
    LoaderSettings.from_config(cfg, plan.micro_batch)
    response_len = data.response_len
    check_block_size(cfg.block.size)
    _require(cfg.block.size <= response_len, "block.size", cfg.block.size, f"at most data.response_len={response_len}")
    RowSettings.from_config(data)  # every format has these keys (documents: data=pretrain_corpus keeps them)
    files = data.source.get("files")  # never ???: validate_config rejects unset required keys first
    for split, paths in (files or {}).items():
        paths = list(paths) if isinstance(paths, (list, ListConfig)) else [paths]
        _require(
            bool(paths) and all(isinstance(f, str) and f for f in paths),
            f"data.source.files.{split}",
            paths,
            "a path or a non-empty list of paths",
        )
    return plan


def build_masking(masking_cfg: DictConfig) -> MaskingStrategy:
    """The configured masking strategy (``mask_id=0``: ids do not matter to its rules); its constructor's
    ``ConfigError`` as it is, any other failure as one line naming ``strategy.masking``."""
    try:
        return instantiate(masking_cfg, mask_id=0)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        reason = " ".join(f"{type(cause or error).__name__}: {cause or error}".split())
        raise ConfigError(
            f"strategy.masking._target_={masking_cfg.get('_target_')!r} is invalid: allowed a masking "
            f"strategy that takes these arguments ({reason})"
        ) from None


def validate_strategy(cfg: DictConfig, plan: BatchPlan) -> MaskingStrategy:
    """Build the masking strategy (its constructor owns its arguments' rules), then check what it declares
    it needs: ``strategy.attention`` saying its ``attention``; an even micro-batch for ``paired_rows`` with
    ``rows=batch``; ``data.format`` (documents for ``whole_sequence``). And ``objective.weighting``."""
    masking = build_masking(cfg.strategy.masking)
    trained = cfg.strategy.get("attention", "full")
    _require(
        trained == masking.attention,
        "strategy.attention",
        trained,
        f"{masking.attention} for strategy.masking._target_={cfg.strategy.masking.get('_target_')}",
    )
    if masking.paired_rows and masking.rows == "batch":
        _require(
            plan.micro_batch % 2 == 0,
            "data.batch_size",
            cfg.data.batch_size,
            f"a batch with an even number of rows per device and micro-step (now {plan.micro_batch}) "
            "for complementary mask pairs with strategy.masking.rows=batch",
        )
    validate_data_format(cfg, masking.whole_sequence)
    check_loss_weighting(cfg.objective.weighting)
    return masking


def validate_decode(cfg: DictConfig, masking: MaskingStrategy) -> None:
    """``decode.*``: the decoder's own argument rules for each decoding block length (``_check_args``),
    the canvas as long as the training response, and what the backbone must provide (a per-example mask
    for block-causal attention, a key/value cache for ``prefix_cache``)."""
    decode = cfg.decode
    if _is_int(decode.gen_length) and decode.gen_length > 0:  # else the decoder's own rule names it below
        _require(
            decode.gen_length == cfg.data.response_len,
            "decode.gen_length",
            decode.gen_length,
            f"equal to data.response_len={cfg.data.response_len}",
        )
    for block_length in decode_block_lengths(cfg):
        check_decode_args(
            decode.steps,
            decode.gen_length,
            block_length,
            decode.temperature,
            0.0,
            decode.remasking,
            decode.get("confidence_threshold"),
            decode.get("attention", "full"),
        )
    _validate_attention_backbone(cfg, masking)
    prefix_cache = decode.get("prefix_cache", False)
    _require(isinstance(prefix_cache, bool), "decode.prefix_cache", prefix_cache, "true or false")
    if prefix_cache:  # the key/value cache exists in the tiny backbone only; fail before training, not after
        _require(
            cfg.model.get("kind") == "tiny",
            "decode.prefix_cache",
            prefix_cache,
            f"false with model.kind={cfg.model.get('kind')} "
            "(no key/value cache; decode=semi_ar_cached needs model=tiny)",
        )


def _validate_attention_backbone(cfg: DictConfig, masking: MaskingStrategy) -> None:
    """Block-causal training (``mode=train``) or ``decode.attention=block_causal`` needs a backbone that takes
    a per-example [B, L, L] mask: the tiny model, or a Hugging Face model configured to take a boolean
    [B, 1, L, L] mask (``model.attention_mask=4d``)."""
    model = cfg.model
    if model.get("kind") != "hf" or model.get("attention_mask") == "4d":
        return
    if masking.attention == "block_causal" and cfg.mode == "train":
        who = f"strategy={cfg.strategy.get('name')}"
    elif cfg.decode.get("attention", "full") == "block_causal":
        who = "decode.attention=block_causal"
    else:
        return
    raise ConfigError(
        f"{who} needs a backbone that takes a per-example 2-D attention mask; "
        f"model.name_or_path={model.get('name_or_path')} does not (model.attention_mask="
        f"{model.get('attention_mask')}: a [B, L] key mask; use model=tiny, or "
        "model.attention_mask=4d for a model that takes a boolean [B, 1, L, L] mask)"
    )


def validate_budget(budget: DictConfig) -> None:
    _require(budget.kind in BUDGET_KINDS, "budget.kind", budget.kind, f"one of {', '.join(BUDGET_KINDS)}")
    _require(_is_int(budget.value) and budget.value > 0, "budget.value", budget.value, "a positive integer")
    if budget.kind == "tokens":
        _require(budget.count in TOKEN_COUNTS, "budget.count", budget.count, f"one of {', '.join(TOKEN_COUNTS)}")
        _require(
            _is_int(budget.max_steps) and budget.max_steps > 0,
            "budget.max_steps",
            budget.max_steps,
            "a positive integer",
        )


def validate_optim(optim: DictConfig) -> None:
    lr = optim.optimizer.lr
    _require(_is_number(lr) and lr > 0, "optim.optimizer.lr", lr, "a number > 0")
    _require(
        _is_number(optim.warmup_frac) and 0.0 <= optim.warmup_frac < 1.0,
        "optim.warmup_frac",
        optim.warmup_frac,
        "a number in [0, 1)",
    )
    _require(
        _is_number(optim.min_lr_ratio) and 0.0 <= optim.min_lr_ratio <= 1.0,
        "optim.min_lr_ratio",
        optim.min_lr_ratio,
        "a number in [0, 1]",
    )
    check_warmup_type(optim.warmup_type)
    ema = optim.get("ema_decay")
    _require(ema is None or (_is_number(ema) and 0.0 < ema < 1.0), "optim.ema_decay", ema, "null or a number in (0, 1)")


def validate_eval_and_progress(cfg: DictConfig) -> None:
    """``eval.batch_size`` (``eval.size`` is the data module's: ``LoaderSettings``) and ``progress.*``."""
    _require(
        _is_int(cfg.eval.batch_size) and cfg.eval.batch_size > 0,
        "eval.batch_size",
        cfg.eval.batch_size,
        "a positive integer",
    )
    progress = cfg.get("progress") or {}
    _require(progress.get("bar", "auto") in BAR_MODES, "progress.bar", progress.get("bar"), "auto, true or false")
    every = progress.get("every_n_steps", 100)
    _require(_is_int(every) and every >= 0, "progress.every_n_steps", every, "an integer >= 0 (0 = no log lines)")


def validate_diagnostics(cfg: DictConfig) -> None:
    """``diagnostics.decode_view`` (``DecodeViewSettings`` owns its keys' rules): its block within the response."""
    settings = DecodeViewSettings.from_config(cfg)
    response_len = cfg.data.response_len
    _require(
        settings.block_size <= response_len,
        "diagnostics.decode_view.block_size",
        settings.block_size,
        f"at most data.response_len={response_len}",
    )


def validate_checkpoint(cfg: DictConfig) -> None:
    """``ckpt_path``: what it may be in this mode; ``mode=eval`` needs weights to score."""
    if cfg.mode == "eval" and cfg.model.kind != "hf":
        _require(
            cfg.ckpt_path is not None or cfg.model.get("init_from") is not None,
            "ckpt_path",
            cfg.ckpt_path,
            "a run directory, export folder or .ckpt file "
            "(mode=eval needs one unless model.kind=hf or model.init_from is set)",
        )
    if cfg.ckpt_path is not None:
        require_path("ckpt_path", cfg.ckpt_path, CKPT_PATH_KINDS[cfg.mode])


def validate_model(cfg: DictConfig) -> None:
    """Check ``cfg.model`` (kind, HF loading options, LoRA) and the ``trust_remote_code`` opt-in, without
    touching the network or loading weights."""
    model = cfg.model
    check_model_kind(model.kind)
    trust = model.get("trust_remote_code", False)
    _require(isinstance(trust, bool), "model.trust_remote_code", trust, "true or false")
    reason = _remote_code_reason(cfg)
    _require(
        trust or reason is None,
        "model.trust_remote_code",
        trust,
        f"true ({reason}; set model.trust_remote_code=true to run it)",
    )
    if model.kind == "tiny":
        validate_tokenizer_choice(model)
    validate_init_from(cfg)
    if model.kind != "hf":
        return
    name = model.name_or_path
    _require(isinstance(name, str) and name.strip() != "", "model.name_or_path", name, "a hub id or a local folder")
    _require(
        model.auto_class in AUTO_CLASSES, "model.auto_class", model.auto_class, f"one of {', '.join(AUTO_CLASSES)}"
    )
    _require(model.dtype in DTYPES, "model.dtype", model.dtype, f"one of {', '.join(DTYPES)}")
    _require(
        model.attention_mask in ATTENTION_MASK_FORMATS,
        "model.attention_mask",
        model.attention_mask,
        f"one of {', '.join(ATTENTION_MASK_FORMATS)}",
    )
    for key in ("requires_remote_code", "add_mask_token", "logits_shift", "split_head", "gradient_checkpointing"):
        _require(isinstance(model[key], bool), f"model.{key}", model[key], "true or false")
    for key in ("eos_token", "lm_head"):
        _require(model[key] is None or isinstance(model[key], str), f"model.{key}", model[key], "a string or null")
    lora = model.lora
    _require(isinstance(lora.enabled, bool), "model.lora.enabled", lora.enabled, "true or false")
    if not lora.enabled:
        return
    _require(_is_int(lora.r) and lora.r > 0, "model.lora.r", lora.r, "a positive integer")
    _require(_is_number(lora.alpha) and lora.alpha > 0, "model.lora.alpha", lora.alpha, "a number > 0")
    _require(
        _is_number(lora.dropout) and 0.0 <= lora.dropout < 1.0, "model.lora.dropout", lora.dropout, "a number in [0, 1)"
    )
    targets = lora.target_modules
    _require(
        (isinstance(targets, str) and targets != "")
        or (isinstance(targets, ListConfig) and len(targets) > 0 and all(isinstance(t, str) for t in targets)),
        "model.lora.target_modules",
        targets,
        "a non-empty list of module names or a regular expression",
    )
    _require(lora.export in LORA_EXPORTS, "model.lora.export", lora.export, f"one of {', '.join(LORA_EXPORTS)}")


def _remote_code_reason(cfg: DictConfig) -> str | None:
    """Why this run would execute modeling code shipped with a checkpoint (None: it would not): the
    model config says so, or a local folder it loads (``model.name_or_path``, ``ckpt_path`` or its
    ``export/``) has an ``auto_map`` in its config.json or an export config asking for it."""
    model = cfg.model
    if model.get("requires_remote_code", False):
        return f"{model.name_or_path} ships its own modeling code"
    folders = [Path(str(model.name_or_path))] if model.kind == "hf" else []
    if cfg.ckpt_path is not None:
        folders += [Path(str(cfg.ckpt_path)), Path(str(cfg.ckpt_path)) / "export"]
    for folder in folders:
        if (read_json(folder / "config.json") or {}).get("auto_map") or (
            read_json(folder / "blocksft_model.json") or {}
        ).get("requires_remote_code"):
            return f"{folder} ships its own modeling code"
    return None


def check_runtime(cfg: DictConfig) -> None:
    """What this machine must provide for the config (not part of ``validate_config``, so every config
    still composes and validates on a CPU-only machine): the accelerator and strategy packages."""
    accelerator = cfg.trainer.get("accelerator", "cpu")
    _require(
        accelerator not in ("gpu", "cuda") or torch.cuda.is_available(),
        "trainer.accelerator",
        accelerator,
        "a device this machine has (no CUDA device is visible; use trainer=cpu)",
    )
    strategy = cfg.trainer.get("strategy")
    target = str(strategy.get("_target_", "")) if isinstance(strategy, DictConfig) else str(strategy or "")
    if "deepspeed" in target.lower():
        _require(
            importlib.util.find_spec("deepspeed") is not None,
            "trainer.strategy",
            target,
            "an installed strategy (pip install deepspeed)",
        )
