"""Section 3: batched semi-autoregressive decoding of arithmetic prompts vs one prompt at a time
(problems/s, identical tokens, NFE, time outside the model forward), and a sweep over the study's
decoding block lengths, exact and prefix-cached, batched."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from experiments.bench.generation import ForwardTimer, arithmetic_prompts, decode, decoding_model
from experiments.bench.render import check, fmt_time, table
from experiments.bench.timing import ratio, summarise, synchronize

SPEEDUP_MIN, OVERHEAD_MAX = 10.0, 0.10


@dataclass(frozen=True)
class DecodingSettings:
    prompts: int = 64
    gen_length: int = 32
    block: int = 8
    steps: int = 32
    sweep_blocks: tuple[int, ...] = (4, 8, 16, 32)
    repeats: int = 3
    sweep_repeats: int = 2


FULL = DecodingSettings()
QUICK = DecodingSettings(prompts=4, gen_length=8, block=4, steps=8, sweep_blocks=(2, 4, 8), repeats=1, sweep_repeats=1)


def timed_decodes(
    timer: ForwardTimer, prompts: list[torch.Tensor], tokenizer, modes: dict[str, dict[str, Any]], repeats: int
) -> tuple[dict[str, dict[str, Any]], dict[str, list[torch.Tensor]]]:
    """Interleaved repetitions of several decode modes (kwargs of :func:`decode`).

    Per mode: problems/s (median), forward calls, NFE per problem (model rows evaluated / problems),
    token positions fed to the model per problem, the share of wall time outside the model forward
    and the forward time per token position (both medians over repetitions; the latter shows whether
    batching makes the model itself cheaper).
    """
    totals: dict[str, list[float]] = {name: [] for name in modes}
    overheads: dict[str, list[float]] = {name: [] for name in modes}
    per_position: dict[str, list[float]] = {name: [] for name in modes}
    counts: dict[str, tuple[int, int, int]] = {}
    outputs: dict[str, list[torch.Tensor]] = {}
    for _ in range(repeats):
        for name, kwargs in modes.items():
            timer.reset()
            synchronize(timer.device)
            start = time.perf_counter()
            outputs[name] = decode(timer, prompts, tokenizer, **kwargs)
            synchronize(timer.device)
            total = time.perf_counter() - start
            totals[name].append(total)
            overheads[name].append((total - timer.seconds) / total)
            per_position[name].append(timer.seconds / timer.positions)
            counts[name] = (timer.calls, timer.rows, timer.positions)
    report = {}
    for name in modes:
        total = statistics.median(totals[name])
        report[name] = {
            **modes[name],
            "time": summarise(totals[name]),
            "problems_per_s": len(prompts) / total,
            "forward_calls": counts[name][0],
            "nfe_per_problem": counts[name][1] / len(prompts),
            "positions_per_problem": counts[name][2] / len(prompts),
            "overhead_share": statistics.median(overheads[name]),
            "forward_s_per_position": statistics.median(per_position[name]),
        }
    return report, outputs


def decoding_section(
    *,
    num_prompts: int = 64,
    gen_length: int = 32,
    block_length: int = 8,
    steps: int = 32,
    sweep_block_lengths: Sequence[int] = (4, 8, 16, 32),
    repeats: int = 3,
    sweep_repeats: int = 2,
    model_path: str | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Section 3: batched vs batch-1 decoding, token identity, NFE, overhead (exact decoder); a sweep
    over the study's decoding block lengths, exact and prefix-cached, batched."""
    model, tokenizer, description = decoding_model(model_path, seed, device)
    timer = ForwardTimer(model)
    prompts = arithmetic_prompts(num_prompts, tokenizer, device)
    base = {"gen_length": gen_length, "block_length": block_length, "steps": steps}
    for batched in (True, False):  # warm-up on two prompts
        decode(timer, prompts[:2], tokenizer, batched=batched, **base)
    modes = {"batched": {"batched": True, **base}, "batch_size_1": {"batched": False, **base}}
    paired, outputs = timed_decodes(timer, prompts, tokenizer, modes, repeats)
    identical = [bool(torch.equal(a, b)) for a, b in zip(outputs["batched"], outputs["batch_size_1"])]
    sweep_modes = {
        f"block_{b}{'_cached' if cached else ''}": {
            "batched": True,
            "gen_length": gen_length,
            "block_length": b,
            "steps": steps,
            "prefix_cache": cached,
        }
        for b in sweep_block_lengths
        for cached in (False, True)
    }
    sweep, _ = timed_decodes(timer, prompts, tokenizer, sweep_modes, sweep_repeats)
    prompt_lengths = [p.numel() for p in prompts]
    return {
        "model": description,
        "num_prompts": num_prompts,
        "prompt_len_min_mean_max": [min(prompt_lengths), statistics.mean(prompt_lengths), max(prompt_lengths)],
        "settings": base,
        "modes": paired,
        "speedup": ratio(paired["batched"]["problems_per_s"], paired["batch_size_1"]["problems_per_s"]),
        "identical_problems": sum(identical),
        "tokens_identical": all(identical),
        "sweep": sweep,
    }


def measure(s: DecodingSettings, seed: int, device: torch.device, model_path: str | None) -> dict[str, Any]:
    return decoding_section(
        num_prompts=s.prompts,
        gen_length=s.gen_length,
        block_length=s.block,
        steps=s.steps,
        sweep_block_lengths=s.sweep_blocks,
        repeats=s.repeats,
        sweep_repeats=s.sweep_repeats,
        model_path=model_path,
        seed=seed,
        device=device,
    )


def targets(decoding: dict[str, Any]) -> list[dict[str, Any]]:
    speedup, overhead = decoding["speedup"], decoding["modes"]["batched"]["overhead_share"]
    return [
        check("batched decoding speed-up", speedup, f">= {SPEEDUP_MIN:g}x", speedup >= SPEEDUP_MIN),
        check(
            "batched tokens identical to batch-1", decoding["tokens_identical"], "true", decoding["tokens_identical"]
        ),
        check(
            "batched decoding time outside the forward", overhead, f"<= {OVERHEAD_MAX:.0%}", overhead <= OVERHEAD_MAX
        ),
    ]


def render(d: dict[str, Any]) -> list[str]:
    settings, (shortest, mean, longest) = d["settings"], d["prompt_len_min_mean_max"]
    lines = [
        f"## 3. Decoding ({d['num_prompts']} arithmetic prompts, gen_length {settings['gen_length']}, "
        f"block {settings['block_length']}, steps {settings['steps']})",
        "",
        f"Model: {d['model']}. Prompt tokens min / mean / max: {shortest} / {mean:.1f} / {longest}.",
        "",
    ]
    rows = [
        [
            name,
            fmt_time(e["time"]["median_s"]),
            f"{e['problems_per_s']:.2f}",
            e["forward_calls"],
            f"{e['nfe_per_problem']:g}",
            f"{e['overhead_share']:.1%}",
            fmt_time(e["forward_s_per_position"]),
        ]
        for name, e in d["modes"].items()
    ]
    lines += table(
        [
            "mode",
            "time (all prompts)",
            "problems/s",
            "forward calls",
            "NFE / problem",
            "time outside forward",
            "forward time / token position",
        ],
        rows,
    )
    per_position = {name: e["forward_s_per_position"] for name, e in d["modes"].items()}
    lines += [
        f"Speed-up batched vs batch-1: **{d['speedup']:.2f}x**; identical tokens: "
        f"{d['identical_problems']}/{d['num_prompts']} problems. Both modes run the same NFE over the same "
        "token positions, so batching can only win by making a token position's forward cheaper: "
        f"{fmt_time(per_position['batch_size_1'])} at batch 1 vs {fmt_time(per_position['batched'])} batched "
        f"bounds the speed-up at {ratio(per_position['batch_size_1'], per_position['batched']):.2f}x "
        "when the batch-1 forward already keeps the cores busy.",
        "",
    ]
    rows = [
        [
            e["block_length"],
            "prefix cache (approx.)" if e.get("prefix_cache") else "exact",
            e["steps"],
            f"{e['nfe_per_problem']:g}",
            f"{e['positions_per_problem']:.0f}",
            f"{e['problems_per_s']:.2f}",
            f"{e['overhead_share']:.1%}",
        ]
        for e in d["sweep"].values()
    ]
    return lines + table(
        [
            "decode block length (batched)",
            "decoder",
            "steps",
            "NFE / problem",
            "positions fed / problem",
            "problems/s",
            "time outside forward",
        ],
        rows,
    )
