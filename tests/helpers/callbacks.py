"""Test-only Lightning callbacks (importable by train.py subprocesses through PYTHONPATH=tests/helpers)."""

from __future__ import annotations

import os
import signal

from lightning.pytorch import Callback


class KillAtStep(Callback):
    """SIGKILLs its own process once ``trainer.global_step`` reaches ``step`` (no cleanup, no flush)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class DumpWeightsDigest(Callback):
    """At the end of training, each rank writes the SHA-256 of its weights to ``<folder>/weights_rank<r>.txt``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        import hashlib
        from pathlib import Path

        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        Path(self.folder, f"weights_rank{trainer.global_rank}.txt").write_text(digest.hexdigest())


class KillOnceAtStep(Callback):
    """SIGKILLs its own process at ``step`` of the job whose output folder name contains ``job``, once:
    it first creates ``marker``, and never kills while ``marker`` exists (so the same command re-run
    after the kill goes through)."""

    def __init__(self, step: int, job: str, marker: str) -> None:
        self.step, self.job, self.marker = step, job, marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from pathlib import Path

        if trainer.global_step >= self.step and self.job in Path(trainer.default_root_dir).name:
            if not Path(self.marker).exists():
                Path(self.marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)
