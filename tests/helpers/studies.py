"""The studies of ``multirun_sweeps/``: how many jobs each sweeps, and their override lists."""

from __future__ import annotations

from experiments.campaign_status import sweep_overrides
from experiments.run_studies import CAMPAIGN

EXPECTED_JOBS = {
    "main": 30,  # blockwise, classical, classical decoded in one block x 10 seeds
    "main_arms": 10,  # classical with ELBO weighting, classical at equal tokens and updates x 5 seeds
    "budgets": 24,  # 2 arms x 4 step budgets x 3 seeds
    "block_size_consistency": 20,  # blockwise at 4, 8, 16 + classical, x 5 seeds
    "ablation_prefix": 20,  # 4 rates x 5 seeds
    "ablation_suffix": 9,  # 3 probabilities x 3 seeds
    "ablation_controls": 12,  # 4 variants x 3 seeds
    "threshold_decoding": 5,  # eval only: exact + 4 confidence thresholds, one trained model
    "corruption_schemes": 50,  # 5 schemes x 2 budgets x 5 seeds
    "scratch_vs_base": 20,  # 2 strategies x 2 models (base, base_scratch) x 5 seeds
    "eos_supervision": 18,  # 2 arms x tail_eos_in_loss in {all, 0, 1} x 3 seeds
    "tuning": 32,  # 2 strategies x 4 learning rates x 2 weight averages x 2 seeds
    "tuning_classical_edge": 4,  # classical at lr 8e-3 x 2 weight averages x 2 seeds
    "tuning_main_arms": 16,  # classical with ELBO weighting and at batch 8 x 4 learning rates x 2 seeds
}
EVAL_ONLY = {"threshold_decoding"}  # studies that decode a trained run (ckpt_path) instead of training one
#: Sweep files that add jobs to another file's study (its protocol, its folder): the campaign's extra files.
STUDY_OF = {sweep: study for study, sweeps in CAMPAIGN.items() for sweep in sweeps if sweep != study}


def sweep_jobs(study: str) -> list[list[str]]:
    """The override lists ``python train.py -m +sweep=<study>`` launches (Hydra's basic sweeper over the composed
    params: a file that takes another's defaults inherits the axes it does not set)."""
    return sweep_overrides(study)[1]
