"""model.init_from: start a run from a tiny export, a run folder, a Hugging Face folder, a peft adapter
export or a Lightning .ckpt; bad paths and mismatched vocabularies fail in one line naming the key."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from blocksft.config.validation import ConfigError, validate_config
from blocksft.data.bpe import train_bpe_tokenizer
from blocksft.data.tokenizer import build_char_tokenizer
from blocksft.models import build_model, build_tokenizer, export_model
from blocksft.models.loader import load_initial_model
from blocksft.runs.compose import compose_config
from helpers.hf_models import BERT_TARGETS, random_ids, save_tiny_bert
from helpers.runs import run_in_process, run_train

TINY = [
    "debug=smoke",
    "model=tiny",
    "model.tokenizer=auto",
    "data=arithmetic",
]  # char exports: one-operation answers fit


def tiny_cfg(*overrides: str):
    return compose_config([*TINY, *overrides])


def export_tiny(folder, tokenizer=None, seed: int = 0):
    """A tiny model (smoke sizes) with ``tokenizer`` (char by default) exported to ``folder``."""
    cfg = tiny_cfg()
    tokenizer = tokenizer or build_char_tokenizer()
    torch.manual_seed(seed)
    model = build_model(cfg.model, tokenizer)
    export_model(model, tokenizer, folder, cfg.model)
    return model


def same_weights(a, b) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


# ----------------------------------------------------------------------------- tiny exports
def test_a_tiny_export_or_its_run_folder_gives_its_weights_tokenizer_and_sha256(tmp_path):
    saved = export_tiny(tmp_path / "run" / "export")
    for given in (tmp_path / "run", tmp_path / "run" / "export"):
        cfg = tiny_cfg(f"model.init_from={given}", "model.hidden_size=64")  # sizes come from the export
        validate_config(cfg)
        model, tokenizer, model_cfg, record = load_initial_model(cfg, train=True)
        assert same_weights(model, saved) and model.training
        assert len(tokenizer) == model.config.vocab_size and model_cfg.hidden_size == saved.config.hidden_size
        digest = hashlib.sha256((tmp_path / "run" / "export" / "model.safetensors").read_bytes()).hexdigest()
        assert record == {
            "path": str((tmp_path / "run" / "export").resolve()),
            "given": str(given),
            "kind": "tiny_export",
            "weights_sha256": {"model.safetensors": digest},
        }


def test_a_bpe_export_brings_its_tokenizer_and_a_mismatched_one_fails_naming_the_key(tmp_path):
    bpe = train_bpe_tokenizer(["Mia has 7 apples. 7 + 5 = 12"] * 20, 120)
    export_tiny(tmp_path, bpe)
    model, tokenizer, _, _ = load_initial_model(tiny_cfg(f"model.init_from={tmp_path}"), train=True)
    assert tokenizer.get_vocab() == bpe.get_vocab() and model.config.vocab_size == len(bpe)
    validate_config(tiny_cfg(f"model.init_from={tmp_path}", f"model.tokenizer={tmp_path}"))  # the same vocabulary
    with pytest.raises(ConfigError) as error:
        validate_config(tiny_cfg(f"model.init_from={tmp_path}", "model.tokenizer=char"))
    message = str(error.value)
    assert message.startswith(f"model.init_from={tmp_path} is invalid: allowed weights whose vocabulary matches")
    assert "\n" not in message and "model.tokenizer=auto" in message


def test_a_lightning_checkpoint_loads_into_the_configured_model_or_names_the_mismatch(tmp_path):
    cfg = tiny_cfg()
    source = build_model(cfg.model, build_char_tokenizer())
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "last.ckpt")
    model, _, _, record = load_initial_model(tiny_cfg(f"model.init_from={tmp_path / 'last.ckpt'}"), train=True)
    assert same_weights(model, source) and record["kind"] == "lightning_ckpt"
    assert list(record["weights_sha256"]) == ["last.ckpt"]
    bpe = train_bpe_tokenizer(["7 + 5 = 12"] * 10, 110)
    bpe.save_pretrained(tmp_path / "bpe")
    with pytest.raises(
        ConfigError,
        match=r"^model.init_from=.*last.ckpt is invalid: allowed weights whose "
        r"vocabulary matches the run's tokenizer \(the checkpoint has 100 token rows",
    ):
        load_initial_model(
            tiny_cfg(f"model.init_from={tmp_path / 'last.ckpt'}", f"model.tokenizer={tmp_path / 'bpe'}"), train=True
        )
    with pytest.raises(ConfigError, match=r"allowed a checkpoint of the model the config describes"):
        load_initial_model(tiny_cfg(f"model.init_from={tmp_path / 'last.ckpt'}", "model.hidden_size=64"), train=True)


def save_run_checkpoint(run, model, model_cfg: dict | None = None):
    """``run/checkpoints/last.ckpt`` of ``model`` (Lightning's ``model.*`` keys), with a ``run_config.json``
    recording ``model_cfg`` when given."""
    (run / "checkpoints").mkdir(parents=True)
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, run / "checkpoints" / "last.ckpt"
    )
    if model_cfg is not None:
        (run / "run_config.json").write_text(json.dumps({"config": {"model": model_cfg}}))
    return run / "checkpoints" / "last.ckpt"


def test_a_checkpoint_continues_with_the_tokenizer_of_the_run_that_wrote_it(tmp_path):
    """With ``model.tokenizer=auto`` a .ckpt brings its run's tokenizer: the run's export/, else the export its
    run_config.json started from (through a chain of checkpoints), else the tokenizer folder it names."""
    bpe = train_bpe_tokenizer(["Mia has 7 apples. 7 + 5 = 12"] * 20, 120)
    base = export_tiny(tmp_path / "base" / "export", bpe)
    cfg = tiny_cfg()
    with_export = save_run_checkpoint(tmp_path / "exported", base)
    export_model(base, bpe, tmp_path / "exported" / "export", cfg.model)
    mid_run = save_run_checkpoint(tmp_path / "mid", base, {"tokenizer": "auto", "init_from": str(tmp_path / "base")})
    chained = save_run_checkpoint(tmp_path / "chained", base, {"tokenizer": "auto", "init_from": str(mid_run)})
    bpe.save_pretrained(tmp_path / "vocab")
    named = save_run_checkpoint(tmp_path / "named", base, {"tokenizer": str(tmp_path / "vocab"), "init_from": None})
    for checkpoint in (with_export, mid_run, chained, named):
        run_cfg = tiny_cfg(f"model.init_from={checkpoint}")
        validate_config(run_cfg)
        model, tokenizer, _, record = load_initial_model(run_cfg, train=True)
        assert tokenizer.get_vocab() == bpe.get_vocab() and same_weights(model, base), checkpoint
        assert record["kind"] == "lightning_ckpt"
    # a run of the character tokenizer (recorded, or no record at all) keeps it
    char_model = build_model(cfg.model, build_char_tokenizer())
    for run, record in (("char", {"tokenizer": "char", "init_from": None}), ("unrecorded", None)):
        checkpoint = save_run_checkpoint(tmp_path / run, char_model, record)
        _, tokenizer, _, _ = load_initial_model(tiny_cfg(f"model.init_from={checkpoint}"), train=True)
        assert tokenizer.get_vocab() == build_char_tokenizer().get_vocab()


@pytest.mark.parametrize(
    ("recorded", "reason"),
    [
        ({"tokenizer": "bpe", "init_from": None}, "trained a BPE tokenizer and has no export/ yet"),
        ({"tokenizer": "auto", "init_from": "/gone/base"}, "names model.init_from=/gone/base, which is gone"),
        (
            {"tokenizer": "/gone/vocab", "init_from": None},
            "names model.tokenizer=/gone/vocab, which holds no tokenizer.json",
        ),
    ],
)
def test_a_checkpoint_whose_runs_tokenizer_is_lost_fails_in_validation_naming_the_key(tmp_path, recorded, reason):
    checkpoint = save_run_checkpoint(tmp_path / "run", build_model(tiny_cfg().model, build_char_tokenizer()), recorded)
    with pytest.raises(ConfigError) as error:
        validate_config(tiny_cfg(f"model.init_from={checkpoint}"))
    message = str(error.value)
    assert message.startswith(f"model.init_from={checkpoint} is invalid: allowed a checkpoint whose run")
    assert reason in message and "\n" not in message


# ----------------------------------------------------------------------------- bad values
@pytest.mark.parametrize(
    "target, reason",
    [
        ("missing", "no such path"),
        ("notes.txt", "a file that is not a .ckpt"),
        ("empty", "a folder with neither config.json, adapter_config.json nor export/"),
    ],
)
def test_a_bad_path_fails_in_one_line_naming_the_key(tmp_path, target, reason):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as error:
        validate_config(tiny_cfg(f"model.init_from={tmp_path / target}"))
    message = str(error.value)
    assert message.startswith(f"model.init_from={tmp_path / target} is invalid: allowed an export folder")
    assert message.endswith(f"({reason})") and "\n" not in message


def test_the_wrong_model_kind_says_what_to_use_instead(tmp_path, bert_dir):
    export_tiny(tmp_path / "run" / "export")
    with pytest.raises(
        ConfigError, match=r"^model.init_from=.* is a blocksft tiny export: use model=tiny model.init_from="
    ):
        validate_config(compose_config(["model=hf_masked_lm", f"model.init_from={tmp_path / 'run'}"]))
    with pytest.raises(ConfigError, match=r"^model.init_from=.* holds a Hugging Face model: use model=hf_masked_lm"):
        validate_config(tiny_cfg(f"model.init_from={bert_dir}"))


def test_the_issue_route_hf_masked_lm_on_a_tiny_export_stops_in_one_line(tmp_path):
    """Was: NotImplementedError get_input_embeddings not auto-handled for TinyDiffusionLM (a traceback)."""
    export_tiny(tmp_path / "run" / "export")
    result = run_train(
        [
            "debug=smoke",
            "model=hf_masked_lm",
            f"model.name_or_path={tmp_path / 'run' / 'export'}",
            "model.auto_class=AutoModel",
        ],
        tmp_path / "out",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        f"config error: model.name_or_path={tmp_path / 'run' / 'export'} is invalid: allowed a Hugging "
        f"Face hub id or model folder ({tmp_path / 'run' / 'export'} is a blocksft tiny export: use "
        f"model=tiny model.init_from={tmp_path / 'run' / 'export'})"
    )
    assert not (tmp_path / "out" / "results.json").exists()


# ----------------------------------------------------------------------------- Hugging Face and LoRA
def hf(folder, *overrides: str):
    return compose_config(["model=hf_masked_lm", f"model.init_from={folder}", *overrides])


def test_a_hugging_face_folder_starts_full_or_lora_fine_tuning(bert_dir):
    from transformers import AutoModelForMaskedLM

    reference = AutoModelForMaskedLM.from_pretrained(bert_dir).eval()
    model, tokenizer, _, record = load_initial_model(hf(bert_dir), train=True)
    assert record["kind"] == "hf_export" and tokenizer.mask_token == "[MASK]"
    ids = random_ids(tokenizer)
    with torch.no_grad():
        assert torch.allclose(model.eval()(ids).logits, reference(ids).logits, atol=1e-5)
    lora, _, _, _ = load_initial_model(hf(bert_dir, "model.lora.enabled=true", BERT_TARGETS), train=True)
    trainable = [name for name, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def adapter_export(bert_dir, folder):
    """A LoRA-trained BERT saved as a peft adapter (lora_B perturbed so that it matters); its logits."""
    cfg = compose_config(
        [
            "model=hf_masked_lm",
            f"model.name_or_path={bert_dir}",
            "model.lora.enabled=true",
            BERT_TARGETS,
            "model.lora.export=adapter",
        ]
    )
    tokenizer = build_tokenizer(cfg.model)
    model = build_model(cfg.model, tokenizer).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
        logits = model(random_ids(tokenizer)).logits
    export_model(model, tokenizer, folder, cfg.model)
    return logits


def test_a_lora_adapter_export_continues_its_adapter_or_merges_for_full_fine_tuning(bert_dir, tmp_path):
    before = adapter_export(bert_dir, tmp_path / "run" / "export")
    assert (tmp_path / "run" / "export" / "adapter_config.json").is_file()
    for lora in ("true", "false"):
        model, tokenizer, _, record = load_initial_model(
            hf(tmp_path / "run", f"model.lora.enabled={lora}", BERT_TARGETS), train=True
        )
        assert record["kind"] == "peft_adapter" and list(record["weights_sha256"]) == ["adapter_model.safetensors"]
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        assert trainable and all(("lora_" in name) == (lora == "true") for name in trainable)
        with torch.no_grad():
            assert torch.allclose(model.eval()(random_ids(tokenizer)).logits, before, atol=1e-4)


def test_eval_mode_scores_an_export_named_by_init_from(bert_dir, tmp_path):
    before = adapter_export(bert_dir, tmp_path / "export")
    cfg = hf(tmp_path / "export", "mode=eval")
    validate_config(cfg)
    model, tokenizer, _, _ = load_initial_model(cfg, train=False)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    with torch.no_grad():
        assert torch.allclose(model(random_ids(tokenizer)).logits, before, atol=1e-4)
    # with ckpt_path, that is what mode=eval scores: model.init_from (model=base's default) is not read
    validate_config(
        hf(tmp_path / "export", "mode=eval", f"ckpt_path={tmp_path / 'export'}", "model.init_from=/nowhere")
    )


def test_fine_tuning_from_a_tiny_export_on_the_command_line_records_it(tmp_path):
    export_tiny(tmp_path / "base" / "export")
    run_in_process([*TINY, f"model.init_from={tmp_path / 'base'}"], tmp_path / "sft")
    results = json.loads((tmp_path / "sft" / "results.json").read_text())
    digest = hashlib.sha256((tmp_path / "base" / "export" / "model.safetensors").read_bytes()).hexdigest()
    assert results["init_from"]["weights_sha256"] == {"model.safetensors": digest}
    assert results["init_from"]["path"] == str((tmp_path / "base" / "export").resolve())
    assert (tmp_path / "sft" / "export" / "model.safetensors").is_file()
    bad = run_train(["debug=smoke", f"model.init_from={tmp_path / 'nowhere'}"], tmp_path / "bad")
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        .splitlines()[-1]
        .startswith(f"config error: model.init_from={tmp_path / 'nowhere'} is invalid")
    )


def test_eval_of_a_checkpoint_of_a_run_from_a_bpe_export_uses_the_exports_tokenizer(tmp_path):
    """``mode=eval ckpt_path=<.ckpt>`` of a run that started from an export builds the model the way the
    run did (the export's tokenizer and sizes, not the config's char tokenizer) and scores what it scored."""
    from blocksft.models.tokenizers import training_texts

    bpe = train_bpe_tokenizer(training_texts(tiny_cfg(), 500), 120)
    export_tiny(tmp_path / "base" / "export", bpe)
    start = [*TINY, f"model.init_from={tmp_path / 'base'}"]
    run_in_process(start, tmp_path / "sft")
    run_in_process(
        [*start, "mode=eval", f"ckpt_path={tmp_path / 'sft' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "eval"
    )
    results = [json.loads((tmp_path / folder / "results.json").read_text()) for folder in ("sft", "eval")]
    assert results[1]["accuracy"] == results[0]["accuracy"]


# ----------------------------------------------------------------------------- identity of the start
def test_a_run_from_saved_weights_is_identified_by_their_content_not_their_path(tmp_path):
    """Re-shipping the base (other weights at the same path) makes another computation, so a study
    re-run never skips or reuses a job trained on the old base; the same files elsewhere (a moved
    checkout) or a rewritten model card keep the identity."""
    import shutil

    from blocksft.runs.identity import INIT_DIGEST_KEY, fingerprint, identity_view, job_identity, recorded_config

    export_tiny(tmp_path / "a" / "export", seed=0)
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    export_tiny(tmp_path / "b" / "export", seed=1)

    def identity(folder):
        return job_identity(tiny_cfg(f"model.init_from={folder}"))[1]

    original = identity(tmp_path / "a")
    assert identity(tmp_path / "moved") == original
    (tmp_path / "a" / "export" / "MODEL_CARD.md").write_text("re-shipped")
    assert identity(tmp_path / "a") == original
    shutil.copy(tmp_path / "b" / "export" / "model.safetensors", tmp_path / "a" / "export" / "model.safetensors")
    assert identity(tmp_path / "a") != original

    cfg = tiny_cfg(f"model.init_from={tmp_path / 'moved'}")
    recorded = recorded_config(cfg)
    assert recorded["model"]["init_from"] == str(tmp_path / "moved") and len(recorded[INIT_DIGEST_KEY]) == 64
    assert fingerprint(identity_view(recorded)) == job_identity(cfg)[1]  # a folder's record matches its job
    assert INIT_DIGEST_KEY not in recorded_config(tiny_cfg())  # a run from random init: as before
