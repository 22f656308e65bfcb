"""The README's measured figures say where they came from, and the default's are the committed measurement.

``experiments/results/default_run/default_run.json`` records one ``python train.py`` run (commit,
command, accuracy, masked tokens, wall time); the README's "Embedded default" section must quote
exactly those numbers and that commit. Every README paragraph that reports a measurement names a commit.
"""

from __future__ import annotations

import json
import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()
RECORD = ROOT / "experiments" / "results" / "default_run" / "default_run.json"
COMMIT = re.compile(r"`[0-9a-f]{7,40}`")
#: Paragraphs (by their first words) that report measured figures.
MEASUREMENT_LEADS = ("Measured on this 2-core CPU machine", "Across seeds the default", "How the default was chosen",
                     "**What the rows say**", "**Main comparison, measured**", "**Block-size consistency, measured**",
                     "**Ablations, measured**", "The prefix and controls studies reuse", "**Prefix-cached decoding",
                     "**Data path at MetaMathQA scale**", "**Where a study's time goes**", "`make benchmark`")


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else len(README)]


def paragraphs() -> list[str]:
    return [block.strip() for block in README.split("\n\n") if block.strip()]


def test_the_default_section_quotes_the_committed_measurement_and_its_commit():
    record = json.loads(RECORD.read_text())
    text = section("Embedded default")
    assert record["command"].startswith("python train.py") and f"`{record['command']}`" in text
    assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]) and f"`{record['commit'][:7]}`" in text
    assert f"{100 * record['accuracy']:.1f} %" in text
    assert f"({record['correct']} / {record['eval_size']})" in text
    assert round(record["accuracy"] * record["eval_size"]) == record["correct"]
    assert f"{record['supervised_tokens']:,}" in text
    minutes, seconds = divmod(round(record["wall_seconds"]), 60)
    assert f"{minutes} min {seconds} s" in text


def test_every_paragraph_that_reports_a_measurement_names_its_commit():
    missing = []
    blocks = paragraphs()
    for index, block in enumerate(blocks):
        reports = block.startswith(MEASUREMENT_LEADS) or (
            re.search(r"\bmeasured\b", block, re.IGNORECASE) and "not measured" not in block)
        if not reports:
            continue
        # a table's provenance is the paragraph right above it
        context = block if not block.startswith("|") else blocks[index - 1] + "\n" + block
        if not COMMIT.search(context):
            missing.append(block.splitlines()[0][:100])
    assert not missing, f"measured figures without a commit: {missing}"


def committed_intervals() -> set[str]:
    """Every paired effect in the committed study summaries, as the README writes it: ``+11.2 [6.3, 16.2]``."""
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if all(isinstance(node.get(key), (int, float)) for key in ("mean", "ci_low", "ci_high")):
                found.add(f"{100 * node['mean']:+.1f} [{100 * node['ci_low']:.1f}, {100 * node['ci_high']:.1f}]")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((ROOT / "experiments" / "results").glob("*/summary.json")):
        walk(json.loads(path.read_text()))
    return found


def test_the_studies_table_quotes_effects_of_the_committed_reports():
    """Every effect and 95 % interval in "What the studies found" is one a committed summary.json holds."""
    start = README.index("### What the studies found\n")
    section = README[start:README.index("\n**", start)]  # up to the first study's own paragraph
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    quoted = [f"{sign}{effect} [{low}, {high}]".replace("−", "-") for sign, effect, low, high in
              re.findall(r"([+−-])(\d+\.\d) (?:pts )?\[([−-]?\d+\.\d), ([−-]?\d+\.\d)\]", table)]
    assert len(quoted) >= 3, "the table quotes no effects"
    missing = set(quoted) - committed_intervals()
    assert not missing, f"effects in the README's studies table that no committed summary.json holds: {sorted(missing)}"
