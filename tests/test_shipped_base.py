"""The shipped base (experiments/base/): its files match the sha256 recorded in provenance.json, it
loads as the default run's model with its own tokenizer, and its card states its provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blocksft.config.validation import validate_config
from blocksft.models import load_exported
from blocksft.models.init_from import sha256_file
from blocksft.models.loader import load_initial_model
from blocksft.runs.compose import compose_config

BASE = Path(__file__).resolve().parents[1] / "experiments" / "base"
RECORD = json.loads((BASE / "provenance.json").read_text())


@pytest.mark.parametrize("name", sorted(RECORD["files_sha256"]))
def test_shipped_files_match_their_recorded_sha256(name):
    assert sha256_file(BASE / name) == RECORD["files_sha256"][name]


def test_the_base_is_small_and_its_provenance_complete():
    assert sum(p.stat().st_size for p in BASE.iterdir()) < 25e6
    for key in (
        "command",
        "git_commit",
        "config_fingerprint",
        "data_fingerprint",
        "steps",
        "wall_seconds",
        "final_train_loss",
        "heldout_loss",
        "num_parameters",
    ):
        assert RECORD[key] not in (None, ""), key
    card = (BASE / "MODEL_CARD.md").read_text()
    assert RECORD["command"] in card and RECORD["git_commit"] in card and RECORD["data_fingerprint"] in card
    assert "model.safetensors" in RECORD["files_sha256"]


def test_the_base_loads_with_its_tokenizer_and_is_the_default_runs_model():
    model, tokenizer = load_exported(BASE)
    assert sum(p.numel() for p in model.parameters()) == RECORD["num_parameters"]
    assert model.config.vocab_size == len(tokenizer) == RECORD["vocab_size"]
    assert len(tokenizer(" 17", add_special_tokens=False)["input_ids"]) == 1
    cfg = compose_config([])
    validate_config(cfg)
    assert Path(cfg.model.init_from).resolve() == BASE
    loaded, loaded_tokenizer, model_cfg, record = load_initial_model(cfg, train=True)
    assert record["kind"] == "tiny_export"
    assert record["weights_sha256"]["model.safetensors"] == RECORD["files_sha256"]["model.safetensors"]
    assert model_cfg.hidden_size == model.config.hidden_size and loaded_tokenizer.get_vocab() == tokenizer.get_vocab()


def test_base_scratch_is_the_same_architecture_and_ids_at_random_init():
    cfg = compose_config(["model=base_scratch"])
    validate_config(cfg)
    model, tokenizer, _, record = load_initial_model(cfg, train=True)
    base, base_tokenizer = load_exported(BASE)
    assert record is None and tokenizer.get_vocab() == base_tokenizer.get_vocab()
    assert sum(p.numel() for p in model.parameters()) == RECORD["num_parameters"]
    weights = dict(base.named_parameters())
    assert any(not (p.detach() == weights[name].detach()).all() for name, p in model.named_parameters())
