"""Lightning data modules: source rows -> tokenised Arrow datasets -> training / decoding batches.

Only wiring: sources (``blocksft.data.sources``), tokenisation and bad-row accounting
(``blocksft.data.prepare``, through a cached ``datasets.map``), collation (``blocksft.data.collate``)
and the settings read from the config (``blocksft.data.settings``) each live in their own place.
``BatchDataModule`` holds what every format shares; ``DiffusionSFTDataModule`` reads prompt/response
rows, ``blocksft.data.documents.DocumentDataModule`` plain documents.
"""

from __future__ import annotations

import logging
from collections import Counter

import lightning as L
from datasets import Dataset
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from blocksft.data.batch_plan import BatchPlan, plan_batches, world_size
from blocksft.data.collate import EvalCollator, TrainCollator
from blocksft.data.order import ShuffledBatchStream
from blocksft.data.prepare import (
    PreparedSplit,
    PrepareSettings,
    RowPreparer,
    prepare_split,
    resolve_chat_template,
    tokenizer_fingerprint,
)
from blocksft.data.settings import LoaderSettings, RowSettings
from blocksft.errors import DataError

log = logging.getLogger(__name__)


class BatchDataModule(L.LightningDataModule):
    """What every data module shares: the source, the tokenizer and ``LoaderSettings``; ``setup`` prepares
    the training and eval splits (``prepare_split``: cached, bad rows counted); the training stream
    and its resume state. Subclasses say which source fields they read and how a split is prepared.

    Unusable rows are dropped, never truncated; ``dropped`` counts them per ``"<split>/<reason>"`` and
    ``first_dropped`` names the first such row (``file:line``). ``setup`` raises :class:`DataError`
    naming the source if no training row remains. ``cache_reused[split]`` tells whether the tokenised
    rows came from disk.
    """

    def __init__(self, source, tokenizer, loader: LoaderSettings) -> None:
        super().__init__()
        self.source, self.tokenizer, self.loader = source, tokenizer, loader
        self.train_collator = TrainCollator(
            tokenizer.pad_token_id, tokenizer.eos_token_id, loader.response_len, loader.tail_padding
        )
        self.train_set: Dataset | None = None
        self.eval_set: Dataset | None = None
        self.dropped: Counter = Counter()
        self.first_dropped: dict[str, str] = {}
        self.cache_reused: dict[str, bool] = {}
        self.batches_consumed = 0  # restored from checkpoints by load_state_dict

    def fields(self) -> list[str]:
        """The source fields the rows are read from."""
        raise NotImplementedError

    def preparer(self, split: str):
        """The ``datasets.map`` function that prepares the rows of ``split`` (``blocksft.data.prepare``)."""
        raise NotImplementedError

    def _prepare(self, raw: Dataset, split: str, tokenizer_hash: str) -> PreparedSplit:
        prepared = prepare_split(
            raw,
            self.preparer(split),
            split=split,
            tokenizer_hash=tokenizer_hash,
            cache_dir=self.loader.cache_dir,
            num_proc=self.loader.num_proc,
        )
        self.dropped.update(prepared.dropped)
        self.first_dropped.update(prepared.first_dropped)
        self.cache_reused[split] = prepared.cache_reused
        return prepared

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        loader, eval_split = self.loader, self.loader.eval_split
        splits = self.source.load_splits(self.fields())
        for split in ("train", eval_split):
            if split not in splits:
                raise ValueError(f"data: the source has no split {split!r} (it has {', '.join(splits)})")
        tokenizer_hash = tokenizer_fingerprint(self.tokenizer)
        train_set = self._prepare(splits["train"], "train", tokenizer_hash).dataset
        if len(train_set) == 0:
            raise DataError(
                f"data: no usable training rows in {self.source.describe('train')} "
                f"(dropped {dict(self.dropped)}; first: {self.first_dropped})"
            )
        if loader.max_train_rows is not None:
            train_set = train_set.select(range(min(loader.max_train_rows, len(train_set))))
        eval_rows = splits[eval_split]
        if loader.eval_size is not None:
            eval_rows = eval_rows.select(range(min(loader.eval_size, len(eval_rows))))
        self.eval_set = self._prepare(eval_rows, eval_split, tokenizer_hash).dataset
        if len(self.eval_set) == 0:
            raise DataError(
                f"data: no usable {eval_split} rows in {self.source.describe(eval_split)} "
                f"(dropped {dict(self.dropped)}; first: {self.first_dropped})"
            )
        self.train_set = train_set

    def train_dataloader(self) -> DataLoader:
        """An endless, resumable stream of shuffled batches (``ShuffledBatchStream``); this rank's
        share of each global batch when several processes train together."""
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        batches = ShuffledBatchStream(
            len(self.train_set),
            self.loader.batch_size,
            self.loader.seed,
            start_batch=self.batches_consumed,
            rank=rank,
            world_size=world_size,
            accumulate=trainer.accumulate_grad_batches if trainer is not None else 1,
        )
        return DataLoader(
            self.train_set.with_format(columns=["prompt_ids", "answer_ids", "index"]),
            batch_sampler=batches,
            collate_fn=self.train_collator,
            num_workers=self.loader.num_workers,
            persistent_workers=self.loader.num_workers > 0,
        )

    # Lightning saves these in every checkpoint and restores them before ``train_dataloader`` is built.
    def state_dict(self) -> dict:
        trainer = self.trainer
        consumed = (
            trainer.global_step * trainer.accumulate_grad_batches if trainer is not None else self.batches_consumed
        )
        return {"batches_consumed": int(consumed)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.batches_consumed = int(state_dict.get("batches_consumed", 0))


class DiffusionSFTDataModule(BatchDataModule):
    """Prompt/response rows (``RowSettings``): training rows carry ``prompt_ids``/``answer_ids``, decoding
    rows ``prompt_ids``/``target``. Dropped besides what ``BatchDataModule`` says: rows with missing or
    empty fields, no reference answer, a prompt longer than ``max_prompt_len``, a training answer + EOS
    longer than ``response_len`` (``blocksft.data.prepare``)."""

    def __init__(self, source, tokenizer, loader: LoaderSettings, rows: RowSettings) -> None:
        super().__init__(source, tokenizer, loader)
        self.rows = rows
        self.chat = resolve_chat_template(tokenizer, rows.chat_template)
        self.eval_collator = EvalCollator(tokenizer.pad_token_id)

    @classmethod
    def from_config(cls, cfg: DictConfig, tokenizer, plan: BatchPlan | None = None) -> DiffusionSFTDataModule:
        """The data module a run config describes (``data.*``, ``eval.*``, ``seed``); its batches are this
        device's micro-batches of ``plan`` (default: planned from ``data.batch_size`` and ``trainer``)."""
        data = cfg.data
        plan = plan or plan_batches(data.batch_size, data.get("micro_batch_size"), world_size(cfg.trainer))
        return cls(
            instantiate(data.source),
            tokenizer,
            LoaderSettings.from_config(cfg, plan.micro_batch),
            RowSettings.from_config(data),
        )

    def fields(self) -> list[str]:
        return self.rows.fields()

    def settings(self, split: str) -> PrepareSettings:
        rows = self.rows
        return PrepareSettings(
            rows.prompt_template,
            self.chat,
            rows.question_field,
            rows.answer_field,
            rows.target_field,
            rows.answer_scheme,
            rows.max_prompt_len,
            self.loader.response_len,
            check_answer_len=split == "train",
        )

    def preparer(self, split: str) -> RowPreparer:
        return RowPreparer(self.tokenizer, self.settings(split), self.source.describe(split))

    def _prepare(self, raw: Dataset, split: str, tokenizer_hash: str) -> PreparedSplit:
        prepared = super()._prepare(raw, split, tokenizer_hash)
        if prepared.dropped:
            firsts = "; ".join(f"{key} first at {origin}" for key, origin in prepared.first_dropped.items())
            log.warning(
                "%s: dropped %d of %d rows (%s); %s",
                split,
                sum(prepared.dropped.values()),
                len(raw),
                dict(prepared.dropped),
                firsts,
            )
        return prepared

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            self.eval_set.with_format(columns=["prompt", "prompt_ids", "target", "index"]),
            batch_size=self.loader.eval_batch_size,
            shuffle=False,
            collate_fn=self.eval_collator,
            num_workers=0,
        )
