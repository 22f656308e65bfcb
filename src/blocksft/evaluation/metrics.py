"""Summaries of an evaluation over its per-problem records: decoding cost and the answer-format check.

Plain functions (no Lightning), called by the module (W&B / CSV metrics) and by ``run.py``
(``results.json``):

* :func:`decode_cost` turns per-problem decoder counts (``blocksft.evaluation.decoding.DecodeStats``) and the
  decoding wall time into the cost of one decode setting: forward passes per problem (NFE), positions
  fed to the model per problem, problems/s and generated tokens/s, and the device that did it.
* :func:`format_warning` compares strict with flexible accuracy: a gap above
  :data:`FORMAT_GAP` (20 points) means the model writes its answers in another format than the
  scorer expects, so the headline ``accuracy`` understates it.
* :func:`evaluation_fields` groups both, and the termination figures
  (:mod:`blocksft.evaluation.termination`: parse failures, early EOS, lengths), for ``results.json``.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence

import torch

FORMAT_GAP = 0.20  # |strict - flexible| accuracy above this flags an answer-format mismatch

__all__ = ["FORMAT_GAP", "decode_cost", "device_description", "evaluation_fields", "format_warning"]


def device_description(device: torch.device | str) -> str:
    """``"cuda: NVIDIA H200"`` or ``"cpu: <processor> (<vector ISA torch uses>, <n> torch threads)"``: what
    the timings ran on. The ISA (``AVX2``, ``AVX512``...) chooses the CPU kernels, so two machines of one
    processor name can round differently and give different runs of one config and seed."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            processor = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), processor
            )
    except OSError:
        pass
    kernels = torch.backends.cpu.get_cpu_capability()
    return f"{device.type}: {processor} ({kernels}, {torch.get_num_threads()} torch threads)"


def decode_cost(
    nfe: Sequence[int],
    positions_fed: Sequence[int],
    answer_tokens: Sequence[int],
    seconds: float,
    gen_length: int,
    device: str,
) -> dict:
    """Cost of decoding ``len(nfe)`` problems in ``seconds`` (decoder calls only, no scoring).

    ``nfe`` / ``positions_fed``: per problem, as :class:`blocksft.evaluation.decoding.DecodeStats`;
    ``answer_tokens``: per problem, generated tokens before the first EOS. Rates use the whole
    canvas (``gen_length`` tokens per problem, what the decoder produces) and, separately, the
    answer tokens. Returns plain numbers (``None`` rates when ``seconds`` is 0).
    """
    problems = len(nfe)
    if problems == 0 or len(positions_fed) != problems or len(answer_tokens) != problems:
        raise ValueError(
            f"decode_cost: need the same non-zero number of problems, got {problems}, "
            f"{len(positions_fed)}, {len(answer_tokens)}"
        )
    rate = (lambda count: count / seconds) if seconds > 0 else (lambda count: None)
    return {
        "problems": problems,
        "nfe_per_problem": sum(nfe) / problems,
        "nfe_min": min(nfe),
        "nfe_max": max(nfe),
        "positions_fed_per_problem": sum(positions_fed) / problems,
        "decode_seconds": round(seconds, 4),
        "problems_per_second": rate(problems),
        "generated_tokens_per_second": rate(problems * gen_length),
        "answer_tokens_per_second": rate(sum(answer_tokens)),
        "device": device,
    }


def format_warning(accuracy: float | None, accuracy_flexible: float | None, gap: float = FORMAT_GAP) -> str | None:
    """The warning text when strict and flexible accuracy differ by more than ``gap``, else None."""
    if accuracy is None or accuracy_flexible is None or abs(accuracy_flexible - accuracy) <= gap:
        return None
    return (
        f"strict accuracy {accuracy:.1%} and flexible accuracy {accuracy_flexible:.1%} differ by more than "
        f"{gap:.0%}: the model writes answers in another format than the scorer expects "
        "(check data.answer_scheme against what the model was trained to write)"
    )


def evaluation_fields(
    accuracy_by_block: Mapping[int, Mapping[str, float]],
    cost_by_block: Mapping[int, dict],
    primary_block: int,
    termination_by_block: Mapping[int, Mapping] | None = None,
) -> dict:
    """The ``results.json`` fields of this module: the primary decode block's cost, every block's
    cost, the answer-format check of the primary block's accuracies, and the parse-failure rate and
    termination figures (:func:`blocksft.evaluation.termination.termination_summary`) of the primary
    block and of every block (``termination`` holds all but ``parse_failure_rate``, a field of its own)."""
    primary = accuracy_by_block.get(primary_block, {})
    warning = format_warning(primary.get("accuracy"), primary.get("accuracy_flexible"))
    termination = termination_by_block or {}
    ends = {k: {name: v for name, v in s.items() if name != "parse_failure_rate"} for k, s in termination.items()}
    failures = {k: s.get("parse_failure_rate") for k, s in termination.items()}
    return {
        "decode_cost": cost_by_block.get(primary_block),
        "decode_cost_by_decode_block": {str(k): v for k, v in cost_by_block.items()},
        "answer_format_mismatch": warning is not None,
        "answer_format_warning": warning,
        "parse_failure_rate": failures.get(primary_block),
        "parse_failure_rate_by_decode_block": {str(k): v for k, v in failures.items()},
        "termination": ends.get(primary_block),
        "termination_by_decode_block": {str(k): v for k, v in ends.items()},
    }
