"""What every section builds on: the run config composed once (``blocksft.runs.compose.compose_config``, as
``train.py`` composes it), the default data and models, and the training step of ``blocksft`` itself (so the
benchmark times the code that trains)."""

from __future__ import annotations

import contextlib
import functools
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from blocksft.data.collate import TrainCollator
from blocksft.masking import MaskedBatch, MaskingStrategy
from blocksft.models import build_model, build_tokenizer
from blocksft.models.tiny import TinyDiffusionConfig, TinyDiffusionLM
from blocksft.runs.compose import compose_config
from blocksft.training.objective import masked_diffusion_step

ROOT = Path(__file__).resolve().parents[2]
#: Special ids of the synthetic batches (sections 1 and 2); real tokens are drawn from [4, vocab).
PAD_ID, MASK_ID, EOS_ID, FIRST_TOKEN = 0, 1, 2, 4
#: The setting the benchmark's documented figures (docs/performance.md) were measured in (the project's
#: default until the shipped base): the tiny model with characters on one-operation arithmetic, block 8,
#: 32-token responses.
BENCH_SETTING = ("model=tiny", "data=arithmetic", "block=8")


@functools.lru_cache(maxsize=8)
def default_config(overrides: tuple[str, ...] = ()) -> DictConfig:
    """``conf/train.yaml`` with ``BENCH_SETTING`` and ``overrides``, as ``train.py`` would compose it
    (output paths in the temp dir; no folder is created)."""
    return compose_config([*BENCH_SETTING, *overrides], Path(tempfile.gettempdir()) / "blocksft-benchmark-compose")


def to_device(batch: dict, device: torch.device | str) -> dict:
    """The batch with its tensors on ``device`` (other values as they are)."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


# ----------------------------------------------------------------------------- data and models


def default_tokenizer():
    """The tokenizer of the default model (``model=tiny``: characters)."""
    return build_tokenizer(default_config().model)


def arithmetic_rows(split: str) -> list[dict]:
    """Rows of one split of the default arithmetic source (default seed, sizes and knobs)."""
    return instantiate(default_config().data.source).load()[split]


def default_train_batch(batch_size: int, tokenizer, seed: int = 0) -> dict[str, torch.Tensor]:
    """A training batch of the default data, collated as the data module does.

    ``batch_size`` rows drawn (seeded) from the train split, prompts rendered with the default
    template, left-padded to the batch's longest prompt, responses padded to ``response_len``.
    """
    data_cfg = default_config().data
    rows = arithmetic_rows("train")
    chosen = random.Random(seed).sample(range(len(rows)), batch_size)
    prompts = [data_cfg.prompt_template.format(question=rows[i][data_cfg.question_field]) for i in chosen]
    answers = [rows[i][data_cfg.answer_field] for i in chosen]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
    collate = TrainCollator(
        tokenizer.pad_token_id, tokenizer.eos_token_id, data_cfg.response_len, data_cfg.tail_padding
    )
    return collate([{"prompt_ids": p, "answer_ids": a, "index": i} for p, a, i in zip(prompt_ids, answer_ids, chosen)])


def synthetic_batch(
    batch_size: int, prompt_len: int, response_len: int, vocab_size: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A batch in the collator's layout: ``[left pad][prompt][response]``, random token ids.

    Prompt lengths vary in ``[prompt_len - 8, prompt_len]`` (left-padded to ``prompt_len``), so every
    response starts at ``prompt_len`` and has ``response_len`` tokens, all in the loss scope.
    """
    generator = torch.Generator().manual_seed(seed)
    length = prompt_len + response_len
    input_ids = torch.randint(FIRST_TOKEN, vocab_size, (batch_size, length), generator=generator)
    prompt_lengths = torch.randint(max(1, prompt_len - 8), prompt_len + 1, (batch_size,), generator=generator)
    padded = torch.arange(length)[None, :] < (prompt_len - prompt_lengths)[:, None]
    return {
        "input_ids": input_ids.masked_fill(padded, PAD_ID),
        "attention_mask": (~padded).long(),
        "response_start": torch.full((batch_size,), prompt_len, dtype=torch.long),
        "loss_scope_len": torch.full((batch_size,), response_len, dtype=torch.long),
        "index": torch.arange(batch_size),
    }


def default_model(tokenizer, seed: int = 0) -> TinyDiffusionLM:
    """The default model (``model=tiny``), seeded random init."""
    torch.manual_seed(seed)
    return build_model(default_config().model, tokenizer)


def default_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The default run's optimizer (``optim.optimizer``: AdamW) over the model's parameters."""
    return instantiate(default_config().optim.optimizer)(params=model.parameters())


def sized_model(
    vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int, seed: int = 0
) -> TinyDiffusionLM:
    """A TinyDiffusionLM of the given sizes (special ids as the synthetic batches), seeded."""
    torch.manual_seed(seed)
    config = TinyDiffusionConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
        mask_token_id=MASK_ID,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
    )
    return TinyDiffusionLM(config)


def mask_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded masking stream on ``device`` (the strategies draw on the batch's device)."""
    return torch.Generator(device=device).manual_seed(seed)


# ----------------------------------------------------------------------------- training step

LossFn = Callable[[torch.nn.Module, dict, MaskedBatch], torch.Tensor]


def training_loss(model: torch.nn.Module, batch: dict, masked: MaskedBatch) -> torch.Tensor:
    """The loss ``DiffusionSFTModule.training_step`` computes (``blocksft.training.objective.masked_diffusion_step``,
    the default ``objective.weighting``)."""
    return masked_diffusion_step(model, batch, masked, default_config().objective.weighting)


def loss_and_backward(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    masked: MaskedBatch,
    *,
    loss_fn: LossFn = training_loss,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Forward + loss + backward of one training step (``loss_fn``: the training code by default, or a
    baseline to compare with); ``autocast_dtype`` runs the forward under autocast on the batch's
    device. Returns the detached loss."""
    device_type = batch["input_ids"].device.type
    autocast = (
        torch.autocast(device_type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    )
    with autocast:
        loss = loss_fn(model, batch, masked)
    loss.backward()
    return loss.detach()


def default_training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    masking: MaskingStrategy,
    batch: dict[str, torch.Tensor],
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
) -> int:
    """One full step: masking, forward, loss at loss positions, backward, AdamW. Returns loss tokens."""
    masked = masking.mask_batch(batch, generator)
    optimizer.zero_grad(set_to_none=True)
    loss_and_backward(model, batch, masked, autocast_dtype=autocast_dtype)
    optimizer.step()
    return int(masked.loss_mask.sum())
