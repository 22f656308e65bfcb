"""The loss on hand-computed cases, for both weightings."""

import math

import pytest
import torch

from blocksft.training.objective import masked_diffusion_loss


def ce(logits_row, target):
    return -torch.log_softmax(logits_row, -1)[target].item()


def case():
    torch.manual_seed(0)
    logits = torch.randn(4, 6)
    targets = torch.tensor([1, 2, 3, 4])
    sample_of = torch.tensor([0, 0, 0, 2])  # sample 0: 3 tokens, sample 1: none, sample 2: 1 token
    rate = torch.tensor([0.5, 0.9, 0.25])
    response_len = torch.tensor([10, 10, 8])
    token = [ce(logits[i], targets[i]) for i in range(4)]
    return logits, targets, sample_of, rate, response_len, token


def test_mean_masked_is_per_sample_mean_then_batch_mean():
    logits, targets, sample_of, rate, response_len, token = case()
    loss = masked_diffusion_loss(logits, targets, sample_of, rate, response_len, "mean_masked")
    expected = (sum(token[:3]) / 3 + 0.0 + token[3]) / 3  # the sample without loss tokens counts as 0
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_elbo_weights_by_inverse_rate_and_normalises_by_response_length():
    logits, targets, sample_of, rate, response_len, token = case()
    loss = masked_diffusion_loss(logits, targets, sample_of, rate, response_len, "elbo")
    expected = (sum(token[:3]) / 0.5 / 10 + 0.0 + token[3] / 0.25 / 8) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_perfect_prediction_has_zero_loss_and_gradients_flow():
    logits = torch.full((2, 5), -30.0)
    logits[0, 1] = logits[1, 3] = 30.0
    logits.requires_grad_(True)
    loss = masked_diffusion_loss(
        logits, torch.tensor([1, 3]), torch.tensor([0, 1]), torch.tensor([0.5, 0.5]), torch.tensor([4, 4])
    )
    assert loss.item() < 1e-6
    loss.backward()
    assert logits.grad is not None and math.isfinite(logits.grad.sum().item())


def test_unknown_weighting_is_rejected():
    logits, targets, sample_of, rate, response_len, _ = case()
    with pytest.raises(ValueError, match="objective.weighting"):
        masked_diffusion_loss(logits, targets, sample_of, rate, response_len, "sum")
