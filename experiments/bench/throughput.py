"""Section 4: tokens/s and achieved FLOP/s of the default training step (``blocksft``'s step) against
the device's measured fp32 / bf16 matmul peak; the bf16 autocast speed-up."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import torch

from blocksft.masking import ClassicalMasking
from blocksft.models.tiny import TinyDiffusionLM
from experiments.bench.common import (
    default_model,
    default_optimizer,
    default_tokenizer,
    default_train_batch,
    default_training_step,
    mask_generator,
    to_device,
)
from experiments.bench.render import fmt_num, fmt_time, table
from experiments.bench.timing import ratio, summarise, time_interleaved


@dataclass(frozen=True)
class ThroughputSettings:
    batch: int = 32
    matmul_size: int = 2048
    repeats: int = 7
    warmup: int = 2


FULL = ThroughputSettings()
QUICK = ThroughputSettings(batch=4, matmul_size=256, repeats=2, warmup=1)


def training_flops(model: TinyDiffusionLM, batch_size: int, seq_len: int, loss_tokens: float) -> dict[str, float]:
    """FLOPs of one training step (forward + backward = 3 x forward; a multiply-add = 2 FLOPs).

    ``6 * P_blocks * B * L``  (every linear weight of the encoder blocks, at every position)
    ``+ 6 * H * V * N_loss``  (LM head, applied at the N_loss loss positions only)
    ``+ 12 * n_layers * H * L^2 * B``  (attention scores QK^T and the weighted sum AV).
    Embedding lookups, LayerNorm, GELU, softmax, biases and the optimizer are not counted.
    """
    config = model.config
    block_weights = sum(m.weight.numel() for m in model.blocks.modules() if isinstance(m, torch.nn.Linear))
    dense = 6 * block_weights * batch_size * seq_len
    head = 6 * config.hidden_size * config.vocab_size * loss_tokens
    attention = 12 * config.num_layers * config.hidden_size * seq_len**2 * batch_size
    return {
        "block_linear_params": block_weights,
        "dense": dense,
        "lm_head": head,
        "attention": attention,
        "total": dense + head + attention,
    }


def matmul_peak(size: int, repeats: int, warmup: int = 2, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Measured matmul peak: a square ``size`` x ``size`` product in fp32 and bf16, median FLOP/s."""
    generator = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(size, size, generator=generator).to(device),
        torch.randn(size, size, generator=generator).to(device),
    )
    a16, b16 = a.bfloat16(), b.bfloat16()
    times = time_interleaved({"fp32": lambda: a @ b, "bf16": lambda: a16 @ b16}, repeats, warmup, device=device)
    flops = 2 * size**3
    return {
        "size": size,
        "time": {k: summarise(v) for k, v in times.items()},
        "fp32_flops": flops / statistics.median(times["fp32"]),
        "bf16_flops": flops / statistics.median(times["bf16"]),
    }


def training_throughput_section(
    *,
    batch_size: int = 32,
    repeats: int = 7,
    warmup: int = 2,
    matmul_size: int = 2048,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Section 4: default step tokens/s, FLOP/s vs the measured matmul peaks, bf16 autocast speed-up."""
    tokenizer = default_tokenizer()
    model = default_model(tokenizer, seed).train().to(device)
    optimizer = default_optimizer(model)
    batch = to_device(default_train_batch(batch_size, tokenizer, seed), device)
    masking = ClassicalMasking(mask_id=tokenizer.mask_token_id)
    generator = mask_generator(seed, device)
    loss_tokens: dict[str, list[int]] = {"fp32": [], "bf16_autocast": []}

    def step(name: str, dtype: torch.dtype | None) -> None:
        loss_tokens[name].append(default_training_step(model, optimizer, masking, batch, generator, dtype))

    variants = {"fp32": lambda: step("fp32", None), "bf16_autocast": lambda: step("bf16_autocast", torch.bfloat16)}
    times = time_interleaved(variants, repeats, warmup, device=device)
    peak = matmul_peak(matmul_size, repeats, warmup, device)
    batch_size_, seq_len = batch["input_ids"].shape
    real_tokens = int(batch["attention_mask"].sum())
    result: dict[str, Any] = {
        "batch_shape": [batch_size_, seq_len],
        "real_tokens_per_step": real_tokens,
        "params": sum(p.numel() for p in model.parameters()),
        "flops_formula": " ".join(training_flops.__doc__.split()),
        "matmul_peak": peak,
        "steps": {},
    }
    for name, samples in times.items():
        step_s = statistics.median(samples)
        flops = training_flops(model, batch_size_, seq_len, statistics.mean(loss_tokens[name]))
        achieved = flops["total"] / step_s
        result["steps"][name] = {
            "time": summarise(samples),
            "tokens_per_s": batch_size_ * seq_len / step_s,
            "real_tokens_per_s": real_tokens / step_s,
            "mean_loss_tokens": statistics.mean(loss_tokens[name]),
            "flops_per_step": flops,
            "achieved_flops": achieved,
            "share_of_fp32_peak": achieved / peak["fp32_flops"],
            "share_of_bf16_peak": achieved / peak["bf16_flops"],
        }
    result["bf16_speedup"] = ratio(statistics.median(times["fp32"]), statistics.median(times["bf16_autocast"]))
    return result


# ================================================================================== report


def measure(s: ThroughputSettings, seed: int, device: torch.device, model_path: str | None) -> dict[str, Any]:
    del model_path  # the default model at random init: throughput does not depend on the weights
    return training_throughput_section(
        batch_size=s.batch, repeats=s.repeats, warmup=s.warmup, matmul_size=s.matmul_size, seed=seed, device=device
    )


def render(tp: dict[str, Any]) -> list[str]:
    peak = tp["matmul_peak"]
    lines = [
        f"## 4. Training throughput (default step, batch {tp['batch_shape'][0]} x {tp['batch_shape'][1]}, "
        f"{fmt_num(tp['params'])} params)",
        "",
    ]
    lines += table(
        ["measured matmul peak", f"{peak['size']}x{peak['size']} fp32", "bf16"],
        [["FLOP/s", fmt_num(peak["fp32_flops"]), fmt_num(peak["bf16_flops"])]],
    )
    rows = [
        [
            name,
            fmt_time(e["time"]["median_s"]),
            fmt_num(e["tokens_per_s"]),
            fmt_num(e["real_tokens_per_s"]),
            fmt_num(e["flops_per_step"]["total"]),
            fmt_num(e["achieved_flops"]),
            f"{e['share_of_fp32_peak']:.1%}",
            f"{e['share_of_bf16_peak']:.1%}",
        ]
        for name, e in tp["steps"].items()
    ]
    lines += table(
        [
            "step",
            "time",
            "tokens/s (incl. pad)",
            "real tokens/s",
            "FLOPs / step",
            "achieved FLOP/s",
            "of fp32 peak",
            "of bf16 peak",
        ],
        rows,
    )
    return lines + [
        f"bf16 autocast speed-up vs fp32: **{tp['bf16_speedup']:.2f}x**.",
        "",
        "FLOPs: " + tp["flops_formula"],
        "",
    ]
