"""The documentation site builds with ``mkdocs build --strict``: a broken link or anchor, a missing nav file or any
other warning fails the build, and so this test. The hook (``docs/hooks.py``) brings the findings, the committed
reports and their plots into the site, so their links are checked too."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers.project import ROOT


def test_the_site_builds_strictly_with_the_findings_and_their_figures(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its end of life, not about our pages
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    findings = (site / "experiments" / "results" / "FINDINGS" / "index.html").read_text()
    assert 'src="../block_size_consistency_chains/heatmap.png"' in findings
    assert (site / "experiments" / "results" / "block_size_consistency_chains" / "heatmap.png").is_file()
    assert (site / "experiments" / "results" / "main" / "report" / "index.html").is_file()
    # a page of docs/ links to a report as on GitHub (../experiments/...); the hook points it at the site's copy
    configuration = (site / "configuration" / "index.html").read_text()
    assert 'href="../experiments/results/corruption_schemes/report/"' in configuration
