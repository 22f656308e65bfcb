"""Runs: one job from config to record (``run``), its identity and folder (``identity``), reuse of finished
work, checkpoints, progress, results, redaction and the command-line helpers of ``train.py``."""
