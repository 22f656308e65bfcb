"""A run SIGKILLed mid-training and restarted with the same command ends exactly like the run that
was never interrupted: same weights (bit for bit), same results, same logged steps. The killed runs are
``train.py`` processes (a test callback SIGKILLs them); the runs they are compared with, and the restarts,
run in process (``trained_run``: each uninterrupted config once per module)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from blocksft.data.order import ShuffledBatchStream
from blocksft.folders import checkpoint_step
from blocksft.runs.checkpointing import AtomicCheckpointIO, TrainingClock, read_csv_rows
from helpers.runs import copy_run, run_in_process, run_train

# Blockwise (block-sampler pools), dropout (global RNG), several passes over 256 rows (data order).
RUN = [
    "debug=smoke",
    "strategy=blockwise",
    "model.dropout=0.1",
    "budget.value=40",
    "checkpoint.every_n_train_steps=10",
    "data.batch_size=32",
    "seed=3",
    "logger=csv",
]
KILL = ["+callbacks.kill._target_=callbacks.KillAtStep", "+callbacks.kill.step=25"]
SAME_RESULTS = [
    "status",
    "steps",
    "accuracy",
    "accuracy_by_decode_block",
    "supervised_tokens",
    "eligible_tokens",
    "final_train_loss",
    "active_block_counts",
]


def logged_losses(run_dir) -> dict[int, str]:
    with (run_dir / "csv" / "metrics.csv").open(newline="") as handle:
        return {int(row["step"]): row["train/loss"] for row in csv.DictReader(handle) if row.get("train/loss")}


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_result(trained_run, tmp_path):
    straight, crashed = trained_run(RUN), tmp_path / "crashed"

    killed = run_train([*RUN, *KILL], crashed)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (crashed / "results.json").exists()
    assert (crashed / "checkpoints" / "last.ckpt").is_file()
    checkpoint = torch.load(crashed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    killed_attempt = checkpoint["callbacks"]["TrainingClock"]["train_seconds"]
    assert killed_attempt > 0

    resumed = run_in_process(RUN, crashed)
    assert "resuming from" in resumed.log
    result = json.loads((crashed / "results.json").read_text())
    assert result["train_seconds"] > killed_attempt  # the killed attempt's training is counted
    assert result["wall_seconds"] > result["train_seconds"]

    weights = [(d / "export" / "model.safetensors").read_bytes() for d in (straight, crashed)]
    assert weights[0] == weights[1], "final weights differ from the uninterrupted run"
    results = [json.loads((d / "results.json").read_text()) for d in (straight, crashed)]
    assert {k: results[0][k] for k in SAME_RESULTS} == {k: results[1][k] for k in SAME_RESULTS}
    assert results[1]["ckpt_path"].endswith("last.ckpt")
    assert logged_losses(crashed) == logged_losses(straight)
    assert sorted(logged_losses(straight)) == list(range(0, 40))


@pytest.mark.slow
def test_a_run_with_weight_averaging_exports_the_average_and_resumes_to_the_same_bits(trained_run, tmp_path):
    """optim.ema_decay: the export and the decoded model are the moving average (not the last step's
    weights), and a SIGKILLed run resumes both the weights and their average exactly."""
    ema = [*RUN, "optim.ema_decay=0.9"]
    plain, straight, crashed = trained_run(RUN), trained_run(ema), tmp_path / "crashed"
    killed = run_train([*ema, *KILL], crashed)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_in_process(ema, crashed)
    weights = [(d / "export" / "model.safetensors").read_bytes() for d in (plain, straight, crashed)]
    assert weights[1] == weights[2] and weights[0] != weights[1]
    checkpoint = torch.load(straight / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    averaged, last = checkpoint["state_dict"], checkpoint["current_model_state"]
    key = next(k for k in averaged if k.startswith("model.") and averaged[k].is_floating_point())
    assert not torch.equal(averaged[key], last[key])  # the average differs from the last step's weights


def test_batch_stream_resumed_at_any_batch_continues_the_same_order():
    stream = ShuffledBatchStream(num_rows=50, batch_size=8, seed=7)  # 6 batches per pass, 2 rows dropped
    first = [batch for _, batch in zip(range(20), stream)]
    for start in (0, 5, 6, 13):
        resumed = ShuffledBatchStream(num_rows=50, batch_size=8, seed=7, start_batch=start)
        assert [batch for _, batch in zip(range(20 - start), resumed)] == first[start:]
        assert resumed.batch(start) == first[start]
    assert all(len(set(b)) == 8 for b in first)
    assert first[:6] != first[6:12], "each pass is a new permutation"
    assert len(set().union(*first[:6])) == 48


def test_batch_stream_ranks_split_one_global_batch():
    single = ShuffledBatchStream(num_rows=64, batch_size=8, seed=1)
    ranks = [ShuffledBatchStream(num_rows=64, batch_size=4, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for global_batch, part0, part1 in zip(
        [single.batch(i) for i in range(10)], *([r.batch(i) for i in range(10)] for r in ranks)
    ):
        assert part0 + part1 == global_batch


def test_batch_stream_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_rows"):
        ShuffledBatchStream(0, 4, 0)
    with pytest.raises(ValueError, match="rank"):
        ShuffledBatchStream(10, 4, 0, rank=2, world_size=2)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1, "the previous checkpoint must survive"


def test_csv_rows_after_the_checkpoint_step_are_dropped(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,train/loss\n0,1.0\n9,0.5\n10,0.4\n11,0.3\n")
    header, rows = read_csv_rows(path, before_step=10)
    assert header == ["step", "train/loss"] and [r["step"] for r in rows] == ["0", "9"]


def test_rows_per_optimizer_step_do_not_depend_on_devices_or_micro_batch():
    def step_rows(micro, world, accumulate, steps=12):
        streams = [
            ShuffledBatchStream(1010, micro, seed=5, rank=r, world_size=world, accumulate=accumulate)
            for r in range(world)
        ]
        micro_steps = [[s.batch(i) for s in streams] for i in range(steps * accumulate)]
        return [
            sorted(sum((sum(parts, []) for parts in micro_steps[k * accumulate : (k + 1) * accumulate]), []))
            for k in range(steps)
        ]

    single = step_rows(32, 1, 1)
    assert step_rows(8, 2, 2) == single
    assert step_rows(4, 4, 2) == single
    assert step_rows(16, 1, 2) == single


def test_checkpoint_step_does_not_read_the_weights(tmp_path):
    """Learning a checkpoint's step before resuming must not read its weights (an 8B model's are 16 GB):
    reading the step of a 64 MiB checkpoint reads far less than 64 MiB through read() (/proc/self/io)."""
    path = tmp_path / "last.ckpt"
    torch.save({"global_step": 7, "state_dict": {"w": torch.ones(16 * 1024 * 1024)}}, path)

    def rchar() -> int:  # bytes this process has read through read() and the like
        return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])

    before = rchar()
    step = checkpoint_step(path)
    read_mib = (rchar() - before) // 2**20
    assert step == 7 and read_mib < 32, f"reading the step read {read_mib} MiB of the checkpoint"


@pytest.mark.parametrize(
    "budget", [["budget.value=40"], ["budget=tokens", "budget.value=20480"]], ids=["steps", "tokens"]
)
def test_a_run_killed_while_decoding_decodes_what_it_would_have_decoded(trained_run, tmp_path, budget):
    """Killed after its last training step (``last.ckpt`` at the end) but before ``results.json``: the same
    command trains no further step and decodes and exports the same model (here the weight average, which
    lives in the checkpoint beside the last step's weights), with the same results. A token budget of
    40 steps x 32 rows x 16 eligible tokens (block 16): the budget is already spent when the run resumes. (The
    folder of a finished run with its results removed is what such a kill leaves.)"""
    run = [*[a for a in RUN if not a.startswith("budget.")], *budget, "optim.ema_decay=0.9"]
    folder = copy_run(trained_run(run), tmp_path / "run")  # steps: the weight-averaging test's uninterrupted run
    first = json.loads((folder / "results.json").read_text())
    weights = (folder / "export" / "model.safetensors").read_bytes()
    generations = (folder / "generations.jsonl").read_text()
    assert first["steps"] == 40 and checkpoint_step(folder / "checkpoints" / "last.ckpt") == 40
    for name in ("results.json", "generations.jsonl", "export/model.safetensors"):
        (folder / name).unlink()

    again = run_in_process(run, folder)
    assert "resuming from" in again.log
    second = json.loads((folder / "results.json").read_text())
    assert (folder / "export" / "model.safetensors").read_bytes() == weights, "not the model the run had trained"
    assert (folder / "generations.jsonl").read_text() == generations
    assert {k: second[k] for k in SAME_RESULTS} == {k: first[k] for k in SAME_RESULTS}


def test_the_training_clock_carries_earlier_attempts_through_the_checkpoint():
    first = TrainingClock()
    assert first.seconds() == 0.0  # not started
    first.on_train_start(None, None)
    state = first.state_dict()
    assert state["train_seconds"] >= 0.0
    second = TrainingClock()
    second.load_state_dict({"train_seconds": 12.5})
    assert second.earlier == 12.5 and second.seconds() == 12.5
    second.on_train_start(None, None)
    assert second.state_dict()["train_seconds"] >= 12.5
    third = TrainingClock()
    third.load_state_dict({})  # a checkpoint written before the clock existed
    assert third.earlier == 0.0
