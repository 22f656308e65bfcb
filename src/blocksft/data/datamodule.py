"""Lightning data module: source rows -> tokenised Arrow datasets -> training / decoding batches.

Only wiring: sources (``blocksft.data.sources``), tokenisation and bad-row accounting
(``blocksft.data.prepare``, through a cached ``datasets.map``) and collation
(``blocksft.data.collate``) each live in their own place.
"""

from __future__ import annotations

import logging
from collections import Counter

import lightning as L
import torch
from datasets import Dataset
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from blocksft.evaluation.answers import SCHEMES
from blocksft.data.collate import EvalCollator, TrainCollator
from blocksft.data.order import ShuffledBatchStream
from blocksft.data.prepare import (PrepareSettings, RowPreparer, prepare_split, resolve_chat_template,
                                    tokenizer_fingerprint)
from blocksft.data.batch_plan import BatchPlan, plan_batches, world_size
from blocksft.errors import DataError

log = logging.getLogger(__name__)


class DiffusionSFTDataModule(L.LightningDataModule):
    """Training rows carry ``prompt_ids``/``answer_ids``; decoding rows carry ``prompt_ids``/``target``.

    Unusable rows (malformed, missing or empty fields, no reference answer, prompt longer than
    ``max_prompt_len``, training answer + EOS longer than ``response_len``) are dropped, never
    truncated; ``dropped`` counts them per ``"<split>/<reason>"`` and ``first_dropped`` names the
    first such row (``file:line``). ``setup`` raises :class:`DataError` naming the source if no
    training row remains. ``cache_reused[split]`` tells whether the tokenised rows came from disk.
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
        chat_template: str | bool = "auto",
        question_field: str = "question",
        answer_field: str = "answer",
        target_field: str | None = None,
        answer_scheme: str = "gsm8k",
        tail_padding: str = "in_response",
        max_train_rows: int | None = None,
        num_workers: int = 0,
        num_proc: int = 1,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if answer_scheme not in SCHEMES:
            raise ValueError(f"data.answer_scheme={answer_scheme!r}: allowed values are {', '.join(SCHEMES)}")
        self.source, self.tokenizer = source, tokenizer
        self.response_len, self.max_prompt_len = response_len, max_prompt_len
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.eval_split, self.eval_size = eval_split, eval_size
        self.prompt_template, self.chat = prompt_template, resolve_chat_template(tokenizer, chat_template)
        self.question_field, self.answer_field, self.answer_scheme = question_field, answer_field, answer_scheme
        self.target_field, self.max_train_rows = target_field, max_train_rows
        self.num_workers, self.num_proc, self.cache_dir, self.seed = num_workers, num_proc, cache_dir, seed
        self.train_collator = TrainCollator(tokenizer.pad_token_id, tokenizer.eos_token_id, response_len, tail_padding)
        self.eval_collator = EvalCollator(tokenizer.pad_token_id)
        self.train_set: Dataset | None = None
        self.eval_set: Dataset | None = None
        self.dropped: Counter = Counter()
        self.first_dropped: dict[str, str] = {}
        self.cache_reused: dict[str, bool] = {}
        self.batches_consumed = 0  # restored from checkpoints by load_state_dict

    @classmethod
    def from_config(cls, cfg: DictConfig, tokenizer, plan: BatchPlan | None = None) -> DiffusionSFTDataModule:
        """The data module a run config describes (``data.*``, ``eval.*``, ``seed``); its batches are this
        device's micro-batches of ``plan`` (default: planned from ``data.batch_size`` and ``trainer``)."""
        data = cfg.data
        plan = plan or plan_batches(data.batch_size, data.get("micro_batch_size"), world_size(cfg.trainer))
        return cls(
            instantiate(data.source),
            tokenizer,
            response_len=data.response_len,
            max_prompt_len=data.max_prompt_len,
            batch_size=plan.micro_batch,
            eval_batch_size=data.eval_batch_size,
            eval_split=cfg.eval.split,
            eval_size=cfg.eval.size,
            prompt_template=data.prompt_template,
            chat_template=data.get("chat_template", "auto"),
            question_field=data.question_field,
            answer_field=data.answer_field,
            target_field=data.get("target_field"),
            answer_scheme=data.answer_scheme,
            tail_padding=data.tail_padding,
            max_train_rows=data.get("max_train_rows"),
            num_workers=data.num_workers,
            num_proc=data.get("num_proc", 1),
            cache_dir=data.get("cache_dir"),
            seed=cfg.seed,
        )

    def settings(self, split: str) -> PrepareSettings:
        return PrepareSettings(self.prompt_template, self.chat, self.question_field, self.answer_field,
                               self.target_field, self.answer_scheme, self.max_prompt_len, self.response_len,
                               check_answer_len=split == "train")

    def _prepare(self, raw: Dataset, split: str, tokenizer_hash: str) -> Dataset:
        preparer = RowPreparer(self.tokenizer, self.settings(split), self.source.describe(split))
        prepared = prepare_split(raw, preparer, split=split, tokenizer_hash=tokenizer_hash,
                                 cache_dir=self.cache_dir, num_proc=self.num_proc)
        self.dropped.update(prepared.dropped)
        self.first_dropped.update(prepared.first_dropped)
        self.cache_reused[split] = prepared.cache_reused
        if prepared.dropped:
            firsts = "; ".join(f"{key} first at {origin}" for key, origin in prepared.first_dropped.items())
            log.warning("%s: dropped %d of %d rows (%s); %s", split, sum(prepared.dropped.values()), len(raw),
                        dict(prepared.dropped), firsts)
        return prepared.dataset

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        fields = [self.question_field, self.answer_field, *([self.target_field] if self.target_field else [])]
        splits = self.source.load_splits(fields)
        for split in ("train", self.eval_split):
            if split not in splits:
                raise ValueError(f"data: the source has no split {split!r} (it has {', '.join(splits)})")
        tokenizer_hash = tokenizer_fingerprint(self.tokenizer)
        train_set = self._prepare(splits["train"], "train", tokenizer_hash)
        if len(train_set) == 0:
            raise DataError(f"data: no usable training rows in {self.source.describe('train')} "
                            f"(dropped {dict(self.dropped)}; first: {self.first_dropped})")
        if self.max_train_rows is not None:
            train_set = train_set.select(range(min(self.max_train_rows, len(train_set))))
        eval_rows = splits[self.eval_split]
        if self.eval_size is not None:
            eval_rows = eval_rows.select(range(min(self.eval_size, len(eval_rows))))
        self.eval_set = self._prepare(eval_rows, self.eval_split, tokenizer_hash)
        if len(self.eval_set) == 0:
            raise DataError(f"data: no usable {self.eval_split} rows in {self.source.describe(self.eval_split)} "
                            f"(dropped {dict(self.dropped)}; first: {self.first_dropped})")
        self.train_set = train_set

    def train_dataloader(self) -> DataLoader:
        """An endless, resumable stream of shuffled batches (``ShuffledBatchStream``); this rank's
        share of each global batch when several processes train together."""
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        batches = ShuffledBatchStream(len(self.train_set), self.batch_size, self.seed,
                                      start_batch=self.batches_consumed, rank=rank, world_size=world_size,
                                      accumulate=trainer.accumulate_grad_batches if trainer is not None else 1)
        return DataLoader(
            self.train_set.with_format(columns=["prompt_ids", "answer_ids", "index"]),
            batch_sampler=batches,
            collate_fn=self.train_collator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    # Lightning saves these in every checkpoint and restores them before ``train_dataloader`` is built.
    def state_dict(self) -> dict:
        trainer = self.trainer
        consumed = trainer.global_step * trainer.accumulate_grad_batches if trainer is not None else self.batches_consumed
        return {"batches_consumed": int(consumed)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.batches_consumed = int(state_dict.get("batches_consumed", 0))

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            self.eval_set.with_format(columns=["prompt", "prompt_ids", "target", "index"]),
            batch_size=self.eval_batch_size,
            shuffle=False,
            collate_fn=self.eval_collator,
            num_workers=0,
        )
