"""Semi-autoregressive low-confidence-remasking decoding for masked diffusion LMs (LLaDA semantics).

The canvas is ``x = [prompt | mask_id * gen_length]``. It is split into ``gen_length // block_length``
blocks, decoded left to right, each with ``steps // num_blocks`` denoising steps. At every step the
model predicts all positions (``x0 = argmax``, optionally with Gumbel noise), and the ``k`` most
confident still-masked positions of the *current block* are committed; ``k`` comes from
:func:`num_transfer_tokens` (masked count split evenly over the steps, remainder to the first steps).

Invariants (checked by the tests):

* the prompt never changes, nothing outside the current block is ever committed, and later blocks
  stay ``mask_id`` until their turn;
* each step commits exactly ``num_transfer_tokens(...)[:, step]`` tokens per row, so no ``mask_id``
  is left in the canvas at the end;
* everything is vectorised over the batch (loops only over blocks and steps); with an
  ``attention_mask`` for left padding, a batched call matches per-prompt calls token for token at
  temperature 0 (given a model that honours the mask, e.g. ``blocksft.models.tiny``).

One deliberate difference from LLaDA's ``generate.py``: candidate positions are the masked positions
*inside the current block* (LLaDA uses every ``mask_id`` position before the block end, which would
also let it rewrite a prompt that contains ``mask_id``, e.g. when ``pad_id == mask_id``). For a prompt
without ``mask_id`` the two are identical. And ``mask_id`` itself is never predicted: its logit is set
to ``-inf`` before sampling and softmax (a trained model gives it ~0 probability anyway, so this only
matters for untrained models, where committing ``[MASK]`` would break the commit schedule).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

REMASKING_MODES = ("low_confidence", "random")

__all__ = ["REMASKING_MODES", "add_gumbel_noise", "generate", "generate_batched", "num_transfer_tokens"]


def num_transfer_tokens(block_mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-step commit counts: ``block_mask`` bool [B, block_length] -> long [B, steps].

    Row ``i`` with ``n`` masked positions gets ``n // steps`` per step, plus one extra on each of the
    first ``n % steps`` steps; each row sums to ``n``.
    """
    if steps <= 0:
        raise ValueError(f"steps={steps}: must be positive")
    count = block_mask.sum(dim=1).long()  # [B]
    base = count // steps
    remainder = count % steps
    extra = torch.arange(steps, device=block_mask.device)[None, :] < remainder[:, None]
    return base[:, None] + extra.long()


def add_gumbel_noise(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """LLaDA's Gumbel-max perturbation in float64: ``exp(logits) / (-log u) ** temperature``.

    ``argmax`` of the result samples from ``softmax(logits / temperature)``. Temperature 0 returns
    the logits unchanged (cast to float64).
    """
    logits = logits.to(torch.float64)
    if temperature == 0:
        return logits
    noise = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    return logits.exp() / (-torch.log(noise)) ** temperature


def _check_args(steps, gen_length, block_length, temperature, cfg_scale, remasking) -> tuple[int, int]:
    if gen_length <= 0:
        raise ValueError(f"gen_length={gen_length}: must be positive")
    if block_length <= 0:
        raise ValueError(f"block_length={block_length}: must be positive")
    if gen_length % block_length != 0:
        raise ValueError(f"gen_length={gen_length} must be divisible by block_length={block_length}")
    num_blocks = gen_length // block_length
    if steps <= 0 or steps % num_blocks != 0:
        raise ValueError(f"steps={steps} must be a positive multiple of num_blocks={num_blocks} (gen_length // block_length)")
    if remasking not in REMASKING_MODES:
        raise ValueError(f"remasking={remasking!r}: must be one of {REMASKING_MODES}")
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: must be >= 0")
    if cfg_scale < 0:
        raise ValueError(f"cfg_scale={cfg_scale}: must be >= 0")
    return num_blocks, steps // num_blocks


def _logits(model, x: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return model(x).logits
    return model(x, attention_mask=attention_mask).logits


@torch.no_grad()
def generate(
    model,
    prompt: torch.Tensor,
    steps: int = 128,
    gen_length: int = 128,
    block_length: int = 128,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    mask_id: int = 126336,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.LongTensor:
    """Decode ``gen_length`` tokens after ``prompt`` [B, P]; returns long [B, P + gen_length].

    ``model(x)`` (or ``model(x, attention_mask=m)`` when ``attention_mask`` [B, P] is given; it is
    extended with ones over the canvas) must return an object with ``.logits`` [B, L, V]; the logit of
    ``mask_id`` is ignored (never predicted). The model
    is called exactly ``steps`` times (twice the batch when ``cfg_scale > 0``); put it in eval mode
    yourself. Random draws (Gumbel noise, ``"random"`` confidences) all come from ``generator``.

    ``cfg_scale > 0`` applies LLaDA's classifier-free guidance: the unconditional pass sees the
    prompt replaced by ``mask_id`` and ``logits = u + (cfg_scale + 1) * (c - u)``.

    Raises ``ValueError`` if ``gen_length % block_length != 0``, ``steps % num_blocks != 0``,
    ``remasking`` is not ``"low_confidence"``/``"random"``, or ``temperature``/``cfg_scale`` < 0.
    """
    num_blocks, steps_per_block = _check_args(steps, gen_length, block_length, temperature, cfg_scale, remasking)
    if prompt.dim() != 2:
        raise ValueError(f"prompt: expected shape [B, P], got {tuple(prompt.shape)}")
    batch, prompt_len = prompt.shape
    device = prompt.device

    x = torch.full((batch, prompt_len + gen_length), mask_id, dtype=torch.long, device=device)
    x[:, :prompt_len] = prompt.long()
    full_mask = None
    if attention_mask is not None:
        if attention_mask.shape != prompt.shape:
            raise ValueError(f"attention_mask: expected shape {tuple(prompt.shape)}, got {tuple(attention_mask.shape)}")
        canvas_ones = torch.ones(batch, gen_length, dtype=attention_mask.dtype, device=device)
        full_mask = torch.cat([attention_mask.to(device), canvas_ones], dim=1)
    if cfg_scale > 0 and full_mask is not None:
        full_mask = torch.cat([full_mask, full_mask], dim=0)

    positions = torch.arange(x.shape[1], device=device)
    ranks = torch.arange(block_length, device=device)

    for block in range(num_blocks):
        start = prompt_len + block * block_length
        end = start + block_length
        in_block = (positions >= start) & (positions < end)  # [L]
        counts = num_transfer_tokens(x[:, start:end] == mask_id, steps_per_block)  # [B, steps_per_block]

        for step in range(steps_per_block):
            candidates = (x == mask_id) & in_block[None, :]  # [B, L]

            if cfg_scale > 0:
                unconditional = x.clone()
                unconditional[:, :prompt_len] = mask_id
                both = _logits(model, torch.cat([x, unconditional], dim=0), full_mask).to(torch.float64)
                cond, uncond = both.chunk(2, dim=0)
                logits = uncond + (cfg_scale + 1) * (cond - uncond)
            else:
                logits = _logits(model, x, full_mask).to(torch.float64)
            if 0 <= mask_id < logits.shape[-1]:
                # committing [MASK] would be a silent no-op; out-of-place so the model's output is untouched
                logits = logits.index_fill(-1, torch.tensor([mask_id], device=device), float("-inf"))

            x0 = add_gumbel_noise(logits, temperature, generator).argmax(dim=-1)  # [B, L]
            if remasking == "low_confidence":
                probs = F.softmax(logits, dim=-1)
                confidence = probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            else:
                confidence = torch.rand(x0.shape, dtype=torch.float64, device=device, generator=generator)
            confidence = confidence.masked_fill(~candidates, float("-inf"))

            # Per-row top-k with a per-row k: rank the block once, keep ranks below k.
            k = counts[:, step]  # [B]
            order = confidence[:, start:end].argsort(dim=1, descending=True, stable=True)  # [B, block_length]
            chosen_sorted = ranks[None, :] < k[:, None]
            commit_block = torch.zeros_like(chosen_sorted).scatter(1, order, chosen_sorted)
            commit = torch.zeros_like(candidates)
            commit[:, start:end] = commit_block
            x = torch.where(commit, x0, x)

    return x


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


@torch.no_grad()
def generate_batched(
    model,
    prompts: Sequence[torch.Tensor] | Sequence[Sequence[int]],
    *,
    pad_id: int,
    steps: int,
    gen_length: int,
    block_length: int,
    temperature: float = 0.0,
    remasking: str = "low_confidence",
    mask_id: int,
    generator: torch.Generator | None = None,
) -> list[torch.LongTensor]:
    """Decode prompts of different lengths in one batch; returns one long [gen_length] canvas each.

    Prompts (1-D tensors or lists of ids) are left-padded with ``pad_id`` to the longest, with an
    ``attention_mask`` marking the padding, and passed to :func:`generate`. The model must honour
    ``attention_mask`` (ignore padded keys, count positions over real tokens) for the result to
    match per-prompt decoding.
    """
    if len(prompts) == 0:
        return []
    device = next((p.device for p in prompts if isinstance(p, torch.Tensor)), None)
    if device is None:
        device = _model_device(model)
    rows = [torch.as_tensor(p, dtype=torch.long, device=device).reshape(-1) for p in prompts]
    longest = max(row.numel() for row in rows)
    padded = torch.full((len(rows), longest), pad_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long, device=device)
    for i, row in enumerate(rows):  # building the batch only; decoding itself is vectorised
        if row.numel():
            padded[i, longest - row.numel():] = row
            attention_mask[i, longest - row.numel():] = 1
    out = generate(
        model,
        padded,
        steps=steps,
        gen_length=gen_length,
        block_length=block_length,
        temperature=temperature,
        remasking=remasking,
        mask_id=mask_id,
        attention_mask=attention_mask,
        generator=generator,
    )
    return [canvas for canvas in out[:, longest:]]
