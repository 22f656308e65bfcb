"""The table of benchmark sections and what runs over it: measuring the chosen sections, checking
their targets, rendering the report. A new section is one module (settings ``FULL``/``QUICK``,
``measure``, ``render``, optionally ``targets``) plus one entry in ``SECTIONS``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from experiments.bench import decoding, loss_positions, masking, prefix_cache, step_cost, threshold, throughput
from experiments.bench.render import render_machine, render_targets
from experiments.bench.timing import machine_info


@dataclass(frozen=True)
class Section:
    number: int
    key: str  # the section's key in benchmark.json
    full: Any  # settings of a measurement
    quick: Any  # settings of a seconds-long smoke run
    measure: Callable[[Any, int, torch.device, str | None], dict[str, Any]]  # (settings, seed, device, --model)
    render: Callable[[dict[str, Any]], list[str]]  # Markdown lines
    targets: Callable[[dict[str, Any]], list[dict[str, Any]]] = lambda result: []


SECTIONS: dict[int, Section] = {
    section.number: section
    for section in (
        Section(1, "masking", masking.FULL, masking.QUICK, masking.measure, masking.render, masking.targets),
        Section(
            2,
            "loss_positions",
            loss_positions.FULL,
            loss_positions.QUICK,
            loss_positions.measure,
            loss_positions.render,
            loss_positions.targets,
        ),
        Section(3, "decoding", decoding.FULL, decoding.QUICK, decoding.measure, decoding.render, decoding.targets),
        Section(4, "throughput", throughput.FULL, throughput.QUICK, throughput.measure, throughput.render),
        Section(5, "prefix_cache", prefix_cache.FULL, prefix_cache.QUICK, prefix_cache.measure, prefix_cache.render),
        Section(6, "threshold", threshold.FULL, threshold.QUICK, threshold.measure, threshold.render),
        Section(7, "step_cost", step_cost.FULL, step_cost.QUICK, step_cost.measure, step_cost.render),
    )
}


def run_benchmark(
    numbers: Sequence[int] = tuple(SECTIONS),
    *,
    quick: bool = False,
    model_path: str | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Run the chosen sections on ``device``; returns the JSON-ready result (machine, settings, targets)."""
    start = time.perf_counter()
    device = torch.device(device)
    chosen = [SECTIONS[number] for number in sorted(numbers)]
    results: dict[str, Any] = {
        "quick": quick,
        "settings": {s.key: asdict(s.quick if quick else s.full) for s in chosen},
        "machine": machine_info(device),
    }
    for section in chosen:
        results[section.key] = section.measure(section.quick if quick else section.full, seed, device, model_path)
    results["targets"] = target_checks(results)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["wall_time_s"] = time.perf_counter() - start
    return results


def target_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the sections present in ``results``, in section order."""
    return [c for s in SECTIONS.values() if s.key in results for c in s.targets(results[s.key])]


def render_markdown(results: dict[str, Any]) -> str:
    """The printed / saved report: machine, one part per section, targets."""
    lines = [f"# blocksft benchmark{' (quick)' if results['quick'] else ''}", ""] + render_machine(results)
    for section in SECTIONS.values():
        if section.key in results:
            lines += section.render(results[section.key])
    return "\n".join(lines + render_targets(results.get("targets", [])))
