"""Lightning data module: source rows -> tokenised Arrow datasets -> training / decoding batches.

Only wiring: sources (``blocksft.data.sources``), tokenisation (here, through ``datasets.map``)
and collation (``blocksft.data.collate``) each live in their own place.
"""

from __future__ import annotations

import logging
from collections import Counter

import lightning as L
import torch
from datasets import Dataset
from torch.utils.data import DataLoader

from blocksft.answers import gsm8k_target, math_boxed, the_answer_is
from blocksft.data.collate import EvalCollator, TrainCollator

log = logging.getLogger(__name__)

TARGET_READERS = {
    "gsm8k": gsm8k_target,
    "math": lambda answer: math_boxed(answer) or answer.strip(),
    "metamathqa": lambda answer: the_answer_is(answer) or answer.strip(),
}


class DiffusionSFTDataModule(L.LightningDataModule):
    """Training rows carry ``prompt_ids``/``answer_ids``; decoding rows carry ``prompt_ids``/``target``.

    Rows whose answer + EOS does not fit in ``response_len`` tokens are dropped (never truncated),
    and so are prompts longer than ``max_prompt_len``; the counts per reason are in ``dropped``.
    """

    def __init__(
        self,
        source,
        tokenizer,
        *,
        response_len: int,
        max_prompt_len: int,
        batch_size: int,
        eval_batch_size: int,
        eval_split: str = "validation",
        eval_size: int | None = None,
        prompt_template: str = "{question}\n",
        question_field: str = "question",
        answer_field: str = "answer",
        answer_scheme: str = "gsm8k",
        tail_padding: str = "in_response",
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if answer_scheme not in TARGET_READERS:
            raise ValueError(f"data.answer_scheme={answer_scheme!r}: allowed values are {', '.join(TARGET_READERS)}")
        self.source, self.tokenizer = source, tokenizer
        self.response_len, self.max_prompt_len = response_len, max_prompt_len
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.eval_split, self.eval_size = eval_split, eval_size
        self.prompt_template = prompt_template
        self.question_field, self.answer_field, self.answer_scheme = question_field, answer_field, answer_scheme
        self.num_workers, self.seed = num_workers, seed
        self.train_collator = TrainCollator(tokenizer.pad_token_id, tokenizer.eos_token_id, response_len, tail_padding)
        self.eval_collator = EvalCollator(tokenizer.pad_token_id)
        self.train_set: Dataset | None = None
        self.eval_set: Dataset | None = None
        self.dropped: Counter = Counter()

    def _tokenise(self, rows: list[dict], split: str) -> Dataset:
        prompts = [self.prompt_template.format(question=row[self.question_field]) for row in rows]
        answers = [row[self.answer_field] for row in rows]
        dataset = Dataset.from_dict(
            {"prompt": prompts, "answer": answers, "target": [TARGET_READERS[self.answer_scheme](a) for a in answers]}
        )

        def encode(batch: dict) -> dict:
            prompt_ids = self.tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"]
            answer_ids = self.tokenizer(batch["answer"], add_special_tokens=False)["input_ids"]
            return {"prompt_ids": prompt_ids, "answer_ids": answer_ids}

        dataset = dataset.map(encode, batched=True, desc=f"tokenise {split}")
        dataset = dataset.add_column("index", list(range(len(dataset))))
        keep = []
        for row_index, (prompt_ids, answer_ids) in enumerate(zip(dataset["prompt_ids"], dataset["answer_ids"])):
            if len(prompt_ids) > self.max_prompt_len:
                self.dropped[f"{split}/prompt_longer_than_max_prompt_len"] += 1
            elif len(answer_ids) + 1 > self.response_len:
                self.dropped[f"{split}/answer_longer_than_response_len"] += 1
            else:
                keep.append(row_index)
        if len(keep) < len(dataset):
            log.warning("%s: dropped %d of %d rows (%s)", split, len(dataset) - len(keep), len(dataset), dict(self.dropped))
        dataset = dataset.select(keep)
        # Re-index after dropping so block-sampler pools are dense.
        return dataset.remove_columns("index").add_column("index", list(range(len(dataset))))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self.source.load()
        for split in ("train", self.eval_split):
            if split not in splits:
                raise ValueError(f"data: the source has no split {split!r} (it has {', '.join(splits)})")
        self.train_set = self._tokenise(splits["train"], "train")
        eval_rows = splits[self.eval_split]
        if self.eval_size is not None:
            eval_rows = eval_rows[: self.eval_size]
        self.eval_set = self._tokenise(eval_rows, self.eval_split)
        if len(self.train_set) == 0:
            raise ValueError("data: no usable training rows remain after filtering " f"({dict(self.dropped)})")

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_set.with_format(columns=["prompt_ids", "answer_ids", "index"]),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) >= self.batch_size,
            generator=generator,
            collate_fn=self.train_collator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            self.eval_set.with_format(columns=["prompt", "prompt_ids", "target", "index"]),
            batch_size=self.eval_batch_size,
            shuffle=False,
            collate_fn=self.eval_collator,
            num_workers=0,
        )
