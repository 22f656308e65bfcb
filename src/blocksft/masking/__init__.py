"""Masking strategies: a clean batch -> the model input and the loss positions (pure tensor code).

``base`` holds the interface (``MaskingStrategy``, ``MaskedBatch``); ``classical``, ``blockwise`` and
``multirow`` the strategies. Configs name them here (``_target_: blocksft.masking.BlockwiseMasking``).
"""

from blocksft.masking.base import MaskedBatch, MaskingStrategy, response_positions, sample_mask_rate
from blocksft.masking.blockwise import (
    BLOCK_SAMPLINGS,
    BlockCausalMasking,
    BlockSampler,
    BlockwiseMasking,
    UnalignedBlockMasking,
    block_causal_attention,
)
from blocksft.masking.classical import ClassicalMasking, MatchedClassicalMasking, SequenceMasking
from blocksft.masking.multirow import AllBlocksMasking, ComplementaryMasking

__all__ = [
    "BLOCK_SAMPLINGS",
    "AllBlocksMasking",
    "BlockCausalMasking",
    "BlockSampler",
    "BlockwiseMasking",
    "ClassicalMasking",
    "ComplementaryMasking",
    "MaskedBatch",
    "MaskingStrategy",
    "MatchedClassicalMasking",
    "SequenceMasking",
    "UnalignedBlockMasking",
    "block_causal_attention",
    "response_positions",
    "sample_mask_rate",
]
