"""Tokenised rows -> padded tensors.

Training layout of one row: ``[left pad][prompt][answer][EOS][EOS tail ...]`` where the response
(answer + EOS + tail) has exactly ``response_len`` tokens, so every row's response starts at the
same index ``response_start`` = the batch's longest prompt. Left pads are [PAD] with attention 0;
the model's position ids skip them, so padding never changes what a row sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from blocksft.errors import require

TailPadding = Literal["in_response", "visible"]
TAIL_PADDINGS = ("in_response", "visible")


def check_tail_padding(tail_padding) -> TailPadding:
    """``data.tail_padding``: one of ``TAIL_PADDINGS`` (the one statement of the rule)."""
    require(tail_padding in TAIL_PADDINGS, "data.tail_padding", tail_padding, f"one of {', '.join(TAIL_PADDINGS)}")
    return tail_padding


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists to the longest: (ids [B, P] long, attention_mask [B, P] long)."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
            attention[row, width - len(seq) :] = 1
    return ids, attention


class TrainCollator:
    """Builds a training batch from rows with ``prompt_ids``, ``answer_ids`` and ``index``.

    Returns input_ids/attention_mask [B, P + response_len], response_start [B], answer_len [B]
    (answer + its first EOS), loss_scope_len [B] (response tokens the strategies may mask: the whole
    response with ``in_response``, LLaDA; only answer + EOS with ``visible``, the official code,
    where the EOS tail stays visible and carries no loss) and index [B].
    """

    def __init__(self, pad_id: int, eos_id: int, response_len: int, tail_padding: TailPadding = "in_response") -> None:
        check_tail_padding(tail_padding)
        self.pad_id, self.eos_id, self.response_len, self.tail_padding = pad_id, eos_id, response_len, tail_padding

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        prompt_ids, prompt_mask = left_pad([row["prompt_ids"] for row in rows], self.pad_id)
        response = torch.full((len(rows), self.response_len), self.eos_id, dtype=torch.long)
        answer_len = torch.empty(len(rows), dtype=torch.long)
        for row_index, row in enumerate(rows):
            answer = row["answer_ids"]
            response[row_index, : len(answer)] = torch.as_tensor(answer, dtype=torch.long)
            answer_len[row_index] = len(answer) + 1
        batch_size, prompt_width = prompt_ids.shape
        scope = torch.full_like(answer_len, self.response_len) if self.tail_padding == "in_response" else answer_len
        return {
            "input_ids": torch.cat([prompt_ids, response], dim=1),
            "attention_mask": torch.cat([prompt_mask, torch.ones_like(response)], dim=1),
            "response_start": torch.full((batch_size,), prompt_width, dtype=torch.long),
            "answer_len": answer_len,
            "loss_scope_len": scope,
            "index": torch.as_tensor([row["index"] for row in rows], dtype=torch.long),
        }


class EvalCollator:
    """Builds a decoding batch: left-padded prompt_ids/attention_mask [B, P] plus the rows' text fields."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        prompt_ids, attention_mask = left_pad([row["prompt_ids"] for row in rows], self.pad_id)
        return {
            "prompt_ids": prompt_ids,
            "attention_mask": attention_mask,
            "prompt": [row["prompt"] for row in rows],
            "target": [row["target"] for row in rows],
            "index": [row["index"] for row in rows],
        }
