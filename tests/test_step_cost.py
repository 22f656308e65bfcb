"""experiments/bench/step_cost.py (benchmark section 7, ``python -m experiments.bench.step_cost [overrides]``): a
config's training step timed on the run's own ``lightning.Trainer`` (clipping, EMA, accumulation as configured)
and its evaluation through the run's ``test_step`` with every decode setting of the config."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

import pytest

from experiments.bench import sections as bench_sections
from experiments.bench import step_cost
from helpers.project import ROOT

SMOKE = ("debug=smoke",)  # 16 rows per step, gen_length 64 in one block of 32 at 64 steps, no EMA, clipping 1.0


def assert_consistent(result: dict, steps: int) -> None:
    """The per-step figures add up to the totals they come from."""
    train = result["train"]
    assert len(train["wall_s"]) == len(train["cpu_s"]) == train["timed_steps"] == steps
    assert all(s > 0 for s in train["wall_s"]) and all(s > 0 for s in train["cpu_s"])
    assert train["wall_s_per_step"] == statistics.median(train["wall_s"])
    assert math.isclose(train["wall_s_per_step_mean"] * steps, sum(train["wall_s"]))
    assert sum(train["wall_s"]) <= train["fit_seconds"] + 0.005  # the timed steps are inside Trainer.fit (rounded)
    assert math.isclose(train["positions_per_s"] * train["wall_s_per_step_mean"], train["positions_per_step"])
    assert math.isclose(train["rows_per_step"] * train["mean_sequence"], train["positions_per_step"])
    evaluation = result["evaluation"]
    assert sum(c["decode_seconds"] for c in evaluation["by_block_length"].values()) <= evaluation["seconds"] + 0.005
    for cost in evaluation["by_block_length"].values():
        assert cost["problems"] == evaluation["rows"]
        # decode_seconds is rounded to 0.1 ms (a threshold decode of 2 problems takes ~3 ms): within that rounding
        seconds = cost["problems"] / cost["problems_per_second"]
        assert abs(seconds - cost["decode_seconds"]) <= 0.5e-4 + 1e-2 * seconds


@pytest.fixture(scope="module")
def section() -> dict:
    """``python -m experiments.bench --sections 7 --quick``: debug=smoke, 2 timed steps after 1, 4 problems."""
    return bench_sections.run_benchmark((7,), quick=True, seed=0, device="cpu")


@pytest.fixture(scope="module")
def exact(section) -> dict:
    return section["step_cost"]


def test_the_section_times_the_runs_trainer_step(section, exact):
    assert section["settings"]["step_cost"] == {"overrides": ("debug=smoke",), "steps": 2, "warmup": 1, "problems": 4}
    trainer = exact["trainer"]
    assert trainer["module"] == "DiffusionSFTModule" and trainer["max_steps"] == 1 + 2 + 1
    assert trainer["gradient_clip_val"] == 1.0 and trainer["precision"] == "32-true"
    assert trainer["accumulate_grad_batches"] == 1 and "EMAWeightAveraging" not in trainer["callbacks"]
    assert "StepClock" in trainer["callbacks"]
    train = exact["train"]
    assert train["micro_batches_per_step"] == [1, 1] and train["rows_per_step"] == 16
    assert (
        64 < train["mean_sequence"] <= 64 + 192
    )  # data.response_len + the batch's longest prompt (data.max_prompt_len)
    assert_consistent(exact, steps=2)
    text = bench_sections.render_markdown(section)
    assert "## 7. Training step and evaluation of a config, through the run (`seed=0 trainer.accelerator=cpu" in text
    assert "gradient clipping 1 (norm)" in text and "weight average (EMA) off" in text


def test_exact_decoding_runs_the_configured_schedule(exact):
    evaluation = exact["evaluation"]
    assert evaluation["kind"] == "decoding" and evaluation["rows"] == 4
    assert evaluation["decode"]["prefix_cache"] is False and evaluation["decode"]["confidence_threshold"] is None
    assert list(evaluation["by_block_length"]) == ["16"]
    cost = evaluation["by_block_length"]["16"]
    assert cost["nfe_per_problem"] == cost["nfe_min"] == cost["nfe_max"] == 64  # decode.steps


def test_ema_clipping_accumulation_and_block_lengths_reach_the_timed_step():
    result = step_cost.step_cost(
        [
            *SMOKE,
            "optim.ema_decay=0.9",
            "trainer.gradient_clip_val=0.25",
            "data.micro_batch_size=8",
            "decode.block_length=[16,32]",
        ],
        steps=2,
        warmup=1,
        problems=2,
    )
    trainer = result["trainer"]
    assert "EMAWeightAveraging" in trainer["callbacks"] and trainer["gradient_clip_val"] == 0.25
    assert trainer["accumulate_grad_batches"] == 2
    assert result["train"]["micro_batches_per_step"] == [2, 2] and result["train"]["rows_per_step"] == 16
    assert set(result["evaluation"]["by_block_length"]) == {"16", "32"}
    assert result["evaluation"]["decode"]["block_lengths"] == [16, 32]
    assert_consistent(result, steps=2)
    text = "\n".join(step_cost.render(result))
    assert "gradient clipping 0.25 (norm), 2 micro-batch(es) per step, weight average (EMA) on" in text
    assert "| 16 |" in text and "| 32 |" in text


def test_a_confidence_threshold_reaches_the_decoder():
    """Threshold 0.001 commits every masked position of a block at its first step (any proposal of a 625-token
    vocabulary has probability >= 1/625): one forward per block, where the exact schedule takes 64."""
    result = step_cost.step_cost(
        [*SMOKE, "decode=semi_ar_threshold", "decode.confidence_threshold=0.001"], steps=1, warmup=0, problems=2
    )
    assert result["evaluation"]["decode"]["confidence_threshold"] == 0.001
    cost = result["evaluation"]["by_block_length"]["16"]
    assert cost["nfe_per_problem"] == cost["nfe_max"] == 64 // 16
    assert_consistent(result, steps=1)


def test_the_prefix_cache_reaches_the_decoder(exact):
    """Same NFE, fewer positions fed: the cached steps of a block run on the block and what follows it."""
    result = step_cost.step_cost([*SMOKE, "decode=semi_ar_cached"], steps=1, warmup=0, problems=4)
    assert result["evaluation"]["decode"]["prefix_cache"] is True
    cached, full = result["evaluation"]["by_block_length"]["16"], exact["evaluation"]["by_block_length"]["16"]
    assert cached["nfe_per_problem"] == full["nfe_per_problem"] == 64
    assert cached["positions_fed_per_problem"] < 0.75 * full["positions_fed_per_problem"]


def test_the_command_prints_the_section_and_writes_json(tmp_path, capsys):
    out = tmp_path / "cost.json"
    assert step_cost.main([*SMOKE, "--steps", "1", "--warmup", "0", "--decode", "2", "--out", str(out)]) == 0
    assert "## 7. Training step and evaluation of a config, through the run (`debug=smoke`)" in capsys.readouterr().out
    assert json.loads(out.read_text())["train"]["timed_steps"] == 1


def test_a_bad_override_is_one_line_and_exit_2():
    done = subprocess.run(
        [sys.executable, "-m", "experiments.bench.step_cost", "strategy=no_such_strategy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stderr.startswith("config error: strategy=no_such_strategy is invalid")
    assert step_cost.main([*SMOKE, "--steps", "0"]) == 2


def test_a_pretraining_config_times_its_step_and_held_out_loss():
    result = step_cost.step_cost(["experiment=pretrain_base", *SMOKE], steps=1, warmup=0, problems=2)
    assert result["trainer"]["module"] == "DocumentLossModule"
    evaluation = result["evaluation"]
    assert evaluation["kind"] == "held-out loss" and evaluation["eval_loss"] > 0 and evaluation["by_block_length"] == {}
    assert result["train"]["mean_sequence"] == 128  # data.response_len: a document padded with EOS
    assert_consistent(result, steps=1)
    assert "Evaluation: held-out loss" in "\n".join(step_cost.render(result))
