"""Masking strategies for diffusion SFT: pure tensor code, vectorised over the batch.

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
one sample into several rows live in ``blocksft.multirow``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

BlockSampling = Literal["without_replacement", "uniform"]
BLOCK_SAMPLINGS = ("without_replacement", "uniform")


@dataclass
class MaskedBatch:
    """Output of a strategy. ``loss_mask`` ⊆ ``eligible_mask`` ⊆ response scope; prompt untouched.
    ``attention_mask`` (block-causal strategies only) restricts attention per row; the padding key mask
    of the batch still applies on top of it (``blocksft.objective.masked_diffusion_step``)."""

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


def _check_rate(name: str, value: float, low_open: bool = False) -> None:
    if low_open and not 0.0 < value < 1.0:
        raise ValueError(f"strategy.{name}={value}: must be in the open interval (0, 1)")
    if not low_open and not 0.0 <= value <= 1.0:
        raise ValueError(f"strategy.{name}={value}: must be in [0, 1]")


def check_rate_range(eps: float, p_min: float | None, p_max: float) -> tuple[float, float]:
    """(p_min, p_max) of p ~ U(p_min, p_max); ``p_min=None`` means ``eps``. Raises naming the key."""
    _check_rate("eps", eps, low_open=True)
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


class ClassicalMasking(MaskingStrategy):
    """Classical (LLaDA) SFT: p ~ U(p_min, p_max) per sample, each response token masked w.p. p."""

    def __init__(self, eps: float = 1e-3, mask_id: int = 0, p_min: float | None = None, p_max: float = 1.0,
                 tail_eos_in_loss: int | None = None) -> None:
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


class BlockSampler:
    """Chooses one active block per sample.

    ``uniform``: each call draws uniformly from the sample's ``num_blocks`` blocks.
    ``without_replacement`` (official code): each sample keeps a pool of unused block indices; a
    call draws uniformly from the pool and removes the choice, so every (sample, block) pair is used
    once per cycle. When a sample's pool is empty it is refilled (a new cycle) -- the official code
    instead yields a zero-loss sample -- so multi-epoch budgets keep training. The pools are state,
    saved with checkpoints through ``state_dict``.
    """

    def __init__(self, mode: BlockSampling = "without_replacement") -> None:
        if mode not in BLOCK_SAMPLINGS:
            raise ValueError(f"strategy.block_sampling={mode!r}: allowed values are {', '.join(BLOCK_SAMPLINGS)}")
        self.mode = mode
        self.used = torch.zeros(0, 0, dtype=torch.bool)  # [num_samples_seen, max_blocks_seen]
        self.refills = 0

    def _grow(self, num_samples: int, max_blocks: int) -> None:
        rows, cols = self.used.shape
        if num_samples > rows or max_blocks > cols:
            grown = torch.zeros(max(rows, num_samples), max(cols, max_blocks), dtype=torch.bool)
            grown[:rows, :cols] = self.used
            self.used = grown

    def sample(self, num_blocks: torch.Tensor, generator: torch.Generator, sample_index: torch.Tensor | None) -> torch.Tensor:
        """num_blocks [B] (>= 1) -> active block index [B] in [0, num_blocks)."""
        device = num_blocks.device
        if self.mode == "uniform" or sample_index is None:
            if self.mode == "without_replacement":
                raise ValueError("block_sampling=without_replacement needs the batch's sample indices")
            draws = torch.rand(num_blocks.shape, generator=generator, device=device)
            return (draws * num_blocks).long().clamp_max(num_blocks - 1)
        max_blocks = int(num_blocks.max())
        index = sample_index.cpu()
        self._grow(int(index.max()) + 1, max_blocks)
        in_range = torch.arange(max_blocks)[None, :] < num_blocks.cpu()[:, None]
        available = in_range & ~self.used[index, :max_blocks]
        exhausted = ~available.any(dim=1)
        if exhausted.any():
            self.used[index[exhausted]] = False
            self.refills += int(exhausted.sum())
            available = torch.where(exhausted[:, None], in_range, available)
        scores = torch.rand(available.shape, generator=generator, device=device).cpu()
        choice = scores.masked_fill(~available, -1.0).argmax(dim=1)
        self.used[index, choice] = True
        return choice.to(device)

    def pool_rows(self, sample_index: torch.Tensor, width: int) -> torch.Tensor:
        """The pools of rows ``sample_index`` [B] as a [B, width] used-block mask (for exchange between ranks)."""
        index = sample_index.cpu()
        self._grow(int(index.max()) + 1, width)
        return self.used[index, :width].clone()

    def adopt_pool_rows(self, sample_index: torch.Tensor, used_rows: torch.Tensor) -> None:
        """Overwrite the pools of rows ``sample_index`` [N] with ``used_rows`` [N, width] drawn on other
        ranks, so every rank holds the same pools as a single process would."""
        index = sample_index.cpu()
        self._grow(int(index.max()) + 1, used_rows.shape[1])
        self.used[index, : used_rows.shape[1]] = used_rows.cpu().bool()

    def state_dict(self) -> dict:
        return {"mode": self.mode, "used": self.used.clone(), "refills": self.refills}

    def load_state_dict(self, state: dict) -> None:
        self.used = state["used"].clone().bool()
        self.refills = int(state.get("refills", 0))


class BlockwiseMasking(MaskingStrategy):
    """Blockwise SFT (Sun et al. 2025).

    The response is cut into blocks of ``block_size`` aligned at the response start (the last one
    may be partial). One active block per sample is masked at p ~ U(eps, 1) and carries the loss.
    Earlier response tokens (prefix) stay clean, or are masked at the fixed ``prefix_mask_rate``
    (ablation; never in the loss). Later response tokens (suffix) become [MASK] with probability
    ``suffix_mask_prob`` (1.0 = fully hidden, the method; 0.0 = fully visible; never in the loss).
    """

    def __init__(
        self,
        block_size: int,
        eps: float = 1e-3,
        mask_id: int = 0,
        block_sampling: BlockSampling = "without_replacement",
        prefix_mask_rate: float = 0.0,
        suffix_mask_prob: float = 1.0,
        p_min: float | None = None,
        p_max: float = 1.0,
        tail_eos_in_loss: int | None = None,
    ) -> None:
        if block_size <= 0:
            raise ValueError(f"block.size={block_size}: must be a positive integer")
        self.configure(eps, p_min, p_max, tail_eos_in_loss)
        _check_rate("prefix_mask_rate", prefix_mask_rate)
        _check_rate("suffix_mask_prob", suffix_mask_prob)
        self.block_size = block_size
        self.mask_id = mask_id
        self.prefix_mask_rate = prefix_mask_rate
        self.suffix_mask_prob = suffix_mask_prob
        self.sampler = BlockSampler(block_sampling)

    def active_span(self, response_len: torch.Tensor, generator: torch.Generator, sample_index) -> tuple:
        """Choose the active block: (index [B], start [B], end [B]) relative to the response start."""
        num_blocks = (response_len + self.block_size - 1) // self.block_size
        active = self.sampler.sample(num_blocks.clamp_min(1), generator, sample_index)
        start = active * self.block_size
        end = torch.minimum(start + self.block_size, response_len)
        return active, start, end

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        relative = response_positions(input_ids, response_start)
        in_response = (relative >= 0) & (relative < response_len[:, None])
        active, start, end = self.active_span(response_len, generator, sample_index)
        rate = self.sample_rate(input_ids.shape[0], generator, input_ids.device)
        # One draw per position serves all three disjoint regions, so they stay independent.
        draws = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
        in_active, loss_mask, noisy_ids = self.corrupt(input_ids, relative, in_response, start, end, rate, draws)
        return MaskedBatch(noisy_ids, loss_mask, in_active, rate, response_len, active)

    def corrupt(self, input_ids, relative, in_response, start, end, rate, draws) -> tuple:
        """Active span [start, end) masked where ``draws < rate``; prefix and suffix noise from the same
        draws. -> (in_active, loss_mask, noisy_ids), all [B, L]."""
        in_active = in_response & (relative >= start[:, None]) & (relative < end[:, None])
        in_prefix = in_response & (relative < start[:, None])
        in_suffix = in_response & (relative >= end[:, None])
        loss_mask = in_active & (draws < rate[:, None])
        hidden = loss_mask | (in_prefix & (draws < self.prefix_mask_rate)) | (in_suffix & (draws < self.suffix_mask_prob))
        return in_active, loss_mask, torch.where(hidden, self.mask_id, input_ids)

    def expected_eligible(self, response_len: torch.Tensor) -> torch.Tensor:
        """Mean block length over a response's blocks (active block chosen uniformly)."""
        num_blocks = (response_len + self.block_size - 1) // self.block_size
        return response_len.float() / num_blocks.clamp_min(1)

    def sync_ranks(self, sample_index, gather, reduce_max) -> None:
        """Share this step's block-pool updates: each rank adopts the pools of the rows other ranks drew."""
        if self.sampler.mode != "without_replacement":
            return
        width = int(reduce_max(torch.tensor(self.sampler.used.shape[1], device=sample_index.device)))
        rows = gather(self.sampler.pool_rows(sample_index, width).to(sample_index.device))
        self.sampler.adopt_pool_rows(gather(sample_index).flatten(), rows.flatten(0, 1))

    def state_dict(self) -> dict:
        return {"block_sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["block_sampler"])


class UnalignedBlockMasking(BlockwiseMasking):
    """Control: blockwise masking whose active span (``block_size`` tokens, shorter only when the
    response is) starts at a uniformly random offset instead of a block boundary. Same masking
    statistics as blockwise, no alignment with the decoder's blocks. ``active_block`` reports the
    block that contains the span start."""

    def active_span(self, response_len: torch.Tensor, generator: torch.Generator, sample_index) -> tuple:
        span = response_len.clamp_max(self.block_size)
        offsets = response_len - span + 1
        draws = torch.rand(response_len.shape, generator=generator, device=response_len.device)
        start = (draws * offsets).long().clamp_max(offsets - 1)
        return start // self.block_size, start, start + span


def block_causal_attention(relative: torch.Tensor, block_start: torch.Tensor, block_end: torch.Tensor) -> torch.Tensor:
    """Block-causal attention of one active block per row: [B, L, L] bool, True = query i may attend key j.

    ``relative`` [B, L] are positions relative to the response start, the active block is
    [``block_start``, ``block_end``) [B] in those units. Each position gets a segment: 0 = clean prefix
    (prompt and earlier response blocks), 1 = active block, 2 = later positions; query i may attend key j
    iff segment(j) <= segment(i). So the prefix attends only within itself (bidirectionally), the block
    attends to the prefix and itself, and no position of segments 0 and 1 attends to a later position:
    their outputs cannot depend on anything after the block. Later positions attend to everything (their
    outputs carry no loss; a row with no key at all would give NaN that reaches the others through 0 * NaN).
    """
    segment = (relative >= block_start[:, None]).long() + (relative >= block_end[:, None]).long()  # [B, L]
    return segment[:, None, :] <= segment[:, :, None]


class BlockCausalMasking(BlockwiseMasking):
    """Block-causal blockwise SFT (BD3-LMs, Fast-dLLM v2, SDAR): the draws of blockwise (one active block
    per sample, chosen by ``block_sampling``; p ~ U(p_min, p_max); its tokens masked where ``draw < p``),
    clean prefix, loss on the masked tokens of the active block. The future is not hidden behind [MASK]
    but cut from attention: ``MaskedBatch.attention_mask`` [B, L, L] is :func:`block_causal_attention`
    of the block [start, start + block_size) (the decoding block: a last block cut by the loss scope still
    spans the positions the decoder's block would), and later tokens stay in ``noisy_ids`` as they were
    (clean), attended by nothing that carries loss. With the same generator the active blocks, rates and
    ``loss_mask`` equal :class:`BlockwiseMasking`'s. The backbone must take a per-example 2-D mask; a
    model trained so is decoded with ``decode.attention=block_causal`` (``blocksft.decoding``)."""

    def __init__(self, block_size: int, eps: float = 1e-3, mask_id: int = 0,
                 block_sampling: BlockSampling = "without_replacement", p_min: float | None = None,
                 p_max: float = 1.0, tail_eos_in_loss: int | None = None) -> None:
        super().__init__(block_size, eps=eps, mask_id=mask_id, block_sampling=block_sampling, prefix_mask_rate=0.0,
                         suffix_mask_prob=0.0, p_min=p_min, p_max=p_max, tail_eos_in_loss=tail_eos_in_loss)

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        masked = super().__call__(input_ids, response_start, response_len, generator, sample_index)
        block_start = masked.active_block * self.block_size
        relative = response_positions(input_ids, response_start)
        masked.attention_mask = block_causal_attention(relative, block_start, block_start + self.block_size)
        return masked


class MatchedClassicalMasking(ClassicalMasking):
    """Control: classical masking (positions anywhere in the response, no clean prefix, no hidden
    suffix) with the expected number of masked tokens matched to blockwise: each response token is
    masked with probability p * b / L, where b is the mean block length of the sample's blocks and L
    its response length (so E[masked] = p * b, as for one blockwise block)."""

    def __init__(self, block_size: int, eps: float = 1e-3, mask_id: int = 0, p_min: float | None = None,
                 p_max: float = 1.0, tail_eos_in_loss: int | None = None) -> None:
        if block_size <= 0:
            raise ValueError(f"block.size={block_size}: must be a positive integer")
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

    name = "pretrain"

    def __call__(self, input_ids, response_start, response_len, generator, sample_index=None) -> MaskedBatch:
        if bool((response_start != 0).any()):
            raise ValueError("strategy=pretrain masks whole documents: rows must have no prompt (data.format=documents)")
        return super().__call__(input_ids, response_start, response_len, generator, sample_index)
