"""Stand-ins for the remote-code checkpoints (LLaDA-8B, Dream-7B): folders laid out like the hub repos, with
the fixtures' modelling code (``tests/fixtures/remote_code``), a character-level tokenizer and tiny weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

from blocksft.data.tokenizer import CHARACTERS
from helpers.project import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "remote_code"

LLADA_CHAT = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
QWEN_CHAT = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# name -> config group, code folder, auto_map, special tokens (after the characters), tokenizer tokens, chat
# template (and, for Dream, the remote-code tokenizer class)
STANDINS = {
    "llada": dict(
        group="llada_8b",
        code="llada",
        auto_map={
            "AutoConfig": "configuration_llada.LLaDAConfig",
            "AutoModel": "modeling_llada.LLaDAModelLM",
            "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
        },
        specials=[
            "<|reserved_token_0|>",
            "<|startoftext|>",
            "<|endoftext|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|mdm_mask|>",
        ],
        tokens={"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"},  # no mask token, no pad token
        chat_template=LLADA_CHAT,
    ),
    "dream": dict(
        group="dream_7b",
        code="dream",
        auto_map={"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
        specials=["<|reserved_token_0|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|beginoftext|>", "<|mask|>"],
        tokens={
            "bos_token": "<|beginoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "mask_token": "<|mask|>",
        },
        chat_template=QWEN_CHAT,
        tokenizer_class="DreamTokenizer",  # Dream's tokenizer class is remote code as well
        tokenizer_auto_map={"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
    ),
}
VOCAB_ROWS = 128  # embedding rows: more than the tokenizer's ~110 tokens (LLaDA: 126464 rows, 126349 tokens)


def standin_tokenizer(spec: dict) -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate([*CHARACTERS, *spec["specials"]])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=spec["specials"][0]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(spec["specials"])  # matched whole in chat-templated text
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **spec["tokens"])
    tokenizer.chat_template = spec["chat_template"]
    return tokenizer


def model_config(name: str, tokenizer) -> dict:
    vocab = tokenizer.get_vocab()
    if name == "llada":  # LLaDA-8B-Instruct's config.json keys, scaled down
        return {
            "model_type": "llada",
            "architectures": ["LLaDAModelLM"],
            "d_model": 32,
            "n_heads": 2,
            "n_kv_heads": 2,
            "n_layers": 2,
            "mlp_hidden_size": 64,
            "vocab_size": VOCAB_ROWS,
            "embedding_size": VOCAB_ROWS,
            "max_sequence_length": 512,
            "rope": True,
            "rope_theta": 500000.0,
            "block_type": "llama",
            "weight_tying": False,
            "include_bias": False,
            "use_cache": False,
            "mask_token_id": vocab["<|mdm_mask|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        }
    return {
        "model_type": "Dream",
        "architectures": ["DreamModel"],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": VOCAB_ROWS,
        "max_position_embeddings": 512,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "use_cache": False,
        "mask_token_id": vocab["<|mask|>"],
        "pad_token_id": vocab["<|endoftext|>"],
        "bos_token_id": vocab["<|beginoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
    }


def save_standin(name: str, folder: Path) -> Path:
    """A checkpoint folder laid out like the hub repo: code + config.json (auto_map) + tokenizer + weights."""
    spec = STANDINS[name]
    folder.mkdir(parents=True, exist_ok=True)
    for source in (FIXTURES / spec["code"]).glob("*.py"):
        shutil.copy(source, folder / source.name)
    tokenizer = standin_tokenizer(spec)
    (folder / "config.json").write_text(json.dumps({**model_config(name, tokenizer), "auto_map": spec["auto_map"]}))
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    torch.manual_seed(0)
    model = AutoModel.from_config(config, trust_remote_code=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if "tokenizer_auto_map" in spec:
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        settings.update(tokenizer_class=spec["tokenizer_class"], auto_map=spec["tokenizer_auto_map"])
        (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    assert (folder / "model.safetensors").is_file() and json.loads((folder / "config.json").read_text())["auto_map"]
    return folder
