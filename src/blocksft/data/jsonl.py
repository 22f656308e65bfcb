"""Tolerant reader of local JSONL files into an on-disk Arrow dataset.

``read_jsonl(files, fields, cache_dir)`` streams the files line by line through
``Dataset.from_generator`` (memory stays bounded, the Arrow copy is cached and reused while the files
are unchanged). A bad line never aborts the read: it becomes a row whose ``ERROR_COLUMN`` names the
reason, so the data module can count and report it. Every row carries ``ORIGIN_COLUMN`` =
``"<file>:<line>"`` (1-based line number).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from datasets import Dataset, Features, Value

ERROR_COLUMN = "__error__"
ORIGIN_COLUMN = "__origin__"

#: Reasons a line cannot become a row, stored in ``ERROR_COLUMN``.
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_a_json_object"
NON_TEXT_FIELD = "non_text_field"


def _text(value) -> str | None:
    """A field value as text: strings as is, numbers as ``str``; None for null; raises TypeError otherwise."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(type(value).__name__)


def parse_line(line: str, fields: Sequence[str]) -> dict[str, str | None]:
    """One JSONL line -> ``{field: text or None, ERROR_COLUMN: "" or a reason}``."""
    row: dict[str, str | None] = dict.fromkeys(fields)
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return {**row, ERROR_COLUMN: MALFORMED_JSON}
    if not isinstance(record, dict):
        return {**row, ERROR_COLUMN: NOT_AN_OBJECT}
    try:
        row.update({field: _text(record.get(field)) for field in fields})
    except TypeError:
        return {**dict.fromkeys(fields), ERROR_COLUMN: NON_TEXT_FIELD}
    return {**row, ERROR_COLUMN: ""}


def _rows(files: list[str], fields: tuple[str, ...], stamps: tuple[tuple[int, int], ...]) -> Iterator[dict]:
    """Generator behind ``from_generator``; ``stamps`` (size, mtime) only key the cache. Only
    ``files`` is a list (datasets shards list arguments)."""
    for file in files:
        with open(file, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield {**parse_line(line, fields), ORIGIN_COLUMN: f"{file}:{number}"}


def read_jsonl(files: Sequence[str | Path], fields: Sequence[str], cache_dir: str | Path | None = None) -> Dataset:
    """Rows of ``files`` (in order) with string columns ``fields`` + ``ERROR_COLUMN`` + ``ORIGIN_COLUMN``.

    Blank lines are skipped. Raises FileNotFoundError naming a missing file. The Arrow copy lives in
    ``cache_dir`` (datasets' default cache when None) and is keyed by paths, sizes and mtimes.
    """
    paths = [str(Path(file).expanduser().resolve()) for file in files]
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"data: JSONL file not found: {path}")
    stamps = tuple((Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in paths)
    features = Features(
        {**{field: Value("string") for field in fields}, ERROR_COLUMN: Value("string"), ORIGIN_COLUMN: Value("string")}
    )
    return Dataset.from_generator(
        _rows,
        features=features,
        gen_kwargs={"files": paths, "fields": tuple(fields), "stamps": stamps},
        cache_dir=None if cache_dir is None else str(cache_dir),
    )
