"""Data sources: each returns rows in its dataset's own schema, split by split.

A source has ``load_splits(fields) -> dict[split, datasets.Dataset]`` (rows with at least the string
columns ``fields``; Arrow-backed, so a 395k-row corpus is never a Python list) and
``describe(split) -> str`` (where a split's rows come from, for logs and errors). The data module
reads the question and answer fields named in the data config and scores with the configured
answer scheme.

* :class:`ArithmeticSource` -- the embedded, offline default (generated rows, GSM8K schema).
* :class:`HubSource` -- a Hugging Face dataset through ``datasets.load_dataset`` (GSM8K, MATH,
  MetaMathQA), or local JSONL files in the same schema (``data_files``, used offline and in tests).
* :class:`JsonlSource` -- local JSONL files per split with any field names.

Splits a dataset lacks (GSM8K and MATH have no validation split, MetaMathQA only has ``train``) are
held out of another split: ``holdout: {validation: 500}`` draws 500 rows at random (seeded) from
``holdout_from``; the remaining rows keep their file order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, concatenate_datasets, load_dataset

from blocksft.data.arithmetic import ArithmeticConfig, generate_splits
from blocksft.data.jsonl import ERROR_COLUMN, read_jsonl

log = logging.getLogger(__name__)


class ArithmeticSource:
    """The embedded default: seeded GSM8K-style word problems (schema ``question``/``answer``)."""

    def __init__(self, sizes: dict[str, int], seed: int = 0, **knobs) -> None:
        for split, size in sizes.items():
            if int(size) < 0:
                raise ValueError(f"data.source.sizes.{split}={size}: must be >= 0")
        self.sizes = {split: int(size) for split, size in sizes.items()}
        self.seed = seed
        if "operations" in knobs:
            knobs["operations"] = tuple(knobs["operations"])
        self.config = ArithmeticConfig(**knobs)

    def load(self) -> dict[str, list[dict]]:
        """The generated rows as Python lists (small by construction)."""
        return generate_splits(self.config, self.sizes, self.seed)

    def load_splits(self, fields: Sequence[str] = ()) -> dict[str, Dataset]:
        """The generated rows as in-memory datasets with columns ``question``/``answer``."""
        return {
            split: Dataset.from_dict({key: [row[key] for row in rows] for key in ("question", "answer")})
            for split, rows in self.load().items()
        }

    def describe(self, split: str) -> str:
        return f"arithmetic source (seed {self.seed}) split {split!r}"


def _as_list(files: str | Sequence[str]) -> list[str]:
    return [files] if isinstance(files, (str, Path)) else [str(f) for f in files]


def hold_out(dataset: Dataset, sizes: Mapping[str, int], seed: int) -> tuple[Dataset, dict[str, Dataset]]:
    """Split ``sizes`` rows off ``dataset`` at random (seeded): (rest, {split: rows}), all in file order."""
    total = sum(int(size) for size in sizes.values())
    if total >= len(dataset):
        raise ValueError(f"data: cannot hold out {total} rows ({dict(sizes)}) of a split with {len(dataset)} rows")
    order = np.random.default_rng(seed).permutation(len(dataset))
    held, start = {}, 0
    for split, size in sizes.items():
        held[split] = dataset.select(np.sort(order[start : start + int(size)]))
        start += int(size)
    return dataset.select(np.sort(order[start:])), held


class _TypePrefix:
    """Batched filter: keep rows whose type starts with ``prefix`` (unreadable rows pass, to be counted)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, types: list[str | None], errors: list[str] | None = None) -> list[bool]:
        errors = errors or [""] * len(types)
        return [bool(error) or (kind or "").startswith(self.prefix) for kind, error in zip(types, errors)]


class JsonlSource:
    """Local JSONL files per split: ``files: {split: path or [paths]}`` (e.g. ``{train: a.jsonl}``).

    Bad lines (malformed JSON, not an object, non-text fields) become rows flagged in
    ``ERROR_COLUMN``; the data module counts and drops them. ``holdout`` creates missing splits;
    ``sizes: {split: N}`` keeps only the first N rows of a split (debug runs).
    """

    def __init__(
        self,
        files: Mapping[str, str | Sequence[str]],
        holdout: Mapping[str, int] | None = None,
        holdout_from: str = "train",
        holdout_seed: int = 0,
        sizes: Mapping[str, int] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        if not files:
            raise ValueError("data.source.files: give at least one split, e.g. {train: path/to/train.jsonl}")
        self.files = {split: _as_list(paths) for split, paths in files.items()}
        self.holdout, self.holdout_from, self.holdout_seed = dict(holdout or {}), holdout_from, holdout_seed
        self.sizes, self.cache_dir = dict(sizes or {}), cache_dir

    def load_splits(self, fields: Sequence[str]) -> dict[str, Dataset]:
        splits = {split: read_jsonl(paths, fields, self.cache_dir) for split, paths in self.files.items()}
        return _limit(_apply_holdout(splits, self.holdout, self.holdout_from, self.holdout_seed), self.sizes)

    def describe(self, split: str) -> str:
        if split in self.holdout:
            return f"{self.holdout[split]} rows held out of {self.describe(self.holdout_from)}"
        return ", ".join(self.files.get(split, [f"<no files for split {split!r}>"]))


def _limit(splits: dict[str, Dataset], sizes: Mapping[str, int] | None) -> dict[str, Dataset]:
    """Keep the first ``sizes[split]`` rows of each named split (debug runs); other splits untouched."""
    return {
        split: rows.select(range(min(int(sizes[split]), len(rows)))) if split in (sizes or {}) else rows
        for split, rows in splits.items()
    }


def _apply_holdout(
    splits: dict[str, Dataset], holdout: Mapping[str, int], source_split: str, seed: int
) -> dict[str, Dataset]:
    if not holdout:
        return splits
    if source_split not in splits:
        raise ValueError(f"data.source.holdout_from={source_split!r}: the source has splits {', '.join(splits)}")
    splits[source_split], held = hold_out(splits[source_split], holdout, seed)
    return {**splits, **held}


class HubSource:
    """A Hugging Face dataset (``path``, one or more ``config_names`` concatenated) or local JSONL
    files in its exact schema (``data_files: {hub_split: path or [paths]}``, replacing the download).

    ``splits`` maps our split names to the dataset's (``{train: train, test: test}``); ``holdout``
    creates the others. ``type_prefix`` keeps only rows whose ``type_field`` starts with it (the
    official Blockwise-SFT preprocessing of MetaMathQA keeps the ``MATH_*`` types). ``sizes:
    {split: N}`` keeps only the first N rows of a split (debug runs).
    """

    def __init__(
        self,
        path: str,
        splits: Mapping[str, str],
        config_names: Sequence[str] | None = None,
        data_files: Mapping[str, str | Sequence[str]] | None = None,
        revision: str | None = None,
        holdout: Mapping[str, int] | None = None,
        holdout_from: str = "train",
        holdout_seed: int = 0,
        type_field: str = "type",
        type_prefix: str | None = None,
        sizes: Mapping[str, int] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.path, self.splits = path, dict(splits)
        self.config_names = list(config_names) if config_names else [None]
        self.data_files = {split: _as_list(paths) for split, paths in (data_files or {}).items()}
        self.revision, self.cache_dir = revision, cache_dir
        self.holdout, self.holdout_from, self.holdout_seed = dict(holdout or {}), holdout_from, holdout_seed
        self.type_field, self.type_prefix, self.sizes = type_field, type_prefix, dict(sizes or {})

    def _load_split(self, hub_split: str, fields: Sequence[str]) -> Dataset:
        if self.data_files:
            if hub_split not in self.data_files:
                raise ValueError(
                    f"data.source.data_files has no split {hub_split!r} (it has {', '.join(self.data_files)})"
                )
            return read_jsonl(self.data_files[hub_split], fields, self.cache_dir)
        parts = [
            load_dataset(self.path, name, split=hub_split, revision=self.revision, cache_dir=self.cache_dir)
            for name in self.config_names
        ]
        dataset = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
        missing = [field for field in fields if field not in dataset.column_names]
        if missing:
            raise ValueError(
                f"data: {self.path} split {hub_split!r} has no field(s) {missing}; "
                f"its fields are {dataset.column_names}"
            )
        return dataset

    def _filter_type(self, dataset: Dataset, split: str) -> Dataset:
        if self.type_prefix is None:
            return dataset
        columns = [self.type_field] + ([ERROR_COLUMN] if ERROR_COLUMN in dataset.column_names else [])
        kept = dataset.filter(
            _TypePrefix(self.type_prefix),
            input_columns=columns,
            batched=True,
            desc=f"keep {self.type_field} {self.type_prefix}*",
        )
        log.info(
            "%s: kept %d of %d rows whose %s starts with %r",
            split,
            len(kept),
            len(dataset),
            self.type_field,
            self.type_prefix,
        )
        return kept

    def load_splits(self, fields: Sequence[str]) -> dict[str, Dataset]:
        needed = list(dict.fromkeys([*fields, *([self.type_field] if self.type_prefix else [])]))
        splits = {ours: self._filter_type(self._load_split(hub, needed), ours) for ours, hub in self.splits.items()}
        return _limit(_apply_holdout(splits, self.holdout, self.holdout_from, self.holdout_seed), self.sizes)

    def describe(self, split: str) -> str:
        if split in self.holdout:
            return f"{self.holdout[split]} rows held out of {self.describe(self.holdout_from)}"
        hub_split = self.splits.get(split, split)
        if self.data_files:
            return ", ".join(self.data_files.get(hub_split, [f"<no files for split {hub_split!r}>"]))
        names = ",".join(name for name in self.config_names if name) or "default"
        return f"{self.path} ({names}) split {hub_split!r}"
