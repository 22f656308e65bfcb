"""Decoding helpers shared by the decoding sections: a counting, timing model wrapper, the models and
prompts they decode, and batch-1 vs batched decoding through ``blocksft.evaluation.decoding``."""

from __future__ import annotations

import time
from typing import Any

import datasets
import torch

from blocksft.data.datamodule import DiffusionSFTDataModule
from blocksft.evaluation.decoding import generate_batched, supports_prefix_cache
from blocksft.models import load_exported
from experiments.bench.common import arithmetic_rows, default_config, default_model, default_tokenizer, to_device
from experiments.bench.timing import synchronize

#: Random-init decoding model: the LM head is scaled by this so that argmaxes are well separated and
#: decoding is deterministic across batch shapes (float32 rounding cannot flip a choice).
HEAD_SHARPEN = 30.0


class ForwardTimer:
    """Wraps a model for :func:`generate`: counts forward calls, rows and token positions (the ones
    fed to the model: fewer with the prefix cache), and accumulates the wall time spent inside the
    model's forward (device-synchronised). Cache arguments and the cache capability are passed through."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.reset()

    def reset(self) -> None:
        self.calls, self.rows, self.positions, self.seconds = 0, 0, 0, 0.0

    @property
    def supports_prefix_cache(self) -> bool:
        return supports_prefix_cache(self.model)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **cache_kwargs):
        synchronize(self.device)
        start = time.perf_counter()
        output = self.model(input_ids, attention_mask=attention_mask, **cache_kwargs)
        synchronize(self.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.rows += input_ids.shape[0]
        self.positions += input_ids.numel()
        return output

    def parameters(self):
        return self.model.parameters()


def decoding_model(
    model_path: str | None, seed: int = 0, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, Any, str]:
    """(model in eval mode on ``device``, tokenizer, description): a trained export, or the default tiny
    model at random init with its LM head scaled by ``HEAD_SHARPEN`` (confident, deterministic argmaxes)."""
    if model_path:
        model, tokenizer = load_exported(model_path)
        return model.eval().to(device), tokenizer, f"trained export {model_path}"
    tokenizer = default_tokenizer()
    model = default_model(tokenizer, seed).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(HEAD_SHARPEN)
    return model.to(device), tokenizer, f"conf/model/tiny.yaml, random init (seed {seed}), LM head x{HEAD_SHARPEN:g}"


def arithmetic_prompts(count: int, tokenizer, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """The first ``count`` validation prompts of the default data, rendered and tokenised."""
    data_cfg = default_config().data
    rows = arithmetic_rows("validation")[:count]
    texts = [data_cfg.prompt_template.format(question=row[data_cfg.question_field]) for row in rows]
    return [
        torch.tensor(ids, dtype=torch.long, device=device)
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]
    ]


def decode(
    timer: ForwardTimer,
    prompts: list[torch.Tensor],
    tokenizer,
    *,
    batched: bool,
    gen_length: int,
    block_length: int,
    steps: int,
    prefix_cache: bool = False,
) -> list[torch.Tensor]:
    """Decode all prompts, in one left-padded batch or one call per prompt (batch size 1)."""
    kwargs = dict(
        pad_id=tokenizer.pad_token_id,
        mask_id=tokenizer.mask_token_id,
        steps=steps,
        gen_length=gen_length,
        block_length=block_length,
        prefix_cache=prefix_cache,
    )
    if batched:
        return generate_batched(timer, prompts, **kwargs)
    return [generate_batched(timer, [prompt], **kwargs)[0] for prompt in prompts]


def validation_batches(
    tokenizer, num_problems: int, batch_size: int, device: torch.device | str = "cpu"
) -> tuple[list[dict], str, Any]:
    """The first ``num_problems`` validation problems of the default data, through the project's data
    module (``DiffusionSFTDataModule.from_config``: template, tokenisation, left-padded eval collation)
    as ``test_step`` receives them; returns (batches on ``device``, answer scheme, composed config)."""
    datasets.disable_progress_bars()
    cfg = default_config((f"eval.size={num_problems}", f"eval.batch_size={batch_size}", "eval.split=validation"))
    datamodule = DiffusionSFTDataModule.from_config(cfg, tokenizer)
    datamodule.setup("test")
    return [to_device(batch, device) for batch in datamodule.test_dataloader()], cfg.data.answer_scheme, cfg
