"""End-to-end smoke runs of the task behind ``train.py`` (debug=smoke): train, export, decode, score, write results.
In process (``helpers.runs.run_in_process``), but the W&B run (its own service process) on the command line."""

from __future__ import annotations

import json

import pytest

from helpers.runs import SMOKE_RUN, copy_run, run_in_process, run_train

REQUIRED = {
    "strategy",
    "block_size",
    "decode_block_length",
    "seed",
    "steps",
    "supervised_tokens",
    "eligible_tokens",
    "accuracy",
    "wall_seconds",
    "accuracy_by_decode_block",
}


def read_results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.parametrize("strategy", ["classical", "blockwise"])
def test_smoke_run_writes_results_generations_checkpoint_and_export(strategy, tmp_path):
    run_in_process([f"strategy={strategy}", "block=16", "debug=smoke"], tmp_path)
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
    if strategy == "blockwise":
        assert "train/active_block_share/0" in metrics and sum(map(int, results["active_block_counts"].values())) == 160


def test_token_budget_stops_at_the_budget_and_decodes_at_several_block_lengths(tmp_path):
    args = [
        "strategy=blockwise",
        "block=8",
        "debug=smoke",
        "budget=tokens",
        "budget.value=1000",
        "budget.count=masked",
        "decode.block_length=[8,16]",
    ]
    run_in_process(args, tmp_path)
    results = read_results(tmp_path)
    assert results["supervised_tokens"] >= 1000
    assert results["steps"] < 100
    assert set(results["accuracy_by_decode_block"]) == {"8", "16"}
    assert results["decode_block_length"] == 8


def test_eval_mode_scores_a_saved_run_at_another_decode_block(smoke_run, tmp_path):
    eval_dir = tmp_path / "eval"
    run_in_process(["mode=eval", f"ckpt_path={smoke_run}", "debug=smoke", "decode.block_length=8"], eval_dir)
    results = read_results(eval_dir)
    assert results["mode"] == "eval" and results["decode_block_length"] == 8 and results["steps"] is None
    # the .ckpt path gives the same model, hence the same generations
    ckpt_dir = tmp_path / "eval_ckpt"
    run_in_process(
        ["mode=eval", f"ckpt_path={smoke_run / 'checkpoints' / 'last.ckpt'}", "debug=smoke", "decode.block_length=8"],
        ckpt_dir,
    )
    assert (ckpt_dir / "generations.jsonl").read_text() == (eval_dir / "generations.jsonl").read_text()


@pytest.mark.slow
def test_wandb_logger_runs_offline_and_closes(tmp_path):
    result = run_train(["debug=smoke", "logger=wandb"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_rerun_in_a_completed_folder_is_skipped_and_keeps_the_results(smoke_run, tmp_path):
    folder = copy_run(smoke_run, tmp_path / "run")  # a completed debug=smoke run
    first = (folder / "results.json").read_text()
    again = run_in_process(SMOKE_RUN, folder)
    assert "skipping" in again.log
    assert (folder / "results.json").read_text() == first


def test_non_finite_loss_stops_with_the_step_number():
    import torch
    from omegaconf import OmegaConf

    from blocksft.data.tokenizer import build_char_tokenizer
    from blocksft.evaluation.decoding import DecodePlan
    from blocksft.masking import ClassicalMasking
    from blocksft.models import build_model
    from blocksft.training.module import DiffusionSFTModule, NonFiniteLossError, ScheduleSettings

    tokenizer = build_char_tokenizer()
    model = build_model(
        OmegaConf.create(
            dict(
                kind="tiny",
                hidden_size=32,
                num_layers=1,
                num_heads=2,
                intermediate_size=64,
                max_position_embeddings=64,
                dropout=0.0,
            )
        ),
        tokenizer,
    )
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    module = DiffusionSFTModule(
        model,
        tokenizer,
        ClassicalMasking(mask_id=tokenizer.mask_token_id),
        optimizer=None,
        schedule=ScheduleSettings(10),
        decode=DecodePlan.of((8,), gen_length=8, steps=8),
    )
    ids = torch.randint(5, 50, (2, 12))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "response_start": torch.tensor([4, 4]),
        "loss_scope_len": torch.tensor([8, 8]),
        "index": torch.tensor([0, 1]),
    }
    with pytest.raises(NonFiniteLossError, match="at step 0"):
        module.training_step(batch, 0)


def test_the_same_command_twice_gives_the_same_bytes(smoke_run, tmp_path):
    """One config and seed on one machine is one computation: the exported weights and every generation are
    identical between two runs (across machines the CPU kernels may round differently: ``results.json`` records
    the ISA they ran on in ``decode_cost.device``)."""
    run_in_process(SMOKE_RUN, tmp_path)
    for name in ("export/model.safetensors", "generations.jsonl"):
        assert (tmp_path / name).read_bytes() == (smoke_run / name).read_bytes(), name
    assert read_results(tmp_path)["config_fingerprint"] == read_results(smoke_run)["config_fingerprint"]
