"""What every masking strategy shares: the interface, its output, the mask-rate range and the EOS tail.

Masking strategies for diffusion SFT are pure tensor code, vectorised over the batch.

A strategy turns a clean batch into the model input and the loss positions:

    strategy(input_ids [B, L], response_start [B], response_len [B], generator, sample_index [B])
        -> MaskedBatch(noisy_ids [B, L], loss_mask [B, L], eligible_mask [B, L], mask_rate [B], ...)

``response_start`` is the index of the first response token and ``response_len`` the number of
response tokens in the loss scope (the answer, its EOS and, by default, the EOS tail; see
``DataConfig.tail_padding``). Tokens before ``response_start`` (the prompt) are never masked.
Every random draw comes from the ``torch.Generator`` passed in, so a run is reproducible.

Two knobs every strategy has: the mask-rate range p ~ U(p_min, p_max) (default (eps, 1), LLaDA; the
draws are the same as before the knob existed) and ``tail_eos_in_loss`` (dLLM-RL ``post_num``, NeMo
``supervise_padding``): how many EOS tokens of the padding tail after the answer's own EOS stay in the
loss scope (null = all of them; 0 = none, as ``data.tail_padding=visible``). Tail tokens cut from the
scope are treated like a visible tail: clean, never masked, never in the loss. The strategies that turn
one sample into several rows live in ``blocksft.masking.multirow``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class MaskedBatch:
    """Output of a strategy. ``loss_mask`` ⊆ ``eligible_mask`` ⊆ response scope; prompt untouched.
    ``attention_mask`` (block-causal strategies only) restricts attention per row; the padding key mask
    of the batch still applies on top of it (``blocksft.training.objective.masked_diffusion_step``)."""

    noisy_ids: torch.Tensor  # [B, L] long: input with [MASK] substituted
    loss_mask: torch.Tensor  # [B, L] bool: masked tokens that carry loss
    eligible_mask: torch.Tensor  # [B, L] bool: response tokens in this strategy's loss scope
    mask_rate: torch.Tensor  # [B] float: the sampled rate p of each sample
    response_len: torch.Tensor  # [B] long: response tokens in scope (ELBO normaliser)
    active_block: torch.Tensor | None = None  # [B] long: blockwise active block index
    source_row: torch.Tensor | None = None  # [R] long: the batch sample each row comes from (None: row r = sample r)
    attention_mask: torch.Tensor | None = None  # [R, L, L] bool: query i may attend key j (None: full attention)

    def rows_of(self, tensor: torch.Tensor) -> torch.Tensor:
        """A per-sample batch tensor [B, ...] laid out as this batch's rows [R, ...]."""
        return tensor if self.source_row is None else tensor[self.source_row]

    @property
    def num_source_samples(self) -> int:
        return self.noisy_ids.shape[0] if self.source_row is None else int(self.source_row.unique().numel())


def sample_mask_rate(batch_size: int, eps: float, generator: torch.Generator, device: torch.device,
                     p_max: float = 1.0) -> torch.Tensor:
    """p ~ U(eps, p_max), one per sample: [B] float (``eps`` is the lower end, p_min)."""
    return eps + (p_max - eps) * torch.rand(batch_size, generator=generator, device=device)


def response_positions(input_ids: torch.Tensor, response_start: torch.Tensor) -> torch.Tensor:
    """Position of every token relative to its response start: [B, L] long (negative = prompt)."""
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return positions[None, :] - response_start[:, None]


def check_rate(name: str, value: float, low_open: bool = False) -> None:
    if low_open and not 0.0 < value < 1.0:
        raise ValueError(f"strategy.{name}={value}: must be in the open interval (0, 1)")
    if not low_open and not 0.0 <= value <= 1.0:
        raise ValueError(f"strategy.{name}={value}: must be in [0, 1]")


def check_rate_range(eps: float, p_min: float | None, p_max: float) -> tuple[float, float]:
    """(p_min, p_max) of p ~ U(p_min, p_max); ``p_min=None`` means ``eps``. Raises naming the key."""
    check_rate("eps", eps, low_open=True)
    low = eps if p_min is None else p_min
    if p_min is not None and not 0.0 < p_min < 1.0:
        raise ValueError(f"strategy.masking.p_min={p_min}: must be in the open interval (0, 1)")
    if not 0.0 < p_max <= 1.0:
        raise ValueError(f"strategy.masking.p_max={p_max}: must be in (0, 1]")
    if low >= p_max:
        raise ValueError(f"strategy.masking.p_min={low} >= strategy.masking.p_max={p_max}: p_min must be below p_max")
    return low, p_max


def check_tail_eos(tail_eos_in_loss: int | None) -> int | None:
    if tail_eos_in_loss is not None and (isinstance(tail_eos_in_loss, bool) or not isinstance(tail_eos_in_loss, int)
                                         or tail_eos_in_loss < 0):
        raise ValueError(f"strategy.masking.tail_eos_in_loss={tail_eos_in_loss!r}: must be null (all) or an integer >= 0")
    return tail_eos_in_loss


class MaskingStrategy:
    """Base class; subclasses implement ``__call__``. Stateless unless they override the state hooks
    (``state_dict``/``load_state_dict`` for checkpoints, ``sync_ranks`` for several processes).

    ``configure`` sets the knobs every strategy shares: the rate range and the EOS-tail count."""

    eps: float = 1e-3
    p_min: float = 1e-3
    p_max: float = 1.0
    tail_eos_in_loss: int | None = None

    def configure(self, eps: float, p_min: float | None = None, p_max: float = 1.0,
                  tail_eos_in_loss: int | None = None) -> None:
        self.eps = eps
        self.p_min, self.p_max = check_rate_range(eps, p_min, p_max)
        self.tail_eos_in_loss = check_tail_eos(tail_eos_in_loss)

    def sample_rate(self, batch_size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """p ~ U(p_min, p_max), one per row: [B] float. With the defaults, the draw of p ~ U(eps, 1)."""
        return sample_mask_rate(batch_size, self.p_min, generator, device, self.p_max)

    def expected_mask_rate(self) -> float:
        """E[p]: the expected share of eligible tokens that carry loss (sizes ``budget.count=masked``)."""
        return (self.p_min + self.p_max) / 2.0

    def loss_scope(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Response tokens in the loss scope [B]: ``loss_scope_len`` cut to the answer (with its EOS) plus
        ``tail_eos_in_loss`` EOS tokens of the padding tail."""
        scope = batch["loss_scope_len"]
        if self.tail_eos_in_loss is None:
            return scope
        return torch.minimum(scope, batch["answer_len"] + self.tail_eos_in_loss)

    def __call__(
        self,
        input_ids: torch.Tensor,
        response_start: torch.Tensor,
        response_len: torch.Tensor,
        generator: torch.Generator,
        sample_index: torch.Tensor | None = None,
    ) -> MaskedBatch:
        raise NotImplementedError

    def mask_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> MaskedBatch:
        """Mask a collated training batch (``blocksft.data.collate``: its ``loss_scope_len`` is the
        ``response_len`` of this interface)."""
        return self(batch["input_ids"], batch["response_start"], self.loss_scope(batch), generator, batch["index"])

    def expected_eligible(self, response_len: torch.Tensor) -> torch.Tensor:
        """Expected eligible (loss-scope) tokens per sample, [B] float; used to size token budgets."""
        return response_len.float()

    def sync_ranks(self, sample_index: torch.Tensor, gather: Callable[[torch.Tensor], torch.Tensor],
                   reduce_max: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """After a step on several processes: bring the state this step changed on other ranks here, so
        every rank holds what a single process would. ``gather(t)`` -> [world, *t.shape] from every rank;
        ``reduce_max(t)`` -> the maximum over ranks. Stateless strategies have nothing to share."""
        del sample_index, gather, reduce_max

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state
