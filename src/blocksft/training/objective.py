"""The SFT loss of masked diffusion LMs: cross-entropy on masked tokens, with two weightings.

``mean_masked`` (official Blockwise-SFT code, default): per-sample mean CE over its loss tokens
(denominator clamped to >= 1, so a sample with no masked token contributes 0), then the batch mean.

``elbo`` (LLaDA's SFT loss): each masked token weighted by 1/p of its sample, the per-sample sum
normalised by that sample's response length, then the batch mean.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from blocksft.errors import require

LossWeighting = Literal["mean_masked", "elbo"]
LOSS_WEIGHTINGS = ("mean_masked", "elbo")


def check_loss_weighting(weighting) -> LossWeighting:
    """``objective.weighting``: one of ``LOSS_WEIGHTINGS`` (the one statement of the rule)."""
    require(weighting in LOSS_WEIGHTINGS, "objective.weighting", weighting, f"one of {', '.join(LOSS_WEIGHTINGS)}")
    return weighting


def masked_diffusion_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    sample_of_token: torch.Tensor,
    mask_rate: torch.Tensor,
    response_len: torch.Tensor,
    weighting: LossWeighting = "mean_masked",
) -> torch.Tensor:
    """Scalar loss from logits at loss positions only.

    logits [N, V] and targets [N] for the N loss-bearing tokens of the batch; sample_of_token [N]
    gives each token's row; mask_rate [B] and response_len [B] describe the B samples.
    """
    check_loss_weighting(weighting)
    batch_size = mask_rate.shape[0]
    # 1. Token-level cross-entropy, in float32 even under bf16 autocast.
    token_loss = F.cross_entropy(logits.float(), targets, reduction="none")
    # 2. Weight each token and pick the per-sample normaliser.
    if weighting == "mean_masked":
        weights = torch.ones_like(token_loss)
        counts = torch.zeros(batch_size, device=logits.device).index_add_(0, sample_of_token, weights)
        normaliser = counts.clamp_min(1.0)
    else:
        weights = 1.0 / mask_rate[sample_of_token].float()
        normaliser = response_len.float().clamp_min(1.0)
    # 3. Sum per sample, normalise, average over the batch (samples without loss tokens count as 0).
    per_sample = torch.zeros(batch_size, device=logits.device).index_add_(0, sample_of_token, token_loss * weights)
    return (per_sample / normaliser).mean()


def masked_diffusion_step(
    model, batch: dict[str, torch.Tensor], masked, weighting: LossWeighting = "mean_masked"
) -> torch.Tensor:
    """The training loss of one masked batch: the step ``DiffusionSFTModule`` trains with and the
    benchmark times. ``model`` offers ``encode(ids, attention_mask) -> hidden [B, L, H]`` and
    ``project(hidden [N, H]) -> logits [N, V]`` (``attention_mask`` [B, L, L] when the strategy gives
    one); ``batch`` holds ``input_ids`` and ``attention_mask``
    [B, L]; ``masked`` is the strategy's ``MaskedBatch``."""
    # 1. Encode the noisy input up to the LM head (a strategy may give several rows per sample:
    #    ``rows_of`` lays the per-sample tensors out as its rows). A block-causal strategy's per-row
    #    [R, L, L] mask is combined with the padding key mask and replaces it.
    attention_mask = masked.rows_of(batch["attention_mask"])
    if masked.attention_mask is not None:
        attention_mask = masked.attention_mask & attention_mask.bool()[:, None, :]
    hidden = model.encode(masked.noisy_ids, attention_mask)
    # 2. Apply the head at the loss positions only (N of R x L), never over the whole vocabulary grid.
    rows, cols = masked.loss_mask.nonzero(as_tuple=True)
    logits = model.project(hidden[rows, cols])
    # 3. Masked cross-entropy against the clean tokens.
    return masked_diffusion_loss(
        logits, masked.rows_of(batch["input_ids"])[rows, cols], rows, masked.mask_rate, masked.response_len, weighting
    )
