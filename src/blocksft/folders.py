"""What a run folder holds, and what kind of thing a user-given path is.

* The names of the files a run writes into its folder (``RUN_RECORD``, ``RESULTS``), for the modules that
  read another run's folder.
* ``is_export(path)``: the one test for a ``save_pretrained`` folder (``config.json``, or a peft adapter's
  ``adapter_config.json``).
* ``require_path(key, value, kinds)`` returns the kind of path it found, or raises ``ConfigError`` with one
  line naming the key, what the path is, and the accepted kinds, e.g.::

    ckpt_path='runs/x/export' is invalid: allowed a Lightning checkpoint file (.ckpt) (got a folder)

  Any config key can use it (``ckpt_path``, ``model.init_from``) with its own kinds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from blocksft.errors import ConfigError

#: The run record, written when a run starts: its resolved config and fingerprint (``blocksft.runs.identity``).
RUN_RECORD = "run_config.json"
#: The results of a finished run (``blocksft.runs.results``).
RESULTS = "results.json"
#: The checkpoint of a run's last step (Lightning's ``ModelCheckpoint(save_last=True)``), where a run resumes.
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def checkpoint_step(path: str | Path) -> int:
    """The optimizer steps completed when the checkpoint at ``path`` was written. The file is memory-mapped,
    so only the pages of the small pickled header are read, not the weights (16 GB for an 8B model)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path`` (a run's record, a model's ``config.json``); None when the file is missing,
    unreadable, not JSON or not an object."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def is_export(path: Path) -> bool:
    """A ``save_pretrained`` folder: a model (``config.json``) or a peft adapter (``adapter_config.json``)."""
    return path.is_dir() and ((path / "config.json").is_file() or (path / "adapter_config.json").is_file())


#: kind -> (description for the error line, test)
PATH_KINDS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "checkpoint": ("a Lightning checkpoint file (.ckpt)", lambda p: p.is_file() and p.suffix == ".ckpt"),
    "run_dir": ("a run folder holding export/", lambda p: is_export(p / "export")),
    "export": ("a save_pretrained folder (config.json or adapter_config.json)", is_export),
}


def describe(path: Path) -> str:
    if not path.exists():
        return "nothing exists at that path"
    if path.is_dir():
        return "a folder" + (
            " without export/ (its checkpoints/last.ckpt is a checkpoint file)"
            if (path / "checkpoints" / "last.ckpt").is_file()
            else ""
        )
    return f"a {path.suffix or 'extensionless'} file"


def require_path(key: str, value, kinds: tuple[str, ...]) -> str:
    """The first of ``kinds`` that ``value`` is; else ``ConfigError`` naming ``key`` and the kinds."""
    unknown = [kind for kind in kinds if kind not in PATH_KINDS]
    if unknown:
        raise ValueError(f"unknown path kinds {unknown}; known: {sorted(PATH_KINDS)}")
    path = Path(str(value))
    for kind in kinds:
        if PATH_KINDS[kind][1](path):
            return kind
    allowed = " or ".join(PATH_KINDS[kind][0] for kind in kinds)
    raise ConfigError(f"{key}={str(value)!r} is invalid: allowed {allowed} (got {describe(path)})")


#: The checkout this package runs from: the folder holding ``src/blocksft``.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def portable(text: str, root: Path = PROJECT_ROOT) -> str:
    """``text`` with every absolute path inside ``root`` made relative to it (``<root>/outputs/x`` ->
    ``outputs/x``, ``<root>`` -> ``.``): what a committed record or report says of where a run lay, readable on
    any machine and naming none."""
    prefix = str(root.resolve())
    return text.replace(prefix + "/", "").replace(prefix, ".")
