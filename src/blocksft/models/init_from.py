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
from is recorded by :func:`init_record` (path, kind, sha256 of each weights file).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer

from blocksft.errors import ConfigError
from blocksft.models import build_hf_backbone, build_model, load_exported
from blocksft.models.hf import enable_gradient_checkpointing, load_hf_config, load_hf_model, load_hf_tokenizer
from blocksft.models.tokenizers import build_configured_tokenizer, build_run_tokenizer
from blocksft.folders import RUN_RECORD

log = logging.getLogger(__name__)

KINDS = ("tiny_export", "hf_export", "peft_adapter", "lightning_ckpt")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
ALLOWED = "an export folder (config.json or adapter_config.json), a run folder holding export/, or a Lightning .ckpt file"
EXPORT_CONFIG = "blocksft_model.json"
TINY_MODEL_TYPE = "blocksft_tiny"  # TinyDiffusionConfig.model_type (not imported: keeps this module light)


@dataclass(frozen=True)
class InitSource:
    """A resolved ``model.init_from``: ``path`` is the export folder or the .ckpt file."""

    given: str
    path: Path
    kind: str


def _fail(value, allowed: str) -> ConfigError:
    return ConfigError(f"model.init_from={value} is invalid: allowed {allowed}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def export_kind(folder: Path) -> str | None:
    """``tiny_export``, ``hf_export`` or ``peft_adapter`` for an export folder, else None."""
    if (folder / "adapter_config.json").is_file():
        return "peft_adapter"
    if (folder / "config.json").is_file():
        return "tiny_export" if _read_json(folder / "config.json").get("model_type") == TINY_MODEL_TYPE else "hf_export"
    return None


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
    model = (_read_json(run / RUN_RECORD).get("config") or {}).get("model") or {}
    choice, start = model.get("tokenizer", "auto"), model.get("init_from")
    if choice == "bpe":
        raise _fail(given, f"a checkpoint whose run saved its tokenizer ({run} trained a BPE tokenizer and has no "
                           "export/ yet: start from its export when it finishes, or set model.tokenizer)")
    if choice not in ("auto", "char"):
        if not (folder := Path(str(choice)).expanduser() / "tokenizer.json").is_file():
            raise _fail(given, f"a checkpoint whose run's tokenizer is still there ({run / RUN_RECORD} names "
                               f"model.tokenizer={choice}, which holds no tokenizer.json)")
        return folder.parent
    if choice == "char" or start is None or depth >= 8:
        return None
    try:
        source = resolve_init_source(start)
    except ConfigError:
        raise _fail(given, f"a checkpoint whose run's start is still there (its tokenizer: {run / RUN_RECORD} "
                           f"names model.init_from={start}, which is gone)") from None
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
    files = [source.path] if source.path.is_file() else sorted(
        p for p in source.path.iterdir() if p.is_file() and p.name not in NOT_CONTENT and not p.name.startswith("."))
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
    return {"path": str(source.path.resolve()), "given": source.given, "kind": source.kind,
            "weights_sha256": {p.name: memoised_sha256(p) for p in weight_files(source)}}


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
        raise _fail(value, f"a Hugging Face export with model.kind={model.kind} ({source.path} is a blocksft tiny "
                           f"export: use model=tiny model.init_from={value})")
    if source.kind in ("hf_export", "peft_adapter") and model.kind != "hf":
        raise _fail(value, f"a blocksft tiny export or .ckpt with model.kind={model.kind} ({source.path} holds a "
                           f"Hugging Face model: use model=hf_masked_lm model.init_from={value})")
    if source.kind != "lightning_ckpt":
        settings = _read_json(source.path / EXPORT_CONFIG)
        if (_read_json(source.path / "config.json").get("auto_map") or settings.get("requires_remote_code")) \
                and not model.get("trust_remote_code", False):
            raise ConfigError(f"model.trust_remote_code=false is invalid: allowed true ({source.path} ships its "
                              "own modeling code; set model.trust_remote_code=true to run it)")
    if model.kind == "tiny" and source.kind == "tiny_export":
        _check_tokenizer_matches(cfg, source)
    if source.kind == "lightning_ckpt" and _takes_checkpoint_tokenizer(model):
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
            raise ConfigError(f"model.name_or_path={name} is invalid: allowed a Hugging Face hub id or model folder "
                              f"({what}: use {model} model.init_from={name})")


def _check_tokenizer_matches(cfg: DictConfig, source: InitSource) -> None:
    """A tiny run's ``model.tokenizer`` other than ``auto`` must give the export's vocabulary."""
    choice = cfg.model.get("tokenizer", "auto")
    if choice == "auto":
        return
    if choice == "bpe":
        raise _fail(cfg.model.init_from, "an export used with model.tokenizer=auto, char or a tokenizer folder "
                                         "(model.tokenizer=bpe trains a new vocabulary; auto uses the export's)")
    wanted = build_configured_tokenizer(cfg.model)
    saved = AutoTokenizer.from_pretrained(source.path)
    if wanted.get_vocab() != saved.get_vocab():
        raise _fail(cfg.model.init_from, f"weights whose vocabulary matches the run's tokenizer (model.tokenizer="
                                         f"{choice}: {len(wanted)} tokens; the export's tokenizer: {len(saved)} "
                                         "tokens, different ids; use model.tokenizer=auto)")


# ----------------------------------------------------------------------------- loading
def effective_model_config(model_cfg: DictConfig, source: InitSource, model) -> DictConfig:
    """The ``model`` config describing what was loaded (written to the run's ``blocksft_model.json``)."""
    if source.kind == "tiny_export":
        config = model.config
        sizes = {key: getattr(config, key) for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size",
                                                         "max_position_embeddings", "rope_theta", "dropout")}
        return OmegaConf.merge(model_cfg, sizes)
    return model_cfg


def hf_settings(model_cfg: DictConfig, source: InitSource) -> DictConfig:
    """Loading settings of an HF export (its ``blocksft_model.json`` if any, else the run's), with
    the run's training options, remote-code opt-in and ``init_from``."""
    saved = _read_json(source.path / EXPORT_CONFIG)
    base = OmegaConf.create(saved) if saved.get("kind") == "hf" else model_cfg
    adapter = _read_json(source.path / "adapter_config.json")
    name = adapter.get("base_model_name_or_path") if source.kind == "peft_adapter" else str(source.path)
    return OmegaConf.merge(base, {"name_or_path": name, "lora": model_cfg.lora, "init_from": model_cfg.get("init_from"),
                                  "gradient_checkpointing": model_cfg.gradient_checkpointing,
                                  "trust_remote_code": model_cfg.get("trust_remote_code", False)})


def load_hf_export(model_cfg: DictConfig, source: InitSource, *, train: bool):
    """(backbone, tokenizer, settings) of an HF export or peft adapter, ready to train (``train``) or score."""
    settings = hf_settings(model_cfg, source)
    config = load_hf_config(settings.name_or_path, settings)
    tokenizer = load_hf_tokenizer(str(source.path), config, settings)
    model = load_hf_model(settings.name_or_path, config, settings, len(tokenizer))
    if source.kind == "peft_adapter":
        from peft import PeftModel

        keep_adapter = train and settings.lora.enabled
        if keep_adapter and settings.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        model = PeftModel.from_pretrained(model, source.path, is_trainable=keep_adapter)
        if keep_adapter:
            log.info("continuing the adapter of %s (its own r/alpha/targets; model.lora.* sizes are not used)", source.path)
            plain = OmegaConf.merge(settings, {"lora": {"enabled": False}, "gradient_checkpointing": False})
            return build_hf_backbone(model, plain, len(tokenizer), train=True), tokenizer, settings
        if train:  # full fine-tuning of base + adapter; peft froze the base weights
            model = model.merge_and_unload().requires_grad_(True)
    return build_hf_backbone(model, settings, len(tokenizer), train=train), tokenizer, settings


def load_checkpoint_weights(model, source: InitSource, vocab_size: int) -> None:
    """Copy a Lightning checkpoint's ``model.*`` weights into ``model`` (built for a tokenizer of
    ``vocab_size`` ids); one line on any mismatch."""
    try:
        state = torch.load(source.path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # a truncated or foreign file: say which key pointed at it
        raise _fail(source.given, f"{ALLOWED} (cannot read it as a checkpoint: {type(error).__name__})") from None
    weights = {k.removeprefix("model."): v for k, v in state.get("state_dict", {}).items() if k.startswith("model.")}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or unexpected:
        raise _fail(source.given, f"a checkpoint of the model the config describes ({len(missing)} weights missing, "
                                  f"e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]})")
    for key, tensor in weights.items():
        if own[key].shape != tensor.shape:
            if own[key].shape[0] == vocab_size != tensor.shape[0]:
                raise _fail(source.given, f"weights whose vocabulary matches the run's tokenizer (the checkpoint has "
                                          f"{tensor.shape[0]} token rows, the run's tokenizer {own[key].shape[0]}; set "
                                          "model.tokenizer to the tokenizer it was trained with)")
            raise _fail(source.given, f"a checkpoint of the model the config describes ({key}: "
                                      f"{tuple(tensor.shape)} in the checkpoint, {tuple(own[key].shape)} configured)")
    model.load_state_dict(weights)


def _takes_checkpoint_tokenizer(model_cfg: DictConfig) -> bool:
    """A tiny model with ``model.tokenizer=auto`` takes the tokenizer of the run that wrote its .ckpt."""
    return model_cfg.kind == "tiny" and model_cfg.get("tokenizer", "auto") == "auto"


def _checkpoint_tokenizer(cfg: DictConfig, source: InitSource):
    """The tokenizer for ``model.init_from=<.ckpt>``: the one of the run that wrote it
    (``checkpoint_tokenizer_folder``) when ``_takes_checkpoint_tokenizer``; else the run's own."""
    if _takes_checkpoint_tokenizer(cfg.model):
        folder = checkpoint_tokenizer_folder(source.path, source.given)
        if folder is not None:
            log.info("model.init_from=%s: the tokenizer of the run that wrote it (%s)", source.given, folder)
            return AutoTokenizer.from_pretrained(folder)
    return build_run_tokenizer(cfg)


def load_initial_model(cfg: DictConfig, *, train: bool):
    """(model, tokenizer, model config to export with, init record) for the run ``cfg``.

    Without ``model.init_from``: the tokenizer the config names and a freshly built model (the tiny
    model at random init, or the pretrained ``model.name_or_path``)."""
    value = cfg.model.get("init_from")
    if value is None:
        tokenizer = build_run_tokenizer(cfg)
        return build_model(cfg.model, tokenizer), tokenizer, cfg.model, None
    source = resolve_init_source(value)
    if source.kind == "lightning_ckpt":
        tokenizer = _checkpoint_tokenizer(cfg, source)
        model = build_model(cfg.model, tokenizer)
        load_checkpoint_weights(model, source, len(tokenizer))
        model_cfg = cfg.model
    elif source.kind == "tiny_export":
        model, tokenizer = load_exported(source.path)
        model_cfg = effective_model_config(cfg.model, source, model)
        if model.config.vocab_size != len(tokenizer):
            raise _fail(value, f"an export whose tokenizer matches its weights ({len(tokenizer)} tokens, "
                               f"{model.config.vocab_size} embedding rows)")
    else:
        model, tokenizer, model_cfg = load_hf_export(cfg.model, source, train=train)
    log.info("model.init_from=%s: %s %s", value, source.kind, source.path)
    model.train(train)  # from_pretrained leaves models in eval mode
    return model, tokenizer, model_cfg, init_record(source)
