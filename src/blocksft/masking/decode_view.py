"""The decoder's view of a response, block by block (pure tensor code, vectorised over rows, blocks and ratios).

A semi-autoregressive decoder fills the response block by block: while block k is decoded, the prompt and
blocks < k are clean (already committed), part of block k is still [MASK], and every later response
position is [MASK]. ``decode_views`` builds exactly that input from clean training-layout rows, for every
block index k = 0..K-1 (K = ceil(response width / ``block_size``)) and every mask ratio r, so a model's
masked cross-entropy can be measured in the view the decoder gives it
(``blocksft.training.decode_view``), whatever strategy trained it.

Which tokens of block k are masked at ratio r: the ``round(r * b)`` positions (at least 1; b = the block's
length, ``block_size`` except a cut last block) with the smallest ``draws`` of the block. One draw per
position serves every ratio, so the masks are nested (a token masked at 0.25 is masked at 0.5), and a fixed
draw gives the same views at every evaluation and for every model. The prompt is never masked.

Loss positions: the masked positions of block k inside the row's loss scope (``loss_scope_len``: with
``data.tail_padding=in_response`` the whole response, EOS tail included; with ``visible`` the answer and its
EOS). Tail positions outside the scope are still masked where the decoder has them masked (it cannot know
them), but carry no loss, as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from blocksft.masking.base import response_positions


@dataclass
class DecodeViews:
    """V = K x R x B views of a batch of B rows, ordered block-major: view ``(k * R + j) * B + i`` is row i
    while block k is decoded with ratio ``mask_ratios[j]`` of it still masked."""

    noisy_ids: torch.Tensor  # [V, L] long: the decoder's input
    loss_mask: torch.Tensor  # [V, L] bool: masked positions of block k in the loss scope
    row: torch.Tensor  # [V] long: the batch row of each view
    block: torch.Tensor  # [V] long: the block being decoded, k
    ratio: torch.Tensor  # [V] long: index into ``mask_ratios``
    num_blocks: int  # K

    def to(self, device: torch.device) -> DecodeViews:
        return DecodeViews(
            *(t.to(device) for t in (self.noisy_ids, self.loss_mask, self.row, self.block, self.ratio)), self.num_blocks
        )


def block_ranks(relative: torch.Tensor, block_size: int, draws: torch.Tensor) -> torch.Tensor:
    """[B, L] long: the rank of each response position's draw within its block (0 = smallest); any value at
    prompt positions. ``relative`` [B, L] are positions relative to the response start, which must run to
    the end of the row (training layout: ``blocksft.data.collate``)."""
    block = torch.where(relative >= 0, relative.div(block_size, rounding_mode="floor"), -1)
    # Sorting by (block, draw) puts the prompt (block -1) first, then block 0's positions by draw, ...
    key = block.double() * 2.0 + draws.double().clamp(0.0, 1.0)
    overall = key.argsort(dim=1, stable=True).argsort(dim=1)
    prompt_len = (relative < 0).sum(dim=1, keepdim=True)
    return overall - prompt_len - block.clamp_min(0) * block_size


def decode_views(
    input_ids: torch.Tensor,
    response_start: torch.Tensor,
    loss_scope_len: torch.Tensor,
    block_size: int,
    mask_ratios: Sequence[float],
    draws: torch.Tensor,
    mask_id: int,
) -> DecodeViews:
    """Every (block, ratio) decoder view of ``input_ids`` [B, L] (training layout: prompt, then the response
    up to the end of the row from ``response_start`` [B]); ``loss_scope_len`` [B] response tokens carry
    loss; ``draws`` [B, L] in [0, 1) choose which tokens of a block are masked (module docstring)."""
    relative = response_positions(input_ids, response_start)  # [B, L]
    in_response = relative >= 0
    width = input_ids.shape[1] - response_start  # [B] response positions of each row
    num_blocks = int((width.max() + block_size - 1) // block_size)
    block = torch.where(in_response, relative.div(block_size, rounding_mode="floor"), -1)  # [B, L]
    # 1. Within each block, the round(r * b) positions with the smallest draws (at least 1): [R, B, L].
    block_len = (width[:, None] - block.clamp_min(0) * block_size).clamp(max=block_size)
    ratios = torch.as_tensor(list(mask_ratios), dtype=torch.float64, device=input_ids.device)
    counts = torch.round(ratios[:, None, None] * block_len[None]).clamp_min(1)
    masked_in_block = block_ranks(relative, block_size, draws)[None] < counts
    # 2. Block k: earlier blocks clean, block k masked at each ratio, later positions all masked: [K, R, B, L].
    k = torch.arange(num_blocks, device=input_ids.device)[:, None, None, None]
    in_block = block[None, None] == k
    hidden = in_response & ((block[None, None] > k) | (in_block & masked_in_block[None]))
    in_scope = relative < loss_scope_len[:, None]
    loss_mask = hidden & in_block & in_scope
    noisy_ids = torch.where(hidden, mask_id, input_ids)
    # 3. Flatten to views, block-major, with each view's row, block and ratio.
    num_ratios, batch_size = len(ratios), input_ids.shape[0]
    grid = torch.meshgrid(torch.arange(num_blocks), torch.arange(num_ratios), torch.arange(batch_size), indexing="ij")
    block_of, ratio_of, row_of = (t.reshape(-1).to(input_ids.device) for t in grid)
    return DecodeViews(noisy_ids.flatten(0, 2), loss_mask.flatten(0, 2), row_of, block_of, ratio_of, num_blocks)
