"""Crash safety: atomic checkpoint files, automatic resume, and a CSV log that survives a resume.

A run killed at any moment (SIGKILL included) and started again with the same command and run
directory continues from ``checkpoints/last.ckpt`` and ends exactly as the uninterrupted run would
have: every random stream is in the checkpoint (see ``DiffusionSFTModule.on_save_checkpoint`` and
``DiffusionSFTDataModule.state_dict``), and the CSV log keeps the rows logged before that checkpoint.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from blocksft.folders import LAST_CHECKPOINT

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, then renames it into place,
    so a kill during a write leaves the previous checkpoint intact instead of a truncated file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        super().save_checkpoint(checkpoint, temporary, storage_options)
        os.replace(temporary, path)


class FlushLoggersOnCheckpoint(Callback):
    """Writes buffered logger rows to disk whenever a checkpoint is saved, so the log on disk always
    covers at least the steps the last checkpoint covers."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            logger.save()


class TrainingClock(Callback):
    """Training seconds over every attempt of a run: the seconds the checkpoint this attempt resumed from had
    counted (``earlier``) plus this attempt's, kept in each checkpoint. So a run killed and resumed reports the
    training time of all its attempts (not the steps an attempt lost after its last checkpoint)."""

    def __init__(self) -> None:
        self.earlier = 0.0
        self.started: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.earlier + (0.0 if self.started is None else time.perf_counter() - self.started)

    def state_dict(self) -> dict[str, float]:
        return {"train_seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.earlier = float(state_dict.get("train_seconds", 0.0))


def resume_checkpoint(output_dir: str | Path) -> Path | None:
    """``<output_dir>/checkpoints/last.ckpt`` if a previous attempt of this run left one."""
    path = Path(output_dir) / LAST_CHECKPOINT
    return path if path.is_file() else None


def read_csv_rows(path: Path, before_step: int) -> tuple[list[str], list[dict]]:
    """(header, rows with ``step < before_step``) of a Lightning CSV metrics file, or ([], [])."""
    if not path.is_file():
        return [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = [row for row in reader if row.get("step") and int(float(row["step"])) < before_step]
    return header, rows


def keep_csv_rows_on_resume(logger, before_step: int) -> int:
    """Lightning's CSV logger deletes an existing ``metrics.csv`` when it opens its folder. On resume,
    rewrite the rows logged before the checkpoint's step (the rows after it are logged again by the
    resumed run) and tell the writer their columns. Returns the number of rows kept."""
    path = Path(logger.log_dir) / "metrics.csv"
    header, rows = read_csv_rows(path, before_step)
    writer = logger.experiment  # opening the writer removes the old file
    if not rows:
        return 0
    with path.open("w", newline="") as handle:
        csv_writer = csv.DictWriter(handle, fieldnames=sorted(header))
        csv_writer.writeheader()
        csv_writer.writerows(rows)
    writer.metrics_keys = sorted(header)
    return len(rows)
