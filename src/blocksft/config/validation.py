"""Validation of a composed run config, before any model or data is built.

``validate_config(cfg)`` raises ``ConfigError`` (``blocksft.errors``) whose message is one line naming the key, its
value and what is allowed; ``train.py`` prints it and exits with status 2.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from blocksft.evaluation.answers import SCHEMES
from blocksft.data.collate import TAIL_PADDINGS
from blocksft.data.formats import validate_data_format
from blocksft.data.prepare import CHAT_TEMPLATE_MODES
from blocksft.evaluation.decoding import ATTENTION_MODES
from blocksft.evaluation.decoding import REMASKING_MODES as REMASKINGS
from blocksft.data.batch_plan import plan_batches, world_size
from blocksft.errors import ConfigError
from blocksft.masking import BLOCK_SAMPLINGS
from blocksft.models import MODEL_KINDS
from blocksft.models.hf import ATTENTION_MASK_FORMATS, AUTO_CLASSES, DTYPES
from blocksft.models.init_from import validate_init_from
from blocksft.models.lora import LORA_EXPORTS
from blocksft.models.tokenizers import validate_tokenizer_choice
from blocksft.masking.multirow import ROW_PLANS
from blocksft.training.objective import LOSS_WEIGHTINGS as WEIGHTINGS
from blocksft.training.optim import WARMUP_TYPES
from blocksft.folders import require_path

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
    _require(isinstance(benchmark, DictConfig) and isinstance(benchmark.get("data"), DictConfig)
             and isinstance(benchmark.get("split"), str), "eval.benchmark", benchmark,
             "null or {data: <a data config, e.g. /data@eval.benchmark.data: gsm8k>, split: <its split>}")
    if cfg.mode != "eval":
        return cfg
    data = OmegaConf.to_container(benchmark.data, resolve=True)
    evaluated = copy.deepcopy(cfg)
    with open_dict(evaluated):
        evaluated.data = data
        evaluated.eval.split = benchmark.split
    return evaluated


def _require(condition: bool, key: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is invalid: allowed {allowed}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_data(data: DictConfig) -> None:
    """The data keys beyond the lengths: template, fields, scheme, tokenisation and row limits."""
    _require(isinstance(data.prompt_template, str) and "{question}" in data.prompt_template,
             "data.prompt_template", data.prompt_template, "a string containing {question}")
    _require(data.get("chat_template", "auto") in CHAT_TEMPLATE_MODES, "data.chat_template",
             data.get("chat_template"), "auto, true or false")
    _require(data.answer_scheme in SCHEMES, "data.answer_scheme", data.answer_scheme, f"one of {', '.join(SCHEMES)}")
    for key in ("question_field", "answer_field"):
        _require(isinstance(data[key], str) and data[key] != "", f"data.{key}", data[key], "a non-empty field name")
    target = data.get("target_field")
    _require(target is None or (isinstance(target, str) and target != ""), "data.target_field", target, "null or a field name")
    num_proc = data.get("num_proc", 1)
    _require(_is_int(num_proc) and num_proc > 0, "data.num_proc", num_proc, "a positive integer")
    rows = data.get("max_train_rows")
    _require(rows is None or (_is_int(rows) and rows > 0), "data.max_train_rows", rows, "a positive integer or null")
    files = data.source.get("files")  # never ???: validate_config rejects unset required keys first
    for split, paths in (files or {}).items():
        paths = list(paths) if isinstance(paths, (list, ListConfig)) else [paths]
        _require(bool(paths) and all(isinstance(f, str) and f for f in paths), f"data.source.files.{split}",
                 paths, "a path or a non-empty list of paths")


def _validate_rate_range_and_tail(masking: DictConfig) -> None:
    """``p_min``/``p_max`` (p ~ U(p_min, p_max); p_min null = eps) and ``tail_eos_in_loss``."""
    p_min, p_max = masking.get("p_min"), masking.get("p_max", 1.0)
    _require(p_min is None or (_is_number(p_min) and 0.0 < p_min < 1.0), "strategy.masking.p_min", p_min,
             "null (= eps) or a number in the open interval (0, 1)")
    _require(_is_number(p_max) and 0.0 < p_max <= 1.0, "strategy.masking.p_max", p_max, "a number in (0, 1]")
    low = masking.get("eps", 1e-3) if p_min is None else p_min
    _require(low < p_max, "strategy.masking.p_min", low, f"below strategy.masking.p_max={p_max} (p_min >= p_max)")
    tail = masking.get("tail_eos_in_loss")
    _require(tail is None or (_is_int(tail) and tail >= 0), "strategy.masking.tail_eos_in_loss", tail,
             "null (every EOS of the tail) or an integer >= 0")


def _validate_attention(cfg: DictConfig) -> None:
    """``strategy.attention`` agrees with the masking class; block-causal training (``mode=train``) or
    ``decode.attention=block_causal`` needs a backbone that takes a per-example [B, L, L] mask: the tiny
    model, or a Hugging Face model configured to take a boolean [B, 1, L, L] mask (``model.attention_mask=4d``)."""
    block_causal_masking = str(cfg.strategy.masking.get("_target_", "")).endswith("BlockCausalMasking")
    trained = cfg.strategy.get("attention", "full")
    _require(trained == ("block_causal" if block_causal_masking else "full"), "strategy.attention", trained,
             f"{'block_causal' if block_causal_masking else 'full'} for strategy.masking._target_="
             f"{cfg.strategy.masking.get('_target_')}")
    attention = cfg.decode.get("attention", "full")
    _require(attention in ATTENTION_MODES, "decode.attention", attention, f"one of {', '.join(ATTENTION_MODES)}")
    model = cfg.model
    if model.get("kind") != "hf" or model.get("attention_mask") == "4d":
        return
    if block_causal_masking and cfg.mode == "train":
        who = f"strategy={cfg.strategy.get('name')}"
    elif attention == "block_causal":
        who = "decode.attention=block_causal"
    else:
        return
    raise ConfigError(f"{who} needs a backbone that takes a per-example 2-D attention mask; "
                      f"model.name_or_path={model.get('name_or_path')} does not (model.attention_mask="
                      f"{model.get('attention_mask')}: a [B, L] key mask; use model=tiny, or "
                      "model.attention_mask=4d for a model that takes a boolean [B, 1, L, L] mask)")


def validate_config(cfg: DictConfig) -> None:
    """Check every value a run depends on; raise ``ConfigError`` on the first bad one."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} is required but not set (it is ??? in its config file); "
                          f"set it on the command line, e.g. {missing[0]}=...")
    _require(cfg.mode in MODES, "mode", cfg.mode, f"one of {', '.join(MODES)}")
    _require(_is_int(cfg.seed), "seed", cfg.seed, "an integer")

    block_size = cfg.block.size
    response_len = cfg.data.response_len
    _require(_is_int(response_len) and response_len > 0, "data.response_len", response_len, "a positive integer")
    _require(_is_int(block_size) and block_size > 0, "block.size", block_size, "a positive integer")
    _require(block_size <= response_len, "block.size", block_size, f"at most data.response_len={response_len}")
    _require(cfg.data.tail_padding in TAIL_PADDINGS, "data.tail_padding", cfg.data.tail_padding, f"one of {', '.join(TAIL_PADDINGS)}")
    for key in ("batch_size", "eval_batch_size", "max_prompt_len"):
        value = cfg.data[key]
        _require(_is_int(value) and value > 0, f"data.{key}", value, "a positive integer")
    validate_data(cfg.data)
    validate_data_format(cfg)

    masking = cfg.strategy.masking
    if "eps" in masking:
        _require(_is_number(masking.eps) and 0.0 < masking.eps < 1.0, "strategy.masking.eps", masking.eps, "a number in the open interval (0, 1)")
    for key in ("prefix_mask_rate", "suffix_mask_prob"):
        if key in masking:
            value = masking[key]
            _require(_is_number(value) and 0.0 <= value <= 1.0, f"strategy.masking.{key}", value, "a number in [0, 1]")
    _validate_rate_range_and_tail(masking)
    if "rows" in masking:
        rows = masking.rows
        _require(rows in ROW_PLANS, "strategy.masking.rows", rows, f"one of {', '.join(ROW_PLANS)}")
        if rows == "batch" and str(masking.get("_target_", "")).endswith("ComplementaryMasking"):
            try:
                micro = plan_batches(cfg.data.batch_size, cfg.data.get("micro_batch_size"), world_size(cfg.trainer)).micro_batch
            except ValueError:
                micro = 0  # a bad batch plan is reported below, with its own key
            _require(micro % 2 == 0, "data.batch_size", cfg.data.batch_size,
                     f"a batch with an even number of rows per device and micro-step (now {micro}) "
                     "for complementary mask pairs with strategy.masking.rows=batch")
    if "block_sampling" in masking:
        _require(masking.block_sampling in BLOCK_SAMPLINGS, "strategy.masking.block_sampling", masking.block_sampling, f"one of {', '.join(BLOCK_SAMPLINGS)}")
    _require(cfg.objective.weighting in WEIGHTINGS, "objective.weighting", cfg.objective.weighting, f"one of {', '.join(WEIGHTINGS)}")

    decode = cfg.decode
    gen_length = decode.gen_length
    _require(_is_int(gen_length) and gen_length > 0, "decode.gen_length", gen_length, "a positive integer")
    _require(gen_length == response_len, "decode.gen_length", gen_length, f"equal to data.response_len={response_len}")
    _require(_is_int(decode.steps) and decode.steps > 0, "decode.steps", decode.steps, "a positive integer")
    divisors = [d for d in range(1, gen_length + 1) if gen_length % d == 0]
    for block_length in decode_block_lengths(cfg):
        _require(_is_int(block_length) and block_length > 0 and gen_length % block_length == 0,
                 "decode.block_length", block_length, f"a divisor of decode.gen_length={gen_length}: {divisors}")
        num_blocks = gen_length // block_length
        _require(decode.steps % num_blocks == 0, "decode.steps", decode.steps,
                 f"a multiple of the number of decoding blocks ({num_blocks} for block_length {block_length})")
    _require(_is_number(decode.temperature) and decode.temperature >= 0, "decode.temperature", decode.temperature, "a number >= 0")
    _require(decode.remasking in REMASKINGS, "decode.remasking", decode.remasking, f"one of {', '.join(REMASKINGS)}")
    threshold = decode.get("confidence_threshold")
    _require(threshold is None or (_is_number(threshold) and 0 < threshold <= 1), "decode.confidence_threshold",
             threshold, "null (fixed per-step schedule) or a number in (0, 1]")
    if threshold is not None:
        _require(decode.remasking == "low_confidence", "decode.remasking", decode.remasking,
                 f"low_confidence with decode.confidence_threshold={threshold}")
    _validate_attention(cfg)
    prefix_cache = decode.get("prefix_cache", False)
    _require(isinstance(prefix_cache, bool), "decode.prefix_cache", prefix_cache, "true or false")
    if prefix_cache:  # the key/value cache exists in the tiny backbone only; fail before training, not after
        _require(cfg.model.get("kind") == "tiny", "decode.prefix_cache", prefix_cache,
                 f"false with model.kind={cfg.model.get('kind')} (no key/value cache; decode=semi_ar_cached needs model=tiny)")

    budget = cfg.budget
    _require(budget.kind in BUDGET_KINDS, "budget.kind", budget.kind, f"one of {', '.join(BUDGET_KINDS)}")
    _require(_is_int(budget.value) and budget.value > 0, "budget.value", budget.value, "a positive integer")
    if budget.kind == "tokens":
        _require(budget.count in TOKEN_COUNTS, "budget.count", budget.count, f"one of {', '.join(TOKEN_COUNTS)}")
        _require(_is_int(budget.max_steps) and budget.max_steps > 0, "budget.max_steps", budget.max_steps, "a positive integer")

    optim = cfg.optim
    lr = optim.optimizer.lr
    _require(_is_number(lr) and lr > 0, "optim.optimizer.lr", lr, "a number > 0")
    _require(_is_number(optim.warmup_frac) and 0.0 <= optim.warmup_frac < 1.0, "optim.warmup_frac", optim.warmup_frac, "a number in [0, 1)")
    _require(_is_number(optim.min_lr_ratio) and 0.0 <= optim.min_lr_ratio <= 1.0, "optim.min_lr_ratio", optim.min_lr_ratio, "a number in [0, 1]")
    _require(optim.warmup_type in WARMUP_TYPES, "optim.warmup_type", optim.warmup_type, f"one of {', '.join(WARMUP_TYPES)}")
    ema = optim.get("ema_decay")
    _require(ema is None or (_is_number(ema) and 0.0 < ema < 1.0), "optim.ema_decay", ema, "null or a number in (0, 1)")

    micro = cfg.data.get("micro_batch_size")
    _require(micro is None or (_is_int(micro) and micro > 0), "data.micro_batch_size", micro, "a positive integer or null")
    try:
        plan_batches(cfg.data.batch_size, micro, world_size(cfg.trainer))
    except ValueError as error:
        raise ConfigError(str(error)) from None

    eval_size = cfg.eval.size
    _require(eval_size is None or (_is_int(eval_size) and eval_size > 0), "eval.size", eval_size, "a positive integer or null")
    _require(_is_int(cfg.eval.batch_size) and cfg.eval.batch_size > 0, "eval.batch_size", cfg.eval.batch_size, "a positive integer")

    progress = cfg.get("progress") or {}
    _require(progress.get("bar", "auto") in BAR_MODES, "progress.bar", progress.get("bar"), "auto, true or false")
    every = progress.get("every_n_steps", 100)
    _require(_is_int(every) and every >= 0, "progress.every_n_steps", every, "an integer >= 0 (0 = no log lines)")

    if cfg.mode == "eval" and cfg.model.kind != "hf":
        _require(cfg.ckpt_path is not None or cfg.model.get("init_from") is not None, "ckpt_path", cfg.ckpt_path,
                 "a run directory, export folder or .ckpt file (mode=eval needs one unless model.kind=hf or model.init_from is set)")
    if cfg.ckpt_path is not None:
        require_path("ckpt_path", cfg.ckpt_path, CKPT_PATH_KINDS[cfg.mode])
    validate_model(cfg)


def validate_model(cfg: DictConfig) -> None:
    """Check ``cfg.model`` (kind, HF loading options, LoRA) and the ``trust_remote_code`` opt-in, without
    touching the network or loading weights."""
    model = cfg.model
    _require(model.kind in MODEL_KINDS, "model.kind", model.kind, f"one of {', '.join(MODEL_KINDS)}")
    trust = model.get("trust_remote_code", False)
    _require(isinstance(trust, bool), "model.trust_remote_code", trust, "true or false")
    reason = _remote_code_reason(cfg)
    _require(trust or reason is None, "model.trust_remote_code", trust,
             f"true ({reason}; set model.trust_remote_code=true to run it)")
    if model.kind == "tiny":
        validate_tokenizer_choice(model)
    validate_init_from(cfg)
    if model.kind != "hf":
        return
    name = model.name_or_path
    _require(isinstance(name, str) and name.strip() != "", "model.name_or_path", name, "a hub id or a local folder")
    _require(model.auto_class in AUTO_CLASSES, "model.auto_class", model.auto_class, f"one of {', '.join(AUTO_CLASSES)}")
    _require(model.dtype in DTYPES, "model.dtype", model.dtype, f"one of {', '.join(DTYPES)}")
    _require(model.attention_mask in ATTENTION_MASK_FORMATS, "model.attention_mask", model.attention_mask,
             f"one of {', '.join(ATTENTION_MASK_FORMATS)}")
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
    _require(_is_number(lora.dropout) and 0.0 <= lora.dropout < 1.0, "model.lora.dropout", lora.dropout, "a number in [0, 1)")
    targets = lora.target_modules
    _require((isinstance(targets, str) and targets != "") or (isinstance(targets, ListConfig) and len(targets) > 0
             and all(isinstance(t, str) for t in targets)), "model.lora.target_modules", targets,
             "a non-empty list of module names or a regular expression")
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
        if (_read_json(folder / "config.json").get("auto_map")
                or _read_json(folder / "blocksft_model.json").get("requires_remote_code")):
            return f"{folder} ships its own modeling code"
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def check_runtime(cfg: DictConfig) -> None:
    """What this machine must provide for the config (not part of ``validate_config``, so every config
    still composes and validates on a CPU-only machine): the accelerator and strategy packages."""
    accelerator = cfg.trainer.get("accelerator", "cpu")
    _require(accelerator not in ("gpu", "cuda") or torch.cuda.is_available(), "trainer.accelerator", accelerator,
             "a device this machine has (no CUDA device is visible; use trainer=cpu)")
    strategy = cfg.trainer.get("strategy")
    target = str(strategy.get("_target_", "")) if isinstance(strategy, DictConfig) else str(strategy or "")
    if "deepspeed" in target.lower():
        _require(importlib.util.find_spec("deepspeed") is not None, "trainer.strategy", target,
                 "an installed strategy (pip install deepspeed)")
