"""Learning-rate schedule: warmup (linear, or DeepSpeed's log warmup) then cosine decay to a floor."""

from __future__ import annotations

import math

from blocksft.errors import require

WARMUP_TYPES = ("linear", "log")


def check_warmup_type(warmup_type) -> str:
    """``optim.warmup_type``: one of ``WARMUP_TYPES`` (the one statement of the rule)."""
    require(warmup_type in WARMUP_TYPES, "optim.warmup_type", warmup_type, f"one of {', '.join(WARMUP_TYPES)}")
    return warmup_type


def warmup_cosine_factor(
    step: int, total_steps: int, warmup_frac: float, min_lr_ratio: float, warmup_type: str = "linear"
) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based).

    Warmup over ``ceil(warmup_frac * total_steps)`` steps from ~0 to 1, then cosine from 1 to
    ``min_lr_ratio`` at ``total_steps``; constant ``min_lr_ratio`` afterwards.
    """
    check_warmup_type(warmup_type)
    warmup_steps = math.ceil(warmup_frac * total_steps)
    if step < warmup_steps:
        if warmup_type == "log":
            return math.log(step + 1) / math.log(warmup_steps + 1)
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
