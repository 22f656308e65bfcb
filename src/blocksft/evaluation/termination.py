"""How generations end: answer parse failures, early EOS, generated lengths and where EOS is committed.

Plain tensor functions (no Lightning), vectorised over the batch; the module calls the per-batch ones on
each decoded canvas ``[B, gen_length]`` (the generated part of the decoder's output) and
:func:`termination_summary` once per decoding block length over the whole evaluation. Definitions:

* **answer tokens**: the generated tokens before the first EOS of a row; ``gen_length`` when the row
  has no EOS (the text that is scored is exactly these tokens, decoded).
* **parse failure**: the scoring rule (``data.answer_scheme``) finds no answer in that text: the strict
  extraction of :func:`blocksft.evaluation.answers.score` (its ``extracted``) is None. A parse failure
  is never correct; ``parse_failure_rate`` is their share.
* **early EOS**: the row has an EOS (the decoder committed one) and the text before its first EOS
  holds no strict answer (a parse failure): the generation stopped before writing its answer.
  The other parse failures are rows without any EOS (``no_eos_rate`` counts all rows without EOS,
  answer found or not: generations cut by ``gen_length``).
* **EOS share of block k**: of the tokens committed in decoding block k (positions
  ``[k * block_length, (k + 1) * block_length)`` of the canvas, over every row), the share that are EOS;
  every EOS counts, not only the first. The decoder commits every position, so "committed" excludes
  only a ``mask_id`` left in the canvas (none, with :func:`blocksft.evaluation.decoding.decode`).
* **answer-token percentiles** ``answer_tokens_p10/p50/p90``: of the rows' answer tokens, with linear
  interpolation between order statistics (``torch.quantile``'s default, numpy's ``percentile``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

PERCENTILES = (10, 50, 90)

__all__ = [
    "PERCENTILES",
    "answer_lengths",
    "eos_counts_by_block",
    "has_eos",
    "parse_failed",
    "termination_summary",
]


def answer_lengths(canvas: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Generated canvas [B, gen_length] -> long [B]: tokens before the first EOS of each row (``gen_length``
    for a row without EOS)."""
    is_eos = canvas == eos_id
    return torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), canvas.shape[1])


def has_eos(canvas: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Generated canvas [B, gen_length] -> bool [B]: the row holds an EOS."""
    return (canvas == eos_id).any(dim=1)


def eos_counts_by_block(
    canvas: torch.Tensor, eos_id: int, block_length: int, mask_id: int | None = None
) -> torch.Tensor:
    """Generated canvas [B, gen_length] -> long [2, gen_length // block_length]: per decoding block, summed over
    the rows, the EOS tokens (row 0) and the committed tokens (row 1: every position but ``mask_id``)."""
    rows, length = canvas.shape
    if block_length <= 0 or length % block_length:
        raise ValueError(f"eos_counts_by_block: gen_length {length} is not a multiple of block_length {block_length}")
    blocks = canvas.reshape(rows, length // block_length, block_length)
    committed = blocks != mask_id if mask_id is not None else torch.ones_like(blocks, dtype=torch.bool)
    eos = (blocks == eos_id) & committed
    return torch.stack([eos.sum(dim=(0, 2)), committed.sum(dim=(0, 2))]).long().cpu()


def parse_failed(scored: Mapping) -> bool:
    """A generation's :func:`blocksft.evaluation.answers.score` found no answer (strict ``extracted`` is None)."""
    return scored.get("extracted") is None


def termination_summary(
    answer_tokens: Sequence[int],
    eos: Sequence[bool],
    failed: Sequence[bool],
    eos_counts: torch.Tensor,
) -> dict:
    """The termination figures of one decoding block length, over its rows (see the module docstring).

    ``answer_tokens`` / ``eos`` / ``failed``: per row, its answer tokens, whether it has an EOS, whether it
    is a parse failure; ``eos_counts``: the :func:`eos_counts_by_block` of its canvases, summed. Returns
    ``parse_failure_rate``, ``early_eos_rate``, ``no_eos_rate``, ``answer_tokens_p10/p50/p90`` and
    ``eos_share_by_block`` (a list, block 0 first; None for a block with no committed token)."""
    rows = len(answer_tokens)
    if rows == 0 or len(eos) != rows or len(failed) != rows:
        raise ValueError(
            f"termination_summary: need the same non-zero number of rows, got {rows}, {len(eos)}, {len(failed)}"
        )
    lengths = torch.tensor(answer_tokens, dtype=torch.float64)
    eos_t, failed_t = torch.tensor(eos, dtype=torch.bool), torch.tensor(failed, dtype=torch.bool)
    quantiles = torch.quantile(lengths, torch.tensor(PERCENTILES, dtype=torch.float64) / 100).tolist()
    eos_total, committed = torch.as_tensor(eos_counts).long()
    shares = eos_total.double() / committed.clamp_min(1).double()
    return {
        "parse_failure_rate": failed_t.double().mean().item(),
        "early_eos_rate": (eos_t & failed_t).double().mean().item(),
        "no_eos_rate": (~eos_t).double().mean().item(),
        **{f"answer_tokens_p{p}": q for p, q in zip(PERCENTILES, quantiles)},
        "eos_share_by_block": [s if c > 0 else None for s, c in zip(shares.tolist(), committed.tolist())],
    }
