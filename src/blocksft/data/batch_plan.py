"""How a global batch is spread over devices and gradient accumulation.

A study's batch size means rows per optimizer step, whatever the hardware: ``data.batch_size`` is that
global batch, and the micro-batch per device and the accumulation factor are derived from it, so a
run means the same thing on 1 CPU or 64 GPUs (the official code's step count changed silently with
the number of GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, ListConfig

from blocksft.errors import InvalidValue, is_int, require


@dataclass(frozen=True)
class BatchPlan:
    global_batch: int  # rows per optimizer step, all devices
    micro_batch: int  # rows per forward/backward on one device
    world_size: int  # devices x nodes
    accumulate: int  # micro-steps per optimizer step

    def __post_init__(self) -> None:
        if self.micro_batch * self.world_size * self.accumulate != self.global_batch:
            raise ValueError(
                f"micro_batch {self.micro_batch} x world_size {self.world_size} x accumulate "
                f"{self.accumulate} != global batch {self.global_batch}"
            )


def world_size(trainer_cfg: DictConfig) -> int:
    """Processes a trainer config launches: devices per node x nodes (``auto``/-1 counts visible GPUs)."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, (list, tuple, ListConfig)):
        per_node = len(devices)
    elif devices in ("auto", -1, "-1"):
        per_node = torch.cuda.device_count() if trainer_cfg.get("accelerator") in ("gpu", "cuda", "auto") else 1
        per_node = max(per_node, 1)
    else:
        per_node = int(devices)
    return per_node * int(trainer_cfg.get("num_nodes", 1))


def plan_batches(global_batch: int, micro_batch: int | None, world: int) -> BatchPlan:
    """The micro-batch (default: the largest that needs no accumulation) and accumulation for a global batch.

    The rules of ``data.batch_size`` and ``data.micro_batch_size``: ``InvalidValue`` naming the key when a
    value is not a positive integer (the micro-batch: or null) or the global batch cannot be split evenly."""
    require(is_int(global_batch) and global_batch > 0, "data.batch_size", global_batch, "a positive integer")
    require(
        micro_batch is None or (is_int(micro_batch) and micro_batch > 0),
        "data.micro_batch_size",
        micro_batch,
        "a positive integer or null",
    )
    require(
        global_batch % world == 0, "data.batch_size", global_batch, f"a multiple of the number of devices ({world})"
    )
    micro = global_batch // world if micro_batch is None else micro_batch
    if (global_batch // world) % micro:
        raise InvalidValue(
            "data.micro_batch_size",
            micro_batch,
            f"a positive divisor of data.batch_size / devices = {global_batch // world}",
        )
    return BatchPlan(global_batch, micro, world, global_batch // (world * micro))
