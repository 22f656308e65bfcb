"""``DecodeViewLoss``: the Lightning callback that measures and logs the decode-view loss during training
(``diagnostics.decode_view``; what it measures and why it changes nothing: ``blocksft.training.decode_view``)."""

from __future__ import annotations

import logging
import time

import torch
from lightning.pytorch import Callback

from blocksft.masking.decode_view import DecodeViews, decode_views
from blocksft.training.decode_view import (
    KEY,
    DecodeViewSettings,
    decode_view_losses,
    decode_view_metrics,
    fixed_draws,
    heldout_batch,
)

log = logging.getLogger("blocksft")


class DecodeViewLoss(Callback):
    """Logs the decode-view loss (``blocksft.training.decode_view``) every ``settings.every_n_steps`` optimizer
    steps and at the last step. ``seconds``: the duration of each evaluation of this process."""

    def __init__(self, settings: DecodeViewSettings) -> None:
        self.settings = settings
        self.seconds: list[float] = []
        self._batch: dict[str, torch.Tensor] | None = None
        self._views: DecodeViews | None = None
        self._last_step = 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Build the held-out batch and its views once, from the data module's prepared evaluation split."""
        if stage != "fit" or self._views is not None:
            return
        settings, data = self.settings, trainer.datamodule
        batch = heldout_batch(data.eval_set, data.train_collator, data.loader.response_len, settings.size)
        if batch is None:
            log.warning("%s: no %s row has an answer that fits the response: not measured", KEY, data.loader.eval_split)
            return
        self._batch = batch
        self._views = decode_views(
            batch["input_ids"],
            batch["response_start"],
            batch["loss_scope_len"],
            settings.block_size,
            settings.mask_ratios,
            fixed_draws(batch, settings.seed),
            pl_module.mask_id,
        )

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_step = trainer.global_step  # a resumed run logged the evaluations up to here

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self._views is None or step == self._last_step:  # (with gradient accumulation: once per step)
            return
        last = trainer.should_stop or 0 < trainer.max_steps <= step
        if step % self.settings.every_n_steps == 0 or last:
            self._last_step = step
            self.evaluate(trainer, pl_module)

    def evaluate(self, trainer, pl_module) -> dict[str, float]:
        """Measure now, log to every logger at this optimizer step's row, return the metrics."""
        settings, started = self.settings, time.perf_counter()
        device = pl_module.device
        batch = {name: tensor.to(device) for name, tensor in self._batch.items()}
        views = self._views.to(device)
        modes = {module: module.training for module in pl_module.modules()}
        pl_module.eval()
        try:
            with trainer.precision_plugin.forward_context():
                losses = decode_view_losses(
                    pl_module.model,
                    batch,
                    views,
                    len(settings.mask_ratios),
                    settings.block_size,
                    settings.batch_size,
                    settings.attention,
                )
        finally:
            for module, mode in modes.items():  # each module's own mode (a frozen part may stay in eval mode)
                module.training = mode
        metrics = decode_view_metrics(losses.cpu(), settings.mask_ratios)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step - 1)  # train/loss's row of this step
        self.seconds.append(time.perf_counter() - started)
        if trainer.is_global_zero:
            blocks = [metrics.get(f"decode_view/loss_block{k}") for k in range(views.num_blocks)]
            log.info(
                "decode view at step %d: loss %s, by block %s (%.2f s)",
                trainer.global_step,
                f"{metrics['decode_view/loss']:.4f}" if "decode_view/loss" in metrics else "n/a",
                " ".join("n/a" if b is None else f"{b:.4f}" for b in blocks),
                self.seconds[-1],
            )
        return metrics
