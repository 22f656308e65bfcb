"""Section 1: our vectorised masking strategies vs two Python baselines of the official Blockwise-SFT
masking (``official_masking``), their invariants, and masking time as a share of one default training
step. On a GPU our strategies and the step run on the device; the baselines stay Python on the CPU,
as the official data loader does."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from blocksft.masking import BlockwiseMasking, ClassicalMasking
from experiments.bench.common import (
    MASK_ID,
    default_model,
    default_optimizer,
    default_tokenizer,
    default_train_batch,
    default_training_step,
    mask_generator,
    synthetic_batch,
    to_device,
)
from experiments.bench.official_masking import (
    block_pools,
    blockwise_violations,
    loop_blockwise_mask,
    official_blockwise_mask,
)
from experiments.bench.render import check, median_time, table, verdict
from experiments.bench.timing import ratio, summarise, time_interleaved

SPEEDUP_MIN, STEP_SHARE_MAX = 100.0, 0.02


@dataclass(frozen=True)
class MaskingSettings:
    batch: int = 32
    prompt_len: int = 56
    response_len: int = 200
    block: int = 32
    inner: int = 20  # masking calls per timed repetition (one call is ~0.1 ms)
    dataset_size: int = 20000  # sample indices cycle over a permutation of this many samples
    scale: tuple[int, int, int] | None = (128, 32, 1024)  # larger batch: (batch, prompt, response)
    train_batch: int = 32  # default training step
    train_block: int = 8  # conf/train.yaml default block size, for blockwise masking of the default batch
    repeats: int = 7
    warmup: int = 2


FULL = MaskingSettings()
QUICK = MaskingSettings(
    batch=4,
    prompt_len=8,
    response_len=24,
    block=8,
    inner=2,
    dataset_size=64,
    scale=(8, 8, 64),
    train_batch=4,
    repeats=2,
    warmup=1,
)


def _index_stream(dataset_size: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches of sample indices: consecutive slices of a seeded permutation, cycled."""
    order = torch.randperm(dataset_size, generator=torch.Generator().manual_seed(seed))
    batches = [order[i : i + batch_size] for i in range(0, dataset_size - batch_size + 1, batch_size)]
    while True:
        yield from batches


def compare_masking(
    *,
    batch_size: int,
    prompt_len: int,
    response_len: int,
    block_size: int,
    dataset_size: int,
    inner: int,
    repeats: int,
    warmup: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Time our two strategies and the two Python baselines on one synthetic batch, interleaved.

    Sample indices come from a permutation of ``dataset_size`` samples, consecutive slices, as an
    epoch would (the same stream for every variant); each baseline has its own block pools (built up
    front, as the official dataset does) and its own ``random.Random``.
    """
    if dataset_size < batch_size:
        raise ValueError(f"dataset_size={dataset_size} must be >= batch_size={batch_size}")
    batch = synthetic_batch(batch_size, prompt_len, response_len, vocab_size=100, seed=seed)
    ids, starts, lengths = batch["input_ids"], batch["response_start"], batch["loss_scope_len"]
    on_device = to_device(batch, device)
    device_ids, device_starts, device_lengths = (
        on_device["input_ids"],
        on_device["response_start"],
        on_device["loss_scope_len"],
    )
    generator = mask_generator(seed, device)
    classical = ClassicalMasking(mask_id=MASK_ID)
    blockwise = BlockwiseMasking(block_size, mask_id=MASK_ID, block_sampling="without_replacement")
    streams = {name: _index_stream(dataset_size, batch_size, seed) for name in ("ours", "official", "loop")}
    baselines = {"official_blockwise": official_blockwise_mask, "loop_blockwise": loop_blockwise_mask}
    pools = {name: block_pools(range(dataset_size), [response_len] * dataset_size, block_size) for name in baselines}
    rngs = {name: random.Random(seed) for name in baselines}

    def baseline(name: str, stream: str) -> Callable[[], object]:
        return lambda: baselines[name](
            ids, starts, lengths, next(streams[stream]), pools[name], rngs[name], block_size=block_size, mask_id=MASK_ID
        )

    variants = {
        "ours_classical": lambda: classical(device_ids, device_starts, device_lengths, generator, None),
        "ours_blockwise": lambda: blockwise(
            device_ids, device_starts, device_lengths, generator, next(streams["ours"]).to(device)
        ),
        "official_blockwise": baseline("official_blockwise", "official"),
        "loop_blockwise": baseline("loop_blockwise", "loop"),
        # the two ops any vectorised masking needs (one draw per token, one select): the floor of an eager
        # torch implementation, so loop / floor bounds the speed-up any such implementation can reach
        "floor_rand_where": lambda: torch.where(
            torch.rand(device_ids.shape, generator=generator, device=device) < 0.5, MASK_ID, device_ids
        ),
    }
    times = time_interleaved(variants, repeats, warmup, inner={name: inner for name in variants}, device=device)
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    in_response = (lengths.float() / ids.shape[1]).mean().item()
    return {
        "batch_shape": list(ids.shape),
        "prompt_len": prompt_len,
        "response_len": response_len,
        "block_size": block_size,
        "response_share_of_tokens": in_response,
        "calls_per_repetition": inner,
        "time": {name: summarise(samples) for name, samples in times.items()},
        "speedup_blockwise_vs_official": ratio(medians["official_blockwise"], medians["ours_blockwise"]),
        "speedup_classical_vs_official": ratio(medians["official_blockwise"], medians["ours_classical"]),
        "speedup_blockwise_vs_loop": ratio(medians["loop_blockwise"], medians["ours_blockwise"]),
        "speedup_classical_vs_loop": ratio(medians["loop_blockwise"], medians["ours_classical"]),
        "speedup_ceiling_vs_official": ratio(medians["official_blockwise"], medians["floor_rand_where"]),
        "speedup_ceiling_vs_loop": ratio(medians["loop_blockwise"], medians["floor_rand_where"]),
    }


def masking_invariants(
    *,
    batch_size: int,
    prompt_len: int,
    response_len: int,
    block_size: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, list[str]]:
    """Invariant violations of one call of our BlockwiseMasking (on ``device``) and of both baselines on
    the same batch."""
    batch = synthetic_batch(batch_size, prompt_len, response_len, vocab_size=100, seed=seed)
    ids, starts, lengths = batch["input_ids"], batch["response_start"], batch["loss_scope_len"]
    index = torch.arange(batch_size)
    ours = BlockwiseMasking(block_size, mask_id=MASK_ID).mask_batch(
        to_device(batch, device), mask_generator(seed, device)
    )
    outputs = {
        "ours_blockwise": (ours.noisy_ids.cpu(), ours.loss_mask.cpu(), ours.active_block.cpu()),
        "official_blockwise": official_blockwise_mask(
            ids, starts, lengths, index, {}, random.Random(seed), block_size=block_size, mask_id=MASK_ID
        ),
        "loop_blockwise": loop_blockwise_mask(
            ids, starts, lengths, index, {}, random.Random(seed), block_size=block_size, mask_id=MASK_ID
        ),
    }
    return {
        name: blockwise_violations(ids, noisy, loss, starts, lengths, active, block_size, MASK_ID)
        for name, (noisy, loss, active) in outputs.items()
    }


def masking_section(
    *,
    batch_size: int = 32,
    prompt_len: int = 56,
    response_len: int = 200,
    block_size: int = 32,
    dataset_size: int = 20000,
    inner: int = 20,
    scale: tuple[int, int, int] | None = (128, 32, 1024),
    train_batch: int = 32,
    train_block: int = 8,
    repeats: int = 7,
    warmup: int = 2,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Section 1: masking time of our strategies vs the Python baselines; share of a training step.

    ``scale`` = (batch, prompt_len, response_len) adds a larger-batch comparison (same block size and
    repetitions, 2 calls per repetition) showing how the speed-up grows with the number of tokens.
    """
    result = compare_masking(
        batch_size=batch_size,
        prompt_len=prompt_len,
        response_len=response_len,
        block_size=block_size,
        dataset_size=dataset_size,
        inner=inner,
        repeats=repeats,
        warmup=warmup,
        seed=seed,
        device=device,
    )
    invariants = masking_invariants(
        batch_size=batch_size,
        prompt_len=prompt_len,
        response_len=response_len,
        block_size=block_size,
        seed=seed,
        device=device,
    )
    result["invariant_violations"] = invariants
    result["invariants_ok"] = all(not v for v in invariants.values())
    if scale is not None:
        scale_batch, scale_prompt, scale_response = scale
        result["larger_batch"] = compare_masking(
            batch_size=scale_batch,
            prompt_len=scale_prompt,
            response_len=scale_response,
            block_size=block_size,
            dataset_size=max(dataset_size, scale_batch),
            inner=2,
            repeats=repeats,
            warmup=warmup,
            seed=seed,
            device=device,
        )
    result["share_of_step"] = masking_share_of_step(
        batch_size=train_batch,
        block_size=train_block,
        repeats=repeats,
        warmup=warmup,
        inner=inner,
        seed=seed,
        device=device,
    )
    return result


def masking_share_of_step(
    *,
    batch_size: int = 32,
    block_size: int = 8,
    repeats: int = 7,
    warmup: int = 2,
    inner: int = 20,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Masking time on the default batch as a share of one default training step (same run).

    The step (classical masking, the default strategy) is ``blocksft``'s own: forward + backward + AdamW
    with the LM head at loss positions only, on the tiny model and a batch of the default data.
    """
    tokenizer = default_tokenizer()
    model = default_model(tokenizer, seed).train().to(device)
    optimizer = default_optimizer(model)
    batch = to_device(default_train_batch(batch_size, tokenizer, seed), device)
    mask_id = tokenizer.mask_token_id
    step_generator, generator = mask_generator(seed, device), mask_generator(seed + 1, device)
    step_masking = ClassicalMasking(mask_id=mask_id)
    classical = ClassicalMasking(mask_id=mask_id)
    blockwise = BlockwiseMasking(block_size, mask_id=mask_id, block_sampling="without_replacement")
    variants = {
        "training_step": lambda: default_training_step(model, optimizer, step_masking, batch, step_generator),
        "classical_masking": lambda: classical.mask_batch(batch, generator),
        "blockwise_masking": lambda: blockwise.mask_batch(batch, generator),
    }
    times = time_interleaved(
        variants, repeats, warmup, inner={"classical_masking": inner, "blockwise_masking": inner}, device=device
    )
    step = statistics.median(times["training_step"])
    return {
        "batch_shape": list(batch["input_ids"].shape),
        "blockwise_block_size": block_size,
        "time": {name: summarise(samples) for name, samples in times.items()},
        "classical_share": statistics.median(times["classical_masking"]) / step,
        "blockwise_share": statistics.median(times["blockwise_masking"]) / step,
    }


def measure(s: MaskingSettings, seed: int, device: torch.device, model_path: str | None) -> dict[str, Any]:
    del model_path  # synthetic and default batches only
    return masking_section(
        batch_size=s.batch,
        prompt_len=s.prompt_len,
        response_len=s.response_len,
        block_size=s.block,
        dataset_size=s.dataset_size,
        inner=s.inner,
        scale=s.scale,
        train_batch=s.train_batch,
        train_block=s.train_block,
        repeats=s.repeats,
        warmup=s.warmup,
        seed=seed,
        device=device,
    )


def targets(masking: dict[str, Any]) -> list[dict[str, Any]]:
    speedup = masking["speedup_blockwise_vs_official"]
    checks = [
        check(
            "masking speed-up, blockwise vs official code as written",
            speedup,
            f">= {SPEEDUP_MIN:g}x",
            speedup >= SPEEDUP_MIN,
        )
    ]
    speedup = masking["speedup_blockwise_vs_loop"]
    checks.append(
        check(
            "masking speed-up, blockwise vs per-token loop over every position",
            speedup,
            f">= {SPEEDUP_MIN:g}x",
            speedup >= SPEEDUP_MIN,
        )
    )
    ceiling = masking["speedup_ceiling_vs_loop"]
    checks.append(
        check(
            "masking speed-up bound: floor (rand + where) vs per-token loop over every position",
            ceiling,
            f">= {SPEEDUP_MIN:g}x",
            ceiling >= SPEEDUP_MIN,
        )
    )
    for kind in ("classical", "blockwise"):
        share = masking["share_of_step"][f"{kind}_share"]
        checks.append(
            check(f"{kind} masking share of a default step", share, f"<= {STEP_SHARE_MAX:.0%}", share <= STEP_SHARE_MAX)
        )
    ok = masking["invariants_ok"]
    return checks + [check("both baselines and ours satisfy the blockwise invariants", ok, "true", ok)]


def render(m: dict[str, Any]) -> list[str]:
    violations = m["invariant_violations"]
    lines = [
        f"## 1. Masking ({m['batch_shape'][0]} x {m['batch_shape'][1]} tokens, response {m['response_len']}, "
        f"block {m['block_size']})",
        "",
    ]
    official_s, loop_s = m["time"]["official_blockwise"]["median_s"], m["time"]["loop_blockwise"]["median_s"]
    lines += table(
        [
            "implementation",
            "time / batch",
            "speed-up vs official",
            "speed-up vs every-position loop",
            "invariants hold",
        ],
        [
            [
                "official code as written (per sample: Python loops over active block + suffix, tensors, collate)",
                median_time(m, "official_blockwise"),
                "1",
                f"{ratio(loop_s, official_s):.2f}x",
                verdict(not violations["official_blockwise"]),
            ],
            [
                "per-token Python loop over every position (same draws)",
                median_time(m, "loop_blockwise"),
                f"{ratio(official_s, loop_s):.2f}x",
                "1",
                verdict(not violations["loop_blockwise"]),
            ],
            [
                "ours: BlockwiseMasking (without_replacement)",
                median_time(m, "ours_blockwise"),
                f"{m['speedup_blockwise_vs_official']:.1f}x",
                f"{m['speedup_blockwise_vs_loop']:.1f}x",
                verdict(not violations["ours_blockwise"]),
            ],
            [
                "ours: ClassicalMasking",
                median_time(m, "ours_classical"),
                f"{m['speedup_classical_vs_official']:.1f}x",
                f"{m['speedup_classical_vs_loop']:.1f}x",
                "-",
            ],
            [
                "floor: one `torch.rand` over the batch + one `torch.where` (not a masking, a bound)",
                median_time(m, "floor_rand_where"),
                f"{m['speedup_ceiling_vs_official']:.1f}x",
                f"{m['speedup_ceiling_vs_loop']:.1f}x",
                "-",
            ],
        ],
    )
    lines += [
        "The floor row times the two tensor ops every vectorised masking needs (a draw per token and a "
        "select). No eager-PyTorch implementation can be faster than it, so its speed-up bounds what any "
        "implementation can reach against the same baseline.",
        "",
    ]
    if "larger_batch" in m:
        big = m["larger_batch"]
        lines += [
            f"Larger batch ({big['batch_shape'][0]} x {big['batch_shape'][1]}, response {big['response_len']}): "
            f"official {median_time(big, 'official_blockwise')}, "
            f"every-position loop {median_time(big, 'loop_blockwise')}, "
            f"ours blockwise {median_time(big, 'ours_blockwise')} ({big['speedup_blockwise_vs_official']:.1f}x vs "
            f"official, {big['speedup_blockwise_vs_loop']:.1f}x vs loop), ours classical "
            f"{median_time(big, 'ours_classical')} ({big['speedup_classical_vs_official']:.1f}x / "
            f"{big['speedup_classical_vs_loop']:.1f}x).",
            "",
        ]
    share = m["share_of_step"]
    lines += table(
        [f"default step ({share['batch_shape'][0]} x {share['batch_shape'][1]}), same run", "time", "share"],
        [
            [
                "training step: classical masking + fwd + bwd + AdamW, head at loss positions",
                median_time(share, "training_step"),
                "100 %",
            ],
            [
                "ClassicalMasking on the default batch",
                median_time(share, "classical_masking"),
                f"{share['classical_share']:.2%}",
            ],
            [
                f"BlockwiseMasking (block {share['blockwise_block_size']}) on the default batch",
                median_time(share, "blockwise_masking"),
                f"{share['blockwise_share']:.2%}",
            ],
        ],
    )
    return lines
