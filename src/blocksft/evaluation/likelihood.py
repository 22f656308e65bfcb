"""Log-likelihood of a continuation under a masked diffusion LM: LLaDA's Monte-Carlo estimate.

A masked diffusion LM has no left-to-right factorisation, so ``log p(c | p)`` of a continuation ``c``
(``T`` tokens) after a prompt ``p`` is estimated by its ELBO, as LLaDA's lm-evaluation-harness code
(``get_log_likelihood``) does: draw a number of masked tokens ``l`` in ``[1, T]``, mask ``l`` positions of the
continuation at random (the prompt stays clean), and weight the masked tokens' cross-entropy by ``1 / p`` with
``p = l / T``; the estimate is minus the mean of that weighted sum over ``mc_num`` samples.

* The ``l`` are stratified as LLaDA's (one uniform start, then evenly spaced over ``[1, T]``, wrapped), over
  all ``mc_num`` samples of the request (LLaDA stratifies within each forward batch).
* Every random draw comes from the given ``generator`` before any forward, so how the samples are cut into
  forwards (``batch_size``) changes only the cost, and the rounding of a batched matrix product (a row's float32
  logits may round differently at another batch size: ~1e-7 relative).
* As LLaDA, the cross-entropy is over the whole vocabulary (``mask_id`` included).

:func:`greedy_continuation` is LLaDA's ``suffix_greedy_prediction``: whether low-confidence decoding of ``T``
tokens, one per step in one block, reproduces the continuation (lm-eval's ``is_greedy``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from blocksft.evaluation.decoding import DecodeSettings, decode, model_device

__all__ = ["continuation_masks", "greedy_continuation", "loglikelihood", "mask_counts"]


def mask_counts(length: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """long [samples] in ``[1, length]``: masked-token counts stratified as LLaDA's ``_forward_process``."""
    start = int(torch.randint(1, length + 1, (), generator=generator))
    counts = torch.linspace(float(start), start + (samples - 1) * (length / samples), steps=samples)
    return (counts.round().long() - 1) % length + 1


def continuation_masks(length: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """bool [samples, length]: row ``i`` masks ``mask_counts(...)[i]`` positions drawn uniformly at random."""
    counts = mask_counts(length, samples, generator)
    ranks = torch.rand(samples, length, generator=generator).argsort(dim=1)  # a random permutation per row
    return ranks < counts[:, None]


@torch.no_grad()
def loglikelihood(
    model,
    prompt_ids: Sequence[int],
    continuation_ids: Sequence[int],
    *,
    mask_id: int,
    mc_num: int,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """The Monte-Carlo estimate of ``log p(continuation | prompt)`` (module docstring) over ``mc_num`` samples,
    ``batch_size`` rows per forward. ``model`` offers ``encode(ids, attention_mask) -> hidden`` and
    ``project(hidden) -> logits`` (the LM head runs at the masked positions only). ``generator``: a CPU
    generator, so the same seed gives the same masks on any device."""
    if not continuation_ids:
        raise ValueError("loglikelihood: empty continuation")
    if mc_num < 1 or batch_size < 1:
        raise ValueError(f"loglikelihood: mc_num={mc_num} and batch_size={batch_size} must be positive")
    device = model_device(model)
    prompt_len, length = len(prompt_ids), len(continuation_ids)
    # 1. every sample's mask, drawn before any forward (batch_size only cuts them into forwards)
    masks = continuation_masks(length, mc_num, generator).to(device)
    rate = masks.sum(dim=1).double() / length  # [mc_num]
    sequence = torch.as_tensor([*prompt_ids, *continuation_ids], dtype=torch.long, device=device)
    target = sequence[prompt_len:]
    weighted = []
    for chunk in masks.split(batch_size):
        # 2. mask the continuation of each row; encode; the head at the masked positions only
        noisy = sequence.repeat(chunk.shape[0], 1)
        noisy[:, prompt_len:] = noisy[:, prompt_len:].masked_fill(chunk, mask_id)
        hidden = model.encode(noisy, None)
        rows, cols = chunk.nonzero(as_tuple=True)
        logits = model.project(hidden[rows, prompt_len + cols])
        # 3. per-row sum of the masked cross-entropy (a dense row sum: the same order on every device)
        token_loss = F.cross_entropy(logits.float(), target[cols], reduction="none").double()
        weighted.append(
            torch.zeros(chunk.shape, dtype=torch.float64, device=device).index_put((rows, cols), token_loss)
        )
    per_sample = torch.cat(weighted).sum(dim=1) / rate  # 4. 1/p weighting, then the mean over samples
    return -float(per_sample.mean())


@torch.no_grad()
def greedy_continuation(model, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *, mask_id: int) -> bool:
    """Whether greedy low-confidence decoding of ``len(continuation_ids)`` tokens after the prompt (one block,
    one token per step, temperature 0: LLaDA's ``suffix_greedy_prediction``) gives exactly the continuation."""
    length = len(continuation_ids)
    settings = DecodeSettings(gen_length=length, block_length=length, steps=length)
    prompt = torch.as_tensor([list(prompt_ids)], dtype=torch.long, device=model_device(model))
    generated = decode(model, prompt, settings, mask_id=mask_id)[0, prompt.shape[1] :]
    return generated.tolist() == list(continuation_ids)
