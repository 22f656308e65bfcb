"""Backbone builders: the tiny model from a config (``model.kind: tiny``) or a pretrained Hugging Face
model (``model.kind: hf``, optionally with LoRA), their tokenizers, and export to a Hugging Face folder.
Loading saved weights is ``blocksft.models.loader``'s job.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModel

from blocksft.data.tokenizer import build_char_tokenizer
from blocksft.errors import require
from blocksft.models.hf import (
    HFBackbone,
    enable_gradient_checkpointing,
    head_split_matches,
    load_hf_config,
    load_hf_model,
    load_hf_tokenizer,
)
from blocksft.models.lora import apply_lora
from blocksft.models.tiny import TinyDiffusionConfig, TinyDiffusionLM

AutoConfig.register(TinyDiffusionConfig.model_type, TinyDiffusionConfig)
AutoModel.register(TinyDiffusionConfig, TinyDiffusionLM)

log = logging.getLogger(__name__)

MODEL_KINDS = ("tiny", "hf")
TOKENIZER_KINDS = ("char", "auto")  # auto = char here; models.tokenizers resolves init_from, bpe and folders
EXPORT_CONFIG = "blocksft_model.json"


def check_model_kind(kind) -> str:
    """``model.kind``: one of ``MODEL_KINDS`` (the one statement of the rule)."""
    require(kind in MODEL_KINDS, "model.kind", kind, f"one of {', '.join(MODEL_KINDS)}")
    return kind


def build_tokenizer(model_cfg: DictConfig):
    """The tokenizer of ``model_cfg``; for ``hf`` its mask/EOS/pad tokens are resolved (see ``hf``)."""
    if model_cfg.kind == "hf":
        return load_hf_tokenizer(model_cfg.name_or_path, load_hf_config(model_cfg.name_or_path, model_cfg), model_cfg)
    if model_cfg.tokenizer not in TOKENIZER_KINDS:
        raise ValueError(f"model.tokenizer={model_cfg.tokenizer!r}: allowed values are {', '.join(TOKENIZER_KINDS)}")
    return build_char_tokenizer()


def build_model(model_cfg: DictConfig, tokenizer):
    """A backbone whose special ids come from ``tokenizer``: the tiny model freshly initialised, or
    the pretrained ``hf`` model (gradient checkpointing and LoRA as configured)."""
    if check_model_kind(model_cfg.kind) == "hf":
        config = load_hf_config(model_cfg.name_or_path, model_cfg)
        return build_hf_backbone(
            load_hf_model(model_cfg.name_or_path, config, model_cfg, len(tokenizer)),
            model_cfg,
            len(tokenizer),
            train=True,
        )
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


def build_hf_backbone(model, model_cfg: DictConfig, vocab_size: int, *, train: bool) -> HFBackbone:
    """Wrap a loaded transformers (or peft) model; ``train`` adds gradient checkpointing and LoRA.
    A head that fails the split check on a probe sequence falls back to full logits (logged)."""
    if train and model_cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if train and model_cfg.lora.enabled:
        model = apply_lora(model, model_cfg.lora)
    backbone = HFBackbone(
        model,
        lm_head=model_cfg.lm_head,
        split_head=model_cfg.split_head,
        logits_shift=model_cfg.logits_shift,
        attention_mask_format=model_cfg.attention_mask,
    )
    if backbone.split_head and not head_split_matches(backbone, vocab_size):
        log.warning(
            "the LM head of %s cannot be separated from the body: training gathers full logits at loss "
            "positions (set model.split_head=false to silence this check)",
            model_cfg.name_or_path,
        )
        backbone.split_head = False
    return backbone


def export_model(model, tokenizer, folder: str | Path, model_cfg: DictConfig) -> None:
    """Save ``model`` and ``tokenizer`` to ``folder`` as a Hugging Face folder. LoRA is merged into the
    weights (``model.lora.export=merged``, in place: the merged model keeps serving the run) or saved
    as a peft adapter (``adapter``) whose ``adapter_config.json`` names the base model."""
    folder = Path(folder)
    if isinstance(model, HFBackbone):
        if model_cfg.lora.enabled and model_cfg.lora.export == "merged":
            model.merge_lora()
        model.model.save_pretrained(folder)
    else:
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / EXPORT_CONFIG).write_text(json.dumps(OmegaConf.to_container(model_cfg, resolve=True), indent=2))
