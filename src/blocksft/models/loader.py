"""The one model loader: a run's model and tokenizer, wherever they come from.

* :func:`load_run_model` ``(cfg)``: what a run trains or scores. ``mode=eval`` with ``ckpt_path``: a run
  folder's ``export/``, an export folder, or a Lightning .ckpt (the model the config describes, then the
  checkpoint's weights); ``mode=eval`` with neither ``ckpt_path`` nor ``model.init_from``: the configured
  model (a pretrained Hugging Face model, LoRA off); otherwise :func:`load_initial_model`.
* :func:`load_initial_model` ``(cfg, train=...)``: ``model.init_from`` (an export, a run folder or a .ckpt;
  resolved and checked by ``blocksft.models.init_from``), else a fresh model.
* :func:`load_exported` ``(folder, model_cfg)``: every export folder goes through it: a blocksft tiny
  export, a Hugging Face model (full or merged), or a peft adapter on the base its
  ``adapter_config.json`` names. Loading settings come from the folder's ``blocksft_model.json``, else
  from ``model_cfg``; ``trust_remote_code`` and the training options (LoRA, gradient checkpointing) come
  from ``model_cfg``, the caller's own. With ``train=True`` an adapter keeps training when
  ``model.lora.enabled`` and is merged into its base (full fine-tuning) otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModel

from blocksft.data.tokenizer import load_saved_tokenizer
from blocksft.folders import is_export, read_json
from blocksft.models.build import EXPORT_CONFIG, build_hf_backbone, build_model
from blocksft.models.hf import enable_gradient_checkpointing, load_hf_config, load_hf_model, load_hf_tokenizer
from blocksft.models.init_from import (
    ALLOWED,
    InitSource,
    checkpoint_tokenizer_folder,
    export_kind,
    init_record,
    resolve_init_source,
    takes_checkpoint_tokenizer,
)
from blocksft.models.tokenizers import build_run_tokenizer

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- export folders
def hf_settings(folder: Path, kind: str, model_cfg: DictConfig | None) -> DictConfig:
    """Loading settings of a Hugging Face export (its ``blocksft_model.json`` if it holds an ``hf`` config,
    else ``model_cfg``) with the folder (or an adapter's base) as ``name_or_path``, and ``model_cfg``'s
    remote-code opt-in, training options and ``init_from``."""
    saved = read_json(folder / EXPORT_CONFIG) or {}
    base = OmegaConf.create(saved) if saved.get("kind") == "hf" else model_cfg
    if base is None or base.get("kind") != "hf":
        raise ValueError(f"ckpt_path={folder}: a Hugging Face folder without {EXPORT_CONFIG} needs a model=hf_* config")
    name = (
        (read_json(folder / "adapter_config.json") or {}).get("base_model_name_or_path")
        if kind == "peft_adapter"
        else str(folder)
    )
    own = {"trust_remote_code": bool(model_cfg.get("trust_remote_code", False)) if model_cfg is not None else False}
    if model_cfg is not None:
        own.update(
            lora=model_cfg.lora,
            init_from=model_cfg.get("init_from"),
            gradient_checkpointing=model_cfg.gradient_checkpointing,
        )
    return OmegaConf.merge(base, {"name_or_path": name, **own})


def exported_model_config(folder: Path, model_cfg: DictConfig, model) -> DictConfig:
    """The ``model`` config describing an export loaded by :func:`load_exported` (written to the run's own
    ``blocksft_model.json``): the tiny model's sizes, or the Hugging Face loading settings."""
    if export_kind(folder) == "tiny_export":
        sizes = {
            key: getattr(model.config, key)
            for key in (
                "hidden_size",
                "num_layers",
                "num_heads",
                "intermediate_size",
                "max_position_embeddings",
                "rope_theta",
                "dropout",
            )
        }
        return OmegaConf.merge(model_cfg, sizes)
    return hf_settings(folder, export_kind(folder), model_cfg)


def load_exported(folder: str | Path, model_cfg: DictConfig | None = None, *, train: bool = False):
    """(model, tokenizer) from an export folder (module docstring); ready to train with ``train``."""
    folder = Path(folder)
    kind = export_kind(folder)
    if kind is None:
        raise FileNotFoundError(f"ckpt_path={folder}: no config.json nor adapter_config.json (not an export folder)")
    if kind == "tiny_export":
        return AutoModel.from_pretrained(folder), load_saved_tokenizer(folder)
    settings = hf_settings(folder, kind, model_cfg)
    config = load_hf_config(settings.name_or_path, settings)
    tokenizer = load_hf_tokenizer(str(folder), config, settings)
    model = load_hf_model(settings.name_or_path, config, settings, len(tokenizer))
    if kind == "peft_adapter":
        from peft import PeftModel

        keep_adapter = train and settings.lora.enabled
        if keep_adapter and settings.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        model = PeftModel.from_pretrained(model, folder, is_trainable=keep_adapter)
        if keep_adapter:
            log.info("continuing the adapter of %s (its own r/alpha/targets; model.lora.* sizes are not used)", folder)
            plain = OmegaConf.merge(settings, {"lora": {"enabled": False}, "gradient_checkpointing": False})
            return build_hf_backbone(model, plain, len(tokenizer), train=True), tokenizer
        if train:  # full fine-tuning of base + adapter; peft froze the base weights
            model = model.merge_and_unload().requires_grad_(True)
    return build_hf_backbone(model, settings, len(tokenizer), train=train), tokenizer


# ----------------------------------------------------------------------------- checkpoints
def load_checkpoint_weights(model, source: InitSource, vocab_size: int) -> None:
    """Copy a Lightning checkpoint's ``model.*`` weights into ``model`` (built for a tokenizer of
    ``vocab_size`` ids); one line naming ``source.key`` on any mismatch."""
    try:
        state = torch.load(source.path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # a truncated or foreign file: say which key pointed at it
        raise source.fail(f"{ALLOWED} (cannot read it as a checkpoint: {type(error).__name__})") from None
    weights = {k.removeprefix("model."): v for k, v in state.get("state_dict", {}).items() if k.startswith("model.")}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or unexpected:
        raise source.fail(
            f"a checkpoint of the model the config describes ({len(missing)} weights missing, "
            f"e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]})"
        )
    for key, tensor in weights.items():
        if own[key].shape != tensor.shape:
            if own[key].shape[0] == vocab_size != tensor.shape[0]:
                raise source.fail(
                    f"weights whose vocabulary matches the run's tokenizer (the checkpoint has "
                    f"{tensor.shape[0]} token rows, the run's tokenizer {own[key].shape[0]}; set "
                    "model.tokenizer to the tokenizer it was trained with)"
                )
            raise source.fail(
                f"a checkpoint of the model the config describes ({key}: "
                f"{tuple(tensor.shape)} in the checkpoint, {tuple(own[key].shape)} configured)"
            )
    model.load_state_dict(weights)


def _checkpoint_tokenizer(cfg: DictConfig, source: InitSource):
    """The tokenizer for ``model.init_from=<.ckpt>``: the one of the run that wrote it
    (``checkpoint_tokenizer_folder``) when ``takes_checkpoint_tokenizer``; else the run's own."""
    if takes_checkpoint_tokenizer(cfg.model):
        folder = checkpoint_tokenizer_folder(source.path, source.given)
        if folder is not None:
            log.info("model.init_from=%s: the tokenizer of the run that wrote it (%s)", source.given, folder)
            return load_saved_tokenizer(folder)
    return build_run_tokenizer(cfg)


# ----------------------------------------------------------------------------- a run's model
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
    else:
        model, tokenizer = load_exported(source.path, cfg.model, train=train)
        model_cfg = exported_model_config(source.path, cfg.model, model)
        if source.kind == "tiny_export" and model.config.vocab_size != len(tokenizer):
            raise source.fail(
                f"an export whose tokenizer matches its weights ({len(tokenizer)} tokens, "
                f"{model.config.vocab_size} embedding rows)"
            )
    log.info("model.init_from=%s: %s %s", value, source.kind, source.path)
    model.train(train)  # from_pretrained leaves models in eval mode
    return model, tokenizer, model_cfg, init_record(source)


def _load_for_eval(cfg: DictConfig):
    """(model, tokenizer) for ``mode=eval`` from ``ckpt_path`` (a run folder, an export folder or a .ckpt),
    or, with no ``ckpt_path``, the configured model (the pretrained ``model.name_or_path``, LoRA off)."""
    if cfg.ckpt_path is None:
        tokenizer = build_run_tokenizer(cfg)
        return build_model(OmegaConf.merge(cfg.model, {"lora": {"enabled": False}}), tokenizer), tokenizer
    path = Path(str(cfg.ckpt_path))
    if path.is_dir():
        return load_exported(path / "export" if is_export(path / "export") else path, cfg.model)
    model, tokenizer, _, _ = load_initial_model(
        cfg, train=False
    )  # as the run built it (init_from: its sizes, tokenizer)
    load_checkpoint_weights(
        model, InitSource(str(cfg.ckpt_path), path, "lightning_ckpt", key="ckpt_path"), len(tokenizer)
    )
    return model, tokenizer


def load_run_model(cfg: DictConfig):
    """(model, tokenizer, model config to export with, init record or None) for the run ``cfg``: the
    model ``mode=eval`` scores (``ckpt_path``, or the configured model when there is no ``model.init_from``),
    else :func:`load_initial_model` (``model.init_from`` or a fresh model; ready to train in ``mode=train``)."""
    if cfg.mode == "eval" and (cfg.ckpt_path is not None or cfg.model.get("init_from") is None):
        model, tokenizer = _load_for_eval(cfg)
        return model, tokenizer, cfg.model, None
    return load_initial_model(cfg, train=cfg.mode == "train")
