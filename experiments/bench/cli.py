"""Run the blocksft benchmark sections on the CPU or a GPU, print the report and write it to --out.

    python -m experiments.bench [--quick] [--device auto|cpu|cuda] [--out DIR] [--model EXPORT_DIR]
                                [--sections 1,2,3,4,5,6,7] [--threads N] [--seed N]

Writes ``benchmark.json`` and ``benchmark.md`` into ``--out`` (default ``experiments/results/benchmark``,
``experiments/results/benchmark-cuda`` on a GPU; with ``--quick``, a folder under the system temp dir).
``--quick`` shrinks every size so the whole run takes seconds (a smoke test, not a measurement).
``--device auto`` (default) times on the first CUDA device when one is visible, else on the CPU.
Torch keeps its default thread count unless ``--threads N`` is given (recorded in the output; meant for
a machine busy with other work, where OpenMP threads waiting for a descheduled sibling can slow small
ops by orders of magnitude).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from experiments.bench.common import ROOT
from experiments.bench.loss_positions import LossSpec, peak_memory_probe
from experiments.bench.sections import SECTIONS, render_markdown, run_benchmark
from experiments.bench.timing import DEFAULT_THREADS, DEVICES, resolve_device

DEFAULT_OUT = {
    "cpu": ROOT / "experiments" / "results" / "benchmark",
    "cuda": ROOT / "experiments" / "results" / "benchmark-cuda",
}
QUICK_OUT = Path(tempfile.gettempdir()) / "blocksft-benchmark-quick"
#: A trained default model of study 1 (for ``--model``; sections 3, 5 and 6 use random init without it).
EXAMPLE_EXPORT = ROOT / "outputs" / "studies" / "main" / "classical-B8-seed0-steps" / "export"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds, not a measurement")
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="where the timed code runs (auto: CUDA when visible, else CPU)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default {DEFAULT_OUT['cpu'].relative_to(ROOT)}, on a GPU "
        f"{DEFAULT_OUT['cuda'].relative_to(ROOT)}; with --quick {QUICK_OUT})",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="decoding sections 3, 5 and 6: a trained export folder (save_pretrained) instead of random "
        f"init, e.g. {EXAMPLE_EXPORT.relative_to(ROOT)}",
    )
    numbers = ",".join(str(n) for n in SECTIONS)
    parser.add_argument("--sections", default=numbers, help=f"comma-separated subset of {numbers}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch intra-op threads (default: torch's default, here {DEFAULT_THREADS})",
    )
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe is None:
        try:
            args.sections = tuple(int(x) for x in args.sections.split(",") if x.strip())
        except ValueError:
            args.sections = (0,)
        if not set(args.sections) <= set(SECTIONS):
            parser.error(
                f"--sections={','.join(map(str, args.sections))}: allowed values are {', '.join(map(str, SECTIONS))}"
            )
        if args.model is not None and not (Path(args.model) / "config.json").is_file():
            parser.error(f"--model={args.model}: not a save_pretrained folder (no config.json)")
        if args.threads is not None and args.threads < 1:
            parser.error(f"--threads={args.threads}: must be >= 1")
        try:
            args.device = resolve_device(args.device)
        except ValueError as error:
            parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_probe is not None:  # internal: one peak-memory measurement in this fresh process
        request = json.loads(args.memory_probe)
        torch.set_num_threads(request["threads"])
        print(json.dumps(peak_memory_probe(LossSpec(**request["spec"]), request["kind"], request["variant"])))
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = run_benchmark(args.sections, quick=args.quick, model_path=args.model, seed=args.seed, device=args.device)
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT[args.device.type])
    out.mkdir(parents=True, exist_ok=True)
    report = render_markdown(results)
    (out / "benchmark.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "benchmark.md").write_text(report + "\n")
    print(report)
    print(f"\nwrote {out / 'benchmark.json'} and {out / 'benchmark.md'}")
    return 0
