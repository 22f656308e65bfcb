"""Tools for a model or a run, beside the benchmark (``experiments.bench``) and the reports
(``experiments.reporting``); each is a command and has its test:

    python -m experiments.diagnostics.probe_skill <init_from> [overrides]   # the chain task's facts a base knows
    python -m experiments.diagnostics.chains <run folder> [...]             # where a run's chain answers fail
    python -m experiments.diagnostics.ship_base <pretraining run>           # its export -> experiments/base + card
"""
