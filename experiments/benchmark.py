"""Side-by-side micro-benchmarks of the blocksft hot paths on this machine (CPU).

Usage::

    python experiments/benchmark.py [--quick] [--out DIR] [--model EXPORT_DIR] [--sections 1,2,3,4,5] [--threads N]

Prints a Markdown report and writes ``benchmark.json`` and ``benchmark.md`` into ``--out``
(default ``experiments/results/benchmark``; with ``--quick``, a folder under the system temp dir).
``--quick`` shrinks every size so the whole script runs in seconds (a smoke test, not a measurement).

Every figure is a ratio of two variants measured in the same process and the same run: the variants'
repetitions are interleaved (A, B, A, B, ...) after warm-up calls, each repetition is timed with
``time.perf_counter`` and the median is reported. Torch keeps its default thread count unless
``--threads N`` is given (recorded in the output; meant for a machine busy with other work, where
OpenMP threads waiting for a descheduled sibling can slow small ops by orders of magnitude).

Sections (one function each, importable and usable with tiny sizes, see ``tests/test_benchmark.py``):

1. :func:`masking_section` -- our vectorised masking strategies vs two Python baselines of the
   official Blockwise-SFT masking algorithm (they live only here): the official per-sample pipeline
   as written (:func:`official_blockwise_mask`: per-token loops over the active block and the suffix,
   per-sample tensors, collate) and a per-token loop over every position
   (:func:`loop_blockwise_mask`); plus masking time as a share of one default training step.
2. :func:`loss_positions_section` -- training step with the LM head applied at loss positions only vs
   projecting every position and selecting; time, peak memory (fresh subprocess per variant, peak
   RSS, see :func:`peak_memory_probe`), loss and gradient agreement.
3. :func:`decoding_section` -- batched semi-autoregressive decoding of arithmetic prompts vs one
   prompt at a time; problems/s, identical tokens, NFE, time spent outside the model forward.
4. :func:`training_throughput_section` -- tokens/s and achieved FLOP/s of the default training step
   against the machine's measured fp32 / bf16 matmul peak; bf16 autocast speed-up.
5. :func:`prefix_cache_section` -- prefix-KV-cached (approximate) vs exact decoding of validation
   problems of the default data (through the project's data module), per decoding block length of the
   study: speed-up, positions fed to the model, accuracy of each, identical generations. Pass a trained
   export with ``--model`` (e.g. ``outputs/studies/main/classical-B8-seed0-steps/export``); without it
   the model is a random init and the accuracies are marked meaningless.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from blocksft.data.collate import TrainCollator
from blocksft.data.sources import ArithmeticSource
from blocksft.answers import score
from blocksft.config import decode_block_lengths
from blocksft.decoding import generate, generate_batched, supports_prefix_cache
from blocksft.masking import BlockwiseMasking, ClassicalMasking, MaskedBatch, MaskingStrategy
from blocksft.models import build_model, build_tokenizer, load_exported
from blocksft.models.tiny import TinyDiffusionConfig, TinyDiffusionLM
from blocksft.objective import masked_diffusion_loss

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before any --threads
CONF = ROOT / "conf"
DEFAULT_OUT = ROOT / "experiments" / "results" / "benchmark"
QUICK_OUT = Path(tempfile.gettempdir()) / "blocksft-benchmark-quick"
#: A trained default model of study 1 (for ``--model``; sections 3 and 5 use random init without it).
EXAMPLE_EXPORT = ROOT / "outputs" / "studies" / "main" / "classical-B8-seed0-steps" / "export"

#: Special ids of the synthetic batches (sections 1 and 2); real tokens are drawn from [4, vocab).
PAD_ID, MASK_ID, EOS_ID, FIRST_TOKEN = 0, 1, 2, 4
#: Random-init decoding model: the LM head is scaled by this so that argmaxes are well separated and
#: decoding is deterministic across batch shapes (float32 rounding cannot flip a choice).
HEAD_SHARPEN = 30.0
#: Optimizer of the default training step, as ``conf/train.yaml`` (optim.optimizer).
ADAMW_KWARGS = {"lr": 2.0e-3, "betas": (0.9, 0.95), "eps": 1.0e-8, "weight_decay": 0.0}

TARGETS = {
    "masking_speedup_min": 100.0,
    "masking_step_share_max": 0.02,
    "loss_diff_max": 1e-5,
    "grad_diff_max": 1e-5,
    "decode_speedup_min": 10.0,
    "decode_overhead_max": 0.10,
}


# ================================================================================== settings


@dataclass(frozen=True)
class Settings:
    """Every size of a run. ``FULL`` is the measurement, ``QUICK`` a seconds-long smoke run."""

    warmup: int = 2
    repeats: int = 7
    # 1. masking
    mask_batch: int = 32
    mask_prompt_len: int = 56
    mask_response_len: int = 200
    mask_block: int = 32
    mask_inner: int = 20  # masking calls per timed repetition (one call is ~0.1 ms)
    mask_dataset_size: int = 20000  # sample indices cycle over a permutation of this many samples
    mask_scale: tuple[int, int, int] | None = (128, 32, 1024)  # larger batch: (batch, prompt, response)
    train_batch: int = 32  # default training step (sections 1 and 4)
    train_block: int = 8  # conf/train.yaml default block size, for blockwise masking of the default batch
    # 2. loss at loss positions only
    lm_vocab: int = 32000
    lm_hidden: int = 128
    lm_layers: int = 4
    lm_heads: int = 8
    lm_intermediate: int = 512
    lm_batch: int = 32
    lm_prompt_len: int = 56
    lm_response_len: int = 200
    lm_block: int = 32
    lm_repeats: int = 3
    lm_warmup: int = 1
    measure_memory: bool = True
    # 3. decoding
    decode_prompts: int = 64
    gen_length: int = 32
    decode_block: int = 8
    decode_steps: int = 32
    sweep_blocks: tuple[int, ...] = (4, 8, 16, 32)
    decode_repeats: int = 3
    sweep_repeats: int = 2
    # 4. throughput
    matmul_size: int = 2048
    throughput_repeats: int = 7
    # 5. prefix cache (validation problems of the default data, the study's decoding block lengths)
    cache_problems: int = 256
    cache_batch: int = 256
    cache_blocks: tuple[int, ...] = (4, 8, 16, 32)
    cache_repeats: int = 2


FULL = Settings()
QUICK = Settings(
    warmup=1, repeats=2,
    mask_batch=4, mask_prompt_len=8, mask_response_len=24, mask_block=8, mask_inner=2, mask_dataset_size=64,
    mask_scale=(8, 8, 64),
    train_batch=4,
    lm_vocab=512, lm_hidden=32, lm_layers=1, lm_heads=2, lm_intermediate=64, lm_batch=4,
    lm_prompt_len=8, lm_response_len=24, lm_block=8, lm_repeats=1, lm_warmup=0,
    decode_prompts=4, gen_length=8, decode_block=4, decode_steps=8, sweep_blocks=(2, 4, 8),
    decode_repeats=1, sweep_repeats=1,
    matmul_size=256, throughput_repeats=2,
    cache_problems=4, cache_batch=4, cache_blocks=(8,), cache_repeats=1,
)


# ================================================================================== timing


def time_interleaved(
    variants: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    inner: dict[str, int] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one entry per repetition, variants interleaved.

    Each repetition runs every variant once in turn (``inner[name]`` calls, timed together and
    divided), so slow drifts of a shared machine hit all variants alike.
    """
    inner = inner or {}
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            calls = inner.get(name, 1)
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - start) / calls)
    return times


def summarise(samples: Sequence[float]) -> dict[str, Any]:
    """Median (the reported figure), min, max and count of a list of timings in seconds."""
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "n": len(samples)}


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, ``inf`` for a zero denominator."""
    return numerator / denominator if denominator > 0 else math.inf


# ================================================================================== machine


def machine_info() -> dict[str, Any]:
    """CPU model, cores, relevant ISA flags, torch / python versions and the current load."""
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
    return {
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
    }


# ================================================================================== data and models


def load_data_config():
    """``conf/data/arithmetic.yaml`` (the default data knobs)."""
    return OmegaConf.load(CONF / "data" / "arithmetic.yaml")


def arithmetic_rows(split: str) -> list[dict]:
    """Rows of one split of the default arithmetic source (default seed, sizes and knobs)."""
    source_cfg = OmegaConf.to_container(load_data_config().source, resolve=True)
    source_cfg.pop("_target_")
    return ArithmeticSource(**source_cfg).load()[split]


def default_train_batch(batch_size: int, tokenizer, seed: int = 0) -> dict[str, torch.Tensor]:
    """A training batch of the default data, collated as the data module does.

    ``batch_size`` rows drawn (seeded) from the train split, prompts rendered with the default
    template, left-padded to the batch's longest prompt, responses padded to ``response_len``.
    """
    data_cfg = load_data_config()
    rows = arithmetic_rows("train")
    chosen = random.Random(seed).sample(range(len(rows)), batch_size)
    prompts = [data_cfg.prompt_template.format(question=rows[i][data_cfg.question_field]) for i in chosen]
    answers = [rows[i][data_cfg.answer_field] for i in chosen]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
    collate = TrainCollator(tokenizer.pad_token_id, tokenizer.eos_token_id, data_cfg.response_len, data_cfg.tail_padding)
    return collate([{"prompt_ids": p, "answer_ids": a, "index": i} for p, a, i in zip(prompt_ids, answer_ids, chosen)])


def synthetic_batch(
    batch_size: int, prompt_len: int, response_len: int, vocab_size: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A batch in the collator's layout: ``[left pad][prompt][response]``, random token ids.

    Prompt lengths vary in ``[prompt_len - 8, prompt_len]`` (left-padded to ``prompt_len``), so every
    response starts at ``prompt_len`` and has ``response_len`` tokens, all in the loss scope.
    """
    generator = torch.Generator().manual_seed(seed)
    length = prompt_len + response_len
    input_ids = torch.randint(FIRST_TOKEN, vocab_size, (batch_size, length), generator=generator)
    prompt_lengths = torch.randint(max(1, prompt_len - 8), prompt_len + 1, (batch_size,), generator=generator)
    padded = torch.arange(length)[None, :] < (prompt_len - prompt_lengths)[:, None]
    return {
        "input_ids": input_ids.masked_fill(padded, PAD_ID),
        "attention_mask": (~padded).long(),
        "response_start": torch.full((batch_size,), prompt_len, dtype=torch.long),
        "loss_scope_len": torch.full((batch_size,), response_len, dtype=torch.long),
        "index": torch.arange(batch_size),
    }


def default_model(tokenizer, seed: int = 0) -> TinyDiffusionLM:
    """The tiny model of ``conf/model/tiny.yaml``, seeded random init."""
    torch.manual_seed(seed)
    return build_model(OmegaConf.load(CONF / "model" / "tiny.yaml"), tokenizer)


def sized_model(
    vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int, seed: int = 0
) -> TinyDiffusionLM:
    """A TinyDiffusionLM of the given sizes (special ids as the synthetic batches), seeded."""
    torch.manual_seed(seed)
    config = TinyDiffusionConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
        intermediate_size=intermediate_size, max_position_embeddings=512,
        mask_token_id=MASK_ID, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
    )
    return TinyDiffusionLM(config)


# ================================================================================== training step


def loss_and_backward(
    model: TinyDiffusionLM,
    batch: dict[str, torch.Tensor],
    masked: MaskedBatch,
    *,
    full_projection: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Forward + loss + backward of one training step (as ``DiffusionSFTModule.training_step``).

    ``full_projection=False`` applies the LM head at the loss positions only
    (``project(hidden[rows, cols])``); ``True`` projects every position, then selects the same rows.
    Returns the detached loss.
    """
    autocast = (
        torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    )
    with autocast:
        hidden = model.encode(masked.noisy_ids, batch["attention_mask"])
        rows, cols = masked.loss_mask.nonzero(as_tuple=True)
        if full_projection:
            logits = model.project(hidden)[rows, cols]
        else:
            logits = model.project(hidden[rows, cols])
        loss = masked_diffusion_loss(
            logits, batch["input_ids"][rows, cols], rows, masked.mask_rate, masked.response_len
        )
    loss.backward()
    return loss.detach()


def apply_strategy(strategy: MaskingStrategy, batch: dict[str, torch.Tensor], generator: torch.Generator) -> MaskedBatch:
    """Mask a collated batch the way the training step does."""
    return strategy(batch["input_ids"], batch["response_start"], batch["loss_scope_len"], generator, batch["index"])


def default_training_step(
    model: TinyDiffusionLM,
    optimizer: torch.optim.Optimizer,
    strategy: MaskingStrategy,
    batch: dict[str, torch.Tensor],
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
) -> int:
    """One full step: masking, forward, loss at loss positions, backward, AdamW. Returns loss tokens."""
    masked = apply_strategy(strategy, batch, generator)
    optimizer.zero_grad(set_to_none=True)
    loss_and_backward(model, batch, masked, autocast_dtype=autocast_dtype)
    optimizer.step()
    return int(masked.loss_mask.sum())


# ================================================================================== 1. masking


def official_two_phase_mask(
    ids: list[int],
    plen: int,
    blk_idx: int,
    blk_size: int,
    mask_id: int,
    rng: random.Random,
    prefix_mask_rate: float = 0.0,
    suffix_mask_prob: float = 1.0,
    eps: float = 1e-3,
) -> tuple[list[int], list[bool]]:
    """Transcription of the official ``train_blockwise.py::two_phase_mask_at_block`` (same control
    flow, Python lists, ``random`` draws from ``rng``). The answer runs from ``plen`` to ``len(ids)``.

    Prefix tokens are visited only when ``prefix_mask_rate > 0``; with the defaults the code loops
    over the active block's tokens (one ``random()`` each) and over the suffix's (set to ``mask_id``),
    and never visits the prompt or the clean prefix.
    """
    length = len(ids)
    ans_s, ans_e = plen, length
    s0 = ans_s + blk_idx * blk_size
    e0 = min(ans_s + (blk_idx + 1) * blk_size, ans_e)
    noisy = ids.copy()
    mflag = [False] * length
    if ans_s < ans_e:
        prefix_s, prefix_e = ans_s, max(min(s0, ans_e), ans_s)
        if prefix_mask_rate > 0.0 and prefix_e > prefix_s:
            for pos in range(prefix_s, prefix_e):
                if rng.random() < prefix_mask_rate:
                    noisy[pos] = mask_id
    if s0 >= ans_e:
        e0 = ans_e
    else:
        p = rng.uniform(eps, 1.0)
        for pos in range(max(s0, ans_s), e0):
            if rng.random() < p:
                noisy[pos] = mask_id
                mflag[pos] = True
    if suffix_mask_prob >= 1.0 - 1e-12:
        for pos in range(e0, ans_e):
            noisy[pos] = mask_id
    elif suffix_mask_prob > 1e-12:
        for pos in range(e0, ans_e):
            if rng.random() < suffix_mask_prob:
                noisy[pos] = mask_id
    return noisy, mflag


def official_blockwise_mask(
    input_ids: torch.Tensor,
    response_start: torch.Tensor,
    response_len: torch.Tensor,
    sample_index: torch.Tensor,
    unused_blocks: dict[int, set[int]],
    rng: random.Random,
    *,
    block_size: int,
    mask_id: int,
    eps: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Baseline A: the official Blockwise-SFT masking pipeline as written (``RandomBlockDataset.__getitem__``
    per sample, then the ``collate`` that stacks).

    Per sample: the stored tensor row -> ``tolist()``; an exhausted block pool gives a clean sample
    with no loss (``-1``); otherwise ``random.choice`` of an unused block, removed from the pool, then
    :func:`official_two_phase_mask` (per-token Python loops over the active block and the suffix); the
    tokens after the answer are appended (the official right padding); five per-sample tensors (ids,
    noisy ids, flags, block index, prompt length); finally ``torch.stack`` per field. The official code is
    *not* vectorised per sample: it is a per-token loop, but only over the active block and the suffix.

    Returns ``(noisy_ids [B, L] long, loss_mask [B, L] bool, active_block [B] long, -1 = none)``.
    """
    samples = []
    for row, start, length, index in zip(input_ids, response_start.tolist(), response_len.tolist(), sample_index.tolist()):
        full = row.tolist()
        end = start + length
        ids, tail = full[:end], full[end:]
        pool = unused_blocks.setdefault(index, set(range(math.ceil(length / block_size))))
        if not pool:
            noisy, flags, block = ids.copy(), [False] * len(ids), -1
        else:
            block = rng.choice(tuple(pool))
            pool.remove(block)
            noisy, flags = official_two_phase_mask(ids, start, block, block_size, mask_id, rng, eps=eps)
        ids, noisy, flags = ids + tail, noisy + tail, flags + [False] * len(tail)
        samples.append({
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "noisy_ids": torch.tensor(noisy, dtype=torch.long),
            "mask_flags": torch.tensor(flags, dtype=torch.bool),
            "blk_index": torch.tensor(block, dtype=torch.long),
            "prompt_len": torch.tensor(start, dtype=torch.long),
        })
    batch = {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}
    return batch["noisy_ids"], batch["mask_flags"], batch["blk_index"]


def loop_blockwise_mask(
    input_ids: torch.Tensor,
    response_start: torch.Tensor,
    response_len: torch.Tensor,
    sample_index: torch.Tensor,
    unused_blocks: dict[int, set[int]],
    rng: random.Random,
    *,
    block_size: int,
    mask_id: int,
    eps: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Baseline B: the same algorithm as a per-token Python loop over *every* position.

    Per sample: block choice and ``p`` as the official code; then every position of the row decides,
    with Python ``if``/``elif``, whether it is outside the response or in the clean prefix (kept), in
    the active block (``mask_id`` with probability ``p``, then in the loss) or in the suffix
    (``mask_id``). Python lists in, one tensor per output out. Same draws per sample as
    :func:`official_blockwise_mask`, more Python work (the prompt and the prefix are visited too).

    Returns ``(noisy_ids [B, L] long, loss_mask [B, L] bool, active_block [B] long, -1 = none)``.
    """
    noisy_rows: list[list[int]] = []
    flag_rows: list[list[bool]] = []
    active_blocks: list[int] = []
    for ids, start, length, index in zip(
        input_ids.tolist(), response_start.tolist(), response_len.tolist(), sample_index.tolist()
    ):
        end = start + length
        pool = unused_blocks.setdefault(index, set(range(math.ceil(length / block_size))))
        block = -1
        if pool:
            block = rng.choice(tuple(pool))
            pool.remove(block)
            p = rng.uniform(eps, 1.0)
        block_start = start + block * block_size
        block_end = min(block_start + block_size, end)
        noisy: list[int] = []
        flags: list[bool] = []
        for pos, token in enumerate(ids):
            if block < 0 or pos < block_start or pos >= end:  # no block, prompt, clean prefix, after the answer
                noisy.append(token)
                flags.append(False)
            elif pos < block_end:  # active block
                masked = rng.random() < p
                noisy.append(mask_id if masked else token)
                flags.append(masked)
            else:  # suffix: fully hidden
                noisy.append(mask_id)
                flags.append(False)
        noisy_rows.append(noisy)
        flag_rows.append(flags)
        active_blocks.append(block)
    return (
        torch.tensor(noisy_rows, dtype=torch.long),
        torch.tensor(flag_rows, dtype=torch.bool),
        torch.tensor(active_blocks, dtype=torch.long),
    )


def block_pools(sample_indices: Sequence[int], response_len: Sequence[int], block_size: int) -> dict[int, set[int]]:
    """Initial pools of unused blocks per sample (the official dataset builds them up front)."""
    return {i: set(range(math.ceil(n / block_size))) for i, n in zip(sample_indices, response_len)}


def blockwise_violations(
    input_ids: torch.Tensor,
    noisy_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    response_start: torch.Tensor,
    response_len: torch.Tensor,
    active_block: torch.Tensor,
    block_size: int,
    mask_id: int,
) -> list[str]:
    """Names of the blockwise-masking invariants a masked batch breaks (empty list = all hold).

    Invariants (clean prefix, fully hidden suffix): prompt and everything outside the response are
    untouched; the response prefix before the active block is clean; every suffix token is
    ``mask_id``; loss only inside the active block; loss tokens are ``mask_id``; the other active-block
    tokens are clean; a sample without an active block (``-1``) is untouched. Assumes ``input_ids``
    contains no ``mask_id``.
    """
    relative = torch.arange(input_ids.shape[1])[None, :] - response_start[:, None]
    in_response = (relative >= 0) & (relative < response_len[:, None])
    has_block = active_block >= 0
    block_start = (active_block * block_size)[:, None]
    block_end = torch.minimum(block_start + block_size, response_len[:, None])
    in_active = in_response & has_block[:, None] & (relative >= block_start) & (relative < block_end)
    in_prefix = in_response & has_block[:, None] & (relative < block_start)
    in_suffix = in_response & has_block[:, None] & (relative >= block_end)
    clean = noisy_ids == input_ids
    hidden = noisy_ids == mask_id
    checks = {
        "prompt_or_outside_response_changed": (~in_response & ~clean).any(),
        "prefix_not_clean": (in_prefix & ~clean).any(),
        "suffix_not_all_masked": (in_suffix & ~hidden).any(),
        "loss_outside_active_block": (loss_mask & ~in_active).any(),
        "loss_token_not_masked": (loss_mask & ~hidden).any(),
        "active_non_loss_token_changed": (in_active & ~loss_mask & ~clean).any(),
        "sample_without_block_changed": (~has_block[:, None] & ~clean).any(),
        "active_block_out_of_range": (has_block & (active_block * block_size >= response_len)).any(),
    }
    return [name for name, broken in checks.items() if bool(broken)]


def _index_stream(dataset_size: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches of sample indices: consecutive slices of a seeded permutation, cycled."""
    order = torch.randperm(dataset_size, generator=torch.Generator().manual_seed(seed))
    batches = [order[i: i + batch_size] for i in range(0, dataset_size - batch_size + 1, batch_size)]
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
    generator = torch.Generator().manual_seed(seed)
    classical = ClassicalMasking(mask_id=MASK_ID)
    blockwise = BlockwiseMasking(block_size, mask_id=MASK_ID, block_sampling="without_replacement")
    streams = {name: _index_stream(dataset_size, batch_size, seed) for name in ("ours", "official", "loop")}
    baselines = {"official_blockwise": official_blockwise_mask, "loop_blockwise": loop_blockwise_mask}
    pools = {name: block_pools(range(dataset_size), [response_len] * dataset_size, block_size) for name in baselines}
    rngs = {name: random.Random(seed) for name in baselines}

    def baseline(name: str, stream: str) -> Callable[[], object]:
        return lambda: baselines[name](ids, starts, lengths, next(streams[stream]), pools[name], rngs[name],
                                       block_size=block_size, mask_id=MASK_ID)

    variants = {
        "ours_classical": lambda: classical(ids, starts, lengths, generator, None),
        "ours_blockwise": lambda: blockwise(ids, starts, lengths, generator, next(streams["ours"])),
        "official_blockwise": baseline("official_blockwise", "official"),
        "loop_blockwise": baseline("loop_blockwise", "loop"),
        # the two ops any vectorised masking needs (one draw per token, one select): the floor of an eager
        # torch implementation, so loop / floor bounds the speed-up any such implementation can reach
        "floor_rand_where": lambda: torch.where(torch.rand(ids.shape, generator=generator) < 0.5, MASK_ID, ids),
    }
    times = time_interleaved(variants, repeats, warmup, inner={name: inner for name in variants})
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
    *, batch_size: int, prompt_len: int, response_len: int, block_size: int, seed: int = 0
) -> dict[str, list[str]]:
    """Invariant violations of one call of our BlockwiseMasking and of both baselines on the same batch."""
    batch = synthetic_batch(batch_size, prompt_len, response_len, vocab_size=100, seed=seed)
    ids, starts, lengths = batch["input_ids"], batch["response_start"], batch["loss_scope_len"]
    index = torch.arange(batch_size)
    ours = BlockwiseMasking(block_size, mask_id=MASK_ID)(ids, starts, lengths, torch.Generator().manual_seed(seed), index)
    outputs = {
        "ours_blockwise": (ours.noisy_ids, ours.loss_mask, ours.active_block),
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
) -> dict[str, Any]:
    """Section 1: masking time of our strategies vs the Python baselines; share of a training step.

    ``scale`` = (batch, prompt_len, response_len) adds a larger-batch comparison (same block size and
    repetitions, 2 calls per repetition) showing how the speed-up grows with the number of tokens.
    """
    result = compare_masking(
        batch_size=batch_size, prompt_len=prompt_len, response_len=response_len, block_size=block_size,
        dataset_size=dataset_size, inner=inner, repeats=repeats, warmup=warmup, seed=seed,
    )
    invariants = masking_invariants(
        batch_size=batch_size, prompt_len=prompt_len, response_len=response_len, block_size=block_size, seed=seed
    )
    result["invariant_violations"] = invariants
    result["invariants_ok"] = all(not v for v in invariants.values())
    if scale is not None:
        scale_batch, scale_prompt, scale_response = scale
        result["larger_batch"] = compare_masking(
            batch_size=scale_batch, prompt_len=scale_prompt, response_len=scale_response, block_size=block_size,
            dataset_size=max(dataset_size, scale_batch), inner=2, repeats=repeats, warmup=warmup, seed=seed,
        )
    result["share_of_step"] = masking_share_of_step(
        batch_size=train_batch, block_size=train_block, repeats=repeats, warmup=warmup, inner=inner, seed=seed
    )
    return result


def masking_share_of_step(
    *, batch_size: int = 32, block_size: int = 8, repeats: int = 7, warmup: int = 2, inner: int = 20, seed: int = 0
) -> dict[str, Any]:
    """Masking time on the default batch as a share of one default training step (same run).

    The step (classical masking, the default strategy) is forward + backward + AdamW with the LM head
    at loss positions only, on the tiny model and a batch of the default data.
    """
    tokenizer = build_tokenizer(OmegaConf.load(CONF / "model" / "tiny.yaml"))
    model = default_model(tokenizer, seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), **ADAMW_KWARGS)
    batch = default_train_batch(batch_size, tokenizer, seed)
    mask_id = tokenizer.mask_token_id
    step_generator, mask_generator = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    step_strategy = ClassicalMasking(mask_id=mask_id)
    classical = ClassicalMasking(mask_id=mask_id)
    blockwise = BlockwiseMasking(block_size, mask_id=mask_id, block_sampling="without_replacement")
    variants = {
        "training_step": lambda: default_training_step(model, optimizer, step_strategy, batch, step_generator),
        "classical_masking": lambda: apply_strategy(classical, batch, mask_generator),
        "blockwise_masking": lambda: apply_strategy(blockwise, batch, mask_generator),
    }
    times = time_interleaved(variants, repeats, warmup, inner={"classical_masking": inner, "blockwise_masking": inner})
    step = statistics.median(times["training_step"])
    return {
        "batch_shape": list(batch["input_ids"].shape),
        "blockwise_block_size": block_size,
        "time": {name: summarise(samples) for name, samples in times.items()},
        "classical_share": statistics.median(times["classical_masking"]) / step,
        "blockwise_share": statistics.median(times["blockwise_masking"]) / step,
    }


# ================================================================================== 2. loss positions


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


def loss_setup(spec: LossSpec) -> tuple[TinyDiffusionLM, dict[str, torch.Tensor], dict[str, MaskedBatch]]:
    """Deterministic model, batch and one fixed mask per strategy ({"classical", "blockwise"})."""
    model = sized_model(
        spec.vocab_size, spec.hidden_size, spec.num_layers, spec.num_heads, spec.intermediate_size, spec.seed
    )
    model.train()
    batch = synthetic_batch(spec.batch_size, spec.prompt_len, spec.response_len, spec.vocab_size, spec.seed)
    strategies: dict[str, MaskingStrategy] = {
        "classical": ClassicalMasking(mask_id=MASK_ID),
        "blockwise": BlockwiseMasking(spec.block_size, mask_id=MASK_ID, block_sampling="without_replacement"),
    }
    masks = {name: apply_strategy(s, batch, torch.Generator().manual_seed(spec.seed)) for name, s in strategies.items()}
    return model, batch, masks


def _read_status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (e.g. VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_memory_probe(spec: LossSpec, kind: str, variant: str) -> dict[str, Any]:
    """Peak resident-memory increase of one training step (forward + backward), in this process.

    Build the setup, run one warm-up step (one-time allocations such as thread pools are not
    charged to the variant), drop the gradients, ``gc.collect()`` and glibc ``malloc_trim(0)`` (freed
    heap pages go back to the OS), reset the kernel's peak-RSS counter (``echo 5 >
    /proc/self/clear_refs``), then run the measured step and report ``VmHWM - VmRSS_before``. Torch's
    CPU allocator does not cache, so every tensor alive at the peak is resident.
    """
    model, batch, masks = loss_setup(spec)
    full = variant == "full_projection"

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_and_backward(model, batch, masks[kind], full_projection=full)

    step()
    model.zero_grad(set_to_none=True)
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _read_status_kib("VmRSS")
    step()
    peak = _read_status_kib("VmHWM")
    return {"peak_rss_delta_mib": (peak - before) / 1024, "rss_before_mib": before / 1024, "peak_rss_mib": peak / 1024}


def measure_peak_memory(spec: LossSpec, kind: str, variant: str) -> dict[str, Any]:
    """Run :func:`peak_memory_probe` in a fresh Python process (this script, ``--memory-probe``)."""
    request = json.dumps({"spec": asdict(spec), "kind": kind, "variant": variant, "threads": torch.get_num_threads()})
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-probe", request],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def gradient_agreement(model: TinyDiffusionLM, batch: dict[str, torch.Tensor], masked: MaskedBatch) -> dict[str, float]:
    """Loss and gradients of both variants on the same mask: absolute loss difference, max abs and
    max relative (to the largest gradient entry of that tensor) gradient difference."""
    results = []
    for full in (False, True):
        model.zero_grad(set_to_none=True)
        loss = loss_and_backward(model, batch, masked, full_projection=full)
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
    spec: LossSpec = LossSpec(), *, repeats: int = 3, warmup: int = 1, measure_memory: bool = True
) -> dict[str, Any]:
    """Section 2: LM head at loss positions only vs full projection, per mask kind."""
    model, batch, masks = loss_setup(spec)
    method = "a fresh subprocess per variant. " + " ".join(peak_memory_probe.__doc__.split("\n\n")[1].split())
    out: dict[str, Any] = {"spec": asdict(spec), "memory_method": method, "kinds": {}}
    for kind, masked in masks.items():
        agreement = gradient_agreement(model, batch, masked)

        def step(full: bool, masked: MaskedBatch = masked) -> None:
            model.zero_grad(set_to_none=True)
            loss_and_backward(model, batch, masked, full_projection=full)

        times = time_interleaved(
            {"loss_positions": lambda: step(False), "full_projection": lambda: step(True)}, repeats, warmup
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
            memory = {variant: measure_peak_memory(spec, kind, variant) for variant in ("loss_positions", "full_projection")}
            entry["memory"] = memory
            if all("peak_rss_delta_mib" in m for m in memory.values()):
                deltas = {variant: m["peak_rss_delta_mib"] for variant, m in memory.items()}
                entry["memory_ratio"] = ratio(deltas["full_projection"], deltas["loss_positions"])
        out["kinds"][kind] = entry
    return out


# ================================================================================== 3. decoding


class ForwardTimer:
    """Wraps a model for :func:`generate`: counts forward calls, rows and token positions (the ones
    fed to the model: fewer with the prefix cache), and accumulates the wall time spent inside the
    model's forward. Cache arguments and the cache capability are passed through."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.calls, self.rows, self.positions, self.seconds = 0, 0, 0, 0.0

    @property
    def supports_prefix_cache(self) -> bool:
        return supports_prefix_cache(self.model)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **cache_kwargs):
        start = time.perf_counter()
        output = self.model(input_ids, attention_mask=attention_mask, **cache_kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.rows += input_ids.shape[0]
        self.positions += input_ids.numel()
        return output

    def parameters(self):
        return self.model.parameters()


def decoding_model(model_path: str | None, seed: int = 0) -> tuple[torch.nn.Module, Any, str]:
    """(model in eval mode, tokenizer, description): a trained export, or the default tiny model at
    random init with its LM head scaled by ``HEAD_SHARPEN`` (confident, deterministic argmaxes)."""
    if model_path:
        model, tokenizer = load_exported(model_path)
        return model.eval(), tokenizer, f"trained export {model_path}"
    tokenizer = build_tokenizer(OmegaConf.load(CONF / "model" / "tiny.yaml"))
    model = default_model(tokenizer, seed).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(HEAD_SHARPEN)
    return model, tokenizer, f"conf/model/tiny.yaml, random init (seed {seed}), LM head x{HEAD_SHARPEN:g}"


def arithmetic_prompts(count: int, tokenizer) -> list[torch.Tensor]:
    """The first ``count`` validation prompts of the default data, rendered and char-tokenised."""
    data_cfg = load_data_config()
    rows = arithmetic_rows("validation")[:count]
    texts = [data_cfg.prompt_template.format(question=row[data_cfg.question_field]) for row in rows]
    return [torch.tensor(ids, dtype=torch.long) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def decode(
    timer: ForwardTimer,
    prompts: list[torch.Tensor],
    tokenizer,
    *,
    batched: bool,
    gen_length: int,
    block_length: int,
    steps: int,
    prefix_cache: bool = False,
) -> list[torch.Tensor]:
    """Decode all prompts, in one left-padded batch or one call per prompt (batch size 1)."""
    kwargs = dict(pad_id=tokenizer.pad_token_id, mask_id=tokenizer.mask_token_id, steps=steps,
                  gen_length=gen_length, block_length=block_length, prefix_cache=prefix_cache)
    if batched:
        return generate_batched(timer, prompts, **kwargs)
    return [generate_batched(timer, [prompt], **kwargs)[0] for prompt in prompts]


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
            start = time.perf_counter()
            outputs[name] = decode(timer, prompts, tokenizer, **kwargs)
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
) -> dict[str, Any]:
    """Section 3: batched vs batch-1 decoding, token identity, NFE, overhead (exact decoder); a sweep
    over the study's decoding block lengths, exact and prefix-cached, batched."""
    model, tokenizer, description = decoding_model(model_path, seed)
    timer = ForwardTimer(model)
    prompts = arithmetic_prompts(num_prompts, tokenizer)
    base = {"gen_length": gen_length, "block_length": block_length, "steps": steps}
    for batched in (True, False):  # warm-up on two prompts
        decode(timer, prompts[:2], tokenizer, batched=batched, **base)
    modes = {"batched": {"batched": True, **base}, "batch_size_1": {"batched": False, **base}}
    main, outputs = timed_decodes(timer, prompts, tokenizer, modes, repeats)
    identical = [bool(torch.equal(a, b)) for a, b in zip(outputs["batched"], outputs["batch_size_1"])]
    sweep_modes = {
        f"block_{b}{'_cached' if cached else ''}": {
            "batched": True, "gen_length": gen_length, "block_length": b, "steps": steps, "prefix_cache": cached
        }
        for b in sweep_block_lengths for cached in (False, True)
    }
    sweep, _ = timed_decodes(timer, prompts, tokenizer, sweep_modes, sweep_repeats)
    prompt_lengths = [p.numel() for p in prompts]
    return {
        "model": description,
        "num_prompts": num_prompts,
        "prompt_len_min_mean_max": [min(prompt_lengths), statistics.mean(prompt_lengths), max(prompt_lengths)],
        "settings": base,
        "modes": main,
        "speedup": ratio(main["batched"]["problems_per_s"], main["batch_size_1"]["problems_per_s"]),
        "identical_problems": sum(identical),
        "tokens_identical": all(identical),
        "sweep": sweep,
    }


# ================================================================================== 5. prefix cache


def default_config(overrides: Sequence[str] = ()):
    """``conf/train.yaml`` composed with ``overrides`` (no run directory; output paths in the temp dir)."""
    from hydra import compose, initialize_config_dir

    paths = [f"paths.output_dir={Path(tempfile.gettempdir()) / 'blocksft-benchmark-compose'}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=paths + list(overrides))


def validation_batches(tokenizer, num_problems: int, batch_size: int) -> tuple[list[dict], str, Any]:
    """The first ``num_problems`` validation problems of the default data, through the project's data
    module (``run.build_datamodule``: template, tokenisation, left-padded eval collation) as
    ``test_step`` receives them; returns (batches, answer scheme, composed config)."""
    import datasets

    from blocksft.run import build_datamodule

    datasets.disable_progress_bars()
    cfg = default_config([f"eval.size={num_problems}", f"eval.batch_size={batch_size}", "eval.split=validation"])
    datamodule = build_datamodule(cfg, tokenizer)
    datamodule.setup("test")
    return list(datamodule.test_dataloader()), cfg.data.answer_scheme, cfg


def response_texts(canvas: torch.Tensor, tokenizer) -> list[str]:
    """Generated canvas [B, gen_length] -> text up to (excluding) the first EOS (as the module does)."""
    is_eos = canvas == tokenizer.eos_token_id
    length = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), canvas.shape[1])
    return tokenizer.batch_decode([row[:n].tolist() for row, n in zip(canvas, length)], skip_special_tokens=True)


def prefix_cache_section(
    *,
    num_problems: int = 256,
    batch_size: int = 256,
    block_lengths: Sequence[int] | None = (4, 8, 16, 32),
    repeats: int = 2,
    model_path: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Section 5: prefix-cached (approximate) vs exact decoding of validation problems, same run.

    Per decoding block length (``None`` = the default config's): both decoders decode the same
    batches (``generate`` with the batch's ``attention_mask``, as ``test_step``), repetitions
    interleaved; reports the speed-up (median wall time, exact / cached), forward calls, token positions
    fed to the model per problem, accuracy of each decoder (``blocksft.answers.score``), and how many
    generations are identical. With a random-init model, accuracies are meaningless (marked).
    """
    model, tokenizer, description = decoding_model(model_path, seed)
    timer = ForwardTimer(model)
    batches, scheme, cfg = validation_batches(tokenizer, num_problems, batch_size)
    block_lengths = tuple(block_lengths) if block_lengths else decode_block_lengths(cfg)
    settings = {"gen_length": cfg.decode.gen_length, "steps": cfg.decode.steps,
                "temperature": cfg.decode.temperature, "remasking": cfg.decode.remasking}

    def run(block_length: int, cached: bool) -> list[torch.Tensor]:
        return [
            generate(timer, batch["prompt_ids"], attention_mask=batch["attention_mask"], block_length=block_length,
                     mask_id=tokenizer.mask_token_id, prefix_cache=cached, **settings)[:, batch["prompt_ids"].shape[1]:]
            for batch in batches
        ]

    run(block_lengths[0], False)  # warm-up
    run(block_lengths[0], True)
    targets = [target for batch in batches for target in batch["target"]]
    result: dict[str, Any] = {"model": description, "trained": bool(model_path), "num_problems": len(targets),
                              "batch_size": batch_size, "settings": settings, "answer_scheme": scheme, "blocks": {}}
    for block_length in block_lengths:
        times: dict[str, list[float]] = {"exact": [], "cached": []}
        counts, outputs = {}, {}
        for _ in range(repeats):
            for name in times:
                timer.reset()
                start = time.perf_counter()
                outputs[name] = torch.cat(run(block_length, name == "cached"))
                times[name].append(time.perf_counter() - start)
                counts[name] = {"forward_calls": timer.calls, "nfe_per_problem": timer.rows / len(targets),
                                "positions_per_problem": timer.positions / len(targets),
                                "overhead_share": (times[name][-1] - timer.seconds) / times[name][-1]}
        entry: dict[str, Any] = {"block_length": block_length}
        for name in times:
            texts = response_texts(outputs[name], tokenizer)
            correct = [bool(score(text, target, scheme)["correct"]) for text, target in zip(texts, targets)]
            entry[name] = {"time": summarise(times[name]), "problems_per_s": len(targets) / statistics.median(times[name]),
                           "accuracy": sum(correct) / len(correct), **counts[name]}
            entry[name]["correct"] = correct
        entry["speedup"] = ratio(statistics.median(times["exact"]), statistics.median(times["cached"]))
        entry["identical_generations"] = int((outputs["exact"] == outputs["cached"]).all(dim=1).sum())
        entry["accuracy_difference"] = entry["cached"]["accuracy"] - entry["exact"]["accuracy"]
        entry["changed_verdicts"] = sum(a != b for a, b in zip(entry["exact"].pop("correct"), entry["cached"].pop("correct")))
        result["blocks"][str(block_length)] = entry
    return result


# ================================================================================== 4. throughput


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
    return {"block_linear_params": block_weights, "dense": dense, "lm_head": head, "attention": attention,
            "total": dense + head + attention}


def matmul_peak(size: int, repeats: int, warmup: int = 2) -> dict[str, Any]:
    """Measured matmul peak: a square ``size`` x ``size`` product in fp32 and bf16, median FLOP/s."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
    a16, b16 = a.bfloat16(), b.bfloat16()
    times = time_interleaved({"fp32": lambda: a @ b, "bf16": lambda: a16 @ b16}, repeats, warmup)
    flops = 2 * size**3
    return {"size": size, "time": {k: summarise(v) for k, v in times.items()},
            "fp32_flops": flops / statistics.median(times["fp32"]), "bf16_flops": flops / statistics.median(times["bf16"])}


def training_throughput_section(
    *, batch_size: int = 32, repeats: int = 7, warmup: int = 2, matmul_size: int = 2048, seed: int = 0
) -> dict[str, Any]:
    """Section 4: default step tokens/s, FLOP/s vs the measured matmul peaks, bf16 autocast speed-up."""
    tokenizer = build_tokenizer(OmegaConf.load(CONF / "model" / "tiny.yaml"))
    model = default_model(tokenizer, seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), **ADAMW_KWARGS)
    batch = default_train_batch(batch_size, tokenizer, seed)
    strategy = ClassicalMasking(mask_id=tokenizer.mask_token_id)
    generator = torch.Generator().manual_seed(seed)
    loss_tokens: dict[str, list[int]] = {"fp32": [], "bf16_autocast": []}

    def step(name: str, dtype: torch.dtype | None) -> None:
        loss_tokens[name].append(default_training_step(model, optimizer, strategy, batch, generator, dtype))

    variants = {"fp32": lambda: step("fp32", None), "bf16_autocast": lambda: step("bf16_autocast", torch.bfloat16)}
    times = time_interleaved(variants, repeats, warmup)
    peak = matmul_peak(matmul_size, repeats, warmup)
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


def fmt_time(seconds: float) -> str:
    """Seconds with a readable unit and 3 significant digits."""
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_num(value: float) -> str:
    """A number with 3 significant digits and SI suffix for large values."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def target_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with its measured value, a display string and whether it is met."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, ok: bool) -> None:
        if isinstance(value, bool):
            shown = str(value).lower()
        elif "speed-up" in name:
            shown = f"{value:.2f}x"
        elif "%" in goal:
            shown = f"{value:.2%}"
        else:
            shown = f"{value:.2e}"
        checks.append({"target": name, "value": value, "shown": shown, "goal": goal, "met": bool(ok)})

    if "masking" in results:
        masking = results["masking"]
        minimum = TARGETS["masking_speedup_min"]
        speedup = masking["speedup_blockwise_vs_official"]
        add("masking speed-up, blockwise vs official code as written", speedup, f">= {minimum:g}x", speedup >= minimum)
        speedup = masking["speedup_blockwise_vs_loop"]
        add("masking speed-up, blockwise vs per-token loop over every position", speedup, f">= {minimum:g}x",
            speedup >= minimum)
        ceiling = masking["speedup_ceiling_vs_loop"]
        add("masking speed-up bound: floor (rand + where) vs per-token loop over every position", ceiling,
            f">= {minimum:g}x", ceiling >= minimum)
        for kind in ("classical", "blockwise"):
            share, maximum = masking["share_of_step"][f"{kind}_share"], TARGETS["masking_step_share_max"]
            add(f"{kind} masking share of a default step", share, f"<= {maximum:.0%}", share <= maximum)
        ok = masking["invariants_ok"]
        add("both baselines and ours satisfy the blockwise invariants", ok, "true", ok)
    if "loss_positions" in results:
        for kind, entry in results["loss_positions"]["kinds"].items():
            loss_diff, grad_diff = entry["loss_abs_diff"], entry["grad_max_abs_diff"]
            add(f"{kind}: |loss difference|", loss_diff, f"< {TARGETS['loss_diff_max']:g}", loss_diff < TARGETS["loss_diff_max"])
            add(f"{kind}: max |gradient difference|", grad_diff, f"< {TARGETS['grad_diff_max']:g}",
                grad_diff < TARGETS["grad_diff_max"])
    if "decoding" in results:
        decoding = results["decoding"]
        speedup, minimum = decoding["speedup"], TARGETS["decode_speedup_min"]
        add("batched decoding speed-up", speedup, f">= {minimum:g}x", speedup >= minimum)
        add("batched tokens identical to batch-1", decoding["tokens_identical"], "true", decoding["tokens_identical"])
        overhead, maximum = decoding["modes"]["batched"]["overhead_share"], TARGETS["decode_overhead_max"]
        add("batched decoding time outside the forward", overhead, f"<= {maximum:.0%}", overhead <= maximum)
    return checks


def _median(entry: dict[str, Any], name: str) -> str:
    """Formatted median time of ``entry["time"][name]``."""
    return fmt_time(entry["time"][name]["median_s"])


def _render_machine(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    loads = " / ".join(
        ", ".join(f"{x:.2f}" for x in machine[key])
        for key in ("load_average_at_start", "load_average_at_end") if key in machine
    )
    lines = _table(["machine", ""], [
        ["CPU", machine["cpu_model"]],
        ["logical cores (usable)", f"{machine['logical_cores']} ({machine['cpu_affinity']})"],
        ["ISA flags", ", ".join(machine["isa_flags"]) or "-"],
        ["torch (intra-op threads used / torch default)",
         f"{machine['torch_version']} ({machine['torch_threads']} / {machine['torch_default_threads']})"],
        ["python", machine["python_version"]],
        ["load average (1, 5, 15 min) at start / end", loads],
        ["wall time of the run", fmt_time(results["wall_time_s"])],
    ])
    lines += ["Timings: median of interleaved repetitions after warm-up (`time.perf_counter`).", ""]
    # the load at the end includes the benchmark's own threads; only the rest is other work
    own = machine.get("torch_threads") or 0
    busy = max(machine["load_average_at_start"][0], machine.get("load_average_at_end", [0.0])[0] - own)
    if busy >= 0.75 * (machine["cpu_affinity"] or machine["logical_cores"] or 1):
        lines += [f"**Warning:** the machine was shared with other work (1-min load average from other work up to "
                  f"{busy:.2f} on {machine['cpu_affinity']} usable cores): absolute timings are inflated and noisy; "
                  "the side-by-side ratios are less affected but not immune.", ""]
    return lines


def _render_masking(m: dict[str, Any]) -> list[str]:
    violations = m["invariant_violations"]
    lines = [f"## 1. Masking ({m['batch_shape'][0]} x {m['batch_shape'][1]} tokens, response {m['response_len']}, "
             f"block {m['block_size']})", ""]
    official_s, loop_s = m["time"]["official_blockwise"]["median_s"], m["time"]["loop_blockwise"]["median_s"]
    lines += _table(["implementation", "time / batch", "speed-up vs official", "speed-up vs every-position loop",
                     "invariants hold"], [
        ["official code as written (per sample: Python loops over active block + suffix, tensors, collate)",
         _median(m, "official_blockwise"), "1", f"{ratio(loop_s, official_s):.2f}x",
         _verdict(not violations["official_blockwise"])],
        ["per-token Python loop over every position (same draws)", _median(m, "loop_blockwise"),
         f"{ratio(official_s, loop_s):.2f}x", "1", _verdict(not violations["loop_blockwise"])],
        ["ours: BlockwiseMasking (without_replacement)", _median(m, "ours_blockwise"),
         f"{m['speedup_blockwise_vs_official']:.1f}x", f"{m['speedup_blockwise_vs_loop']:.1f}x",
         _verdict(not violations["ours_blockwise"])],
        ["ours: ClassicalMasking", _median(m, "ours_classical"), f"{m['speedup_classical_vs_official']:.1f}x",
         f"{m['speedup_classical_vs_loop']:.1f}x", "-"],
        ["floor: one `torch.rand` over the batch + one `torch.where` (not a masking, a bound)",
         _median(m, "floor_rand_where"), f"{m['speedup_ceiling_vs_official']:.1f}x",
         f"{m['speedup_ceiling_vs_loop']:.1f}x", "-"],
    ])
    lines += ["The floor row times the two tensor ops every vectorised masking needs (a draw per token and a "
              "select). No eager-PyTorch implementation can be faster than it, so its speed-up bounds what any "
              "implementation can reach against the same baseline.", ""]
    if "larger_batch" in m:
        big = m["larger_batch"]
        lines += [f"Larger batch ({big['batch_shape'][0]} x {big['batch_shape'][1]}, response {big['response_len']}): "
                  f"official {_median(big, 'official_blockwise')}, every-position loop {_median(big, 'loop_blockwise')}, "
                  f"ours blockwise {_median(big, 'ours_blockwise')} ({big['speedup_blockwise_vs_official']:.1f}x vs "
                  f"official, {big['speedup_blockwise_vs_loop']:.1f}x vs loop), ours classical "
                  f"{_median(big, 'ours_classical')} ({big['speedup_classical_vs_official']:.1f}x / "
                  f"{big['speedup_classical_vs_loop']:.1f}x).", ""]
    share = m["share_of_step"]
    lines += _table([f"default step ({share['batch_shape'][0]} x {share['batch_shape'][1]}), same run", "time", "share"], [
        ["training step: classical masking + fwd + bwd + AdamW, head at loss positions",
         _median(share, "training_step"), "100 %"],
        ["ClassicalMasking on the default batch", _median(share, "classical_masking"), f"{share['classical_share']:.2%}"],
        [f"BlockwiseMasking (block {share['blockwise_block_size']}) on the default batch",
         _median(share, "blockwise_masking"), f"{share['blockwise_share']:.2%}"],
    ])
    return lines


def _render_loss_positions(lp: dict[str, Any]) -> list[str]:
    spec = lp["spec"]
    lines = [f"## 2. LM head at loss positions only (vocab {spec['vocab_size']}, hidden {spec['hidden_size']}, "
             f"{spec['num_layers']} layers, {spec['num_heads']} heads, batch {spec['batch_size']} x "
             f"{spec['prompt_len'] + spec['response_len']}, response {spec['response_len']}, block {spec['block_size']})", ""]

    def memory_cell(entry: dict[str, Any], variant: str) -> str:
        value = entry.get("memory", {}).get(variant, {})
        return f"{value['peak_rss_delta_mib']:.0f} MiB" if "peak_rss_delta_mib" in value else value.get("error", "-")

    rows = []
    for kind, e in lp["kinds"].items():
        rows.append([
            kind, e["loss_tokens"], _median(e, "loss_positions"), _median(e, "full_projection"), f"{e['speedup']:.2f}x",
            memory_cell(e, "loss_positions"), memory_cell(e, "full_projection"),
            f"{e['memory_ratio']:.2f}x" if "memory_ratio" in e else "-",
            f"{e['loss_abs_diff']:.1e}", f"{e['grad_max_abs_diff']:.1e} (rel. {e['grad_max_rel_diff']:.1e})",
        ])
    lines += _table(["mask", "loss tokens", "step, loss positions", "step, full projection", "speed-up",
                     "peak mem, loss positions", "peak mem, full", "memory ratio", "abs. loss diff", "max abs. grad diff"],
                    rows)
    return lines + ["Step = forward + backward (no optimizer). Peak memory: " + lp["memory_method"], ""]


def _render_decoding(d: dict[str, Any]) -> list[str]:
    settings, (shortest, mean, longest) = d["settings"], d["prompt_len_min_mean_max"]
    lines = [f"## 3. Decoding ({d['num_prompts']} arithmetic prompts, gen_length {settings['gen_length']}, "
             f"block {settings['block_length']}, steps {settings['steps']})", "",
             f"Model: {d['model']}. Prompt tokens min / mean / max: {shortest} / {mean:.1f} / {longest}.", ""]
    rows = [[name, fmt_time(e["time"]["median_s"]), f"{e['problems_per_s']:.2f}",
             e["forward_calls"], f"{e['nfe_per_problem']:g}", f"{e['overhead_share']:.1%}",
             fmt_time(e["forward_s_per_position"])] for name, e in d["modes"].items()]
    lines += _table(["mode", "time (all prompts)", "problems/s", "forward calls", "NFE / problem",
                     "time outside forward", "forward time / token position"], rows)
    per_position = {name: e["forward_s_per_position"] for name, e in d["modes"].items()}
    lines += [f"Speed-up batched vs batch-1: **{d['speedup']:.2f}x**; identical tokens: "
              f"{d['identical_problems']}/{d['num_prompts']} problems. Both modes run the same NFE over the same "
              "token positions, so batching can only win by making a token position's forward cheaper: "
              f"{fmt_time(per_position['batch_size_1'])} at batch 1 vs {fmt_time(per_position['batched'])} batched "
              f"bounds the speed-up at {ratio(per_position['batch_size_1'], per_position['batched']):.2f}x "
              "when the batch-1 forward already keeps the cores busy.", ""]
    rows = [[e["block_length"], "prefix cache (approx.)" if e.get("prefix_cache") else "exact", e["steps"],
             f"{e['nfe_per_problem']:g}", f"{e['positions_per_problem']:.0f}", f"{e['problems_per_s']:.2f}",
             f"{e['overhead_share']:.1%}"] for e in d["sweep"].values()]
    return lines + _table(["decode block length (batched)", "decoder", "steps", "NFE / problem",
                           "positions fed / problem", "problems/s", "time outside forward"], rows)


def _render_prefix_cache(pc: dict[str, Any]) -> list[str]:
    settings = pc["settings"]
    lines = [f"## 5. Prefix-cached vs exact decoding ({pc['num_problems']} validation problems, batch "
             f"{pc['batch_size']}, gen_length {settings['gen_length']}, steps {settings['steps']})", "",
             f"Model: {pc['model']}." + ("" if pc["trained"] else
                                         " **Random init: the accuracies below are meaningless** (pass --model)."),
             "The cache is approximate (prefix keys/values frozen within a block, see blocksft.decoding); "
             "both decoders run in the same process, repetitions interleaved.", ""]
    rows = []
    for e in pc["blocks"].values():
        exact, cached = e["exact"], e["cached"]
        rows.append([e["block_length"], fmt_time(exact["time"]["median_s"]), fmt_time(cached["time"]["median_s"]),
                     f"**{e['speedup']:.2f}x**", f"{exact['positions_per_problem']:.0f} / {cached['positions_per_problem']:.0f}",
                     f"{exact['nfe_per_problem']:g} / {cached['nfe_per_problem']:g}",
                     f"{exact['accuracy']:.2%}", f"{cached['accuracy']:.2%}", f"{e['accuracy_difference']:+.2%}",
                     f"{e['identical_generations']}/{pc['num_problems']}", e["changed_verdicts"]])
    return lines + _table(["decode block", "exact time", "cached time", "speed-up", "positions fed / problem (exact / cached)",
                           "NFE / problem (exact / cached)", "accuracy exact", "accuracy cached", "difference",
                           "identical generations", "changed verdicts"], rows)


def _render_throughput(tp: dict[str, Any]) -> list[str]:
    peak = tp["matmul_peak"]
    lines = [f"## 4. Training throughput (default step, batch {tp['batch_shape'][0]} x {tp['batch_shape'][1]}, "
             f"{fmt_num(tp['params'])} params)", ""]
    lines += _table(["measured matmul peak", f"{peak['size']}x{peak['size']} fp32", "bf16"],
                    [["FLOP/s", fmt_num(peak["fp32_flops"]), fmt_num(peak["bf16_flops"])]])
    rows = [[name, fmt_time(e["time"]["median_s"]), fmt_num(e["tokens_per_s"]), fmt_num(e["real_tokens_per_s"]),
             fmt_num(e["flops_per_step"]["total"]), fmt_num(e["achieved_flops"]),
             f"{e['share_of_fp32_peak']:.1%}", f"{e['share_of_bf16_peak']:.1%}"] for name, e in tp["steps"].items()]
    lines += _table(["step", "time", "tokens/s (incl. pad)", "real tokens/s", "FLOPs / step", "achieved FLOP/s",
                     "of fp32 peak", "of bf16 peak"], rows)
    return lines + [f"bf16 autocast speed-up vs fp32: **{tp['bf16_speedup']:.2f}x**.", "",
                    "FLOPs: " + tp["flops_formula"], ""]


def render_markdown(results: dict[str, Any]) -> str:
    """The printed / saved report: machine, one table per section, targets."""
    lines = [f"# blocksft benchmark{' (quick)' if results['quick'] else ''}", ""] + _render_machine(results)
    renderers = {"masking": _render_masking, "loss_positions": _render_loss_positions,
                 "decoding": _render_decoding, "throughput": _render_throughput, "prefix_cache": _render_prefix_cache}
    for key, render in renderers.items():
        if key in results:
            lines += render(results[key])
    checks = results.get("targets", [])
    if checks:
        lines += ["## Targets", ""]
        lines += _table(["target", "measured", "goal", "met"],
                        [[c["target"], c["shown"], c["goal"], _verdict(c["met"])] for c in checks])
    return "\n".join(lines)


# ================================================================================== main


def run_benchmark(
    settings: Settings,
    sections: Sequence[int] = (1, 2, 3, 4, 5),
    model_path: str | None = None,
    seed: int = 0,
    quick: bool = False,
) -> dict[str, Any]:
    """Run the chosen sections; returns the JSON-ready result (with machine info and targets)."""
    start = time.perf_counter()
    results: dict[str, Any] = {"quick": quick, "settings": asdict(settings), "machine": machine_info()}
    s = settings
    if 1 in sections:
        results["masking"] = masking_section(
            batch_size=s.mask_batch, prompt_len=s.mask_prompt_len, response_len=s.mask_response_len,
            block_size=s.mask_block, dataset_size=s.mask_dataset_size, inner=s.mask_inner, scale=s.mask_scale,
            train_batch=s.train_batch, train_block=s.train_block, repeats=s.repeats, warmup=s.warmup, seed=seed,
        )
    if 2 in sections:
        spec = LossSpec(s.lm_vocab, s.lm_hidden, s.lm_layers, s.lm_heads, s.lm_intermediate, s.lm_batch,
                        s.lm_prompt_len, s.lm_response_len, s.lm_block, seed)
        results["loss_positions"] = loss_positions_section(
            spec, repeats=s.lm_repeats, warmup=s.lm_warmup, measure_memory=s.measure_memory
        )
    if 3 in sections:
        results["decoding"] = decoding_section(
            num_prompts=s.decode_prompts, gen_length=s.gen_length, block_length=s.decode_block, steps=s.decode_steps,
            sweep_block_lengths=s.sweep_blocks, repeats=s.decode_repeats, sweep_repeats=s.sweep_repeats,
            model_path=model_path, seed=seed,
        )
    if 4 in sections:
        results["throughput"] = training_throughput_section(
            batch_size=s.train_batch, repeats=s.throughput_repeats, warmup=s.warmup, matmul_size=s.matmul_size, seed=seed
        )
    if 5 in sections:
        results["prefix_cache"] = prefix_cache_section(
            num_problems=s.cache_problems, batch_size=s.cache_batch, block_lengths=s.cache_blocks,
            repeats=s.cache_repeats, model_path=model_path, seed=seed,
        )
    results["targets"] = target_checks(results)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["wall_time_s"] = time.perf_counter() - start
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds, not a measurement")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default {DEFAULT_OUT.relative_to(ROOT)}; with --quick {QUICK_OUT})")
    parser.add_argument("--model", default=None,
                        help="decoding sections 3 and 5: a trained export folder (save_pretrained) instead of random "
                             f"init, e.g. {EXAMPLE_EXPORT.relative_to(ROOT)}")
    parser.add_argument("--sections", default="1,2,3,4,5", help="comma-separated subset of 1,2,3,4,5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch intra-op threads (default: torch's default, here {DEFAULT_THREADS})")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_probe is not None:  # internal: one peak-memory measurement in this fresh process
        request = json.loads(args.memory_probe)
        torch.set_num_threads(request["threads"])
        print(json.dumps(peak_memory_probe(LossSpec(**request["spec"]), request["kind"], request["variant"])))
        return 0

    sections = tuple(int(x) for x in args.sections.split(",") if x.strip())
    if not set(sections) <= {1, 2, 3, 4, 5}:
        parser.error(f"--sections={args.sections!r}: allowed values are 1, 2, 3, 4, 5")
    if args.model is not None and not (Path(args.model) / "config.json").is_file():
        parser.error(f"--model={args.model}: not a save_pretrained folder (no config.json)")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads={args.threads}: must be >= 1")
        torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    results = run_benchmark(settings, sections, args.model, args.seed, quick=args.quick)
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    report = render_markdown(results)
    (out / "benchmark.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "benchmark.md").write_text(report + "\n")
    print(report)
    print(f"\nwrote {out / 'benchmark.json'} and {out / 'benchmark.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
