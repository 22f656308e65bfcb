"""Study reports: a Hydra multirun folder -> ``report.md``, ``summary.json`` and plots.

Loading (``runs``), statistics (``stats``), the corruption-schemes and scratch-vs-base comparisons
(``schemes``, ``pretraining``), the paper's claims and their verdicts (``claims``), the summary of a
sweep (``summary``), Markdown with one function per section (``render``), plots (``plots``), the report as one
W&B run (``wandb_report``, ``--wandb``) and the command (``cli``: ``python experiments/report.py`` or
``python -m experiments.reporting``).
The functions below are the package's importable API; they are pure except ``write_report``.
"""

from experiments.reporting.claims import (
    claims,
    control_comparisons,
    pretraining_claims,
    scheme_claims,
    verdict_block_diagonal,
    verdict_prefix,
    verdict_suffix,
)
from experiments.reporting.cli import main, write_report
from experiments.reporting.plots import load_loss_curve, mean_loss_curves
from experiments.reporting.pretraining import (
    pretraining_by_strategy,
    pretraining_comparison,
    pretraining_verdicts,
    scratch_pairs,
)
from experiments.reporting.runs import load_runs, normalize_run, parse_overrides, read_overrides
from experiments.reporting.schemes import cost_summary, scheme_comparison, scheme_pareto
from experiments.reporting.stats import (
    aggregate,
    block_grid,
    default_keys,
    difference_of_differences,
    knob_differences,
    matched_differences,
    paired_difference,
    pairing_keys,
    pareto_front,
    t_critical,
    t_interval,
    time_breakdown,
    verdict_all_above,
    verdict_from_ci,
)
from experiments.reporting.summary import study_kinds, study_name, summarize

__all__ = [
    "aggregate",
    "block_grid",
    "claims",
    "control_comparisons",
    "cost_summary",
    "default_keys",
    "difference_of_differences",
    "knob_differences",
    "load_loss_curve",
    "load_runs",
    "main",
    "matched_differences",
    "mean_loss_curves",
    "normalize_run",
    "paired_difference",
    "pairing_keys",
    "pareto_front",
    "parse_overrides",
    "pretraining_by_strategy",
    "pretraining_claims",
    "pretraining_comparison",
    "pretraining_verdicts",
    "read_overrides",
    "scheme_claims",
    "scheme_comparison",
    "scheme_pareto",
    "scratch_pairs",
    "study_kinds",
    "study_name",
    "summarize",
    "t_critical",
    "t_interval",
    "time_breakdown",
    "verdict_all_above",
    "verdict_block_diagonal",
    "verdict_from_ci",
    "verdict_prefix",
    "verdict_suffix",
    "write_report",
]
