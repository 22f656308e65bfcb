"""Classical (LLaDA) SFT masking and its controls: tokens masked anywhere in the response."""

from __future__ import annotations

import torch

from blocksft.masking.base import MaskedBatch, MaskingStrategy, check_block_size, response_positions


class ClassicalMasking(MaskingStrategy):
    """Classical (LLaDA) SFT: p ~ U(p_min, p_max) per sample, each response token masked w.p. p."""

    def __init__(
        self,
        eps: float = 1e-3,
        mask_id: int = 0,
        p_min: float | None = None,
        p_max: float = 1.0,
        tail_eos_in_loss: int | None = None,
    ) -> None:
        self.configure(eps, p_min, p_max, tail_eos_in_loss)
        self.mask_id = mask_id

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        relative = response_positions(input_ids, response_start)
        eligible = (relative >= 0) & (relative < response_len[:, None])
        rate = self.sample_rate(input_ids.shape[0], generator, input_ids.device)
        draws = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
        loss_mask = eligible & (draws < rate[:, None])
        noisy_ids = torch.where(loss_mask, self.mask_id, input_ids)
        return MaskedBatch(noisy_ids, loss_mask, eligible, rate, response_len)


class MatchedClassicalMasking(ClassicalMasking):
    """Control: classical masking (positions anywhere in the response, no clean prefix, no hidden
    suffix) with the expected number of masked tokens matched to blockwise: each response token is
    masked with probability p * b / L, where b is the mean block length of the sample's blocks and L
    its response length (so E[masked] = p * b, as for one blockwise block)."""

    def __init__(
        self,
        block_size: int,
        eps: float = 1e-3,
        mask_id: int = 0,
        p_min: float | None = None,
        p_max: float = 1.0,
        tail_eos_in_loss: int | None = None,
    ) -> None:
        check_block_size(block_size)
        super().__init__(eps=eps, mask_id=mask_id, p_min=p_min, p_max=p_max, tail_eos_in_loss=tail_eos_in_loss)
        self.block_size = block_size

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        relative = response_positions(input_ids, response_start)
        eligible = (relative >= 0) & (relative < response_len[:, None])
        rate = self.sample_rate(input_ids.shape[0], generator, input_ids.device)
        num_blocks = (response_len + self.block_size - 1) // self.block_size
        token_rate = rate / num_blocks.clamp_min(1)  # p * (L / K) / L
        draws = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
        loss_mask = eligible & (draws < token_rate[:, None])
        noisy_ids = torch.where(loss_mask, self.mask_id, input_ids)
        return MaskedBatch(noisy_ids, loss_mask, eligible, rate, response_len)


class SequenceMasking(ClassicalMasking):
    """LLaDA's pretraining masking: the whole sequence masked at t ~ U(eps, 1) (each token w.p. t), every
    masked token in the loss; with ``objective.weighting=elbo`` the loss is LLaDA's 1/t-weighted
    cross-entropy normalised by the sequence length. Rows must have no prompt (``response_start == 0``,
    ``data.format=documents``): the sequence is the response."""

    whole_sequence = True

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        if bool((response_start != 0).any()):
            raise ValueError(
                "strategy=pretrain masks whole documents: rows must have no prompt (data.format=documents)"
            )
        return super().__call__(input_ids, response_start, response_len, generator, sample_index)
