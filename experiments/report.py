"""``python experiments/report.py <sweep_dir> [--study NAME] [--out DIR]``: the study report.

The report lives in the package ``experiments/reporting/`` (loading, statistics, claims, Markdown,
plots); this file keeps the documented command working (= ``python -m experiments.reporting``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `experiments` importable

from experiments.reporting.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
