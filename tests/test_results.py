"""blocksft.runs.results: the results.json schema, its round trip and its tolerance of other versions."""

from __future__ import annotations

import json

from blocksft.runs.results import FAILURE_FIELDS, RunResult, primary_decode_length, read_result, write_result

COMPLETED_RECORD = {
    "status": "completed",
    "mode": "train",
    "study": "main",
    "strategy": "blockwise",
    "block_size": 8,
    "decode_block_length": 8,
    "seed": 1,
    "budget": {"kind": "steps", "value": 2000},
    "steps": 2000,
    "supervised_tokens": 10,
    "eligible_tokens": 40,
    "accuracy": 0.25,
    "accuracy_flexible": 0.5,
    "accuracy_by_decode_block": {"8": 0.25, "16": 0.125},
    "accuracy_flexible_by_decode_block": {"8": 0.5, "16": None},
    "eval_split": "validation",
    "eval_size": 16,
    "answer_scheme": "gsm8k",
    "decode_cost": {"nfe_per_problem": 32.0},
    "decode_cost_by_decode_block": {"8": {"nfe_per_problem": 32.0}},
    "answer_format_mismatch": False,
    "answer_format_warning": None,
    "parse_failure_rate": 0.25,
    "parse_failure_rate_by_decode_block": {"8": 0.25, "16": None},
    "termination": {"early_eos_rate": 0.125, "no_eos_rate": 0.0, "eos_share_by_block": [0.0, 0.5]},
    "termination_by_decode_block": {
        "8": {"early_eos_rate": 0.125, "no_eos_rate": 0.0, "eos_share_by_block": [0.0, 0.5]}
    },
    "final_train_loss": 1.5,
    "eval_loss": None,
    "init_from": {"path": "base/export", "kind": "tiny_export", "sha256": {"model.safetensors": "ab"}},
    "active_block_counts": {"0": 3},
    "dropped_rows": {},
    "num_parameters": 1000,
    "train_seconds": 1.0,
    "eval_seconds": 2.0,
    "wall_seconds": 4.0,
    "git_commit": "abc",
    "ckpt_path": None,
    "config": {"strategy": {"name": "blockwise", "masking": {"prefix_mask_rate": 0.5}}},
    "environment": {"torch": "2.13.0", "kernel_isa": "AVX512/AMX"},
    "config_fingerprint": "f" * 64,
    "decode": {"block_lengths": [8, 16], "steps": 32},
    "trained_run": None,
    "reused_from": {
        "dir": "outputs/studies/main/blockwise-B8-seed1-steps",
        "config_fingerprint": "e" * 64,
        "study": "main",
    },
}


def test_a_completed_record_round_trips_with_its_keys_in_file_order(tmp_path):
    result = RunResult.from_json(COMPLETED_RECORD)
    assert result.completed and result.block_size == 8 and result.accuracy_by_decode_block["16"] == 0.125
    assert result.masking == {"prefix_mask_rate": 0.5}
    assert list(result.to_json()) == list(COMPLETED_RECORD) and result.to_json() == COMPLETED_RECORD
    write_result(tmp_path / "results.json", result)
    assert json.loads((tmp_path / "results.json").read_text()) == COMPLETED_RECORD
    assert read_result(tmp_path / "results.json") == result


def test_unknown_keys_are_kept_and_wrong_types_become_none():
    raw = {
        **COMPLETED_RECORD,
        "nfe_per_problem": 32,
        "fingerprint_v0": False,
        "seed": "x",
        "accuracy": "n/a",
        "budget": [1],
        "accuracy_by_decode_block": {"8": 0.25, "bad": 1.0},
    }
    result = RunResult.from_json(raw)
    assert result.extra == {"nfe_per_problem": 32, "fingerprint_v0": False}
    assert (result.seed, result.accuracy, result.budget) == (None, None, {})
    assert result.accuracy_by_decode_block == {"8": 0.25}
    assert result.to_json()["nfe_per_problem"] == 32  # written back unchanged


def test_a_failed_record_holds_identity_and_error_only():
    failed = RunResult(
        status="failed",
        error="RuntimeError: boom",
        mode="train",
        strategy="classical",
        block_size=8,
        seed=0,
        git_commit="abc",
        accuracy=0.5,
    )
    assert tuple(failed.to_json()) == FAILURE_FIELDS and failed.to_json()["error"] == "RuntimeError: boom"
    partial = RunResult.from_json({"status": "failed", "error": "RuntimeError: CUDA OOM"})
    assert not partial.completed and partial.strategy is None and partial.budget == {}


def test_the_primary_decode_length_is_the_training_block_when_decoded_there():
    assert primary_decode_length(32, (4, 8, 16, 32)) == 32
    assert primary_decode_length(8, [16, 8]) == 8
    assert primary_decode_length(64, (4, 8)) == 4, "not decoded at its block: the first length"
    assert primary_decode_length(None, (16,)) == 16, "a record without a block size"


def test_read_result_of_missing_or_broken_files(tmp_path):
    assert read_result(tmp_path / "absent.json") is None
    (tmp_path / "broken.json").write_text("{not json")
    assert read_result(tmp_path / "broken.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert read_result(tmp_path / "list.json") is None


def test_the_recorded_commit_is_the_one_the_process_started_with(monkeypatch):
    """A multirun imports its code once: a commit made while its jobs run must not be recorded as theirs."""
    import subprocess

    from blocksft.runs import results as run

    heads = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: subprocess.CompletedProcess(args, 0, next(heads)))
    run.git_commit.cache_clear()
    try:
        assert run.git_commit() == "a" * 40
        assert run.git_commit() == "a" * 40  # the checkout moved on; the process's code did not
    finally:
        run.git_commit.cache_clear()
