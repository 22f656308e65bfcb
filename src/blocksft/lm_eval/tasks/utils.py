"""The ``!function utils.<name>`` entries of the task files beside this one (lm-eval imports this file by path)."""

from blocksft.lm_eval.chains import chains_dataset, chains_mc_dataset, process_results

__all__ = ["chains_dataset", "chains_mc_dataset", "process_results"]
