"""Start a run from saved weights: ``model.init_from=<export folder | run folder | .ckpt>``.

* an **export folder** (``save_pretrained``: ``config.json`` or a peft ``adapter_config.json``): the
  model *and its tokenizer* come from the folder. A blocksft tiny export needs ``model=tiny``; a
  Hugging Face model (full, merged, or a peft adapter naming its base) needs ``model.kind=hf``, whose
  loading settings come from the export's ``blocksft_model.json`` when it has one. Training options
  (LoRA, gradient checkpointing) come from the run's config; an adapter export keeps training its own
  adapter when ``model.lora.enabled=true`` and is merged into its base (full fine-tuning) otherwise.
* a **run folder**: its ``export/``.
* a Lightning **.ckpt**: the model the run's config describes, then the checkpoint's weights. With
  ``model.tokenizer=auto`` (a tiny model) the tokenizer is the one of the run that wrote the checkpoint
  (``checkpoint_tokenizer_folder``: its ``export/``, else what its ``run_config.json`` names), so a
  checkpoint of a run fine-tuned from the base continues with the base's ids.

Every bad value stops before training with one line naming ``model.init_from``. What a run started
from is recorded by :func:`init_record` (path, kind, sha256 of each weights file). This module resolves
and checks the value without reading weights; ``blocksft.models.loader`` loads them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from blocksft.data.tokenizer import load_saved_tokenizer
from blocksft.errors import ConfigError
from blocksft.folders import RUN_RECORD, is_export, read_json
from blocksft.models.build import EXPORT_CONFIG
from blocksft.models.tiny import TinyDiffusionConfig
from blocksft.models.tokenizers import build_configured_tokenizer

KINDS = ("tiny_export", "hf_export", "peft_adapter", "lightning_ckpt")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
ALLOWED = (
    "an export folder (config.json or adapter_config.json), a run folder holding export/, or a Lightning .ckpt file"
)
TINY_MODEL_TYPE = TinyDiffusionConfig.model_type


@dataclass(frozen=True)
class InitSource:
    """A resolved ``model.init_from`` (or another key naming saved weights, ``key``): ``path`` is the export
    folder or the .ckpt file, ``given`` the value as written."""

    given: str
    path: Path
    kind: str
    key: str = "model.init_from"

    def fail(self, allowed: str) -> ConfigError:
        return _fail(self.given, allowed, self.key)


def _fail(value, allowed: str, key: str = "model.init_from") -> ConfigError:
    return ConfigError(f"{key}={value} is invalid: allowed {allowed}")


def export_kind(folder: Path) -> str | None:
    """``tiny_export``, ``hf_export`` or ``peft_adapter`` for an export folder (``blocksft.folders.is_export``),
    else None."""
    if not is_export(folder):
        return None
    if (folder / "adapter_config.json").is_file():
        return "peft_adapter"
    return (
        "tiny_export" if (read_json(folder / "config.json") or {}).get("model_type") == TINY_MODEL_TYPE else "hf_export"
    )


def resolve_init_source(value) -> InitSource:
    """The export folder or checkpoint behind ``value``; ``ConfigError`` (one line) if there is none."""
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise _fail(value, f"{ALLOWED} (no such path)")
    if path.is_file():
        if path.suffix != ".ckpt":
            raise _fail(value, f"{ALLOWED} (a file that is not a .ckpt)")
        return InitSource(str(value), path, "lightning_ckpt")
    for folder in (path, path / "export"):
        kind = export_kind(folder)
        if kind is not None:
            return InitSource(str(value), folder, kind)
    raise _fail(value, f"{ALLOWED} (a folder with neither config.json, adapter_config.json nor export/)")


def checkpoint_tokenizer_folder(checkpoint: Path, given=None, depth: int = 0) -> Path | None:
    """The folder holding the tokenizer of the run that wrote ``checkpoint`` (``<run>/checkpoints/*.ckpt``):
    the run's ``export/``, else the one its ``run_config.json`` names (a ``model.tokenizer`` folder, or
    the start ``model.init_from``, followed through run folders and checkpoints). None when that run
    used the character tokenizer, or the file does not lie in a blocksft run folder (the run's own
    ``model.tokenizer`` then applies). ``ConfigError`` naming ``model.init_from`` (``given``) for a run
    that trained a BPE tokenizer and has not exported it yet."""
    given = checkpoint if given is None else given
    folder = checkpoint.resolve().parent
    if folder.name != "checkpoints":
        return None
    run = folder.parent
    if (run / "export" / "tokenizer.json").is_file():
        return run / "export"
    model = ((read_json(run / RUN_RECORD) or {}).get("config") or {}).get("model") or {}
    choice, start = model.get("tokenizer", "auto"), model.get("init_from")
    if choice == "bpe":
        raise _fail(
            given,
            f"a checkpoint whose run saved its tokenizer ({run} trained a BPE tokenizer and has no "
            "export/ yet: start from its export when it finishes, or set model.tokenizer)",
        )
    if choice not in ("auto", "char"):
        if not (folder := Path(str(choice)).expanduser() / "tokenizer.json").is_file():
            raise _fail(
                given,
                f"a checkpoint whose run's tokenizer is still there ({run / RUN_RECORD} names "
                f"model.tokenizer={choice}, which holds no tokenizer.json)",
            )
        return folder.parent
    if choice == "char" or start is None or depth >= 8:
        return None
    try:
        source = resolve_init_source(start)
    except ConfigError:
        raise _fail(
            given,
            f"a checkpoint whose run's start is still there (its tokenizer: {run / RUN_RECORD} "
            f"names model.init_from={start}, which is gone)",
        ) from None
    if source.kind == "lightning_ckpt":
        return checkpoint_tokenizer_folder(source.path, given, depth + 1)
    return source.path if (source.path / "tokenizer.json").is_file() else None


def weight_files(source: InitSource) -> list[Path]:
    """The files holding the weights: the .ckpt, or the export's weight files (shards included)."""
    if source.kind == "lightning_ckpt":
        return [source.path]
    stem = "adapter_model" if source.kind == "peft_adapter" else "model"
    return sorted(p for p in source.path.iterdir() if p.name.startswith(stem) and p.suffix in WEIGHT_SUFFIXES)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


#: Files of an export that describe it without defining the model: not part of its content digest.
NOT_CONTENT = {"MODEL_CARD.md", "README.md", "provenance.json"}
_CONTENT_DIGESTS: dict[tuple, str] = {}


def content_digest(source: InitSource) -> str:
    """sha256 over the files that define the model ``source`` names: the .ckpt, or every file of the
    export folder (weights, config, tokenizer) but ``NOT_CONTENT``, by name. Independent of where the
    folder lies; memoised per file path, size and modification time (a multi-GB export is read once)."""
    files = (
        [source.path]
        if source.path.is_file()
        else sorted(
            p for p in source.path.iterdir() if p.is_file() and p.name not in NOT_CONTENT and not p.name.startswith(".")
        )
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{memoised_sha256(path)}\n".encode())
    return digest.hexdigest()


def memoised_sha256(path: Path) -> str:
    """``sha256_file``, read once per file path, size and modification time in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CONTENT_DIGESTS:
        _CONTENT_DIGESTS[key] = sha256_file(path)
    return _CONTENT_DIGESTS[key]


def init_record(source: InitSource | None) -> dict | None:
    """What a run started from, for ``results.json``: path, kind and ``{weights file: sha256}``."""
    if source is None:
        return None
    return {
        "path": str(source.path.resolve()),
        "given": source.given,
        "kind": source.kind,
        "weights_sha256": {p.name: memoised_sha256(p) for p in weight_files(source)},
    }


# ----------------------------------------------------------------------------- validation (no weights read)
def validate_init_from(cfg: DictConfig) -> None:
    """Check ``model.init_from`` against the run's model kind and tokenizer, and the tiny route of
    ``model.name_or_path``. Reads only small JSON/tokenizer files; raises ``ConfigError``."""
    model = cfg.model
    if model.kind == "hf":
        _reject_tiny_name_or_path(model.name_or_path)
    value = model.get("init_from")
    if value is None or (cfg.mode == "eval" and cfg.ckpt_path is not None):
        return  # mode=eval scores ckpt_path; init_from (the default base, or the run's start) is not read
    if not isinstance(value, str) or not value.strip():
        raise _fail(value, ALLOWED)
    source = resolve_init_source(value)
    if source.kind == "tiny_export" and model.kind != "tiny":
        raise _fail(
            value,
            f"a Hugging Face export with model.kind={model.kind} ({source.path} is a blocksft tiny "
            f"export: use model=tiny model.init_from={value})",
        )
    if source.kind in ("hf_export", "peft_adapter") and model.kind != "hf":
        raise _fail(
            value,
            f"a blocksft tiny export or .ckpt with model.kind={model.kind} ({source.path} holds a "
            f"Hugging Face model: use model=hf_masked_lm model.init_from={value})",
        )
    if source.kind != "lightning_ckpt":
        settings = read_json(source.path / EXPORT_CONFIG) or {}
        if (
            (read_json(source.path / "config.json") or {}).get("auto_map") or settings.get("requires_remote_code")
        ) and not model.get("trust_remote_code", False):
            raise ConfigError(
                f"model.trust_remote_code=false is invalid: allowed true ({source.path} ships its "
                "own modeling code; set model.trust_remote_code=true to run it)"
            )
    if model.kind == "tiny" and source.kind == "tiny_export":
        _check_tokenizer_matches(cfg, source)
    if source.kind == "lightning_ckpt" and takes_checkpoint_tokenizer(model):
        checkpoint_tokenizer_folder(source.path, value)  # a run whose tokenizer is lost fails here, before any work


def _reject_tiny_name_or_path(name) -> None:
    """``model=hf_masked_lm model.name_or_path=<tiny export | run folder>``: say what to use instead."""
    path = Path(str(name)).expanduser()
    if not path.is_dir():
        return
    for folder in (path, path / "export"):
        kind = export_kind(folder)
        if kind == "tiny_export" or (kind is not None and folder != path):
            model = "model=tiny" if kind == "tiny_export" else "model=hf_masked_lm"
            what = f"{folder} is a blocksft tiny export" if kind == "tiny_export" else f"{path} is a run folder"
            raise ConfigError(
                f"model.name_or_path={name} is invalid: allowed a Hugging Face hub id or model folder "
                f"({what}: use {model} model.init_from={name})"
            )


def _check_tokenizer_matches(cfg: DictConfig, source: InitSource) -> None:
    """A tiny run's ``model.tokenizer`` other than ``auto`` must give the export's vocabulary."""
    choice = cfg.model.get("tokenizer", "auto")
    if choice == "auto":
        return
    if choice == "bpe":
        raise _fail(
            cfg.model.init_from,
            "an export used with model.tokenizer=auto, char or a tokenizer folder "
            "(model.tokenizer=bpe trains a new vocabulary; auto uses the export's)",
        )
    wanted = build_configured_tokenizer(cfg.model)
    saved = load_saved_tokenizer(source.path)
    if wanted.get_vocab() != saved.get_vocab():
        raise _fail(
            cfg.model.init_from,
            f"weights whose vocabulary matches the run's tokenizer (model.tokenizer="
            f"{choice}: {len(wanted)} tokens; the export's tokenizer: {len(saved)} "
            "tokens, different ids; use model.tokenizer=auto)",
        )


def takes_checkpoint_tokenizer(model_cfg: DictConfig) -> bool:
    """A tiny model with ``model.tokenizer=auto`` takes the tokenizer of the run that wrote its .ckpt."""
    return model_cfg.kind == "tiny" and model_cfg.get("tokenizer", "auto") == "auto"
