"""Where a run computed: library versions, the device, and the CPU kernels that decide its rounding.

One config and seed gives identical bytes twice on one machine, but not across CPU kernel ISAs: ATen's
vectorised kernels (``ATEN_CPU_CAPABILITY``), MKL's code path (``MKL_CBWR``) and oneDNN's (``ONEDNN_MAX_CPU_ISA``)
each round differently on AVX2, AVX512 and AMX machines. ``environment()`` records what chose them, and
``kernel_isa`` condenses it into the key a study report pairs seeds on: two runs with different keys are
different experiments of one seed.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

import torch

#: Environment variables that pin the CPU kernels; recorded when set.
KERNEL_PINS: tuple[str, ...] = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
#: CPU flags the math libraries dispatch on, lowest tier first.
ISA_FLAGS: tuple[str, ...] = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
#: Libraries whose versions a result depends on.
LIBRARIES: tuple[str, ...] = ("torch", "transformers", "lightning", "tokenizers", "numpy")


def cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, list[str]]:
    """(processor name, the ``ISA_FLAGS`` it has) from ``/proc/cpuinfo``; the platform's name and no flags
    where that file does not exist."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open(path) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return name, [flag for flag in ISA_FLAGS if flag in flags]


def cpu_tier(flags: list[str]) -> str:
    """The highest kernel tier among ``flags``: ``AMX``, ``AVX512`` or ``AVX2`` (``baseline`` for none)."""
    if "amx_tile" in flags:
        return "AMX"
    if "avx512f" in flags:
        return "AVX512"
    return "AVX2" if "avx2" in flags else "baseline"


def kernel_isa(aten_capability: str, tier: str, pins: dict[str, str]) -> str:
    """``"<ATen capability>/<CPU tier>"``, e.g. ``AVX512/AMX``, with ``pinned <pins>`` appended when kernel
    pins are set: runs with equal keys ran the same kernels (as far as the libraries let us tell)."""
    key = f"{aten_capability}/{tier}"
    return key + (" pinned " + ",".join(f"{k}={v}" for k, v in sorted(pins.items())) if pins else "")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(device: torch.device | str = "cpu") -> dict:
    """The record of where a run computed: ``python``, library versions, ``device`` (``cpu`` or the GPU's
    name), ``cuda`` (CUDA version on a GPU, else None), ``cpu`` (processor name), ``cpu_flags``,
    ``aten_cpu_capability``, ``torch_threads``, ``kernel_pins`` (the set ``KERNEL_PINS``) and
    ``kernel_isa`` (the key runs are compared on; the GPU's name and CUDA version on a GPU)."""
    device = torch.device(device)
    processor, flags = cpu_info()
    pins = {name: os.environ[name] for name in KERNEL_PINS if os.environ.get(name)}
    capability = torch.backends.cpu.get_cpu_capability()
    on_gpu = device.type == "cuda"
    gpu = torch.cuda.get_device_name(device) if on_gpu else None
    return {
        "python": platform.python_version(),
        **library_versions(),
        "device": gpu or device.type,
        "cuda": torch.version.cuda if on_gpu else None,
        "cpu": processor,
        "cpu_flags": flags,
        "aten_cpu_capability": capability,
        "torch_threads": torch.get_num_threads(),
        "kernel_pins": pins,
        "kernel_isa": f"{gpu} CUDA {torch.version.cuda}" if on_gpu else kernel_isa(capability, cpu_tier(flags), pins),
    }
