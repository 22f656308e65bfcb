"""``python -m experiments.bench``: see ``experiments.bench.cli``."""

import sys

from experiments.bench.cli import main

sys.exit(main())
