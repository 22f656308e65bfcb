"""Section 2: the training step with the LM head applied at loss positions only (``blocksft``'s step)
vs projecting every position and selecting (the baseline): time, peak memory, loss and gradient
agreement. Peak memory: on the CPU the resident-set growth of a fresh process per variant; on a GPU
``torch.cuda.max_memory_allocated`` over the step."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from blocksft.masking import BlockwiseMasking, ClassicalMasking, MaskedBatch, MaskingStrategy
from blocksft.training.objective import masked_diffusion_loss
from experiments.bench.common import (
    MASK_ID,
    ROOT,
    loss_and_backward,
    mask_generator,
    sized_model,
    synthetic_batch,
    to_device,
)
from experiments.bench.render import check, median_time, table
from experiments.bench.timing import ratio, summarise, time_interleaved

LOSS_DIFF_MAX, GRAD_DIFF_MAX = 1e-5, 1e-5


@dataclass(frozen=True)
class LossSpec:
    """Everything needed to rebuild section 2's model, batch and masks (also in a subprocess)."""

    vocab_size: int = 32000
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 8
    intermediate_size: int = 512
    batch_size: int = 32
    prompt_len: int = 56
    response_len: int = 200
    block_size: int = 32
    seed: int = 0


@dataclass(frozen=True)
class LossPositionsSettings:
    spec: LossSpec = LossSpec()
    repeats: int = 3
    warmup: int = 1
    measure_memory: bool = True


FULL = LossPositionsSettings()
QUICK = LossPositionsSettings(
    LossSpec(
        vocab_size=512,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        batch_size=4,
        prompt_len=8,
        response_len=24,
        block_size=8,
    ),
    repeats=1,
    warmup=0,
)


def full_projection_loss(model: torch.nn.Module, batch: dict, masked: MaskedBatch) -> torch.Tensor:
    """Baseline: the LM head over every position, then the loss positions selected (same loss)."""
    hidden = model.encode(masked.noisy_ids, batch["attention_mask"])
    rows, cols = masked.loss_mask.nonzero(as_tuple=True)
    logits = model.project(hidden)[rows, cols]
    return masked_diffusion_loss(logits, batch["input_ids"][rows, cols], rows, masked.mask_rate, masked.response_len)


VARIANTS = {"loss_positions": {}, "full_projection": {"loss_fn": full_projection_loss}}


def loss_setup(
    spec: LossSpec, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, dict, dict[str, MaskedBatch]]:
    """Deterministic model, batch and one fixed mask per strategy ({"classical", "blockwise"}) on ``device``."""
    model = (
        sized_model(
            spec.vocab_size, spec.hidden_size, spec.num_layers, spec.num_heads, spec.intermediate_size, spec.seed
        )
        .train()
        .to(device)
    )
    batch = to_device(
        synthetic_batch(spec.batch_size, spec.prompt_len, spec.response_len, spec.vocab_size, spec.seed), device
    )
    strategies: dict[str, MaskingStrategy] = {
        "classical": ClassicalMasking(mask_id=MASK_ID),
        "blockwise": BlockwiseMasking(spec.block_size, mask_id=MASK_ID, block_sampling="without_replacement"),
    }
    masks = {name: s.mask_batch(batch, mask_generator(spec.seed, device)) for name, s in strategies.items()}
    return model, batch, masks


def _read_status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (e.g. VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_memory_probe(spec: LossSpec, kind: str, variant: str, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Peak memory increase of one training step (forward + backward), in this process.

    Build the setup, run one warm-up step (one-time allocations such as thread pools are not
    charged to the variant), drop the gradients, ``gc.collect()`` and glibc ``malloc_trim(0)`` (freed
    heap pages go back to the OS), reset the kernel's peak-RSS counter (``echo 5 >
    /proc/self/clear_refs``), then run the measured step and report ``VmHWM - VmRSS_before``. Torch's
    CPU allocator does not cache, so every tensor alive at the peak is resident.

    On a CUDA device: ``torch.cuda.max_memory_allocated`` during the step minus the memory allocated before it.
    """
    model, batch, masks = loss_setup(spec, device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_and_backward(model, batch, masks[kind], **VARIANTS[variant])

    step()
    model.zero_grad(set_to_none=True)
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {
            "peak_cuda_delta_mib": (peak - before) / 2**20,
            "allocated_before_mib": before / 2**20,
            "peak_allocated_mib": peak / 2**20,
        }
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _read_status_kib("VmRSS")
    step()
    peak = _read_status_kib("VmHWM")
    return {"peak_rss_delta_mib": (peak - before) / 1024, "rss_before_mib": before / 1024, "peak_rss_mib": peak / 1024}


def peak_delta_mib(memory: dict[str, Any]) -> float | None:
    """The peak increase of a probe's result, whichever device measured it (None after an error)."""
    return memory.get("peak_rss_delta_mib", memory.get("peak_cuda_delta_mib"))


def measure_peak_memory(spec: LossSpec, kind: str, variant: str, device: torch.device | str = "cpu") -> dict[str, Any]:
    """:func:`peak_memory_probe` in a fresh Python process (``python -m experiments.bench --memory-probe``)
    on the CPU, so the variants do not share a heap; in this process on a GPU (the allocator's counters
    are exact and can be reset)."""
    if torch.device(device).type == "cuda":
        return peak_memory_probe(spec, kind, variant, device)
    request = json.dumps({"spec": asdict(spec), "kind": kind, "variant": variant, "threads": torch.get_num_threads()})
    done = subprocess.run(
        [sys.executable, "-m", "experiments.bench", "--memory-probe", request],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def gradient_agreement(model: torch.nn.Module, batch: dict[str, torch.Tensor], masked: MaskedBatch) -> dict[str, float]:
    """Loss and gradients of both variants on the same mask: absolute loss difference, max abs and
    max relative (to the largest gradient entry of that tensor) gradient difference."""
    results = []
    for variant in VARIANTS.values():
        model.zero_grad(set_to_none=True)
        loss = loss_and_backward(model, batch, masked, **variant)
        grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
        results.append((float(loss), grads))
    model.zero_grad(set_to_none=True)
    (loss_a, grads_a), (loss_b, grads_b) = results
    abs_diff = max(float((a - b).abs().max()) for a, b in zip(grads_a, grads_b))
    rel_diff = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) for a, b in zip(grads_a, grads_b))
    return {
        "loss_positions_loss": loss_a,
        "full_projection_loss": loss_b,
        "loss_abs_diff": abs(loss_a - loss_b),
        "grad_max_abs_diff": abs_diff,
        "grad_max_rel_diff": rel_diff,
        "grad_max_abs": max(float(b.abs().max()) for b in grads_b),
    }


def loss_positions_section(
    spec: LossSpec = LossSpec(),
    *,
    repeats: int = 3,
    warmup: int = 1,
    measure_memory: bool = True,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Section 2: LM head at loss positions only vs full projection, per mask kind."""
    model, batch, masks = loss_setup(spec, device)
    if torch.device(device).type == "cuda":
        method = "torch.cuda.max_memory_allocated during one step minus the memory allocated before it."
    else:
        method = "a fresh subprocess per variant. " + " ".join(peak_memory_probe.__doc__.split("\n\n")[1].split())
    out: dict[str, Any] = {"spec": asdict(spec), "memory_method": method, "kinds": {}}
    for kind, masked in masks.items():
        agreement = gradient_agreement(model, batch, masked)

        def step(variant: str, masked: MaskedBatch = masked) -> None:
            model.zero_grad(set_to_none=True)
            loss_and_backward(model, batch, masked, **VARIANTS[variant])

        times = time_interleaved(
            {name: (lambda name=name: step(name)) for name in VARIANTS}, repeats, warmup, device=device
        )
        model.zero_grad(set_to_none=True)
        loss_tokens = int(masked.loss_mask.sum())
        entry: dict[str, Any] = {
            "loss_tokens": loss_tokens,
            "logits_shape": {
                "loss_positions": [loss_tokens, spec.vocab_size],
                "full_projection": [*masked.noisy_ids.shape, spec.vocab_size],
            },
            "time": {name: summarise(samples) for name, samples in times.items()},
            "speedup": ratio(statistics.median(times["full_projection"]), statistics.median(times["loss_positions"])),
            **agreement,
        }
        if measure_memory:
            memory = {variant: measure_peak_memory(spec, kind, variant, device) for variant in VARIANTS}
            entry["memory"] = memory
            deltas = {variant: peak_delta_mib(m) for variant, m in memory.items()}
            if None not in deltas.values():
                entry["memory_ratio"] = ratio(deltas["full_projection"], deltas["loss_positions"])
        out["kinds"][kind] = entry
    return out


def measure(s: LossPositionsSettings, seed: int, device: torch.device, model_path: str | None) -> dict[str, Any]:
    del model_path  # a model of the spec's sizes
    spec = LossSpec(**{**asdict(s.spec), "seed": seed})
    return loss_positions_section(
        spec, repeats=s.repeats, warmup=s.warmup, measure_memory=s.measure_memory, device=device
    )


def targets(section: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for kind, entry in section["kinds"].items():
        loss_diff, grad_diff = entry["loss_abs_diff"], entry["grad_max_abs_diff"]
        checks.append(check(f"{kind}: |loss difference|", loss_diff, f"< {LOSS_DIFF_MAX:g}", loss_diff < LOSS_DIFF_MAX))
        checks.append(
            check(f"{kind}: max |gradient difference|", grad_diff, f"< {GRAD_DIFF_MAX:g}", grad_diff < GRAD_DIFF_MAX)
        )
    return checks


def render(lp: dict[str, Any]) -> list[str]:
    spec = lp["spec"]
    lines = [
        f"## 2. LM head at loss positions only (vocab {spec['vocab_size']}, hidden {spec['hidden_size']}, "
        f"{spec['num_layers']} layers, {spec['num_heads']} heads, batch {spec['batch_size']} x "
        f"{spec['prompt_len'] + spec['response_len']}, response {spec['response_len']}, block {spec['block_size']})",
        "",
    ]

    def memory_cell(entry: dict[str, Any], variant: str) -> str:
        value = entry.get("memory", {}).get(variant, {})
        delta = peak_delta_mib(value)
        return f"{delta:.0f} MiB" if delta is not None else value.get("error", "-")

    rows = []
    for kind, e in lp["kinds"].items():
        rows.append(
            [
                kind,
                e["loss_tokens"],
                median_time(e, "loss_positions"),
                median_time(e, "full_projection"),
                f"{e['speedup']:.2f}x",
                memory_cell(e, "loss_positions"),
                memory_cell(e, "full_projection"),
                f"{e['memory_ratio']:.2f}x" if "memory_ratio" in e else "-",
                f"{e['loss_abs_diff']:.1e}",
                f"{e['grad_max_abs_diff']:.1e} (rel. {e['grad_max_rel_diff']:.1e})",
            ]
        )
    lines += table(
        [
            "mask",
            "loss tokens",
            "step, loss positions",
            "step, full projection",
            "speed-up",
            "peak mem, loss positions",
            "peak mem, full",
            "memory ratio",
            "abs. loss diff",
            "max abs. grad diff",
        ],
        rows,
    )
    return lines + ["Step = forward + backward (no optimizer). Peak memory: " + lp["memory_method"], ""]
