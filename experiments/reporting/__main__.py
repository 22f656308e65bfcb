"""``python -m experiments.reporting <sweep_dir>``: see ``experiments.reporting.cli``."""

import sys

from experiments.reporting.cli import main

sys.exit(main())
