"""End-to-end smoke runs of ``train.py`` (debug=smoke): train, export, decode, score, write results."""

from __future__ import annotations

import json

import pytest
from conftest import run_train

REQUIRED = {"strategy", "block_size", "decode_block_length", "seed", "steps", "supervised_tokens",
            "eligible_tokens", "accuracy", "wall_seconds", "accuracy_by_decode_block"}


def read_results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.parametrize("strategy", ["classical", "blockwise"])
def test_smoke_run_writes_results_generations_checkpoint_and_export(strategy, tmp_path):
    result = run_train([f"strategy={strategy}", "block=16", "debug=smoke"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(tmp_path)
    assert REQUIRED <= results.keys()
    assert results["strategy"] == strategy and results["block_size"] == 16 and results["steps"] == 10
    assert 0.0 <= results["accuracy"] <= 1.0
    assert 0 < results["supervised_tokens"] <= results["eligible_tokens"]
    rows = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == results["eval_size"] == 16
    assert {"prompt", "generation", "extracted", "target", "correct"} <= rows[0].keys()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "export" / "model.safetensors").is_file()
    metrics = (tmp_path / "csv" / "metrics.csv").read_text()
    for name in ("train/loss", "train/mask_rate", "train/supervised_tokens", "train/eligible_tokens", "val/accuracy"):
        assert name in metrics


def test_token_budget_stops_at_the_budget_and_decodes_at_several_block_lengths(tmp_path):
    args = ["strategy=blockwise", "block=8", "debug=smoke", "budget=tokens", "budget.value=1000",
            "budget.count=masked", "decode.block_length=[8,16]"]
    result = run_train(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(tmp_path)
    assert results["supervised_tokens"] >= 1000
    assert results["steps"] < 100
    assert set(results["accuracy_by_decode_block"]) == {"8", "16"}
    assert results["decode_block_length"] == 8


def test_eval_mode_scores_a_saved_run_at_another_decode_block(tmp_path):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    assert run_train(["debug=smoke", "block=16"], train_dir).returncode == 0
    result = run_train(["mode=eval", f"ckpt_path={train_dir}", "debug=smoke", "decode.block_length=8"], eval_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(eval_dir)
    assert results["mode"] == "eval" and results["decode_block_length"] == 8 and results["steps"] is None
    # the .ckpt path gives the same model, hence the same generations
    ckpt_dir = tmp_path / "eval_ckpt"
    result = run_train(["mode=eval", f"ckpt_path={train_dir / 'checkpoints' / 'last.ckpt'}", "debug=smoke",
                        "decode.block_length=8"], ckpt_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (ckpt_dir / "generations.jsonl").read_text() == (eval_dir / "generations.jsonl").read_text()


def test_wandb_logger_runs_offline_and_closes(tmp_path):
    result = run_train(["debug=smoke", "logger=wandb"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "wandb").glob("offline-run-*"))
