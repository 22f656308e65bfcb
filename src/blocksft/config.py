"""Validation of a composed run config, before any model or data is built.

``validate_config(cfg)`` raises ``ConfigError`` whose message is one line naming the key, its
value and what is allowed; ``train.py`` prints it and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig

from blocksft.data.collate import TAIL_PADDINGS
from blocksft.decoding import REMASKING_MODES as REMASKINGS
from blocksft.masking import BLOCK_SAMPLINGS
from blocksft.objective import LOSS_WEIGHTINGS as WEIGHTINGS
from blocksft.optim import WARMUP_TYPES

MODES = ("train", "eval")
BUDGET_KINDS = ("steps", "tokens")
TOKEN_COUNTS = ("eligible", "masked")


class ConfigError(ValueError):
    """A config value is invalid; the message is a single line naming the key."""


def decode_block_lengths(cfg: DictConfig) -> tuple[int, ...]:
    """``decode.block_length`` as a tuple (it may be an int or a list)."""
    value = cfg.decode.block_length
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    return tuple(values)


def _require(condition: bool, key: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is invalid: allowed {allowed}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_config(cfg: DictConfig) -> None:
    """Check every value a run depends on; raise ``ConfigError`` on the first bad one."""
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

    masking = cfg.strategy.masking
    if "eps" in masking:
        _require(_is_number(masking.eps) and 0.0 < masking.eps < 1.0, "strategy.masking.eps", masking.eps, "a number in the open interval (0, 1)")
    for key in ("prefix_mask_rate", "suffix_mask_prob"):
        if key in masking:
            value = masking[key]
            _require(_is_number(value) and 0.0 <= value <= 1.0, f"strategy.masking.{key}", value, "a number in [0, 1]")
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

    eval_size = cfg.eval.size
    _require(eval_size is None or (_is_int(eval_size) and eval_size > 0), "eval.size", eval_size, "a positive integer or null")
    _require(_is_int(cfg.eval.batch_size) and cfg.eval.batch_size > 0, "eval.batch_size", cfg.eval.batch_size, "a positive integer")

    if cfg.mode == "eval":
        _require(cfg.ckpt_path is not None, "ckpt_path", cfg.ckpt_path, "a run directory, export folder or .ckpt file (mode=eval needs one)")
    if cfg.ckpt_path is not None:
        _require(Path(str(cfg.ckpt_path)).exists(), "ckpt_path", cfg.ckpt_path, "an existing path")
