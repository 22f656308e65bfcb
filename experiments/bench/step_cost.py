"""Section 7: what a config's training step and evaluation cost, measured on the run itself.

``blocksft.runs.run.run`` (what ``train.py`` runs) trains the composed config for ``warmup + steps + 1``
optimizer steps and evaluates ``problems`` rows, so the step timed is the step of its ``lightning.Trainer``
as the run configures it (precision, gradient clipping, gradient accumulation over micro-batches, the
weight average of ``optim.ema_decay``, logging), and the evaluation is its ``test_step``: the decoder with
every ``decode.*`` setting of the config (block lengths, steps, ``prefix_cache``, ``confidence_threshold``,
``attention``), or the held-out loss of a pretraining config. A callback (``StepClock``, added to the
config's ``callbacks``) reads the wall and CPU clocks at the start of every optimizer step; a step's time
is the interval to the next one (``steps`` of them after ``warmup``; the last step only closes the
interval). CPU seconds (all threads of this process) do not depend on other jobs sharing the machine;
wall seconds do, so both are reported, with the load average. The run writes into a temporary folder
(removed afterwards) and logs nowhere (``logger=none``); the LR schedule is that of a
``warmup + steps + 1``-step budget, which changes no step's cost.

    python -m experiments.bench.step_cost [--steps 5] [--warmup 1] [--decode 16] [--out FILE] [overrides ...]
    python -m experiments.bench --sections 7          # the default config (--quick: debug=smoke)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import torch
from hydra.errors import HydraException
from omegaconf import open_dict

from blocksft.errors import ConfigError
from blocksft.runs.cli import unknown_group_option
from blocksft.runs.compose import CONF_DIR, compose_config
from blocksft.runs.run import run
from experiments.bench.render import fmt_num, fmt_time, table
from experiments.bench.timing import synchronize

CLOCK_FILE = "step_clock.json"
#: Before the caller's overrides (which may set them back): no logger, no progress output.
QUIET = ("logger=none", "progress.bar=false", "progress.every_n_steps=0")


@dataclass(frozen=True)
class StepCostSettings:
    overrides: tuple[str, ...] = ()  # the config, as on train.py's command line
    steps: int = 10
    warmup: int = 2
    problems: int = 64  # eval.size: decoded problems, or held-out documents of a pretraining config


FULL = StepCostSettings()
QUICK = StepCostSettings(overrides=("debug=smoke",), steps=2, warmup=1, problems=4)


class StepClock(L.Callback):
    """Clocks (wall, CPU) at the start of each optimizer step of ``trainer.fit`` (its first micro-batch),
    the micro-batches, rows and token positions of each step, and the trainer's settings as the run built
    it; written as JSON to ``path`` when training ends."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.marks: list[dict[str, Any]] = []
        self.trainer_settings: dict[str, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trainer_settings = {
            "precision": str(trainer.precision),
            "gradient_clip_val": trainer.gradient_clip_val,
            "gradient_clip_algorithm": trainer.gradient_clip_algorithm or "norm",
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "callbacks": [type(callback).__name__ for callback in trainer.callbacks],
            "accelerator": type(trainer.accelerator).__name__,
            "strategy": type(trainer.strategy).__name__,
            "devices": trainer.num_devices,
            "max_steps": trainer.max_steps,
            "module": type(pl_module).__name__,
        }

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, batch_idx: int
    ) -> None:
        if not self.marks or self.marks[-1]["step"] != trainer.global_step:  # the first micro-batch of a step
            synchronize(pl_module.device)
            self.marks.append(
                {
                    "step": trainer.global_step,
                    "wall": time.perf_counter(),
                    "cpu": time.process_time(),
                    "batches": 0,
                    "rows": 0,
                    "positions": 0,
                }
            )
        mark, ids = self.marks[-1], batch["input_ids"]
        mark["batches"] += 1
        mark["rows"] += ids.shape[0]
        mark["positions"] += ids.numel()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.write_text(json.dumps({"trainer": self.trainer_settings, "marks": self.marks}))


def run_overrides(overrides: Sequence[str], steps: int, warmup: int, problems: int) -> list[str]:
    """The caller's overrides, quiet, with a ``warmup + steps + 1``-step budget (checkpointed at its end only)
    and ``problems`` evaluation rows."""
    total = warmup + steps + 1
    return [
        *QUIET,
        *overrides,
        "mode=train",
        "budget=steps",
        f"budget.value={total}",
        f"checkpoint.every_n_train_steps={total}",
        f"eval.size={problems}",
    ]


@contextmanager
def lightning_quiet():
    """Lightning's info lines (devices, "max_steps reached") off while the run runs."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def step_cost(overrides: Sequence[str] = (), *, steps: int = 10, warmup: int = 2, problems: int = 64) -> dict[str, Any]:
    """Train ``warmup + steps + 1`` steps of the config and evaluate ``problems`` rows through ``run``; the
    timed steps, the trainer's settings and the evaluation's cost (per decoding block length)."""
    if steps < 1 or warmup < 0 or problems < 1:
        raise ValueError(
            f"steps={steps}, warmup={warmup}, problems={problems}: need steps >= 1, warmup >= 0, problems >= 1"
        )
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="blocksft-step-cost-") as folder:
        cfg = compose_config(run_overrides(overrides, steps, warmup, problems), folder)
        with open_dict(cfg):
            cfg.callbacks["step_clock"] = {
                "_target_": f"{StepClock.__module__}.{StepClock.__qualname__}",
                "path": str(Path(folder) / CLOCK_FILE),
            }
        with lightning_quiet():
            result = run(cfg)
        clock = json.loads((Path(folder) / CLOCK_FILE).read_text())
    marks = clock["marks"]
    if [mark["step"] for mark in marks] != list(range(warmup + steps + 1)):
        raise RuntimeError(f"step clock: steps {[mark['step'] for mark in marks]}, expected 0..{warmup + steps}")
    timed = marks[warmup : warmup + steps + 1]
    wall = [b["wall"] - a["wall"] for a, b in zip(timed, timed[1:])]
    cpu = [b["cpu"] - a["cpu"] for a, b in zip(timed, timed[1:])]
    rows = sum(mark["rows"] for mark in timed[:-1])
    positions = sum(mark["positions"] for mark in timed[:-1])
    return {
        "overrides": list(overrides),
        "run_name": cfg.run_name,
        "parameters": result.num_parameters,
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "trainer": clock["trainer"],
        "train": {
            "warmup_steps": warmup,
            "timed_steps": steps,
            "micro_batches_per_step": [mark["batches"] for mark in timed[:-1]],
            "rows_per_step": rows / steps,  # of the data loader (strategies with several rows per sample: more)
            "mean_sequence": positions / rows,  # padded: the longest prompt of a batch + data.response_len
            "positions_per_step": positions / steps,
            "wall_s": wall,
            "cpu_s": cpu,
            "wall_s_per_step": statistics.median(wall),
            "wall_s_per_step_mean": statistics.mean(wall),
            "cpu_s_per_step": statistics.median(cpu),
            "positions_per_s": positions / sum(wall),
            "fit_seconds": result.train_seconds,  # Trainer.fit in all: setup, warm-up, timed and closing steps
            "final_train_loss": result.final_train_loss,
        },
        "evaluation": {
            "kind": "held-out loss" if cfg.data.get("format") == "documents" else "decoding",
            "rows": result.eval_size,
            "seconds": result.eval_seconds,
            "eval_loss": result.eval_loss,
            "decode": result.decode,  # the settings the run decoded with, as results.json records them
            "by_block_length": result.decode_cost_by_decode_block or {},
            "accuracy_by_block_length": result.accuracy_by_decode_block or {},
        },
    }


def measure(settings: StepCostSettings, seed: int, device: torch.device, model_path: str | None) -> dict[str, Any]:
    """The section-table entry point (``experiments.bench.sections``): the settings' config with ``seed`` and
    the trainer on ``device``. ``--model`` is not used: the config says what the run starts from."""
    del model_path
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    return step_cost(
        (f"seed={seed}", f"trainer.accelerator={accelerator}", "trainer.devices=1", *settings.overrides),
        steps=settings.steps,
        warmup=settings.warmup,
        problems=settings.problems,
    )


def render(result: dict[str, Any]) -> list[str]:
    trainer, train, evaluation = result["trainer"], result["train"], result["evaluation"]
    config = " ".join(result["overrides"]) or "the default config"
    ema = "EMAWeightAveraging" in trainer["callbacks"]
    clip = trainer["gradient_clip_val"]
    clipping = f"{clip:g} ({trainer['gradient_clip_algorithm']})" if clip else "off"
    lines = [
        f"## 7. Training step and evaluation of a config, through the run (`{config}`)",
        "",
        f"`blocksft.runs.run.run` of `{result['run_name']}`: {fmt_num(result['parameters'])} parameters, "
        f"{trainer['module']}; trainer: {trainer['accelerator']}, precision {trainer['precision']}, gradient "
        f"clipping {clipping}, "
        f"{trainer['accumulate_grad_batches']} micro-batch(es) per step, weight average (EMA) "
        f"{'on' if ema else 'off'}. Torch threads {result['threads']}, load average "
        f"{', '.join(f'{x:.2f}' for x in result['load_average'])} at the end.",
        "",
    ]
    lines += table(
        [
            "timed steps (after warm-up)",
            "rows x mean sequence per step",
            "wall / step (median, mean)",
            "CPU / step (median)",
            "token positions / s",
            "timed share of Trainer.fit",
        ],
        [
            [
                f"{train['timed_steps']} (after {train['warmup_steps']})",
                f"{train['rows_per_step']:g} x {train['mean_sequence']:.0f}",
                f"{fmt_time(train['wall_s_per_step'])}, {fmt_time(train['wall_s_per_step_mean'])}",
                fmt_time(train["cpu_s_per_step"]),
                fmt_num(train["positions_per_s"]),
                f"{sum(train['wall_s']) / train['fit_seconds']:.0%}" if train["fit_seconds"] else "n/a",
            ]
        ],
    )
    if evaluation["kind"] != "decoding":
        return lines + [
            f"Evaluation: held-out loss {evaluation['eval_loss']:.4f} on {evaluation['rows']} documents "
            f"in {fmt_time(evaluation['seconds'])}.",
            "",
        ]
    decode = evaluation["decode"]
    lines += [
        f"Decoding ({evaluation['rows']} problems, `test_step`): gen_length {decode['gen_length']}, steps "
        f"{decode['steps']}, prefix cache {'on' if decode['prefix_cache'] else 'off'}, confidence threshold "
        f"{decode['confidence_threshold']}, attention {decode['attention']}.",
        "",
    ]
    rows = [
        [
            block,
            f"{cost['nfe_per_problem']:g} ({cost['nfe_min']}-{cost['nfe_max']})",
            f"{cost['positions_fed_per_problem']:,.0f}",
            fmt_time(cost["decode_seconds"]),
            f"{cost['problems_per_second']:.2f}" if cost["problems_per_second"] else "n/a",
        ]
        for block, cost in evaluation["by_block_length"].items()
    ]
    return lines + table(
        ["decode block length", "NFE / problem (min-max)", "positions fed / problem", "decode time", "problems/s"], rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.step_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps before them")
    parser.add_argument(
        "--decode",
        type=int,
        default=16,
        metavar="N",
        help="evaluation rows (eval.size): decoded problems, or held-out documents when pretraining",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON to this file")
    args, overrides = parser.parse_known_args(argv)
    if unknown := [o for o in overrides if o.startswith("-")]:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if (message := unknown_group_option(overrides, CONF_DIR)) is not None:
        print(message, file=sys.stderr)
        return 2
    try:
        result = step_cost(overrides, steps=args.steps, warmup=args.warmup, problems=args.decode)
    except (ConfigError, HydraException, ValueError) as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    print("\n".join(render(result)))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
