"""The record of one run: ``results.json``, written by ``blocksft.runs.run`` and read by the study report.

``RunResult`` is the one schema of that file. ``to_json()`` gives the dict written to disk (the field
names are the file's keys); ``from_json(raw)`` reads any version of it without failing: values of the
wrong type become None (or empty), and keys this version does not know are kept in ``extra`` and
written back unchanged. A failed job's record holds only ``FAILURE_FIELDS`` (its identity and error).
Files are written to a temporary name and renamed, so a kill never leaves half a file.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

COMPLETED, FAILED = "completed", "failed"
#: The keys of a failed job's record, in file order.
FAILURE_FIELDS = ("status", "error", "mode", "strategy", "block_size", "seed", "git_commit")


@functools.cache
def git_commit() -> str | None:
    """HEAD of the checkout this package was imported from, read at the first call of the process: a
    multirun's jobs all run the code imported at its start, so a commit made while a sweep runs is not theirs."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def as_float(value: Any) -> float | None:
    """``value`` as a float, None when it is not a number (or NaN)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def as_int(value: Any) -> int | None:
    """``value`` as an int, None unless it is a whole number."""
    number = as_float(value)
    return int(number) if number is not None and math.isfinite(number) and number == int(number) else None


def primary_decode_length(block_size: int | None, decode_lengths: Sequence[int]) -> int:
    """The decoding block length of a run's headline numbers (``accuracy``, ``val/accuracy``) among the
    non-empty ``decode_lengths`` it was scored at: its training block when that is one of them (what the
    default ``decode.block_length``, ``${block.size}``, scores), else the first."""
    return block_size if block_size in decode_lengths else decode_lengths[0]


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _as_dict(value: Any) -> dict:
    return dict(value) if isinstance(value, dict) else {}


def _float_map(value: Any) -> dict[str, float | None]:
    """{key: float or None} keeping every key whose name is a whole number (decode block lengths)."""
    return {str(key): as_float(number) for key, number in _as_dict(value).items() if as_int(key) is not None}


@dataclass(frozen=True)
class RunResult:
    """One run's outcome. Completed runs fill every field but ``error``; failed ones ``FAILURE_FIELDS``."""

    status: str
    mode: str | None = None
    study: str | None = None
    strategy: str | None = None  # the masking strategy's config name (``strategy.name``)
    block_size: int | None = None  # training block (``block.size``)
    decode_block_length: int | None = None  # the primary decoding block length
    seed: int | None = None
    budget: dict = field(default_factory=dict)  # {"kind", "value"[, "count", "max_steps"]}
    steps: int | None = None  # optimizer steps taken (None in mode=eval)
    supervised_tokens: int | None = None
    eligible_tokens: int | None = None
    accuracy: float | None = None  # strict, at decode_block_length
    accuracy_flexible: float | None = None
    accuracy_by_decode_block: dict = field(default_factory=dict)  # {"8": accuracy, ...}
    accuracy_flexible_by_decode_block: dict = field(default_factory=dict)
    eval_split: str | None = None
    eval_size: int | None = None
    answer_scheme: str | None = None  # the rule behind ``accuracy`` (``data.answer_scheme``)
    decode_cost: dict = field(default_factory=dict)  # primary decode block: NFE, positions fed, problems/s, ...
    decode_cost_by_decode_block: dict = field(default_factory=dict)  # {"8": decode_cost, ...}
    answer_format_mismatch: bool | None = None  # strict and flexible accuracy differ by > 20 points
    answer_format_warning: str | None = None
    # how generations end (blocksft.evaluation.termination); None / empty in records written before them
    parse_failure_rate: float | None = None  # share without an answer under answer_scheme, at decode_block_length
    parse_failure_rate_by_decode_block: dict = field(default_factory=dict)  # {"8": rate, ...}
    termination: dict = field(default_factory=dict)  # early/no EOS rates, answer-token percentiles, EOS per block
    termination_by_decode_block: dict = field(default_factory=dict)  # {"8": termination, ...}
    final_train_loss: float | None = None
    eval_loss: float | None = None  # held-out masked-diffusion loss (pretraining on documents), else None
    init_from: dict | None = None  # model.init_from: {"path", "kind", "sha256": {file: digest}}, else None
    active_block_counts: dict = field(default_factory=dict)  # {"block index": samples}
    dropped_rows: dict = field(default_factory=dict)  # {"split/reason": rows}
    num_parameters: int | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    wall_seconds: float | None = None
    git_commit: str | None = None
    ckpt_path: str | None = None
    config: dict = field(default_factory=dict)  # the resolved, redacted config
    environment: dict = field(default_factory=dict)  # versions, device, CPU kernels (blocksft.evaluation.environment)
    config_fingerprint: str | None = None  # sha256 of the result-bearing config (blocksft.runs.identity)
    decode: dict = field(default_factory=dict)  # the evaluation's decode settings
    trained_run: dict | None = None  # mode=eval of a recorded run: {"dir", "config_fingerprint", "config"}
    reused_from: dict | None = None  # copied from another study's run of this computation (blocksft.runs.reuse):
    #                                  {"dir", "config_fingerprint", "study"} of the run that computed it
    error: str | None = None  # failed runs: "<ExceptionType>: <message>"
    extra: dict = field(default_factory=dict)  # keys of a newer or older schema, kept as read

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    @property
    def masking(self) -> dict:
        """The masking strategy's config (``config.strategy.masking``; empty when unknown)."""
        return _as_dict(_as_dict(self.config.get("strategy")).get("masking"))

    def to_json(self) -> dict[str, Any]:
        """The dict written to ``results.json`` (``extra`` keys last, as read)."""
        if self.completed:
            names = [f.name for f in fields(self) if f.name not in ("error", "extra")]
        else:
            names = list(FAILURE_FIELDS)
        return {**{name: getattr(self, name) for name in names}, **self.extra}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunResult:
        """A record from a parsed ``results.json`` of any version; never raises on a dict."""
        known = {f.name for f in fields(cls)} - {"extra"}
        ints = (
            "block_size",
            "decode_block_length",
            "seed",
            "steps",
            "supervised_tokens",
            "eligible_tokens",
            "eval_size",
            "num_parameters",
        )
        floats = (
            "accuracy",
            "accuracy_flexible",
            "final_train_loss",
            "eval_loss",
            "train_seconds",
            "eval_seconds",
            "wall_seconds",
        )
        values: dict[str, Any] = {name: as_int(raw.get(name)) for name in ints}
        values.update({name: as_float(raw.get(name)) for name in floats})
        values.update(
            {
                name: _as_str(raw.get(name))
                for name in (
                    "status",
                    "mode",
                    "study",
                    "strategy",
                    "eval_split",
                    "git_commit",
                    "ckpt_path",
                    "error",
                    "answer_scheme",
                    "answer_format_warning",
                    "config_fingerprint",
                )
            }
        )
        values.update(
            {
                name: _as_dict(raw.get(name))
                for name in (
                    "budget",
                    "active_block_counts",
                    "dropped_rows",
                    "config",
                    "decode_cost",
                    "decode_cost_by_decode_block",
                    "decode",
                    "environment",
                )
            }
        )
        for name in ("init_from", "trained_run", "reused_from"):  # None when absent (a fresh start, a training run)
            values[name] = _as_dict(raw[name]) if isinstance(raw.get(name), dict) else None
        mismatch = raw.get("answer_format_mismatch")
        values["answer_format_mismatch"] = mismatch if isinstance(mismatch, bool) else None
        values.update(
            {
                name: _float_map(raw.get(name))
                for name in ("accuracy_by_decode_block", "accuracy_flexible_by_decode_block")
            }
        )
        values["parse_failure_rate"] = as_float(raw.get("parse_failure_rate"))
        values["parse_failure_rate_by_decode_block"] = _float_map(raw.get("parse_failure_rate_by_decode_block"))
        values["termination"] = _as_dict(raw.get("termination"))
        values["termination_by_decode_block"] = _as_dict(raw.get("termination_by_decode_block"))
        values["status"] = values["status"] or ""
        return cls(**values, extra={key: value for key, value in raw.items() if key not in known})


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON to a temporary file then rename, so a kill never leaves a half-written file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(temporary, path)


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, written as :func:`write_json_atomic`."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    os.replace(temporary, path)


def write_result(path: Path, result: RunResult) -> None:
    write_json_atomic(path, result.to_json())


def read_result(path: Path) -> RunResult | None:
    """The record in ``path``; None when the file is missing, unreadable or not a JSON object."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return RunResult.from_json(raw) if isinstance(raw, dict) else None
