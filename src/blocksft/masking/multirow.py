"""Strategies that turn one sample into several training rows: all blocks (dLLM-RL ``semi-ar``) and
complementary masks (Fast-dLLM v2). Pure tensor code, vectorised, every draw from the generator.

Row accounting (``rows``):

* ``batch`` (default): a step trains exactly as many rows as the batch has samples, so equal-steps
  and equal-tokens budgets keep their meaning (the same forward/backward cost per step as blockwise).
  The rows come from the first samples of the (shuffled) batch, each expanded whole: for all blocks,
  ceil(B / K) samples with K blocks each (the last one may give only some of its blocks, chosen at
  random); for complementary masks, B / 2 samples with both rows of the pair (B must be even).
  The other samples of the batch are not used this step.
* ``expand``: every sample of the batch gives all its rows (K per sample, or 2): a step costs K (or
  2) times the forward/backward of blockwise; to match compute, divide ``data.batch_size`` by K (or 2).

``MaskedBatch.source_row`` maps rows to samples; the module logs ``train/rows`` and
``train/source_samples`` per step.
"""

from __future__ import annotations

from typing import Literal

import torch

from blocksft.errors import require
from blocksft.masking.base import MaskedBatch, response_positions
from blocksft.masking.blockwise import BlockwiseMasking

RowPlan = Literal["batch", "expand"]
ROW_PLANS = ("batch", "expand")


def check_rows(rows) -> RowPlan:
    require(rows in ROW_PLANS, "strategy.masking.rows", rows, f"one of {', '.join(ROW_PLANS)}")
    return rows


def plan_rows(
    rows_per_sample: torch.Tensor, mode: RowPlan, generator: torch.Generator, shuffle_slots: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """rows_per_sample [B] (>= 1) -> (source [R], slot [R]) long: row r is slot ``slot[r]`` of sample
    ``source[r]``, rows ordered sample by sample. ``expand``: every slot of every sample (R = sum).
    ``batch``: the first B rows of that order (R = B); with ``shuffle_slots`` the slots of each sample
    come in random order, so a sample cut short gives a random subset of its slots."""
    check_rows(mode)
    device = rows_per_sample.device
    source = torch.repeat_interleave(torch.arange(rows_per_sample.shape[0], device=device), rows_per_sample)
    first = torch.cumsum(rows_per_sample, 0) - rows_per_sample  # first row of each sample
    slot = torch.arange(source.shape[0], device=device) - first[source]
    if mode == "expand":
        return source, slot
    if shuffle_slots:  # sort by (sample, random key): the slots of each sample in random order
        keys = torch.rand(source.shape, generator=generator, device=device)
        slot = slot[torch.argsort(source.double() + keys.double())]
    batch_size = rows_per_sample.shape[0]
    return source[:batch_size], slot[:batch_size]


class AllBlocksMasking(BlockwiseMasking):
    """Every block of a sample as its own row (dLLM-RL ``method: semi-ar``): clean prefix, that block
    masked at p ~ U(p_min, p_max), later response tokens hidden (``suffix_mask_prob``). One p per row.
    ``rows`` chooses the accounting (module docstring). No block pools: ``block_sampling`` is unused."""

    def __init__(self, block_size: int, rows: RowPlan = "batch", **kwargs) -> None:
        kwargs.setdefault("block_sampling", "uniform")
        super().__init__(block_size, **kwargs)
        self.rows = check_rows(rows)

    def num_blocks(self, response_len: torch.Tensor) -> torch.Tensor:
        return ((response_len + self.block_size - 1) // self.block_size).clamp_min(1)

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        source, block = plan_rows(self.num_blocks(response_len), self.rows, generator, shuffle_slots=True)
        ids, length = input_ids[source], response_len[source]
        relative = response_positions(ids, response_start[source])
        in_response = (relative >= 0) & (relative < length[:, None])
        start = block * self.block_size
        end = torch.minimum(start + self.block_size, length)
        rate = self.sample_rate(ids.shape[0], generator, ids.device)
        draws = torch.rand(ids.shape, generator=generator, device=ids.device)
        in_active, loss_mask, noisy_ids = self.corrupt(ids, relative, in_response, start, end, rate, draws)
        return MaskedBatch(noisy_ids, loss_mask, in_active, rate, length, block, source)

    def expected_eligible(self, response_len: torch.Tensor) -> torch.Tensor:
        """Per batch slot: ``expand`` -> every block of the sample (its whole scope); ``batch`` -> one
        row, a block drawn in proportion to the samples' block counts (total length / total blocks)."""
        if self.rows == "expand":
            return response_len.float()
        per_row = response_len.float().sum() / self.num_blocks(response_len).sum()
        return per_row.expand(response_len.shape).clone()

    def sync_ranks(self, sample_index, gather, reduce_max) -> None:
        del sample_index, gather, reduce_max  # no block pools

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


class ComplementaryMasking(BlockwiseMasking):
    """Complementary masks (Fast-dLLM v2): the active block of a sample (chosen as in blockwise) is
    trained twice in the same step, on a mask m drawn at p ~ U(p_min, p_max) and on its complement
    1 - m, so every token of the block is supervised exactly once per pair. Rows 2i and 2i + 1 are the
    pair; the complement row's ``mask_rate`` is 1 - p (its masking rate, the 1/p of ``elbo``). Prefix
    and suffix noise use one draw shared by both rows. ``rows`` chooses the accounting (module docstring)."""

    paired_rows = True

    def __init__(self, block_size: int, rows: RowPlan = "batch", **kwargs) -> None:
        super().__init__(block_size, **kwargs)
        self.rows = check_rows(rows)

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        batch_size = input_ids.shape[0]
        if self.rows == "batch":
            if batch_size % 2:
                raise ValueError(
                    f"strategy.masking.rows=batch with complementary masks needs an even batch per "
                    f"device (got {batch_size}); set data.batch_size / data.micro_batch_size even"
                )
            keep = batch_size // 2
            input_ids, response_start, response_len = input_ids[:keep], response_start[:keep], response_len[:keep]
            sample_index = None if sample_index is None else sample_index[:keep]
        samples = input_ids.shape[0]
        relative = response_positions(input_ids, response_start)
        in_response = (relative >= 0) & (relative < response_len[:, None])
        active, start, end = self.active_span(response_len, generator, sample_index)
        rate = self.sample_rate(samples, generator, input_ids.device)
        draws = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
        in_active, mask, noisy = self.corrupt(input_ids, relative, in_response, start, end, rate, draws)
        complement = in_active & ~mask
        noisy_complement = torch.where(complement, self.mask_id, torch.where(mask, input_ids, noisy))
        # Interleave: row 2i = (sample i, m), row 2i + 1 = (sample i, 1 - m).
        pair = lambda a, b: torch.stack([a, b], dim=1).flatten(0, 1)  # noqa: E731
        source = torch.arange(samples, device=input_ids.device).repeat_interleave(2)
        return MaskedBatch(
            pair(noisy, noisy_complement),
            pair(mask, complement),
            in_active[source],
            pair(rate, 1.0 - rate),
            response_len[source],
            active[source],
            source,
        )

    def expected_eligible(self, response_len: torch.Tensor) -> torch.Tensor:
        """Per batch slot: one block per row; ``expand`` gives two rows per sample."""
        per_row = super().expected_eligible(response_len)
        return per_row * 2 if self.rows == "expand" else per_row

    def expected_mask_rate(self) -> float:
        return 0.5  # E[p] and E[1 - p] averaged over the pair: the pair supervises the block once
