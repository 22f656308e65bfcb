"""Each study in multirun_sweeps/ composes into the expected jobs, and every job's config is valid."""

from __future__ import annotations

import copy
import functools
import itertools
import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from blocksft.config.validation import decode_block_lengths, validate_config
from blocksft.runs.compose import compose_config
from helpers.project import ROOT
from helpers.studies import EVAL_ONLY, EXPECTED_JOBS, STUDY_OF, sweep_jobs


@functools.cache
def composed_job(study: str, job: tuple[str, ...]):
    """The composed config of one job of ``study`` (``+sweep=<study>`` and the job's overrides), composed once
    per module: composition is most of these tests' time, and several tests read the same jobs."""
    return compose_config([f"+sweep={study}", *job])


def job_config(study: str, job: tuple[str, ...]):
    """A private copy of :func:`composed_job` (a test may change its config)."""
    return copy.deepcopy(composed_job(study, job))


def study_configs(study: str, *extra: str) -> list:
    """The configs of every job of ``study``, in the sweeper's order, each with ``extra`` overrides."""
    return [job_config(study, (*job, *extra)) for job in sweep_jobs(study)]


def protocols(configs) -> set[str]:
    """The distinct declared protocols of ``configs``, each as sorted JSON."""
    return {json.dumps(OmegaConf.to_container(c.protocol), sort_keys=True) for c in configs}


def test_every_study_file_is_listed():
    assert sorted(p.stem for p in (ROOT / "multirun_sweeps").glob("*.yaml")) == sorted(EXPECTED_JOBS)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> str:
    """A folder that passes ``ckpt_path``'s path-kind check for evaluation: a run folder holding export/."""
    run_dir = tmp_path_factory.mktemp("trained_run")
    (run_dir / "export").mkdir()
    (run_dir / "export" / "config.json").write_text("{}")
    return str(run_dir)


@pytest.mark.parametrize("study", sorted(EXPECTED_JOBS))
def test_study_composes_into_the_expected_valid_jobs(study, trained_run):
    jobs = sweep_jobs(study)
    assert len(jobs) == EXPECTED_JOBS[study]
    names = set()
    trained = [f"ckpt_path={trained_run}"] if study in EVAL_ONLY else []
    for cfg in study_configs(study, *trained):
        validate_config(cfg)
        assert cfg.study == STUDY_OF.get(study, study)
        names.add((cfg.run_name, cfg.budget.kind, cfg.decode.get("confidence_threshold")))
    assert len(names) == len(jobs), "two jobs of a study would share an output folder"


@pytest.mark.parametrize("study", sorted(EXPECTED_JOBS))
def test_sweep_folder_resolves_before_any_job_runs(study):
    """The sweeper resolves hydra.sweep.dir before jobs start, when hydra:runtime is not set yet."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"+sweep={study}"], return_hydra_config=True)
    assert OmegaConf.select(cfg, "hydra.sweep.dir") == f"outputs/studies/{STUDY_OF.get(study, study)}"


def test_block_size_study_scores_every_model_on_the_whole_grid_with_a_classical_control():
    strategies = set()
    for cfg in study_configs("block_size_consistency"):
        assert decode_block_lengths(cfg) == tuple(cfg.grid)
        assert cfg.data.response_len in cfg.grid  # and one block over the whole response
        strategies.add((cfg.strategy.name, cfg.block.size if cfg.strategy.name == "blockwise" else None))
        assert cfg.data.response_len >= 4 * cfg.block.size or cfg.strategy.name == "classical"
    assert strategies == {("blockwise", b) for b in (4, 8, 16)} | {("classical", None)}
    default_steps = compose_config([]).budget.value
    assert {cfg.budget.value for cfg in study_configs("block_size_consistency")} == {default_steps}


def test_threshold_study_decodes_one_trained_run_exactly_and_at_each_threshold(trained_run):
    from blocksft.config.validation import ConfigError

    with pytest.raises(ConfigError, match="^ckpt_path=None is invalid: allowed a run directory"):
        validate_config(compose_config(["+sweep=threshold_decoding", "model=base_scratch"]))  # model=base names weights
    cfgs = study_configs("threshold_decoding", f"ckpt_path={trained_run}")
    assert {cfg.mode for cfg in cfgs} == {"eval"} and {cfg.decode.remasking for cfg in cfgs} == {"low_confidence"}
    assert [cfg.decode.confidence_threshold for cfg in cfgs] == [None, 0.5, 0.7, 0.9, 0.95]
    assert len({(cfg.decode.steps, cfg.decode.block_length, cfg.eval.size, cfg.eval.split) for cfg in cfgs}) == 1


def test_corruption_schemes_study_runs_every_scheme_at_the_default_block_under_both_budgets():
    cfgs = study_configs("corruption_schemes")
    schemes = {"classical", "blockwise", "blockwise_all_blocks", "blockwise_complementary", "blockwise_block_causal"}
    assert {(cfg.strategy.name, cfg.budget.kind, cfg.seed) for cfg in cfgs} == set(
        itertools.product(schemes, ("steps", "tokens"), range(5))
    )
    assert {cfg.block.size for cfg in cfgs} == {compose_config([]).block.size}
    assert {cfg.model.name for cfg in cfgs} == {compose_config([]).model.name}


def test_scratch_vs_base_study_runs_the_main_comparison_from_the_base_and_from_scratch():
    cfgs = study_configs("scratch_vs_base")
    assert {(cfg.strategy.name, cfg.model.name, cfg.seed) for cfg in cfgs} == set(
        itertools.product(("classical", "blockwise"), ("base", "base_scratch"), range(5))
    )
    assert {cfg.model.name: cfg.model.init_from is None for cfg in cfgs} == {"base": False, "base_scratch": True}
    assert {cfg.budget.kind for cfg in cfgs} == {"steps"}
    assert {cfg.block.size for cfg in cfgs} == {compose_config([]).block.size}
    assert all(cfg.model.name in cfg.run_name for cfg in cfgs)  # the job folder names the model


def computations(study: str) -> dict[tuple, str]:
    """(strategy name, prefix rate, suffix probability, budget kind, seed) -> the computation fingerprint
    (``reuse``: the run's identity without its labels) of each job of ``study``."""
    from blocksft.runs.identity import job_identity
    from blocksft.runs.reuse import computation_fingerprint

    out = {}
    for cfg in study_configs(study):
        masking = cfg.strategy.masking
        key = (
            cfg.strategy.name,
            masking.get("prefix_mask_rate"),
            masking.get("suffix_mask_prob"),
            cfg.budget.kind,
            cfg.seed,
        )
        out[key] = computation_fingerprint(job_identity(cfg)[0])
    return out


def test_the_ablations_share_the_runs_their_files_say_they_share():
    """The ablations' unmodified arm is one run (the suffix ablation's suffix_mask_prob=1.0), and the controls'
    visible-future arm is the suffix ablation's suffix_mask_prob=0.0: the same computation, so ``reuse_runs``
    copies it. Every other arm is a computation of its own. (The main study scores the test split, the
    ablations of the previous default the validation split: they share no run with it.)"""
    studies = {study: computations(study) for study in ("ablation_suffix", "ablation_prefix", "ablation_controls")}
    for seed in range(3):
        method = studies["ablation_suffix"][("blockwise", 0.0, 1.0, "steps", seed)]
        assert studies["ablation_prefix"][("blockwise", 0.0, 1.0, "steps", seed)] == method
        assert studies["ablation_controls"][("blockwise", 0.0, 1.0, "steps", seed)] == method
        assert (
            studies["ablation_controls"][("blockwise_visible_future", 0.0, 0.0, "steps", seed)]
            == studies["ablation_suffix"][("blockwise", 0.0, 0.0, "steps", seed)]
        )
    known: set = set()
    new = {}
    for study in ("ablation_suffix", "ablation_prefix", "ablation_controls"):  # the order the README runs them
        new[study] = set(studies[study].values()) - known
        known |= new[study]
    assert {study: len(jobs) for study, jobs in new.items()} == {
        "ablation_suffix": 9,
        "ablation_prefix": 17,  # 4 rates x 5 seeds, less the 3 unmodified runs of the suffix ablation
        "ablation_controls": 6,
    }


@pytest.mark.parametrize("study", sorted(EXPECTED_JOBS))
def test_a_declared_protocol_matches_what_the_sweep_runs(study, trained_run):
    """A study file that declares a protocol sweeps only its seeds, and its jobs score the split the protocol
    reads, at least ``min_eval_size`` problems."""
    trained = [f"ckpt_path={trained_run}"] if study in EVAL_ONLY else []
    configs = study_configs(study, *trained)
    declared = [OmegaConf.to_container(cfg.protocol) for cfg in configs if cfg.get("protocol")]
    if not declared:
        pytest.skip(f"{study} declares no protocol (a study of the previous default task)")
    assert len(declared) == len(configs) and all(p == declared[0] for p in declared), "one study, one protocol"
    protocol = declared[0]
    assert {cfg.seed for cfg in configs} <= set(protocol["seeds"])
    for cfg in configs:
        assert cfg.eval.split == protocol["split"]
        size = cfg.eval.size if cfg.eval.size is not None else cfg.data.source.sizes[cfg.eval.split]
        assert size >= protocol["min_eval_size"]


def test_the_main_study_files_run_every_declared_pair():
    """main.yaml and main_arms.yaml are one study: together they run both arms of every declared comparison at
    every seed it declares."""
    configs = study_configs("main") + study_configs("main_arms")
    assert {c.study for c in configs} == {"main"}
    assert len(protocols(configs)) == 1
    ran = {(c.strategy.name, c.seed) for c in configs}
    protocol = configs[0].protocol
    for name, comparison in protocol.family.items():
        for seed in comparison.get("seeds") or protocol.seeds:
            for arm in (comparison.treatment, comparison.control):
                assert (arm.strategy, seed) in ran, f"{name}: {arm.strategy} seed {seed} is never run"


def test_equal_tokens_and_updates_gives_classical_the_eligible_tokens_of_blockwise_at_the_same_steps():
    blockwise = job_config("main", ("seed=0", "+arm=blockwise"))
    classical = job_config("main_arms", ("seed=0", "+arm=classical_equal_updates"))
    assert classical.budget == blockwise.budget and classical.budget.kind == "steps"
    assert classical.data.batch_size * classical.data.response_len == blockwise.data.batch_size * blockwise.block.size


def test_classical_arms_share_the_classical_tuned_setting():
    classical = job_config("main", ("seed=0", "+arm=classical"))
    for arm in ("classical_one_block", "classical_elbo", "classical_equal_updates"):
        other = job_config("main_arms", ("seed=0", f"+arm={arm}"))
        assert other.optim == classical.optim, arm
    one_block = job_config("main", ("seed=0", "+arm=classical_one_block"))
    assert decode_block_lengths(one_block) == (one_block.data.response_len,)


def test_the_main_arms_extension_tunes_each_extra_classical_arm_around_its_inherited_learning_rate():
    """tuning_main_arms.yaml is part of the tuning study (same protocol, validation, seeds 100-101): the ELBO and
    batch-8 arms, each over learning rates that bracket the classical setting they inherit, at EMA 0.995."""
    base, extra = study_configs("tuning"), study_configs("tuning_main_arms")
    assert {c.study for c in extra} == {"tuning"} and {c.eval.split for c in extra} == {"validation"}
    assert protocols(extra) == protocols(base[:1])
    inherited = job_config("main_arms", ("seed=0", "+arm=classical_elbo")).optim.optimizer.lr
    grid = {(c.strategy.name, c.optim.optimizer.lr, c.optim.ema_decay, c.seed) for c in extra}
    assert grid == {
        (arm, lr, 0.995, seed)
        for arm in ("classical_elbo", "classical_equal_updates")
        for lr in (1e-3, 2e-3, 4e-3, 8e-3)
        for seed in (100, 101)
    }
    assert min(g[1] for g in grid) < inherited < max(g[1] for g in grid)
    by_arm = {c.strategy.name: c for c in extra}
    assert (
        by_arm["classical_elbo"].objective.weighting == "elbo"
        and by_arm["classical_equal_updates"].data.batch_size == 8
    )
    assert {c.run_name for c in extra}.isdisjoint({c.run_name for c in base + study_configs("tuning_classical_edge")})


def test_tuning_sweeps_both_arms_over_learning_rate_and_weight_average_on_validation():
    configs = study_configs("tuning")
    grid = {(c.strategy.name, c.optim.optimizer.lr, c.optim.ema_decay, c.seed) for c in configs}
    assert len(grid) == 32 and {c.eval.split for c in configs} == {"validation"}
    assert {g[1] for g in grid} == {5e-4, 1e-3, 2e-3, 4e-3}  # 2e-3, seed 100's best for both arms, is inside
    assert {g[0] for g in grid} == {"classical", "blockwise"} and {g[2] for g in grid} == {None, 0.995}


def test_the_classical_edge_extends_only_classical_one_learning_rate_past_the_tuning_grid():
    """tuning_classical_edge.yaml is part of the tuning study: classical's grid gains 8e-3 (its best, 4e-3, was
    the highest tried), with the same weight averages, seeds, split and protocol; blockwise's grid is unchanged."""
    base, edge = study_configs("tuning"), study_configs("tuning_classical_edge")
    assert {c.study for c in edge} == {"tuning"} and {c.eval.split for c in edge} == {"validation"}
    assert protocols(base + edge) == protocols(base[:1])
    lrs = {c.optim.optimizer.lr for c in base}
    assert {(c.strategy.name, c.optim.optimizer.lr, c.optim.ema_decay, c.seed) for c in edge} == {
        ("classical", 8e-3, ema, seed) for ema in (None, 0.995) for seed in (100, 101)
    }
    assert max(lrs) < 8e-3 and {c.run_name for c in edge}.isdisjoint({c.run_name for c in base})
