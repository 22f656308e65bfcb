"""Do the same command and seed give the same bytes on another CPU kernel tier? One measurement per machine kind.
``python -m experiments.diagnostics.kernel_bytes [--steps 150] [--out experiments/results/kernel_bytes]``

Trains one short run of the default (``budget.value=<steps>``, 16 problems decoded) twice: with the machine's own
kernels, and with every kernel pinned to AVX2 (``PINS``: ATen's CPU capability, MKL's conditional numerical
reproducibility, oneDNN's ISA cap), each in its own process. Writes ``<out>/<kernel tier>.json``: the machine's
``environment`` (``blocksft.evaluation.environment``), and per setting the SHA-256 of the exported weights and of the
generations, and the training seconds. Then compares with the files other machine kinds left in ``<out>``: the
pinned runs of two machines (or one machine's pinned run and an AVX2 machine's own run) with equal digests mean
a study could run across those machines with AVX2 pins at the measured cost; different digests mean it cannot,
and reports must keep pairing seeds on one kernel ISA only (``environment.kernel_isa``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from blocksft.evaluation.environment import environment
from blocksft.folders import PROJECT_ROOT, portable, read_json

#: The environment that pins every CPU kernel library to AVX2.
PINS: dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SETTINGS: dict[str, dict[str, str]] = {"own_kernels": {}, "avx2_pinned": PINS}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_once(folder: Path, steps: int, pins: dict[str, str]) -> dict:
    """One short default run into ``folder`` under ``pins``: its digests and training seconds."""
    overrides = [f"budget.value={steps}", "eval.size=16", "logger=csv", "progress.bar=false", f"hydra.run.dir={folder}"]
    env = {k: v for k, v in os.environ.items() if k not in PINS} | pins | {"WANDB_MODE": "offline"}
    subprocess.run([sys.executable, "train.py", *overrides], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)
    results = read_json(folder / "results.json") or {}
    return {
        "export_sha256": sha256(folder / "export" / "model.safetensors"),
        "generations_sha256": sha256(folder / "generations.jsonl"),
        "train_seconds": results.get("train_seconds"),
        "kernel_isa": (results.get("environment") or {}).get("kernel_isa"),
        "accuracy": results.get("accuracy"),
    }


def measure(steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: train_once(Path(tmp) / name, steps, pins) for name, pins in SETTINGS.items()}
    own, pinned = runs["own_kernels"]["train_seconds"], runs["avx2_pinned"]["train_seconds"]
    return {
        "steps": steps,
        "environment": environment(),
        "runs": runs,
        "pinned_cost": round(pinned / own, 2) if own and pinned else None,
    }


def compare(records: dict[str, dict]) -> list[str]:
    """One line per pair of machine kinds: whether their AVX2-pinned runs (or an AVX2 machine's own run) agree."""
    lines = []
    names = sorted(records)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = records[a]["runs"], records[b]["runs"]
            if records[a]["steps"] != records[b]["steps"]:
                lines.append(f"{a} vs {b}: different step counts, not comparable")
                continue
            same = ra["avx2_pinned"]["export_sha256"] == rb["avx2_pinned"]["export_sha256"]
            lines.append(f"{a} vs {b}: AVX2-pinned weights {'identical' if same else 'differ'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.diagnostics.kernel_bytes", description=__doc__)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "experiments" / "results" / "kernel_bytes")
    args = parser.parse_args(argv)
    record = measure(args.steps)
    tier = record["environment"]["kernel_isa"].replace("/", "_").split(" ")[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{tier}.json").write_text(portable(json.dumps(record, indent=2)) + "\n")
    runs = record["runs"]
    same = runs["own_kernels"]["export_sha256"] == runs["avx2_pinned"]["export_sha256"]
    print(
        f"{tier}: own kernels vs AVX2-pinned weights {'identical' if same else 'differ'}; "
        f"pinned cost x{record['pinned_cost']}"
    )
    others = {p.stem: json.loads(p.read_text()) for p in sorted(args.out.glob("*.json"))}
    for line in compare(others):
        print(line)


if __name__ == "__main__":
    main()
