"""Hugging Face backbones (model.kind=hf): special tokens, the encode/project split, LoRA, export and
mode=eval. Every model is a tiny BERT created here and saved to tmp_path (no hub downloads)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM

from blocksft.config.validation import ConfigError, validate_config
from blocksft.data.collate import left_pad
from blocksft.models import build_model, build_tokenizer, export_model, load_exported
from blocksft.models.hf import HFBackbone
from blocksft.runs.compose import compose_config
from helpers.hf_models import BERT_TARGETS, bert_like_tokenizer, build, hf_cfg, random_ids, save_tiny_bert
from helpers.runs import run_in_process, run_train

CLI_TIMEOUT = 900  # seconds per train.py run: generous, the suite may share 2 cores with running studies


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


# ----------------------------------------------------------------------------- special tokens
def test_special_ids_come_from_the_tokenizer_and_sep_ends_responses(bert_dir):
    tokenizer = build_tokenizer(hf_cfg(bert_dir).model)
    assert (tokenizer.mask_token, tokenizer.pad_token, tokenizer.eos_token) == ("[MASK]", "[PAD]", "[SEP]")
    assert (tokenizer.mask_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (4, 0, 3)


def test_eos_token_can_be_chosen_and_must_exist(bert_dir):
    assert build_tokenizer(hf_cfg(bert_dir, "model.eos_token='[CLS]'").model).eos_token_id == 2
    with pytest.raises(ConfigError, match=r"^model.eos_token='nosuchtoken' is invalid"):
        build_tokenizer(hf_cfg(bert_dir, "model.eos_token=nosuchtoken").model)


def test_tokenizer_without_mask_token_fails_in_one_line_or_gains_one_on_request(tmp_path):
    folder = save_tiny_bert(tmp_path / "no-mask", with_mask=False)
    with pytest.raises(ConfigError) as error:
        build_tokenizer(hf_cfg(folder).model)
    assert str(error.value).startswith("model.add_mask_token=false is invalid") and "\n" not in str(error.value)

    model, tokenizer = build(folder, "model.add_mask_token=true")
    old_size = len(bert_like_tokenizer(with_mask=False))
    assert tokenizer.mask_token == "[MASK]" and tokenizer.mask_token_id == old_size == len(tokenizer) - 1
    embeddings = model.base_model.get_input_embeddings().weight
    assert embeddings.shape[0] == len(tokenizer)
    assert torch.allclose(embeddings[-1], embeddings[:-1].mean(dim=0))
    assert model(random_ids(tokenizer)).logits.shape[-1] == len(tokenizer)


# ----------------------------------------------------------------------------- encode / project
@pytest.mark.parametrize(
    "overrides", [[], ["model.lm_head=cls"], ["model.split_head=false"], ["model.lora.enabled=true", BERT_TARGETS]]
)
def test_encode_then_project_at_loss_positions_equals_the_models_own_logits(bert_dir, overrides):
    model, tokenizer = build(bert_dir, *overrides)
    reference = AutoModelForMaskedLM.from_pretrained(bert_dir).eval()
    ids = random_ids(tokenizer)
    rows, cols = torch.tensor([0, 0, 1]), torch.tensor([3, 7, 11])
    with torch.no_grad():
        own = reference(ids).logits[rows, cols]
        split = model.project(model.encode(ids, torch.ones_like(ids))[rows, cols])
    assert split.shape == own.shape
    assert torch.allclose(split, own, atol=1e-5)
    assert model.split_head == ("model.split_head=false" not in overrides)


def test_left_padding_does_not_change_what_a_row_sees(bert_dir):
    model, tokenizer = build(bert_dir)
    alone = random_ids(tokenizer, (1, 10))
    padded, mask = left_pad([alone[0].tolist(), list(range(5, 20))], tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(model(alone).logits[0], model(padded, attention_mask=mask).logits[0, -10:], atol=1e-5)


def test_logits_shift_reads_the_previous_position(bert_dir):
    plain, tokenizer = build(bert_dir)
    shifted = HFBackbone(plain.model, logits_shift=True)
    ids = random_ids(tokenizer)
    with torch.no_grad():
        logits, moved = plain(ids).logits, shifted(ids).logits
        assert torch.equal(moved[:, 1:], logits[:, :-1]) and torch.equal(moved[:, 0], logits[:, 0])
        assert torch.allclose(shifted.project(shifted.encode(ids)), moved, atol=1e-5)


def test_4d_attention_mask_hides_padded_keys_from_every_query_and_positions_skip_pads(bert_dir):
    dream_like = HFBackbone(build(bert_dir)[0].model, attention_mask_format="4d")
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    inputs = dream_like.model_inputs(torch.zeros_like(mask), mask)
    assert inputs["attention_mask"].shape == (2, 1, 3, 3) and inputs["attention_mask"].dtype == torch.bool
    assert inputs["attention_mask"][0, 0].tolist() == [[False, True, True]] * 3
    assert inputs["position_ids"].tolist() == [[0, 0, 1], [0, 1, 2]]


def test_gradient_checkpointing_switch_uses_the_hf_api_and_trains(bert_dir):
    model, tokenizer = build(bert_dir, "model.gradient_checkpointing=true")
    base = model.base_model
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing
    model.train()
    ids = random_ids(tokenizer)
    loss = model.project(model.encode(ids)[:, 2]).logsumexp(-1).mean()
    loss.backward()
    assert model.base_model.get_input_embeddings().weight.grad is not None


# ----------------------------------------------------------------------------- LoRA
def test_lora_leaves_only_adapter_weights_trainable(bert_dir):
    model, _ = build(bert_dir, "model.lora.enabled=true", BERT_TARGETS, "model.lora.r=4")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable} == {"query", "value"}


@pytest.mark.parametrize(
    "targets, missing", [("[query,q_proj]", "q_proj"), ("[nothing]", "nothing"), ("'.*\\.nothing'", ".*\\.nothing")]
)
def test_lora_target_that_matches_nothing_is_a_one_line_error(bert_dir, targets, missing):
    with pytest.raises(ConfigError) as error:
        build(bert_dir, "model.lora.enabled=true", f"model.lora.target_modules={targets}")
    message = str(error.value)
    assert message.startswith("model.lora.target_modules=") and f"{missing} match nothing" in message
    assert "query" in message.split("linear layers:")[1] and "\n" not in message


@pytest.mark.parametrize("export", ["merged", "adapter"])
def test_export_and_reload_give_the_same_logits(bert_dir, tmp_path, export):
    model_cfg = hf_cfg(bert_dir, "model.lora.enabled=true", BERT_TARGETS, f"model.lora.export={export}").model
    tokenizer = build_tokenizer(model_cfg)
    model = build_model(model_cfg, tokenizer).eval()
    with torch.no_grad():  # make the adapter matter (peft initialises lora_B to zero)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    ids = random_ids(tokenizer)
    with torch.no_grad():
        before = model(ids).logits
    export_model(model, tokenizer, tmp_path, model_cfg)
    assert (tmp_path / "adapter_config.json").is_file() == (export == "adapter")
    assert (tmp_path / "config.json").is_file() == (export == "merged")
    reloaded, reloaded_tokenizer = load_exported(tmp_path, hf_cfg(bert_dir).model)
    assert reloaded_tokenizer.eos_token == "[SEP]" and reloaded_tokenizer.mask_token_id == tokenizer.mask_token_id
    with torch.no_grad():
        assert torch.allclose(reloaded.eval()(ids).logits, before, atol=1e-5)


# ----------------------------------------------------------------------------- trust_remote_code
def test_a_model_that_needs_remote_code_is_refused_without_the_opt_in(bert_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"^model.trust_remote_code=False is invalid: allowed true \(GSAI-ML"):
        validate_config(compose_config(["model=llada_8b"]))
    validate_config(compose_config(["model=dream_7b", "model.trust_remote_code=true"]))
    folder = save_tiny_bert(tmp_path / "custom-code")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "modeling_x.XModel"}}))
    with pytest.raises(ConfigError, match=r"^model.trust_remote_code=False is invalid: .*custom-code ships"):
        validate_config(hf_cfg(folder))


def test_remote_code_refusal_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    result = run_train(["model=llada_8b", "debug=smoke"], tmp_path, CLI_TIMEOUT)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert len(lines) == 1 and "model.trust_remote_code=true" in lines[0]
    assert not (tmp_path / "results.json").exists()


# ----------------------------------------------------------------------------- command line
def train_then_eval(bert_dir, tmp_path, *overrides: str) -> tuple[dict, dict]:
    """A smoke training run, then mode=eval on its run directory: both results.json."""
    # data=chains: the default's 8-9-step questions exceed max_prompt_len in BERT's word pieces
    common = ["model=hf_masked_lm", f"model.name_or_path={bert_dir}", "debug=smoke", "data=chains", *overrides]
    run_in_process(common, tmp_path / "train")
    run_in_process(["mode=eval", f"ckpt_path={tmp_path / 'train'}", *common], tmp_path / "eval")
    generations = [(tmp_path / run / "generations.jsonl").read_text() for run in ("train", "eval")]
    assert generations[0] == generations[1] and generations[0]
    return tuple(json.loads((tmp_path / run / "results.json").read_text()) for run in ("train", "eval"))


def test_full_fine_tuning_trains_exports_and_evaluates_the_same(bert_dir, tmp_path):
    trained, evaluated = train_then_eval(bert_dir, tmp_path)
    assert trained["steps"] == 10 and trained["final_train_loss"] is not None
    assert evaluated["accuracy"] == trained["accuracy"] and evaluated["mode"] == "eval"
    assert (tmp_path / "train" / "export" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "train" / "export" / "blocksft_model.json").read_text())["kind"] == "hf"


@pytest.mark.parametrize("export", ["merged", "adapter"])
def test_lora_run_exports_merged_or_adapter_and_evaluates_the_same(bert_dir, tmp_path, export):
    trained, evaluated = train_then_eval(
        bert_dir,
        tmp_path,
        "model.lora.enabled=true",
        BERT_TARGETS,
        f"model.lora.export={export}",
        "optim.optimizer.lr=0.05",
    )
    assert evaluated["accuracy"] == trained["accuracy"]
    assert trained["num_parameters"] >= evaluated["num_parameters"] > 0
    folder = tmp_path / "train" / "export"
    assert (folder / "adapter_config.json").is_file() == (export == "adapter")
    if export == "adapter":  # (merged: the run decoded the merged weights, the .ckpt holds the unmerged ones)
        assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(bert_dir)
        run_in_process(
            [
                "mode=eval",
                f"ckpt_path={tmp_path / 'train' / 'checkpoints' / 'last.ckpt'}",
                "model=hf_masked_lm",
                f"model.name_or_path={bert_dir}",
                "debug=smoke",
                "data=chains",
                "model.lora.enabled=true",
                BERT_TARGETS,
            ],
            tmp_path / "ckpt",
        )
        assert (tmp_path / "ckpt" / "generations.jsonl").read_text() == (
            tmp_path / "train" / "generations.jsonl"
        ).read_text()


def test_eval_without_ckpt_path_scores_the_pretrained_model(bert_dir):
    from blocksft.models.loader import load_run_model

    cfg = hf_cfg(bert_dir, "mode=eval", "model.lora.enabled=true", BERT_TARGETS)
    validate_config(cfg)
    model, tokenizer, _, started_from = load_run_model(cfg)
    assert started_from is None
    assert isinstance(model, HFBackbone) and not any("lora_" in name for name, _ in model.named_parameters())
    assert tokenizer.eos_token == "[SEP]"
    with pytest.raises(ConfigError, match="^ckpt_path=None"):
        validate_config(compose_config(["mode=eval", "model=base_scratch"]))  # model=base names its weights
