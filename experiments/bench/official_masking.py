"""Python baselines of the official Blockwise-SFT masking (they live only here) and the invariant
checker every masking must pass. Baseline A transcribes the official pipeline as written; baseline B
is the same algorithm as a per-token loop over every position."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch


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
    for row, start, length, index in zip(
        input_ids, response_start.tolist(), response_len.tolist(), sample_index.tolist()
    ):
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
        samples.append(
            {
                "input_ids": torch.tensor(ids, dtype=torch.long),
                "noisy_ids": torch.tensor(noisy, dtype=torch.long),
                "mask_flags": torch.tensor(flags, dtype=torch.bool),
                "blk_index": torch.tensor(block, dtype=torch.long),
                "prompt_len": torch.tensor(start, dtype=torch.long),
            }
        )
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
    relative = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] - response_start[:, None]
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
