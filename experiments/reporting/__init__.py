"""Study reports: a Hydra multirun folder -> ``report.md``, ``summary.json`` and plots.

Loading (``runs``), statistics (``stats``), the paper's claims and their verdicts (``claims``), the
summary of a sweep (``summary``), Markdown with one function per section (``render``), plots
(``plots``) and the command (``cli``: ``python experiments/report.py`` or ``python -m experiments.reporting``).
The functions below are the package's importable API; they are pure except ``write_report``.
"""

from experiments.reporting.claims import (claims, control_comparisons, verdict_block_diagonal, verdict_prefix,
                                          verdict_suffix)
from experiments.reporting.cli import main, write_report
from experiments.reporting.plots import load_loss_curve, mean_loss_curves
from experiments.reporting.runs import load_runs, normalize_run, parse_overrides, read_overrides
from experiments.reporting.stats import (aggregate, block_grid, default_keys, paired_difference, t_critical,
                                         time_breakdown, verdict_from_ci)
from experiments.reporting.summary import study_kinds, study_name, summarize

__all__ = ["aggregate", "block_grid", "claims", "control_comparisons", "default_keys", "load_loss_curve", "load_runs",
           "main", "mean_loss_curves", "normalize_run", "paired_difference", "parse_overrides", "read_overrides",
           "study_kinds", "study_name", "summarize", "t_critical", "time_breakdown", "verdict_block_diagonal",
           "verdict_from_ci", "verdict_prefix", "verdict_suffix", "write_report"]
