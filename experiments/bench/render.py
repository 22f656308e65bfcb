"""Markdown pieces shared by the sections, the machine table and the whole report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt_time(seconds: float) -> str:
    """Seconds with a readable unit and 3 significant digits."""
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_num(value: float) -> str:
    """A number with 3 significant digits and SI suffix for large values."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value:.3g}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table and the blank line after it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def median_time(entry: dict[str, Any], name: str) -> str:
    """Formatted median time of ``entry["time"][name]``."""
    return fmt_time(entry["time"][name]["median_s"])


def check(name: str, value: Any, goal: str, ok: bool) -> dict[str, Any]:
    """One target with its measured value, a display string and whether it is met."""
    if isinstance(value, bool):
        shown = str(value).lower()
    elif "speed-up" in name:
        shown = f"{value:.2f}x"
    elif "%" in goal:
        shown = f"{value:.2%}"
    else:
        shown = f"{value:.2e}"
    return {"target": name, "value": value, "shown": shown, "goal": goal, "met": bool(ok)}


def render_machine(results: dict[str, Any]) -> list[str]:
    """The machine table (and the GPU row on a CUDA run), the timing method, a warning when shared."""
    machine = results["machine"]
    loads = " / ".join(
        ", ".join(f"{x:.2f}" for x in machine[key])
        for key in ("load_average_at_start", "load_average_at_end")
        if key in machine
    )
    gpu = machine.get("gpu")
    gpu_rows = (
        [
            [
                "GPU (timed device)",
                f"{gpu['name']}, {gpu['memory_gib']:.0f} GiB, compute capability "
                f"{gpu['capability']}, CUDA {gpu['cuda_version']}",
            ]
        ]
        if gpu
        else []
    )
    lines = table(
        ["machine", ""],
        [
            ["CPU", machine["cpu_model"]],
            *gpu_rows,
            ["logical cores (usable)", f"{machine['logical_cores']} ({machine['cpu_affinity']})"],
            ["ISA flags", ", ".join(machine["isa_flags"]) or "-"],
            [
                "torch (intra-op threads used / torch default)",
                f"{machine['torch_version']} ({machine['torch_threads']} / {machine['torch_default_threads']})",
            ],
            ["python", machine["python_version"]],
            ["load average (1, 5, 15 min) at start / end", loads],
            ["wall time of the run", fmt_time(results["wall_time_s"])],
        ],
    )
    method = "Timings: median of interleaved repetitions after warm-up (`time.perf_counter`"
    method += ", `torch.cuda.synchronize` before and after each)." if gpu else ")."
    lines += [method, ""]
    # the load at the end includes the benchmark's own threads; only the rest is other work
    own = machine.get("torch_threads") or 0
    busy = max(machine["load_average_at_start"][0], machine.get("load_average_at_end", [0.0])[0] - own)
    if busy >= 0.75 * (machine["cpu_affinity"] or machine["logical_cores"] or 1):
        lines += [
            f"**Warning:** the machine was shared with other work (1-min load average from other work up to "
            f"{busy:.2f} on {machine['cpu_affinity']} usable cores): absolute timings are inflated and noisy; "
            "the side-by-side ratios are less affected but not immune.",
            "",
        ]
    return lines


def render_targets(checks: Sequence[dict[str, Any]]) -> list[str]:
    if not checks:
        return []
    return ["## Targets", ""] + table(
        ["target", "measured", "goal", "met"], [[c["target"], c["shown"], c["goal"], verdict(c["met"])] for c in checks]
    )
