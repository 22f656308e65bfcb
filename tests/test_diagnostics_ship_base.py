"""experiments/diagnostics/ship_base.py (``python -m experiments.diagnostics.ship_base <run> --to <folder>``) on a
stand-in: a smoke pretraining run shipped into a temporary folder (``experiments/base/`` is never touched).
The shipped folder holds the export, a provenance that its files, the run and the corpus match, and a card
that states them; it is a base a run starts from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from blocksft.models import load_exported
from blocksft.models.init_from import sha256_file
from blocksft.models.loader import load_initial_model
from blocksft.runs.compose import compose_config
from experiments.diagnostics import ship_base
from helpers.runs import run_train

OVERRIDES = ["experiment=pretrain_base", "debug=smoke", "model.tokenizer=bpe"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> tuple[Path, Path]:
    """(the pretraining run, the folder it was shipped to)."""
    run = tmp_path_factory.mktemp("pretrain")
    done = run_train(OVERRIDES, run)
    assert done.returncode == 0, done.stderr[-3000:]
    target = tmp_path_factory.mktemp("ship") / "base"
    target.mkdir()
    (target / "stale.txt").write_text("a file of the previous base")
    ship_base.main([str(run), "--to", str(target), "--note", "shipped by the test"])
    return run, target


def test_the_export_is_shipped_with_its_provenance_and_card(shipped):
    run, target = shipped
    exported = sorted(p.name for p in (run / "export").iterdir())
    assert sorted(p.name for p in target.iterdir()) == sorted([*exported, "provenance.json", "MODEL_CARD.md"])
    record = json.loads((target / "provenance.json").read_text())
    results = json.loads((run / "results.json").read_text())
    assert record["files_sha256"] == {name: sha256_file(run / "export" / name) for name in exported}
    assert record["command"] == "python train.py " + " ".join(OVERRIDES)
    assert record["steps"] == results["steps"] == 10 and record["num_parameters"] == results["num_parameters"]
    assert (
        record["config_fingerprint"] == results["config_fingerprint"] and record["git_commit"] == results["git_commit"]
    )
    assert record["heldout_loss"] == results["eval_loss"] > 0 and record["config"] == results["config"]
    assert record["note"] == "shipped by the test"
    card = (target / "MODEL_CARD.md").read_text()
    for value in (
        record["command"],
        record["git_commit"],
        record["data_fingerprint"],
        record["files_sha256"]["model.safetensors"],
        "shipped by the test",
    ):
        assert value in card


def test_the_data_fingerprint_is_the_recorded_corpus(shipped):
    _, target = shipped
    record = json.loads((target / "provenance.json").read_text())
    source = record["config"]["data"]["source"]
    assert ship_base.data_fingerprint(source) == record["data_fingerprint"]
    assert ship_base.data_fingerprint({**source, "seed": source["seed"] + 1}) != record["data_fingerprint"]


def test_a_run_starts_from_the_shipped_base(shipped):
    _, target = shipped
    record = json.loads((target / "provenance.json").read_text())
    model, tokenizer = load_exported(target)
    assert sum(p.numel() for p in model.parameters()) == record["num_parameters"]
    assert model.config.vocab_size == len(tokenizer) == record["vocab_size"]
    cfg = compose_config(["debug=smoke", f"model.init_from={target}", "model.tokenizer=auto"])
    _, _, _, started_from = load_initial_model(cfg, train=True)
    assert started_from["kind"] == "tiny_export"
    assert started_from["weights_sha256"]["model.safetensors"] == record["files_sha256"]["model.safetensors"]


def test_an_unfinished_run_is_refused_before_the_current_base_is_touched(shipped, tmp_path):
    run, target = shipped
    failed = tmp_path / "failed"
    shutil.copytree(run / "export", failed / "export")
    (failed / "results.json").write_text(json.dumps({"status": "failed", "error": "killed"}))
    before = {p.name: sha256_file(p) for p in target.iterdir()}
    with pytest.raises(SystemExit, match="status 'failed'; ship only a completed pretraining run"):
        ship_base.main([str(failed), "--to", str(target)])
    with pytest.raises(SystemExit, match="no export"):
        ship_base.main([str(tmp_path / "nothing"), "--to", str(target)])
    assert {p.name: sha256_file(p) for p in target.iterdir()} == before
