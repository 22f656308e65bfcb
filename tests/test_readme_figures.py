"""The measured figures of the README, the documentation and the findings say where they came from.

``experiments/results/default_run/default_run.json`` records one ``python train.py`` run (commit, command,
accuracy, masked tokens, wall time); the "Embedded default" section of ``docs/data-and-models.md`` must quote
exactly those numbers and that commit. Every paragraph that reports a measurement, in the README, a page of
``docs/`` or ``experiments/results/FINDINGS.md``, names a commit. Every paired effect that the findings' table and
the README's results quote is one a committed ``summary.json`` holds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers.project import ROOT

README = ROOT / "README.md"
FINDINGS = ROOT / "experiments" / "results" / "FINDINGS.md"
DEFAULT_PAGE = ROOT / "docs" / "data-and-models.md"
RECORD = ROOT / "experiments" / "results" / "default_run" / "default_run.json"
COMMIT = re.compile(r"`[0-9a-f]{7,40}`")
#: Paragraphs (by their first words) that report measured figures.
MEASUREMENT_LEADS = (
    "Measured on this 2-core CPU machine",
    "Across seeds the default",
    "How the default was chosen",
    "**What the rows say**",
    "**Main comparison, measured**",
    "**Block-size consistency, measured**",
    "**Ablations, measured**",
    "The prefix and controls studies reuse",
    "**Prefix-cached decoding",
    "**Data path at MetaMathQA scale**",
    "**Where a study's time goes**",
    "`make benchmark`",
)
#: Leads no paragraph opens with any more; kept above so that one that does again is checked.
RETIRED_LEADS = ("Across seeds the default", "`make benchmark`")
LIST_ITEM = re.compile(r"([-*]|\d+\.) ")
EFFECT = re.compile(r"([+−-])(\d+\.\d) (?:pts )?\[([−-]?\d+\.\d), ([−-]?\d+\.\d)\]")


def measured_files() -> list[Path]:
    """Every file that holds measured figures: the README, the documentation pages and the findings."""
    return [README, FINDINGS, *sorted((ROOT / "docs").glob("*.md"))]


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def paragraphs(text: str) -> list[str]:
    return [block.strip() for block in text.split("\n\n") if block.strip()]


def test_the_default_section_quotes_the_committed_measurement_and_its_commit():
    record = json.loads(RECORD.read_text())
    text = section(DEFAULT_PAGE.read_text(), "Embedded default")
    assert record["command"].startswith("python train.py") and f"`{record['command']}`" in text
    assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]) and f"`{record['commit'][:7]}`" in text
    assert f"{100 * record['accuracy']:.1f} %" in text
    assert f"({record['correct']} / {record['eval_size']})" in text
    assert round(record["accuracy"] * record["eval_size"]) == record["correct"]
    assert f"{record['supervised_tokens']:,}" in text
    minutes, seconds = divmod(round(record["wall_seconds"]), 60)
    assert f"{minutes} min {seconds} s" in text


def provenance(blocks: list[str], index: int) -> str:
    """A paragraph with what says where its figures came from: a table's or a list's is the paragraph right
    above it, and a paragraph that ends in ':' takes the list or table it introduces."""
    block = blocks[index]
    context = block
    if (block.startswith("|") or LIST_ITEM.match(block)) and index > 0:
        context = blocks[index - 1] + "\n" + context
    if (
        block.endswith(":")
        and index + 1 < len(blocks)
        and (blocks[index + 1].startswith("|") or LIST_ITEM.match(blocks[index + 1]))
    ):
        context += "\n" + blocks[index + 1]
    return context


def test_every_paragraph_that_reports_a_measurement_names_its_commit():
    missing = []
    for path in measured_files():
        blocks = paragraphs(path.read_text())
        for index, block in enumerate(blocks):
            reports = block.startswith(MEASUREMENT_LEADS) or (
                re.search(r"\bmeasured\b", block, re.IGNORECASE) and "not measured" not in block
            )
            if reports and not COMMIT.search(provenance(blocks, index)):
                missing.append(f"{path.relative_to(ROOT)}: {block.splitlines()[0][:100]}")
    assert not missing, f"measured figures without a commit: {missing}"


def test_the_measurement_leads_still_open_paragraphs():
    """The check above finds the paragraphs it knows by their first words wherever they moved."""
    opened = {
        lead
        for path in measured_files()
        for block in paragraphs(path.read_text())
        for lead in MEASUREMENT_LEADS
        if block.startswith(lead)
    }
    assert set(MEASUREMENT_LEADS) - set(RETIRED_LEADS) <= opened, sorted(set(MEASUREMENT_LEADS) - opened)


def committed_intervals() -> set[str]:
    """Every paired effect in the committed study summaries, as the docs write it: ``+11.2 [6.3, 16.2]``."""
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


def quoted_effects(text: str) -> list[str]:
    return [f"{sign}{effect} [{low}, {high}]".replace("−", "-") for sign, effect, low, high in EFFECT.findall(text)]


def test_the_studies_table_quotes_effects_of_the_committed_reports():
    """Every effect and 95 % interval in the findings' table is one a committed summary.json holds."""
    findings = FINDINGS.read_text()
    start = findings.index("# What the studies found\n")
    head = findings[start : findings.index("\n**", start)]  # up to the first study's own paragraph
    table = "\n".join(line for line in head.splitlines() if line.startswith("|"))
    quoted = quoted_effects(table)
    assert len(quoted) >= 3, "the table quotes no effects"
    missing = set(quoted) - committed_intervals()
    assert not missing, (
        f"effects in the findings' studies table that no committed summary.json holds: {sorted(missing)}"
    )


def test_the_readme_results_quote_effects_of_the_committed_reports():
    """The README's results (its table and the line below it) quote effects a committed summary.json holds."""
    quoted = quoted_effects(section(README.read_text(), "What the studies found"))
    assert len(quoted) >= 6, "the README's results quote no effects"
    missing = set(quoted) - committed_intervals()
    assert not missing, f"effects in the README's results that no committed summary.json holds: {sorted(missing)}"
