"""Training progress a person can read: a bar on a terminal, log lines everywhere else.

``progress_callbacks(settings, interactive, planned_steps)`` returns ``(callbacks, enable_progress_bar)`` for the
Trainer. ``settings`` is the ``progress`` config node: ``bar`` (``auto``: a bar when stderr is a
terminal; ``true``; ``false``) and ``every_n_steps`` (a ``ProgressLog`` line every N optimizer steps
and at the last one, written when there is no bar; 0 = none). The bar counts optimizer steps of the
run (``train 200/2000``), not Lightning's endless epoch (which showed as ``Epoch 0/-2``). Under a token
budget the total is the run's planned step count (``run.planned_steps``: the LR schedule's length), not the
budget's ``max_steps`` cap.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import TQDMProgressBar

log = logging.getLogger("blocksft")


def format_duration(seconds: float) -> str:
    """``0:01:23``; ``1 day, 2:03:04`` beyond a day."""
    return str(timedelta(seconds=round(max(seconds, 0.0))))


def expected_steps(planned_steps: int | None, max_steps: int) -> int:
    """The steps a run expects: its planned count (a token budget's expected count), capped by the trainer's
    ``max_steps``; ``max_steps`` when none is planned."""
    if not planned_steps:
        return max_steps
    return min(planned_steps, max_steps) if max_steps > 0 else planned_steps


class ProgressLog(Callback):
    """Logs ``train step s/total (p%) loss L | T supervised tok/s | elapsed E | ETA R`` every
    ``every_n_steps`` optimizer steps and at the last step; ``total`` is ``expected_steps(planned_steps, ...)``.
    Rates and ETA cover this attempt only (a resumed run starts its clock at the resumed step)."""

    def __init__(self, every_n_steps: int, planned_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps
        self.planned_steps = planned_steps
        self._start_step = 0
        self._start_tokens = 0
        self._started = 0.0
        self._last_logged = -1

    def on_train_start(self, trainer, pl_module) -> None:
        self._start_step = self._last_logged = trainer.global_step
        self._start_tokens = int(getattr(pl_module, "supervised_tokens", 0))
        self._started = time.perf_counter()

    def line(self, step: int, total: int, loss: float | None, tokens: int, elapsed: float) -> str:
        done = step - self._start_step
        rate = (tokens - self._start_tokens) / elapsed if elapsed > 0 else 0.0
        eta = (total - step) * elapsed / done if done > 0 else 0.0
        loss_text = f"{loss:.4f}" if loss is not None else "n/a"
        return (
            f"train step {step}/{total} ({100 * step / max(total, 1):.0f}%) loss {loss_text} | "
            f"{rate:,.0f} supervised tok/s | elapsed {format_duration(elapsed)} | ETA {format_duration(eta)}"
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0 or trainer.global_step == trainer.max_steps:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module)  # the last step, when a token budget stopped the run between lines

    def _log(self, trainer, pl_module) -> None:
        step = trainer.global_step
        total = max(expected_steps(self.planned_steps, trainer.max_steps), step)  # a token budget may need more
        if step == self._last_logged or not trainer.is_global_zero:
            return
        self._last_logged = step
        loss = trainer.callback_metrics.get("train/loss")
        log.info(
            self.line(
                step,
                total,
                float(loss) if loss is not None else None,
                int(getattr(pl_module, "supervised_tokens", 0)),
                time.perf_counter() - self._started,
            )
        )


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting this run's training batches (optimizer steps x accumulation)
    under the description ``train`` instead of an endless epoch."""

    def __init__(self, planned_steps: int | None = None) -> None:
        super().__init__()
        self.planned_steps = planned_steps

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        if (total := expected_steps(self.planned_steps, trainer.max_steps)) > 0:
            self.train_progress_bar.total = total * trainer.accumulate_grad_batches
        self.train_progress_bar.set_description("train")


def progress_callbacks(settings, interactive: bool, planned_steps: int | None = None) -> tuple[list[Callback], bool]:
    """(callbacks, enable_progress_bar) for the ``progress`` settings; ``interactive``: stderr is a TTY;
    ``planned_steps``: the run's expected step count (None: the trainer's ``max_steps``)."""
    bar = settings.get("bar", "auto")
    every = settings.get("every_n_steps", 100)
    use_bar = interactive if bar == "auto" else bool(bar)
    callbacks: list[Callback] = [StepProgressBar(planned_steps)] if use_bar else []
    if not use_bar and every:
        callbacks.append(ProgressLog(every, planned_steps))
    return callbacks, use_bar
