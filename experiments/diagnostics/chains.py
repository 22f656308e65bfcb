"""Why a run's chain answers are wrong: ``python -m experiments.diagnostics.chains <run folder> [...]``

Reads ``<run>/generations.jsonl`` (every decoded validation problem of a ``data=chains`` or
``data=arithmetic`` run) and prints, per decoding block length, the share of answers that are

* ``correct``: the run's own strict score;
* ``well-formed``: end in ``#### n`` (the answer format was learned);
* ``steps right``: of all ``a op b = c`` lines written, those whose arithmetic is right (the skill);
* ``chained``: answers whose every line starts from the previous line's result;
* ``operands read``: answers whose first number and the operands of its lines are the numbers of the
  question, in order (reading the problem).

A base that carries the skill but not the format scores high on ``steps right`` and zero on
``well-formed``; SFT that learned the format but not the reading, the reverse of ``operands read``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

STEP = re.compile(r"(-?\d+) ([+-]) (-?\d+) = (-?\d+)")
FINAL = re.compile(r"#### -?\d+")
NUMBER = re.compile(r"\d+")


def answer_checks(prompt: str, generation: str) -> dict[str, bool | int]:
    """The checks of one answer: ``well_formed``, ``chained``, ``operands_read`` (bools) and the
    counts ``steps`` / ``steps_right`` of its ``a op b = c`` lines."""
    steps = [(int(a), op, int(b), int(c)) for a, op, b, c in STEP.findall(generation)]
    right = sum((a + b if op == "+" else a - b) == c for a, op, b, c in steps)
    chained = bool(steps) and all(steps[i][0] == steps[i - 1][3] for i in range(1, len(steps)))
    question = [int(n) for n in NUMBER.findall(prompt)]
    read = [steps[0][0], *(b for _, _, b, _ in steps)] if steps else []
    return {
        "well_formed": bool(FINAL.search(generation)),
        "chained": chained,
        "operands_read": bool(read) and read == question,
        "steps": len(steps),
        "steps_right": right,
    }


def summarize(rows: list[dict]) -> dict[int, dict[str, float]]:
    """Per ``decode_block_length``: the shares above (in [0, 1]) and the row count ``n``."""
    by_block: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_block[int(row.get("decode_block_length") or 0)].append(row)
    out = {}
    for block, group in sorted(by_block.items()):
        checks = [answer_checks(row["prompt"], row["generation"]) for row in group]
        steps = sum(c["steps"] for c in checks)
        out[block] = {
            "n": len(group),
            "correct": sum(bool(row.get("correct")) for row in group) / len(group),
            "well_formed": sum(c["well_formed"] for c in checks) / len(group),
            "steps_right": sum(c["steps_right"] for c in checks) / steps if steps else 0.0,
            "chained": sum(c["chained"] for c in checks) / len(group),
            "operands_read": sum(c["operands_read"] for c in checks) / len(group),
        }
    return out


def generations_file(run: Path) -> Path:
    """``<run>/generations.jsonl`` for a run folder, or ``run`` itself when it is a file (it may not exist)."""
    return run if run.is_file() else run / "generations.jsonl"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.diagnostics.chains", description=__doc__.splitlines()[0]
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (or generations.jsonl files)")
    args = parser.parse_args(argv)
    print("| run | decode block | n | correct | well-formed | steps right | chained | operands read |")
    print("|---|---|---|---|---|---|---|---|")
    missing = []
    for run in args.runs:
        path = generations_file(run)
        if not path.is_file():  # the other runs are still tabulated; the missing ones are named at the end
            missing.append(f"{run}: no generations.jsonl (give a finished run's folder)")
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for block, s in summarize(rows).items():
            shares = " | ".join(
                f"{100 * s[k]:.1f} %" for k in ("correct", "well_formed", "steps_right", "chained", "operands_read")
            )
            print(f"| {run} | {block} | {s['n']} | {shares} |")
    if missing:
        raise SystemExit("; ".join(missing))


if __name__ == "__main__":
    main()
