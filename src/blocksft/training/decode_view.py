"""The training loss measured in the decoder's view (``diagnostics.decode_view``): the train/inference mismatch.

Classical SFT trains on random masks over the whole response; a semi-autoregressive decoder shows the model
a clean prefix, a partly masked block and a fully masked future (``blocksft.masking.decode_view``). During
training, every ``every_n_steps`` optimizer steps and at the last step (``budget``'s steps or a spent token
budget), ``DecodeViewLoss`` (``blocksft.training.decode_view_callback``) measures the model's masked
cross-entropy in exactly that view on a fixed held-out batch: the first ``size`` rows of the evaluation split
(``eval.split``) whose answer fits the response, in the training layout. ``data.tail_padding`` decides which
tokens count, as in training: the EOS tail with ``in_response``, only the answer and its EOS with
``visible``; a strategy's ``tail_eos_in_loss`` does not change it, so every arm is measured on the same
tokens. For each block index k of ``block_size`` and each mask ratio r of ``mask_ratios`` (which tokens: a
draw seeded by ``seed``, the same at every evaluation and for every arm), the loss is the mean cross-entropy
over the masked in-scope tokens of block k, pooled over the rows. Logged:

* ``decode_view/loss_block{k}``: the mean over the ratios of block k's loss;
* ``decode_view/loss_mask{r}``: the mean over the blocks at ratio r; ``decode_view/loss_block{k}_mask{r}``: each cell;
* ``decode_view/loss``: the mean over the blocks of ``loss_block{k}``.

It measures the weights being trained at that step (not the ``optim.ema_decay`` average that is decoded), with
the decoder's attention (``decode.attention``: block-causal cuts the future from attention). It does not
change training: its forwards run under ``torch.no_grad`` in eval mode (each module's mode restored), with
the trainer's precision context; its only random draw comes from its own ``torch.Generator``; it reads the
held-out rows from the data module's prepared split, never from a loader. Values go to every logger
(``metrics.csv``, W&B) with ``Logger.log_metrics`` at the step of the row of that optimizer step (``step``
counts from 0, as ``train/loss``'s): Lightning's ``self.log`` from a callback logs a value at every later
logged step until it is logged again, which would repeat stale values between evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from blocksft.errors import is_int, is_number, require
from blocksft.masking.base import response_positions
from blocksft.masking.blockwise import block_causal_attention
from blocksft.masking.decode_view import DecodeViews

KEY = "diagnostics.decode_view"
ATTENTIONS = ("full", "block_causal")


@dataclass(frozen=True)
class DecodeViewSettings:
    """``diagnostics.decode_view``; each key's rule raises ``InvalidValue`` naming it. ``every_n_steps`` 0 or
    null: off."""

    every_n_steps: int | None = 200
    size: int = 32
    mask_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    block_size: int = 32
    batch_size: int = 64
    seed: int = 0
    attention: str = "full"

    def __post_init__(self) -> None:
        every, ratios = self.every_n_steps, self.mask_ratios
        require(
            every is None or (is_int(every) and every >= 0), f"{KEY}.every_n_steps", every, "null or an integer >= 0"
        )
        for name in ("size", "block_size", "batch_size"):
            value = getattr(self, name)
            require(is_int(value) and value > 0, f"{KEY}.{name}", value, "a positive integer")
        require(
            isinstance(ratios, tuple) and len(ratios) > 0 and all(is_number(r) and 0.0 < r <= 1.0 for r in ratios),
            f"{KEY}.mask_ratios",
            list(ratios) if isinstance(ratios, tuple) else ratios,
            "a non-empty list of numbers in (0, 1]",
        )
        require(len(set(ratios)) == len(ratios), f"{KEY}.mask_ratios", list(ratios), "a list of distinct numbers")
        require(is_int(self.seed), f"{KEY}.seed", self.seed, "an integer")
        require(self.attention in ATTENTIONS, "decode.attention", self.attention, f"one of {', '.join(ATTENTIONS)}")

    @property
    def enabled(self) -> bool:
        return bool(self.every_n_steps)

    @classmethod
    def from_config(cls, cfg) -> DecodeViewSettings:
        """From a run config: ``diagnostics.decode_view`` (None or absent: off) and ``decode.attention``."""
        node = (cfg.get("diagnostics") or {}).get("decode_view")
        attention = cfg.decode.get("attention", "full")
        if node is None:
            return cls(every_n_steps=None, attention=attention)
        require(isinstance(node, Mapping), KEY, node, "null or {every_n_steps: ..., size: ..., mask_ratios: ...}")
        ratios = node.get("mask_ratios", cls.mask_ratios)
        return cls(
            every_n_steps=node.get("every_n_steps", cls.every_n_steps),
            size=node.get("size", cls.size),
            mask_ratios=tuple(ratios) if isinstance(ratios, Sequence) and not isinstance(ratios, str) else ratios,
            block_size=node.get("block_size", cls.block_size),
            batch_size=node.get("batch_size", cls.batch_size),
            seed=node.get("seed", cls.seed),
            attention=attention,
        )


def heldout_batch(eval_set, collate, response_len: int, size: int) -> dict[str, torch.Tensor] | None:
    """The training-layout batch (``collate``: the data module's ``TrainCollator``) of the first ``size`` rows of
    ``eval_set`` whose answer is non-empty and fits the response with its EOS (evaluation rows are not
    checked for that); None if there is none."""
    rows = []
    for row in eval_set.with_format(columns=["prompt_ids", "answer_ids", "index"]):
        if 0 < len(row["answer_ids"]) < response_len:
            rows.append(row)
            if len(rows) == size:
                break
    return collate(rows) if rows else None


def fixed_draws(batch: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
    """[B, L] draws in [0, 1) from a generator of its own seeded with ``seed``: one per response position (the
    response's draws do not depend on the prompt's width), zeros at the prompt's positions."""
    input_ids, start = batch["input_ids"], int(batch["response_start"].max())
    response = torch.rand(input_ids.shape[0], input_ids.shape[1] - start, generator=torch.Generator().manual_seed(seed))
    return torch.cat([torch.zeros(input_ids.shape[0], start), response], dim=1)


@torch.no_grad()
def decode_view_losses(
    model,
    batch: dict[str, torch.Tensor],
    views: DecodeViews,
    num_ratios: int,
    block_size: int,
    rows_per_forward: int,
    attention: str = "full",
) -> torch.Tensor:
    """[K, R] float: the mean cross-entropy of the loss tokens of each (block, ratio)'s views of ``batch``
    (NaN where there is none), ``rows_per_forward`` views per forward. ``model`` offers ``encode(ids,
    attention_mask)`` and ``project(hidden)`` (the LM head at the loss positions only), as in training."""
    cells = views.block * num_ratios + views.ratio  # [V]
    sums = torch.zeros(views.num_blocks * num_ratios, dtype=torch.float64, device=views.noisy_ids.device)
    counts = torch.zeros_like(sums)
    for chunk in torch.arange(views.row.numel(), device=views.row.device).split(rows_per_forward):
        rows = views.row[chunk]
        key_mask = batch["attention_mask"][rows]
        if attention == "block_causal":  # the decoder cuts the future from attention (blocksft.evaluation.decoding)
            start = views.block[chunk] * block_size
            relative = response_positions(batch["input_ids"][rows], batch["response_start"][rows])
            key_mask = block_causal_attention(relative, start, start + block_size) & key_mask.bool()[:, None, :]
        hidden = model.encode(views.noisy_ids[chunk], key_mask)
        at_row, at_col = views.loss_mask[chunk].nonzero(as_tuple=True)
        logits = model.project(hidden[at_row, at_col])
        token_loss = F.cross_entropy(logits.float(), batch["input_ids"][rows][at_row, at_col], reduction="none")
        sums.index_add_(0, cells[chunk][at_row], token_loss.double())
        counts.index_add_(0, cells[chunk][at_row], torch.ones_like(token_loss, dtype=torch.float64))
    return (sums / counts).view(views.num_blocks, num_ratios).float()  # 0 / 0 = NaN: no loss token


def decode_view_metrics(losses: torch.Tensor, mask_ratios: Sequence[float]) -> dict[str, float]:
    """The logged metrics (module docstring) of the [K, R] losses of ``decode_view_losses``; a block, ratio or
    cell without a loss token is left out."""
    by_block, by_ratio = losses.nanmean(dim=1), losses.nanmean(dim=0)
    named = {"decode_view/loss": by_block.nanmean()}
    named.update({f"decode_view/loss_block{k}": value for k, value in enumerate(by_block)})
    named.update({f"decode_view/loss_mask{r:g}": value for r, value in zip(mask_ratios, by_ratio)})
    for k, row in enumerate(losses):
        named.update({f"decode_view/loss_block{k}_mask{r:g}": value for r, value in zip(mask_ratios, row)})
    return {name: float(value) for name, value in named.items() if torch.isfinite(value)}
