"""Studies share runs: a study job whose computation another study already completed is copied, not re-run.

Several studies hold the same run under another label: the main study's ``blockwise`` and ``classical``
jobs are also the corruption-schemes study's, the from-the-base half of scratch-vs-base, and the
ablations' unmodified arm, and the suffix ablation's visible-future arm is the controls' one. Their configs
differ only in ``LABEL_KEYS`` (``study``, ``strategy.name``), which name where and how a run is reported, not
what it computes (a config and seed give the same run: ``experiments/results/
ablation_controls/RUN.md``). A token-budget job whose steps-budget twin spent that budget exactly is one
more such case (``job.steps_run_of_token_budget``). A job whose config differs from a completed run's only
in ``EVALUATION_KEYS`` (how the trained model is decoded and scored) shares that run's training: the block-size grid's
``blockwise_b32`` and ``classical`` arms train what the main study's equal-steps jobs trained.

* ``computation_fingerprint(view)``: the fingerprint of an identity view (``run_identity.job_identity``)
  without ``LABEL_KEYS``.
* ``find_equivalent_run(studies_root, view, here)``: the first (sorted) ``<studies_root>/<study>/<job>/``
  other than ``here`` holding a completed training run of that computation, else None.
* ``adopt_run(source, target, ...)``: copies the source's artifacts into ``target`` (copies, not links: a
  later run in ``target``, e.g. with ``skip_completed=false``, rewrites files such as ``metrics.csv`` or the
  export in place, and must not touch the source; never its ``.hydra/``, logs, evaluations or records), claims
  ``target`` for this config and writes its ``results.json``: the source's results relabelled with this
  job's study, strategy name, config and fingerprint, plus ``reused_from`` (the folder, fingerprint and study
  of the run that computed it; the original one when the source was itself a copy). ``git_commit`` and the
  times stay the source's: they describe the computation. The report marks such jobs as linked.
* ``find_equivalent_run(..., scope="training")``: a completed run that trained this job's model (the same
  config but ``LABEL_KEYS`` and ``EVALUATION_KEYS``) and kept the checkpoint of its last step.
* ``adopt_training(source, target, ...)``: copies that run's training (``TRAINING_ARTIFACTS``: its last
  checkpoint and training metrics) into ``target`` and claims it; the job then resumes at its last step,
  trains nothing (the weight average is loaded: ``run.finish_resumed_at_the_end``) and decodes with its own
  settings. Its ``results.json`` says so in ``reused_from`` (``scope: training``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path

from blocksft.folders import LAST_CHECKPOINT, checkpoint_step
from blocksft.runs.identity import RESULTS, RUN_RECORD, fingerprint, folder_record, write_run_record
from blocksft.runs.results import RunResult, read_result, write_result

log = logging.getLogger("blocksft")

#: Dotted keys that label a run (where and under which name it is reported) without changing what it computes.
#: ``grid``: the block-size study's list of decoding block lengths, which reaches the run through
#: ``decode.block_length``. ``strategy.name``: the strategy's config name; what it computes is in
#: ``strategy.masking`` (the controls' ``blockwise_visible_future`` is the suffix ablation's
#: ``suffix_mask_prob=0.0``).
LABEL_KEYS: tuple[str, ...] = ("study", "grid", "strategy.name")
#: Keys that choose how a trained model is decoded and scored (``decode``; ``eval``: the split, how many problems,
#: in batches of how many), never how it is trained (tests/test_reuse.py: the same training scored otherwise
#: exports the same bytes). The tuning study (validation) and the main study (test) share no training: their
#: seeds differ; the grid (512 test problems) decodes the main study's trainings (all 1,000).
EVALUATION_KEYS: tuple[str, ...] = ("decode", "eval")
#: What a run folder holds that belongs to its own job, not to the computation: never copied.
NOT_COPIED = {".hydra", "eval", RUN_RECORD, RESULTS}
#: What ``adopt_training`` copies: the last checkpoint (weights, average, optimizer, counters) and the
#: training metrics (``metrics.csv``: the loss curves).
TRAINING_ARTIFACTS: tuple[str, ...] = ("checkpoints", "csv")
SCOPES = ("run", "training")


def without_keys(view: dict, dotted_keys: tuple[str, ...]) -> dict:
    """``view`` without the dotted keys (a shallow copy along their paths; ``view`` is not changed)."""
    trimmed = dict(view)
    for dotted in dotted_keys:
        *parents, leaf = dotted.split(".")
        node = trimmed
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                break
            node[part] = node = dict(child)
        else:
            node.pop(leaf, None)
    return trimmed


def computation_fingerprint(view: dict) -> str:
    """SHA-256 of an identity view without ``LABEL_KEYS``."""
    return fingerprint(without_keys(view, LABEL_KEYS))


def training_fingerprint(view: dict) -> str:
    """SHA-256 of an identity view without ``LABEL_KEYS`` and ``EVALUATION_KEYS``: what is trained."""
    return fingerprint(without_keys(view, (*LABEL_KEYS, *EVALUATION_KEYS)))


def kept_its_last_step(folder: Path, result: RunResult) -> bool:
    """Whether ``folder`` holds the checkpoint of the last step its run trained."""
    checkpoint = folder / LAST_CHECKPOINT
    return checkpoint.is_file() and result.steps is not None and checkpoint_step(checkpoint) == result.steps


def find_equivalent_run(studies_root: str | Path, view: dict, here: str | Path, scope: str = "run") -> Path | None:
    """A job folder ``<studies_root>/<study>/<job>`` (not ``here``) holding a completed ``mode=train``
    run whose config equals ``view`` except for ``LABEL_KEYS`` (``scope="run"``: the whole run), or except
    for ``LABEL_KEYS`` and ``EVALUATION_KEYS`` and with the checkpoint of its last step (``scope="training"``:
    the trained model); None when there is none."""
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r}: one of {', '.join(SCOPES)}")
    root, here_real = Path(studies_root), Path(os.path.realpath(here))
    if not root.is_dir():
        return None
    key = computation_fingerprint if scope == "run" else training_fingerprint
    wanted = key(view)
    for results_path in sorted(root.glob(f"*/*/{RESULTS}")):
        folder = results_path.parent
        if Path(os.path.realpath(folder)) == here_real:
            continue
        result = read_result(results_path)
        if result is None or not result.completed or result.mode != "train":
            continue
        owner = folder_record(folder)
        if owner is None or key(owner[0]) != wanted:
            continue
        if scope == "run" or kept_its_last_step(folder, result):
            return folder
    return None


def origin_of(source: Path, result: RunResult, owner_digest: str, scope: str = "run") -> dict:
    """``reused_from`` of a run (``scope="run"``) or a training (``scope="training"``) copied from ``source``:
    the run that computed it, which is the original when ``source`` was itself a copy of it (a job that only
    decoded another run's training is the original of its decoding, not of its training)."""
    prior = result.reused_from
    if prior is not None and scope == "training":
        return {key: prior[key] for key in ("dir", "config_fingerprint", "study", "git_commit") if key in prior}
    if prior is not None and prior.get("scope") != "training":
        return prior
    return {"dir": str(source), "config_fingerprint": owner_digest, "study": result.study}


def adopt_run(source: Path, target: Path, logged_config: dict, digest: str, because: str | None = None) -> RunResult:
    """Copy the completed run in ``source`` into ``target`` as this config's run (module docstring);
    returns the ``RunResult`` written to ``target/results.json``. ``because``: why a run of another
    config is this computation (``job.steps_run_of_token_budget``), kept in ``reused_from``; None: the
    configs differ only in ``LABEL_KEYS``."""
    source_real = Path(os.path.realpath(source))
    source_result = read_result(source_real / RESULTS)
    owner = folder_record(source_real)
    if source_result is None or not source_result.completed or owner is None:
        raise ValueError(f"{source} holds no completed run to reuse")
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source_real.iterdir()):
        if entry.name in NOT_COPIED or entry.suffix == ".log":
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, target / entry.name)
    write_run_record(target, logged_config, digest, source_result.git_commit)
    origin = origin_of(source_real, source_result, owner[1])
    if because is not None:
        origin = {**origin, "because": because}
    strategy = logged_config.get("strategy")
    name = strategy.get("name", source_result.strategy) if isinstance(strategy, dict) else source_result.strategy
    result = dataclasses.replace(
        source_result,
        study=logged_config.get("study"),
        strategy=name,
        config=logged_config,
        config_fingerprint=digest,
        reused_from=origin,
        budget=logged_config.get("budget", source_result.budget),
    )
    write_result(target / RESULTS, result)
    log.info(
        "reused: %s completed this computation (%s); copied to %s",
        origin["dir"],
        because or f"the same config but {', '.join(LABEL_KEYS)}",
        target,
    )
    return result


@dataclasses.dataclass(frozen=True)
class AdoptedTraining:
    """The training a job took from another run (``adopt_training``): ``origin`` is its ``reused_from``
    record; ``train_seconds`` and ``final_train_loss`` are that training's (a checkpoint written before
    the loss was kept in checkpoints holds no loss)."""

    origin: dict
    train_seconds: float | None
    final_train_loss: float | None


def adopt_training(source: Path, target: Path, logged_config: dict, digest: str, commit: str | None) -> AdoptedTraining:
    """Copy the training of the completed run in ``source`` (``TRAINING_ARTIFACTS``, replacing any of a
    previous attempt in ``target``) into ``target`` and claim ``target`` for this config; the caller then
    runs the job, which resumes at the last step and only decodes (module docstring)."""
    source_real = Path(os.path.realpath(source))
    source_result = read_result(source_real / RESULTS)
    owner = folder_record(source_real)
    if (
        source_result is None
        or not source_result.completed
        or owner is None
        or not kept_its_last_step(source_real, source_result)
    ):
        raise ValueError(f"{source} holds no completed run with the checkpoint of its last step")
    target.mkdir(parents=True, exist_ok=True)
    for name in TRAINING_ARTIFACTS:
        shutil.rmtree(target / name, ignore_errors=True)
        if (source_real / name).is_dir():
            shutil.copytree(source_real / name, target / name)
    write_run_record(target, logged_config, digest, commit)
    origin = {
        "git_commit": source_result.git_commit,
        **origin_of(source_real, source_result, owner[1], "training"),
        "scope": "training",
    }
    log.info(
        "training reused: %s trained this model (the same config but %s); copied to %s, which decodes it",
        origin["dir"],
        ", ".join((*LABEL_KEYS, *EVALUATION_KEYS)),
        target,
    )
    return AdoptedTraining(origin, source_result.train_seconds, source_result.final_train_loss)
