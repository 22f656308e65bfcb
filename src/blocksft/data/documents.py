"""Plain documents for masked-diffusion pretraining (``data.format=documents``).

A document is one text field (``data.text_field``) with no prompt: it becomes the whole sequence,
``[document][EOS][EOS tail ...]`` of exactly ``data.response_len`` tokens, so a training row has
``response_start = 0`` and the masking strategy sees the full sequence (``strategy=pretrain``:
LLaDA's pretraining objective). Documents longer than ``response_len - 1`` tokens are dropped
(``document_longer_than_response_len``), never cut; empty ones are dropped as ``empty_document``.

``DocumentDataModule`` shares the SFT data module's stream, resume state and Arrow cache
(``BatchDataModule``) and reads none of its prompt/response settings; its test loader yields
training-layout batches of the held-out split, scored by a held-out loss
(``blocksft.training.heldout_loss``), not by decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from blocksft.data.batch_plan import BatchPlan
from blocksft.data.datamodule import BatchDataModule, DiffusionSFTDataModule
from blocksft.data.settings import LoaderSettings


@dataclass(frozen=True)
class DocumentSettings:
    """Everything that decides a prepared document besides the tokenizer and the rows (cache key)."""

    text_field: str
    response_len: int


class DocumentPreparer:
    """Batched ``datasets.map`` function: documents -> the prepared-row schema of
    ``blocksft.data.prepare`` (empty prompt, the document as the answer)."""

    def __init__(self, tokenizer, settings: DocumentSettings, origin_label: str) -> None:
        self.tokenizer, self.settings, self.origin_label = tokenizer, settings, origin_label

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        texts = [text if isinstance(text, str) else "" for text in batch[self.settings.text_field]]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        reasons = [
            "empty_document"
            if not text.strip()
            else "document_longer_than_response_len"
            if len(row) + 1 > self.settings.response_len
            else ""
            for text, row in zip(texts, ids)
        ]
        size = len(indices)
        return {
            "prompt": [""] * size,
            "target": [""] * size,
            "prompt_ids": [[] for _ in range(size)],
            "answer_ids": [row if not reason else [] for row, reason in zip(ids, reasons)],
            "drop_reason": reasons,
            "origin": [f"{self.origin_label} row {i}" for i in indices],
        }


class DocumentDataModule(BatchDataModule):
    """Training and held-out batches of documents (see the module docstring): ``LoaderSettings`` and the
    field holding the text, nothing of the prompt/response layout."""

    def __init__(self, source, tokenizer, loader: LoaderSettings, text_field: str = "text") -> None:
        super().__init__(source, tokenizer, loader)
        self.text_field = text_field

    @classmethod
    def from_config(cls, cfg: DictConfig, tokenizer, plan: BatchPlan) -> DocumentDataModule:
        return cls(
            instantiate(cfg.data.source),
            tokenizer,
            LoaderSettings.from_config(cfg, plan.micro_batch),
            cfg.data.text_field,
        )

    def fields(self) -> list[str]:
        return [self.text_field]

    def preparer(self, split: str) -> DocumentPreparer:
        return DocumentPreparer(
            self.tokenizer, DocumentSettings(self.text_field, self.loader.response_len), self.source.describe(split)
        )

    def test_dataloader(self) -> DataLoader:
        """The held-out documents in order, in the training layout (for the held-out loss)."""
        return DataLoader(
            self.eval_set.with_format(columns=["prompt_ids", "answer_ids", "index"]),
            batch_size=self.loader.eval_batch_size,
            shuffle=False,
            collate_fn=self.train_collator,
        )


def datamodule_from_config(cfg: DictConfig, tokenizer, plan: BatchPlan) -> BatchDataModule:
    """The run's data module: plain documents (``data.format=documents``, pretraining) or prompt/response rows."""
    if cfg.data.get("format") == "documents":
        return DocumentDataModule.from_config(cfg, tokenizer, plan)
    return DiffusionSFTDataModule.from_config(cfg, tokenizer, plan)
