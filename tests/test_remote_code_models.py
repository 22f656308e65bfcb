"""model=llada_8b and model=dream_7b end to end on CPU, with tiny local stand-ins of the real checkpoints.

Each stand-in is a checkpoint folder built in tmp_path as the hub repos are laid out: ``config.json``
with an ``auto_map`` naming ``configuration_*.py`` / ``modeling_*.py`` in the same folder (the code in
``tests/fixtures/remote_code/``, written to mirror the interface of GSAI-ML/LLaDA-8B-Instruct and
Dream-org/Dream-v0-Instruct-7B: class names, module paths, forward signatures, checkpointing switch), a
character-level tokenizer saved with ``save_pretrained`` (with the real model's special tokens and the
shape of its chat template), and random weights saved as safetensors. The LLaDA tokenizer has no mask
token (the mask id lives only in ``config.mask_token_id``, as in LLaDA); Dream's has ``<|mask|>`` and, as
in Dream, its class is remote code too (``tokenization_dream.DreamTokenizer``). Both embedding matrices have more rows
than the tokenizer has tokens (as the real ones do). The configs' real LoRA target names are kept
(only r and alpha shrink), so the tests prove they match modules of the real architectures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerFast

from blocksft.config.validation import ConfigError, validate_config
from blocksft.data.collate import left_pad
from blocksft.models import build_model, build_tokenizer, load_exported
from blocksft.models.hf import HFBackbone
from blocksft.runs.compose import compose_config
from helpers.remote_code import STANDINS, VOCAB_ROWS, save_standin
from helpers.runs import run_in_process, run_train

FIXTURES = Path(__file__).parent / "fixtures" / "remote_code"
CLI_TIMEOUT = 900  # seconds per train.py run (2 shared cores)
SMALL_LORA = ["model.dtype=float32", "model.lora.r=4", "model.lora.alpha=8"]


@pytest.fixture(scope="module", params=sorted(STANDINS))
def standin(request, tmp_path_factory):
    """(name, folder) of each stand-in, built once per module."""
    return request.param, save_standin(request.param, tmp_path_factory.mktemp(f"{request.param}-standin"))


def cfg_for(name: str, folder: Path, *overrides: str):
    return compose_config(
        [
            f"model={STANDINS[name]['group']}",
            f"model.name_or_path={folder}",
            "model.trust_remote_code=true",
            *SMALL_LORA,
            *overrides,
        ]
    )


def build(name: str, folder: Path, *overrides: str):
    model_cfg = cfg_for(name, folder, *overrides).model
    tokenizer = build_tokenizer(model_cfg)
    return build_model(model_cfg, tokenizer), tokenizer, model_cfg


def random_ids(tokenizer, shape=(2, 12)) -> torch.Tensor:
    return torch.randint(0, len(tokenizer), shape, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- (a) build
def test_special_ids_come_from_the_tokenizer_and_config(standin):
    name, folder = standin
    config = json.loads((folder / "config.json").read_text())
    raw = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    tokenizer = build_tokenizer(cfg_for(name, folder).model)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert (type(tokenizer).__name__ == "DreamTokenizer") == (name == "dream")  # Dream's class: remote code
    assert tokenizer.mask_token_id == config["mask_token_id"]
    assert tokenizer.eos_token_id == raw.eos_token_id == config["eos_token_id"]
    assert tokenizer.pad_token_id == config["pad_token_id"]
    if name == "llada":  # the mask id exists only in config.json, as in LLaDA
        assert raw.mask_token is None and raw.pad_token is None and tokenizer.mask_token == "<|mdm_mask|>"
    else:
        assert raw.mask_token == tokenizer.mask_token == "<|mask|>"
    assert bool(tokenizer.chat_template)


def test_lora_on_the_configured_targets_leaves_only_adapters_trainable(standin):
    name, folder = standin
    model, tokenizer, model_cfg = build(name, folder)
    assert isinstance(model, HFBackbone) and model.split_head
    targets = set(model_cfg.lora.target_modules)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert sum(p.numel() for p in trainable.values()) > 0
    adapted = [n.split(".lora_A")[0] for n in trainable if ".lora_A." in n]
    assert {n.rsplit(".", 1)[-1] for n in adapted} == targets  # every configured target matched a module
    layers = model.config.num_hidden_layers
    assert len(adapted) == layers * len(targets)  # once per block
    blocks = r"model\.transformer\.blocks\.\d+" if name == "llada" else r"model\.model\.layers\.\d+\.(self_attn|mlp)"
    pattern = rf".*{blocks}\.\w+"
    assert all(re.fullmatch(pattern, n) for n in adapted), adapted
    head = model.head()
    assert not any(p.requires_grad for p in head.parameters())
    assert head is model.base_model.get_output_embeddings() and head.weight.shape[0] == VOCAB_ROWS > len(tokenizer)


def test_llada_every_linear_of_the_blocks_regex_spares_the_output_head(tmp_path_factory):
    folder = save_standin("llada", tmp_path_factory.mktemp("llada-regex"))
    regex = r"model.lora.target_modules='.*blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)'"
    model, _, _ = build("llada", folder, regex)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters() if ".lora_A." in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"}
    assert not any(p.requires_grad for p in model.head().parameters())


def test_split_head_and_shift_match_the_models_own_logits(standin):
    name, folder = standin
    model, tokenizer, _ = build(name, folder)
    model.eval()
    reference = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    ids = random_ids(tokenizer)
    with torch.no_grad():
        own = reference(input_ids=ids).logits  # (LoRA B starts at zero: the same function)
        if name == "dream":  # Dream's AR head: position i is read from the logits of i - 1
            own = torch.cat([own[:, :1], own[:, :-1]], dim=1)
        assert torch.allclose(model(ids).logits, own, atol=1e-5)
        assert torch.allclose(model.project(model.encode(ids, torch.ones_like(ids))), own, atol=1e-5)


def test_padding_is_hidden_from_every_row(standin):
    """The 2-D (LLaDA) or 4-D (Dream) padding mask reaches the attention: pad content changes nothing."""
    name, folder = standin
    model, tokenizer, _ = build(name, folder)
    model.eval()
    rows = [random_ids(tokenizer, (1, 8))[0].tolist(), list(range(3, 15))]
    padded, mask = left_pad(rows, tokenizer.pad_token_id)
    other = padded.clone()
    other[mask == 0] = tokenizer.mask_token_id
    with torch.no_grad():
        first, second = model(padded, attention_mask=mask).logits, model(other, attention_mask=mask).logits
    seen = mask.bool()
    if name == "dream":  # shifted: the first real position reads the (pad) position before it; it is always a
        seen[:, 1:] &= mask[:, :-1].bool()  # prompt token (never predicted), so only later positions must agree
    assert torch.allclose(first[seen], second[seen], atol=1e-5)
    assert not torch.allclose(first[~mask.bool()], second[~mask.bool()], atol=1e-5)  # (the pads did differ)


# ----------------------------------------------------------------------------- (c) gradient checkpointing
def lora_grads(model, ids) -> dict:
    model.train()
    model.zero_grad()
    loss = model.project(model.encode(ids, torch.ones_like(ids))[:, 2:6]).logsumexp(-1).mean()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_gradient_checkpointing_switch_trains_the_same(standin):
    name, folder = standin
    overrides = ["model.lora.dropout=0.0"]
    plain, tokenizer, _ = build(name, folder, *overrides)
    checkpointed, _, _ = build(name, folder, "model.gradient_checkpointing=true", *overrides)
    base = checkpointed.base_model
    if name == "llada":  # LLaDA's own switch on LLaDAModel (the HF API is not supported)
        assert not base.supports_gradient_checkpointing
        assert base.model.activation_checkpointing_strategy == "whole_layer"
    else:
        assert base.model.gradient_checkpointing
    with torch.no_grad():  # the same adapters in both (peft draws A at random); B non-zero: every weight gets a grad
        for model in (plain, checkpointed):
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.copy_(torch.linspace(-0.1, 0.1, p.numel()).view_as(p))
    ids = random_ids(tokenizer)
    expected, got = lora_grads(plain, ids), lora_grads(checkpointed, ids)
    assert expected.keys() == got.keys() and len(got) > 0
    assert all(torch.allclose(expected[n], got[n], atol=1e-5) for n in got)
    torch.optim.AdamW([p for p in checkpointed.parameters() if p.requires_grad], lr=1e-2).step()


# ----------------------------------------------------------------------------- (d) the opt-in
def test_stand_in_folder_alone_asks_for_the_opt_in(standin):
    name, folder = standin
    expected = rf"^model.trust_remote_code=False is invalid: .*{re.escape(str(folder))} ships"
    with pytest.raises(ConfigError, match=expected):
        validate_config(
            compose_config(["model=hf_masked_lm", f"model.name_or_path={folder}", "model.auto_class=AutoModel"])
        )


def test_command_line_without_the_opt_in_exits_2_in_one_line(standin, tmp_path):
    name, folder = standin
    result = run_train(
        [f"model={STANDINS[name]['group']}", f"model.name_or_path={folder}", "debug=smoke", "data=arithmetic"],
        tmp_path,
        CLI_TIMEOUT,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert len(lines) == 1 and "model.trust_remote_code=true" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "results.json").exists()


# ----------------------------------------------------------------------------- (b) command line
EXPORTS = {"llada": "merged", "dream": "adapter"}  # one of each, to keep CLI runs few


def test_train_decode_export_then_eval_reproduces_the_accuracy(standin, tmp_path):
    name, folder = standin
    export = EXPORTS[name]
    common = [
        f"model={STANDINS[name]['group']}",
        f"model.name_or_path={folder}",
        "model.trust_remote_code=true",
        *SMALL_LORA,
        f"model.lora.export={export}",
        "debug=smoke",
        "data=arithmetic",
        "data.response_len=32",
        "optim.optimizer.lr=0.01",
    ]
    run_in_process(common, tmp_path / "train")
    results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert results["steps"] == 10 and results["final_train_loss"] is not None and results["accuracy"] is not None
    exported = tmp_path / "train" / "export"
    assert (exported / "adapter_config.json").is_file() == (export == "adapter")
    if export == "merged":  # a self-contained remote-code checkpoint: weights, config with auto_map, its code
        assert (exported / "model.safetensors").is_file() and (exported / "modeling_llada.py").is_file()
        assert json.loads((exported / "config.json").read_text())["auto_map"]["AutoModel"].endswith("LLaDAModelLM")
        with safe_open(exported / "model.safetensors", framework="pt") as weights:
            assert weights.keys() and not any("lora" in key for key in weights.keys())
    else:
        assert json.loads((exported / "adapter_config.json").read_text())["base_model_name_or_path"] == str(folder)
        assert (exported / "tokenization_dream.py").is_file()  # the remote-code tokenizer travels with the export
    reloaded, saved_tokenizer = load_exported(exported, cfg_for(name, folder).model)
    assert type(saved_tokenizer).__name__ == type(build_tokenizer(cfg_for(name, folder).model)).__name__
    assert saved_tokenizer.mask_token_id == json.loads((folder / "config.json").read_text())["mask_token_id"]
    ids = random_ids(saved_tokenizer)
    with torch.no_grad():  # the export carries the trained adapters (merged or not), not the base weights
        base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()(input_ids=ids).logits
        tuned = HFBackbone(reloaded.model).eval()(ids).logits  # (unshifted, as the base)
    assert (tuned - base).abs().max() > 1e-3

    run_in_process(["mode=eval", f"ckpt_path={tmp_path / 'train'}", *common], tmp_path / "eval")
    again = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert again["mode"] == "eval" and again["accuracy"] == results["accuracy"]
    generations = [(tmp_path / run / "generations.jsonl").read_text() for run in ("train", "eval")]
    assert generations[0] == generations[1] and len(generations[0].splitlines()) == 16


def test_the_configured_bfloat16_weights_load_split_and_train(standin):
    """The configs' own dtype (bfloat16), as the real checkpoints are run."""
    name, folder = standin
    model, tokenizer, _ = build(name, folder, "model.dtype=bfloat16")
    assert model.split_head
    # (peft keeps the adapters themselves in float32)
    assert {p.dtype for n, p in model.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    ids = random_ids(tokenizer)
    model.train()
    logits = model.project(model.encode(ids, torch.ones_like(ids))[:, 2:6])
    assert logits.dtype == torch.bfloat16 and logits.shape[-1] == VOCAB_ROWS and torch.isfinite(logits).all()
    logits.float().logsumexp(-1).mean().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
