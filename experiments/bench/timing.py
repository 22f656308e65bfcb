"""Timing on CPU or GPU: interleaved repetitions, CUDA synchronisation, the machine's description.

Every figure of the benchmark is a ratio of variants measured in the same process and run: their
repetitions are interleaved (A, B, A, B, ...) after warm-up calls and each is timed with
``time.perf_counter``; on a CUDA device the queue is drained (``torch.cuda.synchronize``) before the
clock starts and before it stops, so a timing covers the kernels and not only their launch.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before any --threads
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the first CUDA device when one is visible, else the CPU. ``cuda`` without one raises."""
    if name not in DEVICES:
        raise ValueError(f"--device={name!r}: allowed values are {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device=cuda: no CUDA device is visible (use --device cpu)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def synchronize(device: torch.device | str | None) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    variants: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    inner: dict[str, int] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one entry per repetition, variants interleaved.

    Each repetition runs every variant once in turn (``inner[name]`` calls, timed together and
    divided), so slow drifts of a shared machine hit all variants alike. ``device``: synchronised
    around each timed repetition.
    """
    inner = inner or {}
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            calls = inner.get(name, 1)
            synchronize(device)
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / calls)
    return times


def summarise(samples: Sequence[float]) -> dict[str, Any]:
    """Median (the reported figure), min, max and count of a list of timings in seconds."""
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "n": len(samples)}


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, ``inf`` for a zero denominator."""
    return numerator / denominator if denominator > 0 else math.inf


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """CPU model, cores, relevant ISA flags, torch / python versions, the current load and, on a CUDA
    device, the GPU (name, memory, compute capability)."""
    model_name, flags = "", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model_name:
                model_name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    model_name = model_name or platform.processor() or "unknown"
    interesting = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    info = {
        "cpu_model": model_name,
        "logical_cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "isa_flags": [f for f in interesting if f in flags],
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_default_threads": DEFAULT_THREADS,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
        "device": str(device),
    }
    if torch.device(device).type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info["gpu"] = {
            "name": properties.name,
            "memory_gib": properties.total_memory / 2**30,
            "capability": f"{properties.major}.{properties.minor}",
            "cuda_version": torch.version.cuda,
        }
    return info
