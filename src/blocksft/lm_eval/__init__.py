"""Scoring with lm-evaluation-harness: the lm-eval model ``blocksft`` and the shipped tasks.

``python -m blocksft.lm_eval --model blocksft --model_args pretrained=<run or export folder> --tasks blocksft_chains``
runs lm-eval's own command line (every flag of it) with the model registered and :data:`TASKS_DIR` as the task path.

* ``args``: the model arguments and the run config they make (as ``python train.py mode=eval`` composes it);
* ``scorer``: the model that config loads, with ``mode=eval``'s prompt template, decoder and scorer, behind plain
  ``generate`` / ``loglikelihood`` methods (no lm-eval import);
* ``model``: the lm-eval ``LM`` registered as ``blocksft``, a thin adapter over the scorer;
* ``chains``: the rows of the shipped tasks (``tasks/*.yaml``), read from the project's data configs.

Documented in ``docs/lm-eval.md``.
"""

from pathlib import Path

#: The shipped lm-eval tasks (``blocksft_chains``, ``blocksft_chains_test``, ``blocksft_chains_mc``).
TASKS_DIR = Path(__file__).resolve().parent / "tasks"

__all__ = ["TASKS_DIR"]
