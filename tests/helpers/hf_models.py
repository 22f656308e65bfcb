"""Tiny Hugging Face models made on the spot (a character-level BERT), for tests of ``model.kind=hf``, LoRA
and ``model.init_from`` (no hub downloads)."""

from __future__ import annotations

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from blocksft.data.tokenizer import CHARACTERS
from blocksft.models import build_model, build_tokenizer
from blocksft.runs.compose import compose_config

BERT_TARGETS = "model.lora.target_modules=[query,value]"


def bert_like_tokenizer(with_mask: bool = True) -> PreTrainedTokenizerFast:
    """A character-level tokenizer with BERT's special tokens: [PAD] [UNK] [CLS] [SEP] (+ [MASK]), no EOS."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + (["[MASK]"] if with_mask else [])
    vocab = {token: index for index, token in enumerate([*specials, *CHARACTERS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokens = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, **tokens, **({"mask_token": "[MASK]"} if with_mask else {})
    )


def save_tiny_bert(folder, with_mask: bool = True):
    tokenizer = bert_like_tokenizer(with_mask)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def hf_cfg(folder, *overrides: str):
    return compose_config(["model=hf_masked_lm", f"model.name_or_path={folder}", *overrides])


def build(folder, *overrides: str):
    model_cfg = hf_cfg(folder, *overrides).model
    tokenizer = build_tokenizer(model_cfg)
    return build_model(model_cfg, tokenizer).eval(), tokenizer


def random_ids(tokenizer, shape=(2, 12)) -> torch.Tensor:
    return torch.randint(5, len(tokenizer), shape, generator=torch.Generator().manual_seed(0))
