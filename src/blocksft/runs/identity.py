"""What a run *is*, so that runs never mislabel, shadow or overwrite each other.

* ``job_identity(cfg)``: the resolved config without the keys that cannot change a result (output
  paths, loggers, progress display, cache and worker settings: ``IGNORED_KEYS``), redacted, and its
  SHA-256 ``fingerprint``. ``short_hash`` (8 hex digits) names folders. A run that starts from saved
  weights (``model.init_from``) is identified by their content digest (``INIT_DIGEST_KEY``), not their
  path: re-shipping the base makes every job a new computation (never skipped or reused on the old one).
  Any other path inside the checkout is identified relative to it, so a job's identity names no machine.
  ``recorded_config(cfg)`` is the config a run records, with that digest.
* ``RUN_RECORD`` (``run_config.json``) is written into a run folder when the run starts: the resolved
  config and its fingerprint. A folder belongs to the config that wrote it; ``check_folder`` refuses
  (``ConfigError``, one line naming the differing keys) any other config, so a job is never skipped,
  resumed or overwritten on the strength of another config's files.
* ``apply_run_record(cfg)``: ``mode=eval`` of a recorded run takes strategy, block, seed, study and
  model from that run's record (never ``model.trust_remote_code``, which stays an explicit opt-in);
  ``eval_dir`` names its folder ``<run>/eval/<decode settings>-<hash>``.
* ``register_resolvers()``: ``${config_hash:}`` and ``${job_dir:<path>}`` for ``conf/hydra``. Resolvers only
  compute (a folder name, a hash); they never validate or exit, so resolving a config in a notebook is safe.
  The job is validated once, by ``blocksft.runs.job.plan_job``, which also removes a folder Hydra created
  for a rejected job.
  Also ``${project_root:}``: the repository holding ``src/blocksft``, so files shipped with the
  project (the pretrained base) are found from any working directory.
  ``${metric_prefix:<split>}`` names the evaluated split's metrics (``eval.name``), and
  ``${product:a,b,...}`` multiplies (``conf/budget/tokens.yaml`` computes its token budget from steps,
  batch and block).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from blocksft.config.validation import decode_block_lengths
from blocksft.errors import ConfigError
from blocksft.folders import PROJECT_ROOT, RESULTS, RUN_RECORD, portable, read_json
from blocksft.models.init_from import content_digest, resolve_init_source
from blocksft.runs.redact import redact

#: Dotted keys that do not change what a run computes: where it writes, how it logs and shows progress,
#: how data is cached or loaded in parallel, how often it checkpoints (resume is exact), and the extra
#: ``callbacks`` (observers such as a weight digest, or a test's kill switch: a run resumed without the
#: callback that crashed it is the same run; a callback that changes training must go in a real key), the
#: study's declared ``protocol`` (how its runs are compared, not what one computes) and the ``diagnostics``
#: (measurements during training that leave its weights as they are: tests/test_decode_view.py).
IGNORED_KEYS: tuple[str, ...] = (
    "hydra",
    "paths",
    "logger",
    "progress",
    "skip_completed",
    "reuse_runs",
    "resume",
    "run_name",
    "checkpoint",
    "callbacks",
    "protocol",
    "diagnostics",
    "trainer.default_root_dir",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "data.num_workers",
    "data.num_proc",
    "data.cache_dir",
    "data.source.cache_dir",
    # the paper presets' evaluation data (``eval.benchmark.data``, a data group of its own)
    "eval.benchmark.data.num_workers",
    "eval.benchmark.data.num_proc",
    "eval.benchmark.data.cache_dir",
    "eval.benchmark.data.source.cache_dir",
)
#: Keys added after runs were recorded, with the value they had implicitly before: at that value they
#: are left out of the fingerprint, so earlier runs and study folders keep their identity.
IMPLICIT_DEFAULTS: dict[str, Any] = {"decode.attention": "full", "optim.ema_decay": None}
#: ``_target_`` paths of classes that moved, mapped to the path runs recorded before the move: the identity
#: holds the old path, so a moved class is the same computation (``tests/test_record_fingerprints.py``).
MOVED_TARGETS: dict[str, str] = {
    "blocksft.masking.AllBlocksMasking": "blocksft.multirow.AllBlocksMasking",
    "blocksft.masking.ComplementaryMasking": "blocksft.multirow.ComplementaryMasking",
}
#: Keys ``mode=eval`` takes from the evaluated run's record (what was trained, and its labels).
TRAINED_KEYS: tuple[str, ...] = ("strategy", "block", "seed", "study", "model")


IGNORED_VALUE = "<not part of the fingerprint>"
#: Root key of a run's logged config: the content digest of the weights ``model.init_from`` names
#: (``models.init_from.content_digest``). With it, the identity view holds what the run starts from
#: instead of where it lay: a re-shipped base is another computation, a moved checkout the same one.
INIT_DIGEST_KEY = "init_from_sha256"

# ----------------------------------------------------------------------------------- fingerprint


def _recorded_values(node, key: str | None = None):
    """A rebuilt copy of ``node`` with every ``_target_`` in ``MOVED_TARGETS`` replaced by the path recorded
    before the move, and every path inside this checkout written relative to it (``folders.portable``): a
    file shipped with the project (``${project_root:}/experiments/base``) is the same input in any clone, and
    a kept record, whose paths are made portable, still hashes to the fingerprint its run recorded."""
    if isinstance(node, dict):
        return {name: _recorded_values(value, name) for name, value in node.items()}
    if isinstance(node, list):
        return [_recorded_values(value) for value in node]
    if isinstance(node, str):
        return portable(MOVED_TARGETS.get(node, node) if key == "_target_" else node)
    return node


def identity_view(container: dict) -> dict:
    """A copy of a resolved config container without ``IGNORED_KEYS``, without the ``IMPLICIT_DEFAULTS`` at
    their default value, with moved classes under their recorded ``_target_`` (``MOVED_TARGETS``) and paths
    inside the checkout relative to it."""
    view = _recorded_values(container)
    for dotted in (*IGNORED_KEYS, *IMPLICIT_DEFAULTS):
        *parents, leaf = dotted.split(".")
        node = view
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and (dotted not in IMPLICIT_DEFAULTS or node.get(leaf) == IMPLICIT_DEFAULTS[dotted]):
            node.pop(leaf, None)
    if view.get(INIT_DIGEST_KEY) and isinstance(view.get("model"), dict):
        view["model"].pop("init_from", None)
    return view


def init_from_digest(cfg: DictConfig) -> str | None:
    """The content digest of ``model.init_from``; None when unset or not a valid source (validation
    names the key)."""
    value = cfg.model.get("init_from") if isinstance(cfg.get("model"), DictConfig) else None
    if value is None:
        return None
    try:
        return content_digest(resolve_init_source(value))
    except (ConfigError, OSError):
        return None


def recorded_config(cfg: DictConfig) -> dict:
    """The resolved, redacted config a run records (``run_config.json``, ``results.json``, loggers), with
    ``INIT_DIGEST_KEY`` when the run starts from saved weights."""
    container = redact(OmegaConf.to_container(cfg, resolve=True))
    if (digest := init_from_digest(cfg)) is not None:
        container[INIT_DIGEST_KEY] = digest
    return container


def fingerprint(view: dict) -> str:
    """SHA-256 of the canonical JSON of an identity view."""
    return hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode()).hexdigest()


def short_hash(digest: str) -> str:
    return digest[:8]


def job_identity(cfg: DictConfig) -> tuple[dict, str]:
    """(identity view, fingerprint) of a composed config. The ignored keys are neutralised before
    resolving, so this works before Hydra knows the output folder (``paths.output_dir`` is not
    resolved): an ignored group is removed, an ignored value becomes a placeholder (a value that
    interpolates it, e.g. ``eval.benchmark.data.source.cache_dir: ${data.cache_dir}``, then resolves to the
    same placeholder for every run), and the ignored keys are dropped from the resolved view."""
    pruned = copy.deepcopy(cfg)
    with open_dict(pruned):
        for dotted in IGNORED_KEYS:
            parent, _, leaf = dotted.rpartition(".")
            node = OmegaConf.select(pruned, parent) if parent else pruned
            if isinstance(node, DictConfig) and leaf in node:
                if isinstance(node._get_node(leaf), DictConfig | ListConfig):
                    del node[leaf]
                else:
                    node[leaf] = IGNORED_VALUE
    view = identity_view(recorded_config(pruned))  # pruned keeps model.init_from: the same digest
    return view, fingerprint(view)


def differing_keys(old: dict, new: dict, limit: int = 3) -> str:
    """``a.b: 1 -> 2, c: x -> (unset)``: the first ``limit`` leaf keys whose values differ."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    keys = sorted(k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k, _UNSET) != flat_new.get(k, _UNSET))
    shown = [f"{k}: {_show(flat_old.get(k, _UNSET))} -> {_show(flat_new.get(k, _UNSET))}" for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


_UNSET = object()


def _show(value) -> str:
    return "(unset)" if value is _UNSET else json.dumps(value, default=str)


def _flatten(node, prefix: str = "") -> dict:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


# ---------------------------------------------------------------------------------------- records


def folder_record(folder: str | Path) -> tuple[dict, str] | None:
    """(identity view, fingerprint) of the run that owns ``folder``: its ``run_config.json``, else the
    config a ``results.json`` of an older version recorded; None for a folder no run has claimed."""
    for name in (RUN_RECORD, RESULTS):
        record = read_json(Path(folder) / name)
        if record is not None and isinstance(record.get("config"), dict):
            view = identity_view(record["config"])
            return view, record.get("config_fingerprint") or fingerprint(view)
    return None


def write_run_record(folder: Path, config: dict, digest: str, git_commit: str | None) -> None:
    """Claim ``folder`` for this config (kept as is when the same config resumes there), with a copy of
    the ``.hydra/*.yaml`` files Hydra wrote for it (see ``restore_hydra_files``)."""
    path = folder / RUN_RECORD
    if path.is_file():
        return
    hydra_files = {p.name: redact(p.read_text()) for p in sorted((folder / ".hydra").glob("*.yaml"))}
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(
        json.dumps(
            {"config_fingerprint": digest, "git_commit": git_commit, "config": config, "hydra_files": hydra_files},
            indent=2,
            default=str,
        )
    )
    os.replace(temporary, path)


def restore_hydra_files(folder: str | Path) -> None:
    """Put back the ``.hydra/*.yaml`` of the run that owns ``folder``. Hydra writes them for every command
    before the task starts, so a command refused in that folder (``hydra.run.dir`` given explicitly)
    would otherwise leave the owner's folder describing the refused config."""
    record = read_json(Path(folder) / RUN_RECORD) or {}
    for name, text in (record.get("hydra_files") or {}).items():
        (Path(folder) / ".hydra" / name).write_text(text)


def check_folder(folder: str | Path, view: dict, digest: str) -> None:
    """Raise ``ConfigError`` if ``folder`` belongs to a run of another config (refuse; never reuse)."""
    owner = folder_record(folder)
    if owner is None or owner[1] == digest:
        return
    raise ConfigError(
        f"paths.output_dir={str(folder)!r} is invalid: allowed a folder that is empty or holds a run of this "
        f"config (it holds config {short_hash(owner[1])}, this job is {short_hash(digest)}; "
        f"{differing_keys(owner[0], view)}); move that folder away or choose another output folder"
    )


def remove_unclaimed_folder(folder: str | Path, stop_at: str | Path) -> None:
    """Remove ``folder`` if it holds only what Hydra writes at a job's start (``.hydra/``, ``*.log``), i.e.
    a job that was rejected before it ran; then its parents, while empty, up to ``stop_at`` (kept)."""
    folder = Path(folder)
    if not folder.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in folder.iterdir()):
        return
    shutil.rmtree(folder / ".hydra", ignore_errors=True)
    for log_file in folder.glob("*.log"):
        log_file.unlink()
    stop, current = Path(os.path.abspath(stop_at)), Path(os.path.abspath(folder))
    try:
        current.rmdir()
        current = current.parent
        while current != stop and current.is_relative_to(stop):
            current.rmdir()
            current = current.parent
    except OSError:  # not empty (another run's folder): keep it
        return


def completed_results(folder: str | Path, mode: str, digest: str) -> dict | None:
    """The folder's results.json if it records a completed run of this mode and this config."""
    results = read_json(Path(folder) / RESULTS)
    if results is None or results.get("status") != "completed" or results.get("mode") != mode:
        return None
    owner = folder_record(folder)
    return results if owner is not None and owner[1] == digest else None


# ------------------------------------------------------------------------------------- evaluation


def trained_run_dir(ckpt_path: str | Path) -> Path:
    """The run folder a ``ckpt_path`` belongs to: ``<run>``, ``<run>/export`` or ``<run>/checkpoints/x.ckpt``."""
    path = Path(str(ckpt_path))
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent
    if path.is_dir() and path.name == "export":
        return path.parent
    return path


def trained_record(cfg: DictConfig) -> tuple[Path, dict] | None:
    """(run folder, its recorded config) of the run ``mode=eval`` loads, if that run left a record."""
    if cfg.get("mode") != "eval" or cfg.get("ckpt_path") is None:
        return None
    run_dir = trained_run_dir(cfg.ckpt_path)
    for name in (RUN_RECORD, RESULTS):
        record = read_json(run_dir / name)
        config = record.get("config") if record else None
        if isinstance(config, dict) and config.get("mode", "train") == "train":
            return run_dir, config
    return None


def apply_run_record(cfg: DictConfig) -> DictConfig:
    """For ``mode=eval`` of a recorded run, a copy of ``cfg`` whose ``TRAINED_KEYS`` come from the run's
    record, so the labels (strategy, block size, seed, study) and the model are the run's own (the study
    only when the command names none: an eval-only study keeps its own name); decoding follows the run's
    block unless ``decode.block_length`` is set. Other configs are returned as is."""
    found = trained_record(cfg)
    if found is None:
        return cfg
    _, trained = found
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        trust = cfg.model.get("trust_remote_code", False)
        for key in TRAINED_KEYS:
            if key == "study" and cfg.get("study") is not None:
                continue  # an evaluation study (multirun_sweeps/threshold_decoding.yaml) labels its own jobs
            if key in trained:
                cfg[key] = trained[key]
        if "model" in trained:
            cfg.model.trust_remote_code = trust  # an opt-in is never taken from a file on disk
    return cfg


def decode_label(cfg: DictConfig) -> str:
    """The evaluation settings in a folder name: ``arithmetic-validation256-B8-steps32`` (+ temperature,
    remasking and prefix cache when not the defaults)."""
    decode = cfg.decode
    label = (
        f"{cfg.data.name}-{cfg.eval.split}{cfg.eval.size if cfg.eval.size is not None else 'all'}"
        f"-B{'_'.join(str(b) for b in decode_block_lengths(cfg))}-steps{decode.steps}"
    )
    if decode.temperature:
        label += f"-temp{decode.temperature}"
    if decode.remasking != "low_confidence":
        label += f"-{decode.remasking}"
    if decode.get("prefix_cache", False):
        label += "-cached"
    if decode.get("attention", "full") != "full":
        label += "-blockcausal"
    return label


def eval_dir(cfg: DictConfig) -> Path | None:
    """``<run>/eval/<decode label>-<hash>`` for ``mode=eval`` of a recorded run (``cfg`` with the record
    applied), else None."""
    found = trained_record(cfg)
    if found is None:
        return None
    return found[0] / "eval" / f"{decode_label(cfg)}-{short_hash(job_identity(cfg)[1])}"


# ---------------------------------------------------------------------------------- Hydra resolvers


def _task_config(root: DictConfig) -> DictConfig:
    """The job's task config (the Hydra node removed) with a recorded run's keys applied for eval."""
    task = copy.deepcopy(root)
    with open_dict(task):
        task.pop("hydra", None)
    return apply_run_record(task)


def _job_dir(default: str, *, _root_: DictConfig) -> str:
    """The run folder: ``<run>/eval/<decode label>-<hash>`` for ``mode=eval`` of a recorded run, else ``default``."""
    return str(eval_dir(_task_config(_root_)) or default)


def _config_hash(*, _root_: DictConfig) -> str:
    return short_hash(job_identity(_task_config(_root_))[1])


def _project_root() -> str:
    return str(PROJECT_ROOT)


def _product(*factors: int) -> int:
    """``${product:a,b,...}``: a pure computation (an int for int factors), never a check."""
    return math.prod(factors)


def _metric_prefix(split: str) -> str:
    """``${metric_prefix:<split>}``: the prefix of a split's metrics, ``val`` for ``validation`` (the name
    runs recorded before the prefix followed the split), else the split's own name (``test/accuracy``)."""
    return "val" if split == "validation" else str(split)


def register_resolvers() -> None:
    """Register ``config_hash``, ``job_dir``, ``project_root``, ``product`` and ``metric_prefix`` (idempotent)."""
    for name, function in (
        ("config_hash", _config_hash),
        ("job_dir", _job_dir),
        ("project_root", _project_root),
        ("product", _product),
        ("metric_prefix", _metric_prefix),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=False)


def identity_fields(cfg: DictConfig, digest: str) -> dict[str, Any]:
    """What ``results.json`` records about the run's identity: its fingerprint, the decode settings, and
    for an evaluation the evaluated run (folder, fingerprint, training config)."""
    decode = cfg.decode
    fields: dict[str, Any] = {
        "config_fingerprint": digest,
        "decode": {
            "block_lengths": list(decode_block_lengths(cfg)),
            "steps": decode.steps,
            "temperature": decode.temperature,
            "remasking": decode.remasking,
            "prefix_cache": decode.get("prefix_cache", False),
            "gen_length": decode.gen_length,
            "confidence_threshold": decode.get("confidence_threshold"),
            "attention": decode.get("attention", "full"),
        },
    }
    found = trained_record(cfg)
    if found is not None:
        run_dir, trained = found
        owner = folder_record(run_dir)
        fields["trained_run"] = {
            "dir": str(run_dir),
            "config_fingerprint": owner[1] if owner else None,
            "config": trained,
        }
    return fields
