"""The code follows pyproject.toml's ``[tool.ruff]``: ``ruff check .`` and ``ruff format --check .`` find nothing.
(Excluded there: virtual environments, run outputs, and the upstream LLaDA/Dream modelling code copied into
the remote-code fixtures.)"""

from __future__ import annotations

import subprocess
import sys

from helpers.project import ROOT


def ruff(*args: str) -> subprocess.CompletedProcess:
    """``ruff <args> .`` at the repository root (no cache written into the checkout)."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_check_finds_nothing():
    done = ruff("check", "--output-format=concise")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr


def test_ruff_format_would_change_nothing():
    done = ruff("format", "--check")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr
