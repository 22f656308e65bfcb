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

Only the current block's logits are post-processed (float64 cast, ``mask_id`` exclusion, Gumbel
noise, softmax): the positions outside it can never be committed. Random draws keep LLaDA's shapes
(Gumbel noise for the whole canvas ``[B, L, V]``, ``"random"`` confidences ``[B, L]``) and only the
block's slice is used, so a seeded generator gives the same tokens as the full-canvas computation.

One deliberate difference from LLaDA's ``generate.py``: candidate positions are the masked positions
*inside the current block* (LLaDA uses every ``mask_id`` position before the block end, which would
also let it rewrite a prompt that contains ``mask_id``, e.g. when ``pad_id == mask_id``). For a prompt
without ``mask_id`` the two are identical. And ``mask_id`` itself is never predicted: its logit is set
to ``-inf`` before sampling and softmax (a trained model gives it ~0 probability anyway, so this only
matters for untrained models, where committing ``[MASK]`` would break the commit schedule).

**Prefix cache (``prefix_cache=True``, config ``decode=semi_ar_cached``) is an approximation.** As
Fast-dLLM's ``generate_with_prefix_cache``: at the first step of each block the model runs on the
whole canvas and its key/value states of the *prefix* (prompt + committed blocks, every position
before the block) are kept; the block's remaining steps run the model on ``x[:, block_start:]`` only
(current block + still-masked future), attending to those frozen prefix keys/values. In exact
decoding the prefix's states are recomputed at every step and depend (bidirectional attention) on
the current block's tokens as they get committed; the cache freezes them at their value from the
block's first step. The first step of every block is therefore exact, and so is the whole decode
when ``steps_per_block == 1`` or for a model whose prefix keys/values cannot depend on later tokens
(e.g. a one-layer model: its keys/values come from the token embeddings). The model must
support ``past_key_values`` / ``use_cache`` and say so with ``supports_prefix_cache = True``
(``blocksft.models.tiny.TinyDiffusionLM`` does); any other model raises ``ValueError`` (no silent
fall-back to exact decoding, so a result is never mislabelled). Forward calls (NFE) are the same as
exact decoding; each call after a block's first processes ``L - block_start`` positions instead of ``L``.

**Confidence-threshold decoding (``confidence_threshold=t``, config ``decode=semi_ar_threshold``)**, as
Fast-dLLM's parallel decoding: at each step every still-masked position of the current block whose
confidence (softmax probability of its proposal) is ``>= t`` is committed, and always at least the most
confident one; a block ends as soon as it has no masked position left. ``steps`` then plays no part
(only its divisibility is checked), and the number of forwards per block is data-dependent, between
1 and ``block_length``. Rows are independent: a row whose block is complete is still carried through
the batch's forwards but commits nothing, so batched output equals batch-1 output. It combines with
``prefix_cache``. Only ``remasking="low_confidence"`` (a threshold on random scores means nothing).

**Block-causal attention (``attention="block_causal"``, config ``decode.attention``)**, the decoding of a
model trained with ``strategy=blockwise_block_causal`` (``blocksft.masking.BlockCausalMasking``): while
block k is decoded, the canvas after it is cut off (the model runs on ``x[:, :block_end]``), and a
per-example mask [B, block_end, block_end] lets the prefix (prompt + finished blocks) attend only within
itself and the block attend to the prefix and itself: exactly the training view, so there is no
train/decode mismatch. The prefix never sees the block, so its key/values do not change while the block
is decoded: with ``prefix_cache=True`` they are computed once per block (first step, on the prefix + the
block) and the other steps run on the block alone; the tokens are the same as without the cache (exact,
not an approximation). The model must take a per-example mask (``supports_attention_mask_2d = True``:
the tiny model, ``HFBackbone`` with ``model.attention_mask=4d``); any other model raises ``ValueError``.
Forwards process ``P_i + block_end - P`` positions (``block_length`` per cached step after the first).

**Cost (``return_stats=True``)** :class:`DecodeStats`, per row: ``nfe``, the forwards the row needed
(every step of the fixed schedule, so ``steps``; with a threshold, the steps at which its current
block still had a masked position: what decoding it alone would cost), and ``positions_fed``, the
positions of the row those forwards processed, left padding excluded (``P_i + gen_length`` per exact
forward, ``L - block_start`` per cached one; twice that with ``cfg_scale > 0``). Both are therefore the
same batched and at batch size 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from blocksft.errors import InvalidValue, is_int, is_number, require

REMASKING_MODES = ("low_confidence", "random")
ATTENTION_MODES = ("full", "block_causal")

__all__ = [
    "ATTENTION_MODES",
    "REMASKING_MODES",
    "DecodePlan",
    "DecodeSettings",
    "DecodeStats",
    "add_gumbel_noise",
    "decode",
    "generate",
    "generate_batched",
    "num_transfer_tokens",
    "supports_attention_mask_2d",
    "supports_prefix_cache",
]


@dataclass(frozen=True)
class DecodeStats:
    """Per-row decoding cost (see the module docstring): ``nfe`` and ``positions_fed``, long [B]."""

    nfe: torch.Tensor
    positions_fed: torch.Tensor


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


def add_gumbel_noise(
    logits: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """LLaDA's Gumbel-max perturbation in float64: ``exp(logits) / (-log u) ** temperature``.

    ``argmax`` of the result samples from ``softmax(logits / temperature)``. Temperature 0 returns
    the logits unchanged (cast to float64). ``noise`` (uniform draws of ``logits``' shape) replaces
    the draw from ``generator``.
    """
    logits = logits.to(torch.float64)
    if temperature == 0:
        return logits
    if noise is None:
        noise = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    return logits.exp() / (-torch.log(noise)) ** temperature


def _check_args(
    steps, gen_length, block_length, temperature, cfg_scale, remasking, confidence_threshold=None, attention="full"
) -> tuple[int, int]:
    """-> (num_blocks, steps_per_block). The one statement of the decoder's argument rules: ``DecodeSettings``
    calls it, and ``blocksft.config.validation`` calls it with the ``decode.*`` values of a config, so an
    ``InvalidValue`` names the config key (``cfg_scale`` has none)."""
    require(is_int(gen_length) and gen_length > 0, "decode.gen_length", gen_length, "a positive integer")
    require(is_int(steps) and steps > 0, "decode.steps", steps, "a positive integer")
    if not (is_int(block_length) and block_length > 0 and gen_length % block_length == 0):
        divisors = [d for d in range(1, gen_length + 1) if gen_length % d == 0]
        raise InvalidValue(
            "decode.block_length", block_length, f"a divisor of decode.gen_length={gen_length}: {divisors}"
        )
    num_blocks = gen_length // block_length
    require(
        steps % num_blocks == 0,
        "decode.steps",
        steps,
        f"a multiple of the number of decoding blocks ({num_blocks} for block_length {block_length})",
    )
    require(is_number(temperature) and temperature >= 0, "decode.temperature", temperature, "a number >= 0")
    require(remasking in REMASKING_MODES, "decode.remasking", remasking, f"one of {', '.join(REMASKING_MODES)}")
    require(is_number(cfg_scale) and cfg_scale >= 0, "cfg_scale", cfg_scale, "a number >= 0")
    threshold = confidence_threshold
    require(
        threshold is None or (is_number(threshold) and 0 < threshold <= 1),
        "decode.confidence_threshold",
        threshold,
        "null (fixed per-step schedule) or a number in (0, 1]",
    )
    require(
        threshold is None or remasking == "low_confidence",
        "decode.remasking",
        remasking,
        f"low_confidence with decode.confidence_threshold={threshold}",
    )
    require(attention in ATTENTION_MODES, "decode.attention", attention, f"one of {', '.join(ATTENTION_MODES)}")
    return num_blocks, steps // num_blocks


@dataclass(frozen=True)
class DecodeSettings:
    """One semi-autoregressive decoding, LLaDA's arguments (module docstring); checked on construction by
    :func:`_check_args` (``InvalidValue`` naming the ``decode.*`` key). ``steps`` is the whole decode's budget,
    split evenly over ``gen_length // block_length`` blocks."""

    gen_length: int
    block_length: int
    steps: int
    temperature: float = 0.0
    remasking: str = "low_confidence"
    prefix_cache: bool = False
    confidence_threshold: float | None = None
    attention: str = "full"
    cfg_scale: float = 0.0

    def __post_init__(self) -> None:
        _check_args(
            self.steps,
            self.gen_length,
            self.block_length,
            self.temperature,
            self.cfg_scale,
            self.remasking,
            self.confidence_threshold,
            self.attention,
        )

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks


@dataclass(frozen=True)
class DecodePlan:
    """Every decoding a run scores: one :class:`DecodeSettings` per decoding block length (the same settings
    otherwise), and the ``primary`` length, whose metrics carry no ``@block<length>`` suffix."""

    settings: tuple[DecodeSettings, ...]
    primary: int

    @classmethod
    def of(cls, block_lengths: Sequence[int], primary: int | None = None, **common) -> DecodePlan:
        """The plan decoding at each of ``block_lengths`` with ``common`` (the other :class:`DecodeSettings`
        fields); ``primary`` defaults to the first length."""
        settings = tuple(DecodeSettings(block_length=length, **common) for length in block_lengths)
        return cls(settings, block_lengths[0] if primary is None else primary)

    @property
    def block_lengths(self) -> tuple[int, ...]:
        return tuple(settings.block_length for settings in self.settings)

    @property
    def gen_length(self) -> int:
        return self.settings[0].gen_length


def supports_attention_mask_2d(model) -> bool:
    """Whether ``model`` takes a per-example ``attention_mask`` [B, L, L] (``attention="block_causal"``)."""
    return bool(getattr(model, "supports_attention_mask_2d", False))


def block_causal_mask(
    key_mask: torch.Tensor | None, rows: int, block_start: int, block_end: int, device: torch.device
) -> torch.Tensor:
    """The per-example mask of the canvas cut at ``block_end``: [rows, block_end, block_end] bool, the
    prefix (positions before ``block_start``) attending within itself, the block to the prefix and itself;
    ``key_mask`` [rows, >= block_end] (1 = real token) removes left padding from the keys."""
    in_block = torch.arange(block_end, device=device) >= block_start
    allowed = (in_block[None, :] <= in_block[:, None])[None].expand(rows, -1, -1)
    return allowed if key_mask is None else allowed & key_mask[:, None, :block_end].bool()


def supports_prefix_cache(model) -> bool:
    """Whether ``model`` declares ``past_key_values`` / ``use_cache`` support for ``prefix_cache=True``."""
    return bool(getattr(model, "supports_prefix_cache", False))


def _forward(model, x: torch.Tensor, attention_mask: torch.Tensor | None, **cache_kwargs):
    """``model(x, ...)``; ``attention_mask`` and cache arguments are passed only when given."""
    if attention_mask is not None:
        cache_kwargs["attention_mask"] = attention_mask
    return model(x, **cache_kwargs)


def _crop(past_key_values, length: int):
    """Per-layer (key, value) [B, heads, L, d] -> their first ``length`` positions."""
    return tuple((key[:, :, :length], value[:, :, :length]) for key, value in past_key_values)


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
    *,
    mask_id: int,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    prefix_cache: bool = False,
    confidence_threshold: float | None = None,
    return_stats: bool = False,
    attention: str = "full",
) -> torch.LongTensor | tuple[torch.LongTensor, DecodeStats]:
    """Decode ``gen_length`` tokens after ``prompt`` [B, P] with LLaDA's ``generate`` arguments: the
    :class:`DecodeSettings` they make, given to :func:`decode`. ``mask_id`` has no default: it is the
    tokenizer's, never LLaDA's 126336 by accident."""
    settings = DecodeSettings(
        gen_length,
        block_length,
        steps,
        temperature,
        remasking,
        prefix_cache,
        confidence_threshold,
        attention,
        cfg_scale,
    )
    return decode(
        model,
        prompt,
        settings,
        mask_id=mask_id,
        attention_mask=attention_mask,
        generator=generator,
        return_stats=return_stats,
    )


@torch.no_grad()
def decode(
    model,
    prompt: torch.Tensor,
    settings: DecodeSettings,
    *,
    mask_id: int,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_stats: bool = False,
) -> torch.LongTensor | tuple[torch.LongTensor, DecodeStats]:
    """Decode ``settings.gen_length`` tokens after ``prompt`` [B, P]; returns long [B, P + gen_length]
    (and its :class:`DecodeStats` with ``return_stats=True``).

    ``model(x)`` (or ``model(x, attention_mask=m)`` when ``attention_mask`` [B, P] is given; it is
    extended with ones over the canvas) must return an object with ``.logits`` [B, L, V]; the logit of
    ``mask_id`` is ignored (never predicted). The model is called exactly ``steps`` times with the fixed
    schedule (twice the batch when ``cfg_scale > 0``); put it in eval mode yourself. Random draws (Gumbel
    noise, ``"random"`` confidences) all come from ``generator``.

    ``cfg_scale > 0`` applies LLaDA's classifier-free guidance: the unconditional pass sees the
    prompt replaced by ``mask_id`` and ``logits = u + (cfg_scale + 1) * (c - u)``.

    ``prefix_cache=True`` reuses the prefix's key/values within each block (an approximation, see
    the module docstring); the model is then also called with ``use_cache=True`` (first step of a
    block) or ``past_key_values=...`` (other steps; input ``x[:, block_start:]``).

    ``confidence_threshold=t`` replaces the fixed per-step counts by Fast-dLLM's threshold rule
    (module docstring); the model is then called until every block is complete, at most
    ``gen_length`` times.

    ``attention="block_causal"`` cuts the canvas after the current block and passes a per-example
    ``attention_mask`` [B, block_end, block_end] (module docstring); with ``prefix_cache`` it is exact.

    Raises ``ValueError`` for a prompt that is not [B, P], an ``attention_mask`` of another shape, or a model
    without what the settings ask of it (``supports_prefix_cache``, ``supports_attention_mask_2d``); the
    settings' own rules are :class:`DecodeSettings`'.
    """
    _check_model(model, settings)
    if prompt.dim() != 2:
        raise ValueError(f"prompt: expected shape [B, P], got {tuple(prompt.shape)}")
    canvas = _Canvas.start(prompt, settings, mask_id, attention_mask)
    for block in range(settings.num_blocks):
        _decode_block(model, canvas, block, settings, mask_id, generator)
    if return_stats:
        return canvas.x, DecodeStats(nfe=canvas.nfe, positions_fed=canvas.positions_fed)
    return canvas.x


def _check_model(model, settings: DecodeSettings) -> None:
    """``ValueError`` when the settings ask for what ``model`` does not declare it supports."""
    if settings.attention == "block_causal" and not supports_attention_mask_2d(model):
        raise ValueError(
            f"attention='block_causal' needs a model that takes a per-example [B, L, L] attention_mask "
            f"(supports_attention_mask_2d = True); {type(model).__name__} does not: use attention='full'"
        )
    if settings.prefix_cache and not supports_prefix_cache(model):
        raise ValueError(
            f"prefix_cache=True (decode=semi_ar_cached) needs a model with key/value cache support "
            f"(supports_prefix_cache = True, e.g. blocksft TinyDiffusionLM); {type(model).__name__} has none: "
            "use exact decoding (decode=semi_ar)"
        )


@dataclass
class _Canvas:
    """The decoding state: ``x`` [B, P + gen_length] (the prompt, then ``mask_id`` until committed), the key mask
    of the model's input (``full_mask`` [B (x2 with guidance), L], None without ``attention_mask``), the
    positions of each row an exact forward feeds (``real_len`` [B], left padding excluded) and the cost so
    far (``nfe``, ``positions_fed`` [B])."""

    x: torch.Tensor
    prompt_len: int
    full_mask: torch.Tensor | None
    real_len: torch.Tensor
    nfe: torch.Tensor
    positions_fed: torch.Tensor

    @classmethod
    def start(
        cls, prompt: torch.Tensor, settings: DecodeSettings, mask_id: int, attention_mask: torch.Tensor | None
    ) -> _Canvas:
        batch, prompt_len = prompt.shape
        device = prompt.device
        x = torch.full((batch, prompt_len + settings.gen_length), mask_id, dtype=torch.long, device=device)
        x[:, :prompt_len] = prompt.long()
        full_mask = None
        if attention_mask is not None:
            if attention_mask.shape != prompt.shape:
                raise ValueError(
                    f"attention_mask: expected shape {tuple(prompt.shape)}, got {tuple(attention_mask.shape)}"
                )
            canvas_ones = torch.ones(batch, settings.gen_length, dtype=attention_mask.dtype, device=device)
            full_mask = torch.cat([attention_mask.to(device), canvas_ones], dim=1)
            if settings.cfg_scale > 0:
                full_mask = torch.cat([full_mask, full_mask], dim=0)
        real_len = (
            attention_mask.to(device).sum(dim=1).long()
            if attention_mask is not None
            else torch.full((batch,), prompt_len, dtype=torch.long, device=device)
        ) + settings.gen_length
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        return cls(x, prompt_len, full_mask, real_len, zeros, zeros.clone())


def _decode_block(
    model, canvas: _Canvas, block: int, settings: DecodeSettings, mask_id: int, generator: torch.Generator | None
) -> None:
    """Decode block ``block`` of the canvas in place: step until its schedule (or, with a threshold, every
    row's block) is done; each step commits the most confident proposals of still-masked positions."""
    x, length = canvas.x, canvas.x.shape[1]
    start = canvas.prompt_len + block * settings.block_length
    end = start + settings.block_length
    counts = num_transfer_tokens(x[:, start:end] == mask_id, settings.steps_per_block)  # [B, steps_per_block]
    prefix_key_values = None
    step = 0
    while True:
        candidates = x[:, start:end] == mask_id  # [B, block_length]
        needs_step = _rows_needing_a_step(candidates, step, settings)
        if needs_step is None:
            return
        _count_cost(canvas, needs_step, start, end, step, settings)

        # 1. logits of the current block only, [B, block_length, V] (guidance applied, mask_id never proposed)
        block_logits, prefix_key_values = _block_logits(
            model,
            _model_input(canvas, mask_id, settings),
            canvas.full_mask,
            start,
            end,
            step,
            settings,
            prefix_key_values,
        )
        logits = _guided_logits(block_logits, settings.cfg_scale, mask_id)

        # 2. proposals and confidences (random draws shaped as LLaDA's, for the whole canvas)
        x0, confidence = _proposals(logits, settings, generator, (x.shape[0], length), start, end)
        confidence = confidence.masked_fill(~candidates, float("-inf"))

        # 3. per-row top-k with a per-row k: rank the block once, keep ranks below k
        if settings.confidence_threshold is None:
            k = counts[:, step]  # [B]
        else:  # every candidate at or above the threshold (they rank first), at least the top one
            k = (confidence >= settings.confidence_threshold).sum(dim=1).clamp(min=1) * needs_step.long()
        order = confidence.argsort(dim=1, descending=True, stable=True)  # [B, block_length]
        ranks = torch.arange(settings.block_length, device=x.device)
        commit = torch.zeros_like(candidates).scatter(1, order, ranks[None, :] < k[:, None])
        x[:, start:end] = torch.where(commit, x0, x[:, start:end])
        step += 1


def _rows_needing_a_step(candidates: torch.Tensor, step: int, settings: DecodeSettings) -> torch.Tensor | None:
    """[B] bool: the rows this step serves; None when the block is done. Fixed schedule: every row takes each
    of the block's steps. Threshold: a row needs a step while its block has a masked position."""
    if settings.confidence_threshold is None:
        return (
            None
            if step == settings.steps_per_block
            else torch.ones(candidates.shape[0], dtype=torch.bool, device=candidates.device)
        )
    needs_step = candidates.any(dim=1)
    return needs_step if needs_step.any() else None


def _count_cost(
    canvas: _Canvas, needs_step: torch.Tensor, start: int, end: int, step: int, settings: DecodeSettings
) -> None:
    """Add this step's forward to each served row's ``nfe`` and the positions it feeds to ``positions_fed``."""
    length = canvas.x.shape[1]
    cached = settings.prefix_cache and step > 0
    if settings.attention == "block_causal":  # the canvas is cut after the block; a cached step feeds the block alone
        fed = torch.full_like(canvas.real_len, settings.block_length) if cached else canvas.real_len - (length - end)
    else:
        fed = torch.full_like(canvas.real_len, length - start) if cached else canvas.real_len
    passes = 2 if settings.cfg_scale > 0 else 1
    canvas.nfe += needs_step.long()
    canvas.positions_fed += needs_step.long() * fed * passes


def _model_input(canvas: _Canvas, mask_id: int, settings: DecodeSettings) -> torch.Tensor:
    """The canvas, with guidance its unconditional copy (prompt replaced by ``mask_id``) stacked below."""
    if settings.cfg_scale <= 0:
        return canvas.x
    unconditional = canvas.x.clone()
    unconditional[:, : canvas.prompt_len] = mask_id
    return torch.cat([canvas.x, unconditional], dim=0)


def _block_logits(
    model,
    model_input: torch.Tensor,
    full_mask: torch.Tensor | None,
    start: int,
    end: int,
    step: int,
    settings: DecodeSettings,
    prefix_key_values,
) -> tuple[torch.Tensor, object]:
    """Logits of the block [start, end) [rows, block_length, V] and the prefix key/values kept for the block's
    next steps (None without ``prefix_cache``)."""
    if settings.attention == "block_causal":
        return _block_causal_logits(model, model_input, full_mask, start, end, settings.prefix_cache, prefix_key_values)
    if not settings.prefix_cache:
        return _forward(model, model_input, full_mask).logits[:, start:end], None
    if step == 0:  # whole canvas; keep the prefix's keys/values for the block's other steps
        output = _forward(model, model_input, full_mask, use_cache=True)
        return output.logits[:, start:end], _crop(output.past_key_values, start)
    # block + future only, attending to the frozen prefix keys/values
    output = _forward(model, model_input[:, start:], full_mask, past_key_values=prefix_key_values)
    return output.logits[:, : end - start], prefix_key_values


def _guided_logits(block_logits: torch.Tensor, cfg_scale: float, mask_id: int) -> torch.Tensor:
    """float64 logits [B, block_length, V]: guidance combined (``u + (cfg_scale + 1) * (c - u)``) and the logit
    of ``mask_id`` at -inf (committing [MASK] would be a silent no-op); out-of-place, the model's output untouched."""
    logits = block_logits.to(torch.float64)
    if cfg_scale > 0:
        cond, uncond = logits.chunk(2, dim=0)
        logits = uncond + (cfg_scale + 1) * (cond - uncond)
    if 0 <= mask_id < logits.shape[-1]:
        logits = logits.index_fill(-1, torch.tensor([mask_id], device=logits.device), float("-inf"))
    return logits


def _proposals(
    logits: torch.Tensor,
    settings: DecodeSettings,
    generator: torch.Generator | None,
    canvas_shape: tuple[int, int],
    start: int,
    end: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 [B, block_length] long, confidence [B, block_length] float64): the argmax proposals (Gumbel-perturbed
    above temperature 0) and their softmax probability, or random scores for ``remasking="random"``. The
    draws have LLaDA's whole-canvas shapes and the block's slice is used, so a seeded generator gives its tokens."""
    batch, length = canvas_shape
    noise = None
    if settings.temperature > 0:
        noise = torch.rand(
            (batch, length, logits.shape[-1]), dtype=torch.float64, device=logits.device, generator=generator
        )[:, start:end]
    x0 = add_gumbel_noise(logits, settings.temperature, noise=noise).argmax(dim=-1)
    if settings.remasking == "low_confidence":
        confidence = F.softmax(logits, dim=-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    else:
        confidence = torch.rand((batch, length), dtype=torch.float64, device=logits.device, generator=generator)[
            :, start:end
        ]
    return x0, confidence


def _block_causal_logits(
    model,
    model_input: torch.Tensor,
    full_mask: torch.Tensor | None,
    start: int,
    end: int,
    prefix_cache: bool,
    prefix_key_values,
) -> tuple[torch.Tensor, object]:
    """Block-causal logits of the block [start, end) [rows, end - start, V] and the prefix key/values
    to reuse (None without ``prefix_cache``). Without a cache (or at a block's first step) the model
    runs on ``x[:, :end]`` under :func:`block_causal_mask`; with cached prefix key/values it runs on the
    block alone, attending to the prefix's real keys and to itself: the same rows of the same mask."""
    if prefix_key_values is None:
        mask = block_causal_mask(full_mask, model_input.shape[0], start, end, model_input.device)
        if not prefix_cache:
            return _forward(model, model_input[:, :end], mask).logits[:, start:end], None
        output = _forward(model, model_input[:, :end], mask, use_cache=True)
        return output.logits[:, start:end], _crop(output.past_key_values, start)
    key_mask = None if full_mask is None else full_mask[:, :end]
    output = _forward(model, model_input[:, start:end], key_mask, past_key_values=prefix_key_values)
    return output.logits, prefix_key_values


def model_device(model) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
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
    prefix_cache: bool = False,
    confidence_threshold: float | None = None,
    return_stats: bool = False,
    attention: str = "full",
) -> list[torch.LongTensor] | tuple[list[torch.LongTensor], DecodeStats]:
    """Decode prompts of different lengths in one batch; returns one long [gen_length] canvas each
    (and the batch's :class:`DecodeStats` with ``return_stats=True``).

    Prompts (1-D tensors or lists of ids) are left-padded with ``pad_id`` to the longest, with an
    ``attention_mask`` marking the padding, and passed to :func:`generate` (``prefix_cache``,
    ``confidence_threshold`` and ``attention`` too). The model must honour ``attention_mask`` (ignore padded keys, count
    positions over real tokens) for the result to match per-prompt decoding.
    """
    if len(prompts) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return ([], DecodeStats(empty, empty)) if return_stats else []
    device = next((p.device for p in prompts if isinstance(p, torch.Tensor)), None)
    if device is None:
        device = model_device(model)
    rows = [torch.as_tensor(p, dtype=torch.long, device=device).reshape(-1) for p in prompts]
    longest = max(row.numel() for row in rows)
    padded = torch.full((len(rows), longest), pad_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long, device=device)
    for i, row in enumerate(rows):  # building the batch only; decoding itself is vectorised
        if row.numel():
            padded[i, longest - row.numel() :] = row
            attention_mask[i, longest - row.numel() :] = 1
    settings = DecodeSettings(
        gen_length, block_length, steps, temperature, remasking, prefix_cache, confidence_threshold, attention
    )
    out = decode(
        model,
        padded,
        settings,
        mask_id=mask_id,
        attention_mask=attention_mask,
        generator=generator,
        return_stats=return_stats,
    )
    if return_stats:
        out, stats = out
        return [canvas for canvas in out[:, longest:]], stats
    return [canvas for canvas in out[:, longest:]]
