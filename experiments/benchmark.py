"""``python experiments/benchmark.py`` (``make benchmark``): the same command as ``python -m experiments.bench``.

The benchmark lives in the package ``experiments/bench/`` (one module per section); this file keeps
the script path of the committed reports' commands working.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `experiments` importable

from experiments.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
