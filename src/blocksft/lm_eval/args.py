"""The model arguments of the lm-eval model ``blocksft`` (``--model_args k=v,...``) and the run config they make.

:func:`eval_config` composes the project's config as ``python train.py mode=eval`` would for the model named by
``pretrained``, so everything ``mode=eval`` decides is decided the same way: the model (a run folder, its
``export/``, an export folder or a ``.ckpt`` through ``ckpt_path``; a Hugging Face id through ``model=<preset>``
and ``model.name_or_path``), the labels a recorded run brings (its block size, which decoding follows), the
prompt and chat template of the data config, the decoder's settings and every rule ``validate_config`` checks.
One convenience over ``mode=eval``: a Hugging Face export (full, merged or a peft adapter) needs no ``model``
argument (``model=hf_masked_lm``; the export's ``blocksft_model.json`` holds its loading settings).
The decoding and template arguments are written into that config (:data:`CONFIG_KEYS`), and a bad value fails
with one line naming the model argument::

    block_length=5 is invalid: allowed a divisor of gen_length=64: [1, 2, 4, 8, 16, 32, 64]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from blocksft.config.validation import validate_config
from blocksft.errors import ConfigError, InvalidValue, is_int, require
from blocksft.folders import is_export
from blocksft.models.init_from import export_kind
from blocksft.runs.cli import unknown_group_option
from blocksft.runs.compose import CONF_DIR, compose_config
from blocksft.runs.identity import apply_run_record

#: model argument -> the config key ``mode=eval`` reads it from (``gen_length`` is the response length, which
#: ``decode.gen_length`` and the default ``decode.steps`` follow, as ``data.response_len=...`` does for ``mode=eval``)
CONFIG_KEYS: dict[str, str] = {
    "gen_length": "data.response_len",
    "block_length": "decode.block_length",
    "steps": "decode.steps",
    "temperature": "decode.temperature",
    "remasking": "decode.remasking",
    "prefix_cache": "decode.prefix_cache",
    "confidence_threshold": "decode.confidence_threshold",
    "attention": "decode.attention",
    "prompt_template": "data.prompt_template",
    "chat_template": "data.chat_template",
    "trust_remote_code": "model.trust_remote_code",
}
#: config keys named in ``validate_config``'s messages -> the model argument they come from
_ARG_OF_KEY = {
    **{key: arg for arg, key in CONFIG_KEYS.items()},
    "decode.gen_length": "gen_length",
    "ckpt_path": "pretrained",
    "model.name_or_path": "pretrained",
}
_KEY_PATTERN = re.compile("|".join(re.escape(key) for key in sorted(_ARG_OF_KEY, key=len, reverse=True)))
#: what ``pretrained`` may be
PRETRAINED = (
    "a run folder, an export folder or a .ckpt file, or a Hugging Face id with model=<a conf/model preset of "
    "kind hf> (e.g. model=llada_8b)"
)


@dataclass(frozen=True)
class ModelArgs:
    """The parsed model arguments (``docs/lm-eval.md`` has the table). ``config``: {config key: value} of the
    arguments in :data:`CONFIG_KEYS`; the others are the scorer's own."""

    pretrained: str
    model: str | None = None  # conf/model preset: a Hugging Face id, or a folder without blocksft_model.json
    data: str | None = None  # conf/data preset whose prompt/chat template and response length apply
    mc_num: int = 128  # Monte-Carlo samples per loglikelihood request
    mc_batch_size: int = 32  # rows per forward of one request's Monte-Carlo samples (LLaDA's batch_size)
    seed: int = 0  # seeds every request's draws (with the request's text)
    greedy_check: bool = True  # compute lm-eval's is_greedy (a greedy decode of each continuation)
    batch_size: int = 1  # prompts decoded together (lm-eval's --batch_size; not used by loglikelihood)
    device: str | None = None  # default: cuda when available, else cpu
    config: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, values: Mapping) -> ModelArgs:
        """From lm-eval's ``--model_args`` (values typed by lm-eval) and its ``batch_size``/``device``;
        ``ConfigError`` (one line) naming an unknown or bad argument."""
        own = {name for name in cls.__dataclass_fields__ if name != "config"}
        unknown = sorted(set(values) - own - set(CONFIG_KEYS) - {"max_batch_size"})
        if unknown:
            known = ", ".join(sorted(own | set(CONFIG_KEYS)))
            raise ConfigError(f"{unknown[0]} is not a model argument of blocksft (known: {known})")
        if "pretrained" not in values:
            raise ConfigError(f"pretrained is required: {PRETRAINED}")
        args = {key: value for key, value in values.items() if key in own}
        if isinstance(args.get("batch_size"), str) and args["batch_size"].isdigit():
            args["batch_size"] = int(args["batch_size"])  # lm-eval passes --batch_size as text
        config = {CONFIG_KEYS[key]: value for key, value in values.items() if key in CONFIG_KEYS}
        parsed = cls(**args, config=config)
        parsed.check()
        return parsed

    def check(self) -> None:
        require(isinstance(self.pretrained, str) and self.pretrained != "", "pretrained", self.pretrained, PRETRAINED)
        for key in ("model", "data", "device"):
            value = getattr(self, key)
            require(value is None or isinstance(value, str), key, value, "a name")
        for key, value in (("mc_num", self.mc_num), ("mc_batch_size", self.mc_batch_size)):
            require(is_int(value) and value > 0, key, value, "a positive integer")
        require(is_int(self.seed), "seed", self.seed, "an integer")
        require(isinstance(self.greedy_check, bool), "greedy_check", self.greedy_check, "true or false")
        require(
            is_int(self.batch_size) and self.batch_size > 0,
            "batch_size",
            self.batch_size,
            "a positive integer (lm-eval's automatic batch sizes are not supported)",
        )


def as_model_arg_error(error: ConfigError) -> ConfigError:
    """``error`` with the config keys the model arguments set renamed to those arguments (one line)."""
    return ConfigError(_KEY_PATTERN.sub(lambda match: _ARG_OF_KEY[match.group(0)], str(error)))


def default_model_preset(path: Path) -> str | None:
    """``hf_masked_lm`` for a Hugging Face export (or a run folder's; its ``blocksft_model.json`` then gives the
    loading settings), where ``mode=eval`` asks for ``model=hf_*``; None otherwise (the project's default model)."""
    folder = path / "export" if is_export(path / "export") else path
    return "hf_masked_lm" if export_kind(folder) in ("hf_export", "peft_adapter") else None


def eval_config(args: ModelArgs) -> DictConfig:
    """The ``mode=eval`` config of ``args`` (module docstring), validated; ``ConfigError`` naming the argument."""
    path = Path(args.pretrained).expanduser()
    model = args.model or default_model_preset(path)
    groups = [f"{group}={value}" for group, value in (("model", model), ("data", args.data)) if value]
    if (error := unknown_group_option(groups, CONF_DIR)) is not None:
        raise ConfigError(error.removeprefix("config error: "))
    cfg = compose_config(["mode=eval", *groups])
    with open_dict(cfg):
        if path.exists():
            cfg.ckpt_path = str(path)
        elif args.model is not None and cfg.model.kind == "hf":
            cfg.model.name_or_path = args.pretrained
        else:
            raise InvalidValue("pretrained", args.pretrained, f"{PRETRAINED} (nothing exists at that path)")
    cfg = apply_run_record(cfg)  # a recorded run's model and labels (its block size, which decoding follows)
    with open_dict(cfg):
        for key, value in args.config.items():
            OmegaConf.update(cfg, key, value, merge=False)
    if cfg.data.get("format", "prompt_response") != "prompt_response":
        raise InvalidValue("data", args.data, "a data config of prompts and responses (data.format=prompt_response)")
    try:
        validate_config(cfg)
    except ConfigError as error:
        raise as_model_arg_error(error) from None
    return cfg
