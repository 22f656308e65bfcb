"""Pretrained Hugging Face backbones (``model.kind: hf``): loading, special tokens, and the adapter
that gives them the ``encode`` / ``project`` interface of the Lightning module.

Special ids are never hard-coded: the tokenizer is the single source of truth, completed from the
model config where the tokenizer is silent (LLaDA stores its mask id only as ``config.mask_token_id``):

* mask: the tokenizer's mask token, else ``config.mask_token_id``, else ``[MASK]`` added to the
  vocabulary (embeddings resized) when ``model.add_mask_token=true``, else a one-line ``ConfigError``;
* EOS: ``model.eos_token`` when set, else the tokenizer's EOS, else ``config.eos_token_id``, else the
  SEP token (BERT-like tokenizers have no EOS: ``[SEP]`` ends every response), else an error;
* pad: the tokenizer's pad token, else ``config.pad_token_id``, else the EOS token.

The resolved tokens are written into the tokenizer, which is saved with every export, so training,
decoding and a later ``mode=eval`` all read the same ids.
"""

from __future__ import annotations

import inspect
import logging

import torch
import transformers
from omegaconf import DictConfig
from packaging import version
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase
from transformers.modeling_outputs import MaskedLMOutput

from blocksft.errors import ConfigError

log = logging.getLogger(__name__)

AUTO_CLASSES = ("AutoModelForMaskedLM", "AutoModel")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION_MASK_FORMATS = ("2d", "4d")
ADDED_MASK_TOKEN = "[MASK]"


# ----------------------------------------------------------------------------- loading
def load_hf_config(source: str, model_cfg: DictConfig) -> PretrainedConfig:
    """The model config of ``source`` (hub id or folder); a checkpoint that needs remote code while
    ``model.trust_remote_code`` is false raises a one-line ``ConfigError`` (before any weights load)."""
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=bool(model_cfg.trust_remote_code))
    except ValueError as error:
        if "trust_remote_code" not in str(error):
            raise
        raise ConfigError(
            f"model.trust_remote_code=false is invalid: allowed true ({source} ships its own "
            "modeling code; set model.trust_remote_code=true to run it)"
        ) from error


def load_hf_tokenizer(source: str, config: PretrainedConfig, model_cfg: DictConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of ``source`` with mask, EOS and pad tokens resolved (see the module docstring)."""
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=bool(model_cfg.trust_remote_code))
    _resolve_mask_token(tokenizer, config, model_cfg)
    _resolve_eos_token(tokenizer, config, model_cfg)
    if tokenizer.pad_token is None:
        pad_id = _single_id(getattr(config, "pad_token_id", None))
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id) if pad_id is not None else tokenizer.eos_token
    if tokenizer.mask_token_id in (tokenizer.eos_token_id, tokenizer.pad_token_id):
        raise ConfigError(
            f"model.name_or_path={model_cfg.name_or_path} is invalid: allowed a model whose mask token "
            f"differs from its EOS and pad tokens (all resolve to id {tokenizer.mask_token_id})"
        )
    log.info(
        "special tokens: mask=%r (%d) eos=%r (%d) pad=%r (%d)",
        tokenizer.mask_token,
        tokenizer.mask_token_id,
        tokenizer.eos_token,
        tokenizer.eos_token_id,
        tokenizer.pad_token,
        tokenizer.pad_token_id,
    )
    return tokenizer


def _single_id(value) -> int | None:
    """A config's special id, or None when absent or a list (several EOS ids: ambiguous)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _resolve_mask_token(tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig, model_cfg: DictConfig) -> None:
    if tokenizer.mask_token is not None:
        return
    mask_id = _single_id(getattr(config, "mask_token_id", None))
    if mask_id is not None:
        tokenizer.mask_token = tokenizer.convert_ids_to_tokens(mask_id)
    elif model_cfg.add_mask_token:
        tokenizer.add_special_tokens({"mask_token": ADDED_MASK_TOKEN})
        log.info(
            "added %s to the vocabulary (id %d); embeddings will be resized", ADDED_MASK_TOKEN, tokenizer.mask_token_id
        )
    else:
        raise ConfigError(
            f"model.add_mask_token=false is invalid: allowed true ({model_cfg.name_or_path} has no mask "
            f"token in its tokenizer nor mask_token_id in its config; true adds {ADDED_MASK_TOKEN} and "
            "resizes the embeddings)"
        )


def _resolve_eos_token(tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig, model_cfg: DictConfig) -> None:
    wanted = model_cfg.get("eos_token")
    if wanted is not None:
        if tokenizer.convert_tokens_to_ids(wanted) in (None, tokenizer.unk_token_id):
            raise ConfigError(
                f"model.eos_token={wanted!r} is invalid: allowed a token of the vocabulary of "
                f"{model_cfg.name_or_path} (or null)"
            )
        tokenizer.eos_token = wanted
    elif tokenizer.eos_token is None:
        eos_id = _single_id(getattr(config, "eos_token_id", None))
        if eos_id is not None:
            tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
        elif tokenizer.sep_token is not None:
            tokenizer.eos_token = tokenizer.sep_token
            log.info(
                "the tokenizer has no EOS token: %r (SEP) ends responses (set model.eos_token to change)",
                tokenizer.sep_token,
            )
        else:
            raise ConfigError(
                f"model.eos_token=None is invalid: allowed a token of the vocabulary "
                f"({model_cfg.name_or_path} has neither an EOS nor a SEP token)"
            )


def _dtype_argument(dtype: torch.dtype) -> dict:
    """``from_pretrained``'s dtype keyword: ``dtype`` from transformers 4.56 on, ``torch_dtype`` before."""
    key = "dtype" if version.parse(transformers.__version__) >= version.parse("4.56") else "torch_dtype"
    return {key: dtype}


def load_hf_model(source: str, config: PretrainedConfig, model_cfg: DictConfig, vocab_size: int) -> nn.Module:
    """Weights of ``source`` through ``transformers.<model.auto_class>`` in ``model.dtype``; the
    embeddings grow to ``vocab_size`` when the tokenizer gained a token."""
    auto_class = getattr(transformers, model_cfg.auto_class)
    model = auto_class.from_pretrained(
        source,
        config=config,
        trust_remote_code=bool(model_cfg.trust_remote_code),
        **_dtype_argument(DTYPES[model_cfg.dtype]),
    )
    if vocab_size > model.get_input_embeddings().weight.shape[0]:
        grow_vocabulary(model, vocab_size)
    return model


@torch.no_grad()
def grow_vocabulary(model: nn.Module, size: int) -> None:
    """Resize the embeddings to ``size`` rows; new rows (input, output and output bias) are the mean of
    the old ones, so a base model re-grown at eval time equals the one trained (adapter exports)."""
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(size, mean_resizing=False)
    output = model.get_output_embeddings()
    tensors = {
        id(t): t
        for t in (model.get_input_embeddings().weight, getattr(output, "weight", None), getattr(output, "bias", None))
        if t is not None
    }
    for tensor in tensors.values():
        tensor[old:] = tensor[:old].mean(dim=0)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Activation checkpointing through the Hugging Face API (non-reentrant, so frozen inputs under
    LoRA need no ``enable_input_require_grads``); LLaDA's OLMo-style code has its own switch."""
    if getattr(model, "supports_gradient_checkpointing", False):
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the old name is deprecated)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(getattr(model, "model", None), "set_activation_checkpointing"):
        model.model.set_activation_checkpointing("whole_layer")  # LLaDA: a StrEnum value, compared as a string
    else:
        raise ConfigError(
            f"model.gradient_checkpointing=true is invalid: allowed false ({type(model).__name__} "
            "supports no gradient checkpointing)"
        )


# ----------------------------------------------------------------------------- adapter
class _HeadInput(Exception):
    """Raised by the pre-hook on the LM head to stop the forward pass and carry the head's input."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


class HFBackbone(nn.Module):
    """A Hugging Face model (plain or PEFT-wrapped) behind the interface of ``DiffusionSFTModule``.

    * ``encode(input_ids [B, L], attention_mask [B, L] | None) -> hidden [B, L, H]``: the input of the
      LM head (``lm_head``: a dotted module path, or null for ``get_output_embeddings()``). The forward
      pass stops at that input (a pre-hook raises), so the vocabulary projection is never computed
      for all positions. For BERT-like models with the default head the head's transform is part of
      ``encode`` (it is cheap: one hidden-by-hidden layer); ``lm_head=cls`` moves it into ``project``.
    * ``project(hidden [..., H]) -> logits [..., V]``: the LM head.
    * ``forward(input_ids, attention_mask=None).logits`` = ``project(encode(...))`` for decoding.

    ``split_head=False`` is the fallback for heads that cannot be separated (tied weights applied with
    ``F.linear``, logit scaling after the head): ``encode`` returns the full logits and ``project`` is
    the identity, so the module gathers full logits at loss positions. ``logits_shift`` (Dream,
    initialised from an autoregressive model) makes position ``i`` read position ``i - 1`` (position
    0 reads itself), as Dream's own sampler does. ``attention_mask_format="4d"`` passes the padding
    mask as a boolean ``[B, 1, L, L]`` key mask (Dream's attention needs it); only such a model also
    takes a per-example ``attention_mask`` [B, L, L] (block-causal), passed as ``[B, 1, L, L]``. Position ids count real
    tokens only whenever the model's ``forward`` accepts ``position_ids`` (so left padding changes
    nothing for absolute positions, BERT); ``use_cache=False`` is passed where accepted.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lm_head: str | None = None,
        split_head: bool = True,
        logits_shift: bool = False,
        attention_mask_format: str = "2d",
    ) -> None:
        super().__init__()
        if attention_mask_format not in ATTENTION_MASK_FORMATS:
            raise ValueError(
                f"model.attention_mask={attention_mask_format!r}: allowed {', '.join(ATTENTION_MASK_FORMATS)}"
            )
        self.model = model
        self.lm_head, self.split_head = lm_head, split_head
        self.logits_shift, self.attention_mask_format = logits_shift, attention_mask_format
        parameters = inspect.signature(self.base_model.forward).parameters
        self.accepts_position_ids, self.accepts_use_cache = "position_ids" in parameters, "use_cache" in parameters

    @property
    def supports_attention_mask_2d(self) -> bool:
        """Whether a per-example [B, L, L] mask can be passed (block-causal training and decoding): only
        for models configured to take a boolean [B, 1, L, L] mask (``model.attention_mask=4d``)."""
        return self.attention_mask_format == "4d"

    @property
    def base_model(self) -> nn.Module:
        """The transformers model (under the PEFT wrapper, if any)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    @property
    def config(self) -> PretrainedConfig:
        return self.base_model.config

    def head(self) -> nn.Module:
        base = self.base_model
        return base.get_submodule(self.lm_head) if self.lm_head else base.get_output_embeddings()

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> dict:
        inputs = {"input_ids": input_ids}
        if self.accepts_use_cache:
            inputs["use_cache"] = False  # every step re-reads the whole canvas (LLaDA asserts it)
        if attention_mask is None:
            return inputs
        if attention_mask.dim() == 3:  # per-example [B, L, L] (block-causal): as a boolean [B, 1, L, L]
            if not self.supports_attention_mask_2d:
                raise ValueError(
                    f"{type(self.base_model).__name__} takes only a [B, L] key mask here "
                    "(model.attention_mask=2d); a per-example [B, L, L] mask needs model.attention_mask=4d"
                )
            inputs["attention_mask"] = attention_mask.bool()[:, None]
            if self.accepts_position_ids:  # the real tokens: those that may attend to themselves
                real = attention_mask.bool().diagonal(dim1=1, dim2=2)
                inputs["position_ids"] = (real.long().cumsum(-1) - 1).clamp_min(0)
            return inputs
        if self.attention_mask_format == "4d":
            length = input_ids.shape[1]
            inputs["attention_mask"] = attention_mask.bool()[:, None, None, :].expand(-1, 1, length, length)
        else:
            inputs["attention_mask"] = attention_mask
        if self.accepts_position_ids:
            inputs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        return inputs

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], x[:, :-1]], dim=1) if self.logits_shift else x

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        inputs = self.model_inputs(input_ids, attention_mask)
        if not self.split_head:
            return self.shift(self.model(**inputs).logits)

        def stop(module: nn.Module, args: tuple) -> None:
            raise _HeadInput(args[0])

        handle = self.head().register_forward_pre_hook(stop)
        try:
            self.model(**inputs)
        except _HeadInput as captured:
            return self.shift(captured.hidden)
        finally:
            handle.remove()
        raise RuntimeError(
            f"{type(self.base_model).__name__}.forward never called its LM head "
            f"({self.lm_head or 'get_output_embeddings()'}); set model.split_head=false"
        )

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head()(hidden) if self.split_head else hidden

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: object
    ) -> MaskedLMOutput:
        return MaskedLMOutput(logits=self.shift(self.model(**self.model_inputs(input_ids, attention_mask)).logits))

    def merge_lora(self) -> None:
        """Fold LoRA weights into the base weights and drop the PEFT wrapper (no-op without LoRA)."""
        if hasattr(self.model, "merge_and_unload"):
            self.model = self.model.merge_and_unload()


@torch.no_grad()
def head_split_matches(backbone: HFBackbone, vocab_size: int, length: int = 6) -> bool:
    """Whether ``project(encode(x))`` equals the model's own logits on a short probe sequence (the
    head is separable); any failure of the split counts as a mismatch."""
    was_training = backbone.training
    backbone.eval()
    ids = torch.arange(length, device=next(backbone.parameters()).device)[None] % vocab_size
    try:
        split = backbone.project(backbone.encode(ids))
        full = backbone(ids).logits
        return split.shape == full.shape and torch.allclose(split.float(), full.float(), atol=1e-3, rtol=1e-3)
    except (RuntimeError, TypeError, ValueError) as error:
        log.warning("LM head split failed on a probe sequence: %s", error)
        return False
    finally:
        backbone.train(was_training)
