"""Studies share runs: a study job whose computation another study already completed is copied, not re-run.

Several studies hold the same run under another label: the main study's ``blockwise`` and ``classical``
jobs are also the corruption-schemes study's, the from-the-base half of scratch-vs-base, and the
ablations' unmodified arm. Their configs differ only in ``LABEL_KEYS`` (``study``), which name where a
run is reported, not what it computes (a config and seed give the same run: ``experiments/results/
ablation_controls/RUN.md``). A token-budget job whose steps-budget twin spent that budget exactly is one
more such case (``run.steps_run_of_token_budget``).

* ``computation_fingerprint(view)``: the fingerprint of an identity view (``run_identity.job_identity``)
  without ``LABEL_KEYS``.
* ``find_equivalent_run(studies_root, view, here)``: the first (sorted) ``<studies_root>/<study>/<job>/``
  other than ``here`` holding a completed training run of that computation, else None.
* ``adopt_run(source, target, ...)``: copies the source's artifacts into ``target`` (copies, not links: a
  later run in ``target``, e.g. with ``skip_completed=false``, rewrites files such as ``metrics.csv`` or the
  export in place, and must not touch the source; never its ``.hydra/``, logs, evaluations or records), claims
  ``target`` for this config and writes its ``results.json``: the source's results relabelled with this
  job's study, config and fingerprint, plus ``reused_from`` (the folder, fingerprint and study of the
  run that computed it; the original one when the source was itself a copy). ``git_commit`` and the
  times stay the source's: they describe the computation. The report marks such jobs as linked.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path

from blocksft.results import RunResult, read_result, write_result
from blocksft.run_identity import RESULTS, RUN_RECORD, fingerprint, folder_record, write_run_record

log = logging.getLogger("blocksft")

#: Keys that label a run (where it is reported) without changing what it computes.
LABEL_KEYS: tuple[str, ...] = ("study",)
#: What a run folder holds that belongs to its own job, not to the computation: never copied.
NOT_COPIED = {".hydra", "eval", RUN_RECORD, RESULTS}


def computation_fingerprint(view: dict) -> str:
    """SHA-256 of an identity view without ``LABEL_KEYS``."""
    return fingerprint({key: value for key, value in view.items() if key not in LABEL_KEYS})


def find_equivalent_run(studies_root: str | Path, view: dict, here: str | Path) -> Path | None:
    """A job folder ``<studies_root>/<study>/<job>`` (not ``here``) holding a completed ``mode=train``
    run whose config equals ``view`` except for ``LABEL_KEYS``; None when there is none."""
    root, here_real = Path(studies_root), Path(os.path.realpath(here))
    if not root.is_dir():
        return None
    wanted = computation_fingerprint(view)
    for results_path in sorted(root.glob(f"*/*/{RESULTS}")):
        folder = results_path.parent
        if Path(os.path.realpath(folder)) == here_real:
            continue
        result = read_result(results_path)
        if result is None or not result.completed or result.mode != "train":
            continue
        owner = folder_record(folder)
        if owner is not None and computation_fingerprint(owner[0]) == wanted:
            return folder
    return None


def adopt_run(source: Path, target: Path, logged_config: dict, digest: str, because: str | None = None) -> RunResult:
    """Copy the completed run in ``source`` into ``target`` as this config's run (module docstring);
    returns the ``RunResult`` written to ``target/results.json``. ``because``: why a run of another
    config is this computation (``run.steps_run_of_token_budget``), kept in ``reused_from``; None: the
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
    origin = source_result.reused_from or {"dir": str(source_real), "config_fingerprint": owner[1],
                                            "study": source_result.study}
    if because is not None:
        origin = {**origin, "because": because}
    result = dataclasses.replace(source_result, study=logged_config.get("study"), config=logged_config,
                                 config_fingerprint=digest, reused_from=origin,
                                 budget=logged_config.get("budget", source_result.budget))
    write_result(target / RESULTS, result)
    log.info("reused: %s completed this computation (%s); copied to %s", origin["dir"],
             because or f"the same config but {', '.join(LABEL_KEYS)}", target)
    return result
