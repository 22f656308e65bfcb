"""Evaluation by held-out loss instead of decoding (pretraining on documents, ``data.format=documents``).

``DocumentLossModule`` trains exactly as ``DiffusionSFTModule``; its test loop masks each held-out
batch with a copy of the run's masking strategy and a generator seeded with ``seed`` (so the estimate is the
same for every run of a config and never touches the training streams) and reports the mean loss
over held-out rows as ``<eval.name>/loss`` and ``eval_loss``.
"""

from __future__ import annotations

import copy

import torch

from blocksft.masking import MaskingStrategy
from blocksft.training.module import DiffusionSFTModule
from blocksft.training.objective import masked_diffusion_step


def batch_loss(
    model, masking: MaskingStrategy, batch: dict, generator: torch.Generator, weighting: str
) -> torch.Tensor:
    """Masked-diffusion loss of one training-layout batch, masked by ``masking`` with ``generator``
    (the training step's own loss, ``objective.masked_diffusion_step``)."""
    return masked_diffusion_step(model, batch, masking.mask_batch(batch, generator), weighting)


class DocumentLossModule(DiffusionSFTModule):
    """``DiffusionSFTModule`` whose evaluation is the held-out masked-diffusion loss."""

    eval_loss: float | None = None

    def on_test_epoch_start(self) -> None:
        self.eval_records = []
        self._eval_masking = copy.deepcopy(self.masking)
        self._eval_generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self._loss_sum, self._rows = 0.0, 0

    def test_step(self, batch: dict, batch_index: int) -> None:
        loss = batch_loss(self.model, self._eval_masking, batch, self._eval_generator, self.loss_weighting)
        size = batch["input_ids"].shape[0]
        self._loss_sum += float(loss) * size
        self._rows += size

    def on_test_epoch_end(self) -> None:
        self.eval_loss = self._loss_sum / max(self._rows, 1)
        self.log(f"{self.eval_name}/loss", self.eval_loss)
