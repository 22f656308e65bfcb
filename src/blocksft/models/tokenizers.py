"""The run's tokenizer (``model.tokenizer`` of the tiny model; Hugging Face models bring their own).

``model.tokenizer``:

* ``auto`` (default): the tokenizer saved with ``model.init_from``'s export, else ``char``;
* ``char``: the character tokenizer (``blocksft.data.tokenizer``);
* ``bpe``: a BPE tokenizer of ``model.bpe.vocab_size`` ids trained at the start of the run on the
  first ``model.bpe.max_texts`` training rows of ``data.source`` (question and answer fields, or the
  documents of ``data.format=documents``); saved with the run's export, so a fine-tuning run that
  starts from it (``model.init_from``) reads the same ids;
* a folder holding a saved tokenizer (``tokenizer.json``), e.g. a pretraining run's ``export/``:
  a run from scratch with the base's vocabulary.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from blocksft.data.bpe import MIN_VOCAB_SIZE
from blocksft.data.bpe import PIECES as NUMBER_MODES
from blocksft.data.tokenizer import load_saved_tokenizer
from blocksft.errors import ConfigError
from blocksft.models.build import build_tokenizer

log = logging.getLogger(__name__)

TOKENIZER_NAMES = ("auto", "char", "bpe")


def validate_tokenizer_choice(model_cfg: DictConfig) -> None:
    """``model.tokenizer`` of a tiny model: a name above or a folder with a saved tokenizer."""
    choice = model_cfg.get("tokenizer", "auto")
    if choice in TOKENIZER_NAMES:
        if choice == "bpe":
            size = model_cfg.bpe.vocab_size
            if not isinstance(size, int) or isinstance(size, bool) or size < MIN_VOCAB_SIZE:
                raise ConfigError(f"model.bpe.vocab_size={size!r} is invalid: allowed an integer >= {MIN_VOCAB_SIZE}")
            numbers = model_cfg.bpe.get("numbers", "whole")
            if numbers not in NUMBER_MODES:
                raise ConfigError(f"model.bpe.numbers={numbers!r} is invalid: allowed {', '.join(NUMBER_MODES)}")
        return
    if not isinstance(choice, str) or not (Path(choice).expanduser() / "tokenizer.json").is_file():
        raise ConfigError(
            f"model.tokenizer={choice!r} is invalid: allowed {', '.join(TOKENIZER_NAMES)} or a folder "
            "holding a saved tokenizer (tokenizer.json, e.g. a run's export/)"
        )


def build_configured_tokenizer(model_cfg: DictConfig):
    """The tokenizer ``model_cfg`` names, except ``bpe`` (which needs the data: see ``build_run_tokenizer``)."""
    if model_cfg.kind == "hf":
        return build_tokenizer(model_cfg)
    choice = model_cfg.get("tokenizer", "auto")
    if choice in ("auto", "char"):
        from blocksft.data.tokenizer import build_char_tokenizer

        return build_char_tokenizer()
    if choice == "bpe":
        raise ValueError("model.tokenizer=bpe is trained on the run's data: use build_run_tokenizer(cfg)")
    return load_saved_tokenizer(choice)


def training_texts(cfg: DictConfig, limit: int) -> list[str]:
    """Up to ``limit`` texts of the training split of ``data.source`` (documents, or question + answer)."""
    data = cfg.data
    documents = data.get("format", "prompt_response") == "documents"
    fields = [data.text_field] if documents else [data.question_field, data.answer_field]
    rows = instantiate(data.source).load_splits(fields)["train"]
    rows = rows.select(range(min(limit, len(rows))))
    columns = [rows[field] for field in fields]
    return ["\n".join(text or "" for text in texts) for texts in zip(*columns)]


def build_run_tokenizer(cfg: DictConfig):
    """The run's tokenizer; ``model.tokenizer=bpe`` trains one on the run's training texts."""
    if cfg.model.kind != "hf" and cfg.model.get("tokenizer", "auto") == "bpe":
        from blocksft.data.bpe import train_bpe_tokenizer

        texts = training_texts(cfg, cfg.model.bpe.max_texts)
        tokenizer = train_bpe_tokenizer(texts, cfg.model.bpe.vocab_size, cfg.model.bpe.get("numbers", "whole"))
        log.info("trained a BPE tokenizer of %d ids on %d training texts", len(tokenizer), len(texts))
        return tokenizer
    return build_configured_tokenizer(cfg.model)
