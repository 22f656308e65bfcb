"""Backbone builders: the tiny model from a config, or a saved Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from transformers import AutoConfig, AutoModel, AutoTokenizer

from blocksft.data.tokenizer import build_char_tokenizer
from blocksft.models.tiny import TinyDiffusionConfig, TinyDiffusionLM

AutoConfig.register(TinyDiffusionConfig.model_type, TinyDiffusionConfig)
AutoModel.register(TinyDiffusionConfig, TinyDiffusionLM)

MODEL_KINDS = ("tiny",)
TOKENIZER_KINDS = ("char",)


def build_tokenizer(model_cfg: DictConfig):
    if model_cfg.tokenizer not in TOKENIZER_KINDS:
        raise ValueError(f"model.tokenizer={model_cfg.tokenizer!r}: allowed values are {', '.join(TOKENIZER_KINDS)}")
    return build_char_tokenizer()


def build_model(model_cfg: DictConfig, tokenizer) -> TinyDiffusionLM:
    """A freshly initialised backbone whose special ids come from ``tokenizer``."""
    if model_cfg.kind not in MODEL_KINDS:
        raise ValueError(f"model.kind={model_cfg.kind!r}: allowed values are {', '.join(MODEL_KINDS)}")
    config = TinyDiffusionConfig(
        vocab_size=len(tokenizer),
        hidden_size=model_cfg.hidden_size,
        num_layers=model_cfg.num_layers,
        num_heads=model_cfg.num_heads,
        intermediate_size=model_cfg.intermediate_size,
        max_position_embeddings=model_cfg.max_position_embeddings,
        rope_theta=model_cfg.get("rope_theta", 10000.0),
        dropout=model_cfg.dropout,
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return TinyDiffusionLM(config)


def load_exported(folder: str | Path):
    """(model, tokenizer) from a folder written by ``save_pretrained`` (our export)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"ckpt_path={folder}: no config.json (not a save_pretrained folder)")
    model = AutoModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer
