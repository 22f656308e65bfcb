"""Loading a sweep: one row (``Run``) per job, from its ``results.json`` (``blocksft.runs.results.RunResult``)
and, for a job that left no completed record, from its ``.hydra/overrides.yaml``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from blocksft.runs.results import RunResult, as_float, as_int, primary_decode_length

Run = dict[str, Any]
#: The status of a job folder without ``results.json``: still running, or killed (a job that raises writes a
#: failed ``results.json``); re-running the sweep's command resumes it from its ``last.ckpt``.
UNFINISHED = "unfinished"
NO_RESULTS = "no results.json: running, or killed (the sweep's command resumes it)"


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def read_overrides(job_dir: Path) -> list[str]:
    """The override strings of ``<job_dir>/.hydra/overrides.yaml`` ([] if absent or unreadable)."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except OSError:
        return []
    try:
        import yaml

        loaded = yaml.safe_load(text)
        if isinstance(loaded, list):
            return [str(item) for item in loaded]
    except Exception:  # noqa: BLE001 - fall back to a line parser
        pass
    return [_unquote(line.strip()[2:]) for line in text.splitlines() if line.strip().startswith("- ")]


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Run fields recoverable from override strings (``strategy=blockwise``, ``block='8'``, ``seed=1``,
    ``model=base_scratch``...)."""
    fields: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        key, value = key.lstrip("+~").strip(), _unquote(value)
        if key in ("strategy", "strategy.name"):
            fields["strategy"] = value
        elif key in ("block", "block.size"):
            fields["block_size"] = as_int(value)
        elif key == "seed":
            fields["seed"] = as_int(value)
        elif key in ("budget", "budget.kind"):
            fields["budget_kind"] = value
        elif key == "budget.value":
            fields["budget_value"] = as_float(value)
        elif key.endswith("prefix_mask_rate"):
            fields["prefix_mask_rate"] = as_float(value)
        elif key.endswith("suffix_mask_prob"):
            fields["suffix_mask_prob"] = as_float(value)
        elif key in ("model", "model.name"):
            fields["model"] = value
        elif key == "study":
            fields["study"] = None if value in ("null", "") else value
    return fields


def normalize_run(raw: dict[str, Any] | None, job: str, job_dir: Path, overrides: list[str]) -> Run:
    """One report row from a parsed results.json (any version; see ``RunResult.from_json``), or from None
    for a job without one (status ``unfinished``: running, or killed before it could write one). A
    completed record is read field by field; a failed or missing one is completed from the job's
    override strings."""
    result = RunResult.from_json(raw if raw is not None else {"status": "failed"})
    by_block = {
        as_int(length): accuracy for length, accuracy in result.accuracy_by_decode_block.items() if accuracy is not None
    }
    trained_elsewhere = (result.reused_from or {}).get("scope") == "training"
    run: Run = {
        "job": job,
        "dir": str(job_dir),
        "status": "completed" if result.completed else "failed" if raw is not None else UNFINISHED,
        "error": None if result.completed else result.error,
        "overrides": overrides,
        "strategy": result.strategy,
        "block_size": result.block_size,
        "decode_block_length": result.decode_block_length,
        "seed": result.seed,
        "model": _model_name(result.config),
        "budget_kind": result.budget.get("kind"),
        "budget_value": as_float(result.budget.get("value")),
        "prefix_mask_rate": as_float(result.masking.get("prefix_mask_rate")),
        "suffix_mask_prob": as_float(result.masking.get("suffix_mask_prob")),
        # EOS of the padding tail in the loss: "all" (null in the config) or how many
        "tail_eos_in_loss": "all"
        if result.masking.get("tail_eos_in_loss") is None
        else result.masking["tail_eos_in_loss"],
        "accuracy": result.accuracy,
        "accuracy_flexible": result.accuracy_flexible,
        "accuracy_by_decode_block": by_block,
        "final_train_loss": result.final_train_loss,
        "steps": result.steps,
        "supervised_tokens": result.supervised_tokens,
        "eligible_tokens": result.eligible_tokens,
        "wall_seconds": result.wall_seconds,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "git_commit": result.git_commit,
        "study": result.study,
        "eval_split": result.eval_split,
        "eval_size": result.eval_size,
        "kernel_isa": kernel_isa_of(result),
        "protocol": result.config.get("protocol") or None,
        **_training_knobs(result.config),
        # copied from another study (blocksft.runs.reuse): the whole run, or the training it decoded
        "linked_from": None if trained_elsewhere else (result.reused_from or {}).get("dir"),
        "training_from": result.reused_from["dir"] if trained_elsewhere else None,
    }
    if not result.completed:
        if run["error"] is None:
            run["error"] = NO_RESULTS if raw is None else f"status={result.status}" if result.status else "no status"
        for key, value in parse_overrides(overrides).items():  # what a failed record does not hold
            if run.get(key) is None and value is not None:
                run[key] = value
    primary = primary_decode_length(result.block_size, list(by_block)) if result.completed and by_block else None
    if primary is not None and primary != result.decode_block_length:
        _count_at_primary_length(run, result, by_block, primary)
    if not by_block and run["accuracy"] is not None and run["decode_block_length"] is not None:
        run["accuracy_by_decode_block"] = {run["decode_block_length"]: run["accuracy"]}
    run.update(_termination_at(result, run["decode_block_length"]))
    return run


#: A run's figures of how its generations end (``results.json: termination``), as report fields.
TERMINATION_FIELDS = ("early_eos_rate", "no_eos_rate", "answer_tokens_p50")


def _termination_at(result: RunResult, length: int | None) -> dict[str, float | None]:
    """The parse-failure rate, ``TERMINATION_FIELDS`` and ``eos_share_by_block`` (the share of EOS among the
    committed tokens of each answer block, a list) at decoding block ``length`` (the run's primary); None each in
    records written before they were (or of runs that decoded nothing)."""
    key = str(length)
    at_primary = length == result.decode_block_length
    ends = result.termination_by_decode_block.get(key)
    ends = ends if isinstance(ends, dict) else result.termination if at_primary else {}
    failures = result.parse_failure_rate_by_decode_block.get(key, result.parse_failure_rate if at_primary else None)
    shares = ends.get("eos_share_by_block")
    return {
        "parse_failure_rate": failures,
        **{name: as_float(ends.get(name)) for name in TERMINATION_FIELDS},
        "eos_share_by_block": [float(v) for v in shares] if isinstance(shares, list) and shares else None,
    }


def _count_at_primary_length(run: Run, result: RunResult, by_block: dict[int, float], primary: int) -> None:
    """A run scored at several decoding block lengths counts, in every table but the grid's, at its training
    block (``blocksft.runs.results.primary_decode_length``). Records written before run.py chose that length name
    the first of the list instead, so a grid's B=32 row would read as its accuracy decoded in blocks of 4."""
    flexible = {as_int(length): value for length, value in result.accuracy_flexible_by_decode_block.items()}
    run.update(decode_block_length=primary, accuracy=by_block[primary], accuracy_flexible=flexible.get(primary))


def kernel_isa_of(result: RunResult) -> str | None:
    """The CPU kernels a run computed with (``environment.kernel_isa``); for records written before runs kept
    their environment, the ATen capability named in the decoding cost's device (``"cpu: ... (AVX512, 2 torch
    threads)"`` -> ``AVX512/?``), else None."""
    if result.environment.get("kernel_isa"):
        return result.environment["kernel_isa"]
    device = result.decode_cost.get("device")
    if isinstance(device, str) and "(" in device:
        return device.rsplit("(", 1)[1].split(",")[0].strip() + "/?"
    return None


def _training_knobs(config: dict[str, Any]) -> dict[str, Any]:
    """The recorded config's tuning knobs: ``lr``, ``ema_decay`` (0 without a weight average), the loss
    ``weighting`` and the ``batch_size``."""
    optim = config.get("optim") if isinstance(config.get("optim"), dict) else {}
    optimizer = optim.get("optimizer") if isinstance(optim.get("optimizer"), dict) else {}
    objective = config.get("objective") if isinstance(config.get("objective"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    return {
        "lr": as_float(optimizer.get("lr")),
        "ema_decay": as_float(optim.get("ema_decay")) or 0.0,  # 0: the last step's weights
        "weighting": objective.get("weighting"),
        "batch_size": as_int(data.get("batch_size")),
    }


def _model_name(config: dict[str, Any]) -> str | None:
    """``config.model.name`` of a results.json's resolved config (``base``, ``base_scratch``...), else None."""
    model = config.get("model")
    name = model.get("name") if isinstance(model, dict) else None
    return name if isinstance(name, str) else None


def load_runs(sweep_dir: str | Path) -> list[Run]:
    """Every job under ``sweep_dir``: one normalised dict per ``results.json`` plus one ``unfinished``
    entry per job directory that has ``.hydra/overrides.yaml`` but no ``results.json`` (still running, or
    killed: a job that raises writes a failed ``results.json``); sorted by job path."""
    root = Path(sweep_dir)
    job_dirs: dict[Path, Path | None] = {}
    for path in _walk_files(root, {"results.json", "overrides.yaml"}):
        if path.name == "results.json":
            job_dirs[path.parent] = path
        elif path.parent.name == ".hydra":
            job_dirs.setdefault(path.parent.parent, None)
    runs = []
    real_root = root.resolve()
    for job_dir, results_path in job_dirs.items():
        if "eval" in job_dir.relative_to(root).parts[:-1]:
            continue  # <job>/eval/<settings>: a mode=eval scoring of a job, not another job
        job = job_dir.relative_to(root).as_posix()
        raw = _read_results(results_path) if results_path is not None else None
        run = normalize_run(raw, job, job_dir, read_overrides(job_dir))
        real = job_dir.resolve()
        if not real.is_relative_to(real_root):  # a symlinked job folder
            run["linked_from"] = str(real)
        runs.append(run)
    return sorted(runs, key=lambda r: r["job"])


def _read_results(path: Path) -> dict[str, Any]:
    """A parsed ``results.json``, or a failed record naming why it could not be read."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"status": "failed", "error": f"unreadable results.json: {exc}"}
    return loaded if isinstance(loaded, dict) else {"status": "failed", "error": "malformed results.json"}


def _walk_files(root: Path, names: set[str]) -> Iterable[Path]:
    """Files called one of ``names`` under ``root``, following symlinked folders (a study may link a run
    of identical configuration from another study) and visiting each real folder once."""
    seen: set[str] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        yield from (Path(folder) / name for name in files if name in names)


def completed(runs: Iterable[Run]) -> list[Run]:
    """Completed runs that have an accuracy."""
    return [r for r in runs if r["status"] == "completed" and r["accuracy"] is not None]
