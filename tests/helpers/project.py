"""Paths of the checkout under test and the configs the tests pin."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
FIXTURES = ROOT / "tests" / "fixtures"
#: The project's default before the shipped base (tiny char model, one-operation arithmetic, 32-token
#: responses, block 8): tests whose expectations are in those units (block counts, NFE) pin it.
PREVIOUS_DEFAULT = ["model=tiny", "data=arithmetic", "block=8"]
