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

from blocksft.errors import is_int, is_number, require


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


def sample_mask_rate(
    batch_size: int, eps: float, generator: torch.Generator, device: torch.device, p_max: float = 1.0
) -> torch.Tensor:
    """p ~ U(eps, p_max), one per sample: [B] float (``eps`` is the lower end, p_min)."""
    return eps + (p_max - eps) * torch.rand(batch_size, generator=generator, device=device)


def response_positions(input_ids: torch.Tensor, response_start: torch.Tensor) -> torch.Tensor:
    """Position of every token relative to its response start: [B, L] long (negative = prompt)."""
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return positions[None, :] - response_start[:, None]


def check_unit_rate(key: str, value) -> float:
    """A rate in [0, 1] (``strategy.masking.<key>``); ``InvalidValue`` naming the key otherwise."""
    require(is_number(value) and 0.0 <= value <= 1.0, f"strategy.masking.{key}", value, "a number in [0, 1]")
    return value


def check_rate_range(eps, p_min, p_max) -> tuple[float, float]:
    """(p_min, p_max) of p ~ U(p_min, p_max); ``p_min=None`` means ``eps``. The one statement of the
    mask-rate range's rules; ``InvalidValue`` naming the key."""
    require(is_number(eps) and 0.0 < eps < 1.0, "strategy.masking.eps", eps, "a number in the open interval (0, 1)")
    require(
        p_min is None or (is_number(p_min) and 0.0 < p_min < 1.0),
        "strategy.masking.p_min",
        p_min,
        "null (= eps) or a number in the open interval (0, 1)",
    )
    require(is_number(p_max) and 0.0 < p_max <= 1.0, "strategy.masking.p_max", p_max, "a number in (0, 1]")
    low = eps if p_min is None else p_min
    require(low < p_max, "strategy.masking.p_min", low, f"below strategy.masking.p_max={p_max} (p_min >= p_max)")
    return low, p_max


def check_tail_eos(tail_eos_in_loss) -> int | None:
    require(
        tail_eos_in_loss is None or (is_int(tail_eos_in_loss) and tail_eos_in_loss >= 0),
        "strategy.masking.tail_eos_in_loss",
        tail_eos_in_loss,
        "null (every EOS of the tail) or an integer >= 0",
    )
    return tail_eos_in_loss


def check_block_size(block_size) -> int:
    """The training block (``strategy.masking.block_size: ${block.size}``): a positive integer."""
    require(is_int(block_size) and block_size > 0, "block.size", block_size, "a positive integer")
    return block_size


class MaskingStrategy:
    """Base class; subclasses implement ``__call__``. Stateless unless they override the state hooks
    (``state_dict``/``load_state_dict`` for checkpoints, ``sync_ranks`` for several processes).

    ``configure`` sets the knobs every strategy shares: the rate range and the EOS-tail count; it and the
    subclasses' constructors own the rules of their arguments (``InvalidValue`` naming the config key).

    What a strategy needs of the rest of the run it declares as class attributes, read by
    ``blocksft.config.validation`` (never the class's name):

    * ``attention``: the training attention, ``full`` or ``block_causal`` (``MaskedBatch.attention_mask``
      restricts it per row; ``strategy.attention`` must say the same, and the backbone must take a
      per-example 2-D mask);
    * ``paired_rows``: rows 2i and 2i + 1 are two rows of one sample; with ``rows=batch`` (the strategy's
      row accounting) the micro-batch must be even;
    * ``whole_sequence``: the whole row is masked, no prompt (pretraining): needs ``data.format=documents``.
    """

    attention: str = "full"
    paired_rows: bool = False
    whole_sequence: bool = False
    eps: float = 1e-3
    p_min: float = 1e-3
    p_max: float = 1.0
    tail_eos_in_loss: int | None = None

    def configure(
        self, eps: float, p_min: float | None = None, p_max: float = 1.0, tail_eos_in_loss: int | None = None
    ) -> None:
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

    def sync_ranks(
        self,
        sample_index: torch.Tensor,
        gather: Callable[[torch.Tensor], torch.Tensor],
        reduce_max: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """After a step on several processes: bring the state this step changed on other ranks here, so
        every rank holds what a single process would. ``gather(t)`` -> [world, *t.shape] from every rank;
        ``reduce_max(t)`` -> the maximum over ranks. Stateless strategies have nothing to share."""
        del sample_index, gather, reduce_max

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state
