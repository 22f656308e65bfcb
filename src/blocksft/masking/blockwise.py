"""Blockwise SFT masking (one active block, clean prefix, hidden future) and its variants: the active
block unaligned, the future cut from attention (block-causal)."""

from __future__ import annotations

from typing import Literal

import torch

from blocksft.errors import require
from blocksft.masking.base import MaskedBatch, MaskingStrategy, check_block_size, check_unit_rate, response_positions

BlockSampling = Literal["without_replacement", "uniform"]
BLOCK_SAMPLINGS = ("without_replacement", "uniform")


class BlockSampler:
    """Chooses one active block per sample.

    ``uniform``: each call draws uniformly from the sample's ``num_blocks`` blocks.
    ``without_replacement`` (official code): each sample keeps a pool of unused block indices; a
    call draws uniformly from the pool and removes the choice, so every (sample, block) pair is used
    once per cycle. When a sample's pool is empty it is refilled (a new cycle) -- the official code
    instead yields a zero-loss sample -- so multi-epoch budgets keep training. The pools are state,
    saved with checkpoints through ``state_dict``.
    """

    def __init__(self, mode: BlockSampling = "without_replacement") -> None:
        require(
            mode in BLOCK_SAMPLINGS, "strategy.masking.block_sampling", mode, f"one of {', '.join(BLOCK_SAMPLINGS)}"
        )
        self.mode = mode
        self.used = torch.zeros(0, 0, dtype=torch.bool)  # [num_samples_seen, max_blocks_seen]
        self.refills = 0

    def _grow(self, num_samples: int, max_blocks: int) -> None:
        rows, cols = self.used.shape
        if num_samples > rows or max_blocks > cols:
            grown = torch.zeros(max(rows, num_samples), max(cols, max_blocks), dtype=torch.bool)
            grown[:rows, :cols] = self.used
            self.used = grown

    def sample(
        self, num_blocks: torch.Tensor, generator: torch.Generator, sample_index: torch.Tensor | None
    ) -> torch.Tensor:
        """num_blocks [B] (>= 1) -> active block index [B] in [0, num_blocks)."""
        device = num_blocks.device
        if self.mode == "uniform" or sample_index is None:
            if self.mode == "without_replacement":
                raise ValueError("block_sampling=without_replacement needs the batch's sample indices")
            draws = torch.rand(num_blocks.shape, generator=generator, device=device)
            return (draws * num_blocks).long().clamp_max(num_blocks - 1)
        max_blocks = int(num_blocks.max())
        index = sample_index.cpu()
        self._grow(int(index.max()) + 1, max_blocks)
        in_range = torch.arange(max_blocks)[None, :] < num_blocks.cpu()[:, None]
        available = in_range & ~self.used[index, :max_blocks]
        exhausted = ~available.any(dim=1)
        if exhausted.any():
            self.used[index[exhausted]] = False
            self.refills += int(exhausted.sum())
            available = torch.where(exhausted[:, None], in_range, available)
        scores = torch.rand(available.shape, generator=generator, device=device).cpu()
        choice = scores.masked_fill(~available, -1.0).argmax(dim=1)
        self.used[index, choice] = True
        return choice.to(device)

    def pool_rows(self, sample_index: torch.Tensor, width: int) -> torch.Tensor:
        """The pools of rows ``sample_index`` [B] as a [B, width] used-block mask (for exchange between ranks)."""
        index = sample_index.cpu()
        self._grow(int(index.max()) + 1, width)
        return self.used[index, :width].clone()

    def adopt_pool_rows(self, sample_index: torch.Tensor, used_rows: torch.Tensor) -> None:
        """Overwrite the pools of rows ``sample_index`` [N] with ``used_rows`` [N, width] drawn on other
        ranks, so every rank holds the same pools as a single process would."""
        index = sample_index.cpu()
        self._grow(int(index.max()) + 1, used_rows.shape[1])
        self.used[index, : used_rows.shape[1]] = used_rows.cpu().bool()

    def state_dict(self) -> dict:
        return {"mode": self.mode, "used": self.used.clone(), "refills": self.refills}

    def load_state_dict(self, state: dict) -> None:
        self.used = state["used"].clone().bool()
        self.refills = int(state.get("refills", 0))


class BlockwiseMasking(MaskingStrategy):
    """Blockwise SFT (Sun et al. 2025).

    The response is cut into blocks of ``block_size`` aligned at the response start (the last one
    may be partial). One active block per sample is masked at p ~ U(eps, 1) and carries the loss.
    Earlier response tokens (prefix) stay clean, or are masked at the fixed ``prefix_mask_rate``
    (ablation; never in the loss). Later response tokens (suffix) become [MASK] with probability
    ``suffix_mask_prob`` (1.0 = fully hidden, the method; 0.0 = fully visible; never in the loss).
    """

    def __init__(
        self,
        block_size: int,
        eps: float = 1e-3,
        mask_id: int = 0,
        block_sampling: BlockSampling = "without_replacement",
        prefix_mask_rate: float = 0.0,
        suffix_mask_prob: float = 1.0,
        p_min: float | None = None,
        p_max: float = 1.0,
        tail_eos_in_loss: int | None = None,
    ) -> None:
        self.block_size = check_block_size(block_size)
        self.configure(eps, p_min, p_max, tail_eos_in_loss)
        check_unit_rate("prefix_mask_rate", prefix_mask_rate)
        check_unit_rate("suffix_mask_prob", suffix_mask_prob)
        self.mask_id = mask_id
        self.prefix_mask_rate = prefix_mask_rate
        self.suffix_mask_prob = suffix_mask_prob
        self.sampler = BlockSampler(block_sampling)

    def active_span(self, response_len: torch.Tensor, generator: torch.Generator, sample_index) -> tuple:
        """Choose the active block: (index [B], start [B], end [B]) relative to the response start."""
        num_blocks = (response_len + self.block_size - 1) // self.block_size
        active = self.sampler.sample(num_blocks.clamp_min(1), generator, sample_index)
        start = active * self.block_size
        end = torch.minimum(start + self.block_size, response_len)
        return active, start, end

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        relative = response_positions(input_ids, response_start)
        in_response = (relative >= 0) & (relative < response_len[:, None])
        active, start, end = self.active_span(response_len, generator, sample_index)
        rate = self.sample_rate(input_ids.shape[0], generator, input_ids.device)
        # One draw per position serves all three disjoint regions, so they stay independent.
        draws = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
        in_active, loss_mask, noisy_ids = self.corrupt(input_ids, relative, in_response, start, end, rate, draws)
        return MaskedBatch(noisy_ids, loss_mask, in_active, rate, response_len, active)

    def corrupt(self, input_ids, relative, in_response, start, end, rate, draws) -> tuple:
        """Active span [start, end) masked where ``draws < rate``; prefix and suffix noise from the same
        draws. -> (in_active, loss_mask, noisy_ids), all [B, L]."""
        in_active = in_response & (relative >= start[:, None]) & (relative < end[:, None])
        in_prefix = in_response & (relative < start[:, None])
        in_suffix = in_response & (relative >= end[:, None])
        loss_mask = in_active & (draws < rate[:, None])
        hidden = (
            loss_mask | (in_prefix & (draws < self.prefix_mask_rate)) | (in_suffix & (draws < self.suffix_mask_prob))
        )
        return in_active, loss_mask, torch.where(hidden, self.mask_id, input_ids)

    def expected_eligible(self, response_len: torch.Tensor) -> torch.Tensor:
        """Mean block length over a response's blocks (active block chosen uniformly)."""
        num_blocks = (response_len + self.block_size - 1) // self.block_size
        return response_len.float() / num_blocks.clamp_min(1)

    def sync_ranks(self, sample_index, gather, reduce_max) -> None:
        """Share this step's block-pool updates: each rank adopts the pools of the rows other ranks drew."""
        if self.sampler.mode != "without_replacement":
            return
        width = int(reduce_max(torch.tensor(self.sampler.used.shape[1], device=sample_index.device)))
        rows = gather(self.sampler.pool_rows(sample_index, width).to(sample_index.device))
        self.sampler.adopt_pool_rows(gather(sample_index).flatten(), rows.flatten(0, 1))

    def state_dict(self) -> dict:
        return {"block_sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["block_sampler"])


class UnalignedBlockMasking(BlockwiseMasking):
    """Control: blockwise masking whose active span (``block_size`` tokens, shorter only when the
    response is) starts at a uniformly random offset instead of a block boundary. Same masking
    statistics as blockwise, no alignment with the decoder's blocks. ``active_block`` reports the
    block that contains the span start."""

    def active_span(self, response_len: torch.Tensor, generator: torch.Generator, sample_index) -> tuple:
        span = response_len.clamp_max(self.block_size)
        offsets = response_len - span + 1
        draws = torch.rand(response_len.shape, generator=generator, device=response_len.device)
        start = (draws * offsets).long().clamp_max(offsets - 1)
        return start // self.block_size, start, start + span


def block_causal_attention(relative: torch.Tensor, block_start: torch.Tensor, block_end: torch.Tensor) -> torch.Tensor:
    """Block-causal attention of one active block per row: [B, L, L] bool, True = query i may attend key j.

    ``relative`` [B, L] are positions relative to the response start, the active block is
    [``block_start``, ``block_end``) [B] in those units. Each position gets a segment: 0 = clean prefix
    (prompt and earlier response blocks), 1 = active block, 2 = later positions; query i may attend key j
    iff segment(j) <= segment(i). So the prefix attends only within itself (bidirectionally), the block
    attends to the prefix and itself, and no position of segments 0 and 1 attends to a later position:
    their outputs cannot depend on anything after the block. Later positions attend to everything (their
    outputs carry no loss; a row with no key at all would give NaN that reaches the others through 0 * NaN).
    """
    segment = (relative >= block_start[:, None]).long() + (relative >= block_end[:, None]).long()  # [B, L]
    return segment[:, None, :] <= segment[:, :, None]


class BlockCausalMasking(BlockwiseMasking):
    """Block-causal blockwise SFT (BD3-LMs, Fast-dLLM v2, SDAR): the draws of blockwise (one active block
    per sample, chosen by ``block_sampling``; p ~ U(p_min, p_max); its tokens masked where ``draw < p``),
    clean prefix, loss on the masked tokens of the active block. The future is not hidden behind [MASK]
    but cut from attention: ``MaskedBatch.attention_mask`` [B, L, L] is :func:`block_causal_attention`
    of the block [start, start + block_size) (the decoding block: a last block cut by the loss scope still
    spans the positions the decoder's block would), and later tokens stay in ``noisy_ids`` as they were
    (clean), attended by nothing that carries loss. With the same generator the active blocks, rates and
    ``loss_mask`` equal :class:`BlockwiseMasking`'s. The backbone must take a per-example 2-D mask; a
    model trained so is decoded with ``decode.attention=block_causal`` (``blocksft.evaluation.decoding``)."""

    attention = "block_causal"

    def __init__(
        self,
        block_size: int,
        eps: float = 1e-3,
        mask_id: int = 0,
        block_sampling: BlockSampling = "without_replacement",
        p_min: float | None = None,
        p_max: float = 1.0,
        tail_eos_in_loss: int | None = None,
    ) -> None:
        super().__init__(
            block_size,
            eps=eps,
            mask_id=mask_id,
            block_sampling=block_sampling,
            prefix_mask_rate=0.0,
            suffix_mask_prob=0.0,
            p_min=p_min,
            p_max=p_max,
            tail_eos_in_loss=tail_eos_in_loss,
        )

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        masked = super().__call__(input_ids, response_start, response_len, generator, sample_index)
        block_start = masked.active_block * self.block_size
        relative = response_positions(input_ids, response_start)
        masked.attention_mask = block_causal_attention(relative, block_start, block_start + self.block_size)
        return masked
