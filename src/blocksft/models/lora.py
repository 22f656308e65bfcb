"""LoRA through ``peft`` (``model.lora``): only the adapter weights are trainable.

``target_modules`` follows peft: a list of module names, each matching a module whose dotted path
equals it or ends with ``.<name>``, or one string taken as a regular expression over full paths.
Unlike peft, which accepts a list as soon as one name matches, every listed name must match a module
(the official Blockwise-SFT code listed names that do not exist in LLaDA and silently lost them).
"""

from __future__ import annotations

import logging
import re

from omegaconf import DictConfig, ListConfig
from torch import nn

from blocksft.errors import ConfigError

log = logging.getLogger(__name__)

LORA_EXPORTS = ("merged", "adapter")


def unmatched_targets(model: nn.Module, targets: str | list[str]) -> list[str]:
    """The entries of ``targets`` that match no module of ``model`` (peft's matching rules)."""
    names = [name for name, _ in model.named_modules() if name]
    if isinstance(targets, str):
        return [] if any(re.fullmatch(targets, name) for name in names) else [targets]
    return [t for t in targets if not any(name == t or name.endswith(f".{t}") for name in names)]


def linear_module_names(model: nn.Module) -> list[str]:
    """Distinct last path components of the model's linear layers (to suggest valid targets)."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)})


def apply_lora(model: nn.Module, lora_cfg: DictConfig) -> nn.Module:
    """``model`` wrapped by ``peft.get_peft_model``; logs the trainable-parameter count. Raises a
    one-line ``ConfigError`` when a target matches no module."""
    from peft import LoraConfig, get_peft_model

    targets = lora_cfg.target_modules
    targets = list(targets) if isinstance(targets, (list, ListConfig)) else str(targets)
    missing = unmatched_targets(model, targets)
    if missing:
        raise ConfigError(
            f"model.lora.target_modules={targets} is invalid: allowed module names of "
            f"{type(model).__name__} ({', '.join(missing)} match nothing; its linear layers: "
            f"{', '.join(linear_module_names(model))})"
        )
    config = LoraConfig(
        r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout, target_modules=targets, bias="none"
    )
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info(
        "LoRA r=%d alpha=%s dropout=%s on %s: %d trainable of %d parameters (%.3f%%)",
        lora_cfg.r,
        lora_cfg.alpha,
        lora_cfg.dropout,
        targets,
        trainable,
        total,
        100.0 * trainable / total,
    )
    return model
