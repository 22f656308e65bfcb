"""Backbones: the tiny model from a config (``model.kind: tiny``) or a pretrained Hugging Face model
(``model.kind: hf``, optionally with LoRA); export to and loading from Hugging Face folders.

Every backbone offers ``encode(ids, attention_mask) -> hidden``, ``project(hidden) -> logits`` and
``model(ids, attention_mask=...).logits``. An export folder holds the model (``save_pretrained``:
merged weights, or a peft adapter whose ``adapter_config.json`` names its base), the tokenizer with
its resolved special tokens, and ``blocksft_model.json``: the ``model`` config that built it.

``build`` builds and exports; ``loader`` is the one model loader (export folders, run folders,
checkpoints, ``model.init_from``); ``init_from`` resolves and checks ``model.init_from`` without reading
weights; ``hf``, ``tiny``, ``lora``, ``tokenizers`` are the pieces they use.
"""

from blocksft.models.build import (
    EXPORT_CONFIG,
    MODEL_KINDS,
    TOKENIZER_KINDS,
    build_hf_backbone,
    build_model,
    build_tokenizer,
    check_model_kind,
    export_model,
)
from blocksft.models.loader import load_exported, load_run_model

__all__ = [
    "EXPORT_CONFIG",
    "MODEL_KINDS",
    "TOKENIZER_KINDS",
    "build_hf_backbone",
    "build_model",
    "build_tokenizer",
    "check_model_kind",
    "export_model",
    "load_exported",
    "load_run_model",
]
