"""experiments/step_cost.py times the steps of any config as train.py builds it."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers.project import ROOT


def step_cost(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "step_cost.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_it_times_training_steps_and_a_decode_of_the_configured_run():
    result = step_cost("debug=smoke", "strategy=blockwise_all_blocks", "--steps", "2", "--decode", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    train = re.search(
        r"parameters=(\d+) batch=(\d+) sequence=(\d+) .*wall_s_per_step=([\d.]+) cpu_s_per_step=([\d.]+)", result.stdout
    )
    assert train and int(train[1]) > 0 and int(train[2]) > 0 and float(train[4]) > 0 and float(train[5]) > 0
    decode = re.search(r"decode prompts=4 .*steps=(\d+) block_length=(\d+) wall_s=([\d.]+)", result.stdout)
    assert decode and float(decode[3]) > 0


def test_a_bad_override_is_an_error_not_a_timing():
    result = step_cost("strategy=no_such_strategy", "--steps", "1")
    assert result.returncode != 0 and "no_such_strategy" in result.stderr
