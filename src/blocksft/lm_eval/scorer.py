"""The model ``mode=eval`` scores, behind the two questions lm-eval asks: generate after a context, and how
likely a continuation is. No lm-eval import: ``blocksft.lm_eval.model`` adapts it to lm-eval's ``LM``.

* Prompts: the context goes through the data config's prompt template and chat template and is tokenised as the
  data module tokenises an eval row (its ``RowPreparer``); a continuation as a training answer (no special
  tokens). When lm-eval renders a chat itself (``--apply_chat_template``) the context is taken as it is.
* ``generate``: the batched decoder with the config's decoding (:class:`DecodeSettings` of the primary decoding
  block length), left padding as ``mode=eval``'s batches; the text up to the first EOS as ``mode=eval``
  records it, then at most ``max_gen_toks`` tokens of the canvas and cut at the first ``until`` string. The
  canvas is always ``gen_length`` tokens: ``max_gen_toks`` only shortens what is kept.
* ``loglikelihood``: ``blocksft.evaluation.likelihood`` (LLaDA's Monte-Carlo estimate), ``mc_num`` samples.

Results never depend on ``batch_size`` or on which requests share a batch: greedy decoding is batch-invariant
(the decoder's contract), every random draw (sampled decoding, Monte-Carlo masks) comes from a generator
seeded by ``seed`` and the request's own text, and a loglikelihood request is computed alone, in forwards of
``mc_batch_size`` of its samples (``mc_batch_size`` changes the estimate by float rounding only: the masks are
drawn before any forward, but a batched matrix product may round a row differently at another batch size).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from blocksft.data.collate import left_pad
from blocksft.data.datamodule import DiffusionSFTDataModule
from blocksft.data.prepare import RowPreparer
from blocksft.errors import ConfigError
from blocksft.evaluation.decoding import DecodeSettings, decode
from blocksft.evaluation.likelihood import greedy_continuation, loglikelihood
from blocksft.lm_eval.args import ModelArgs, eval_config
from blocksft.models import load_run_model
from blocksft.runs.run import decode_plan
from blocksft.training.module import response_texts

log = logging.getLogger(__name__)

#: generation kwargs lm-eval tasks set that the scorer honours; others are reported once and not used
HONOURED_GEN_KWARGS = ("until", "max_gen_toks")
#: generation kwargs that only restate greedy decoding (no warning)
GREEDY_GEN_KWARGS = {"do_sample": False, "temperature": 0}


def request_seed(seed: int, *texts: str) -> int:
    """A 63-bit seed from ``seed`` and a request's texts: the same request gets the same draws in any batch."""
    digest = hashlib.sha256(json.dumps([seed, *texts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def cut_at_stop(text: str, until: Sequence[str] | str | None) -> str:
    """``text`` up to the earliest occurrence of any non-empty stop string of ``until``."""
    stops = [until] if isinstance(until, str) else list(until or [])
    ends = [text.find(stop) for stop in stops if stop and stop in text]
    return text[: min(ends)] if ends else text


def choose_device(name: str | None) -> torch.device:
    """The device named (lm-eval passes ``cuda`` by default), CPU when it names CUDA and there is none."""
    if name is None or (name.startswith("cuda") and not torch.cuda.is_available()):
        if name is not None:
            log.warning("blocksft: device=%s but no CUDA device is visible; using the CPU", name)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class DiffusionScorer:
    """A loaded model, its tokenizer, the eval rows' ``RowPreparer`` and decoding, and the scorer's arguments."""

    model: torch.nn.Module
    tokenizer: object
    preparer: RowPreparer
    settings: DecodeSettings
    args: ModelArgs
    device: torch.device
    rendered_by_harness: bool = False  # lm-eval applied the chat template: contexts are used as they are

    @classmethod
    def load(cls, args: ModelArgs) -> DiffusionScorer:
        """The model ``python train.py mode=eval`` would score for ``args`` (``blocksft.lm_eval.args``)."""
        cfg = eval_config(args)
        model, tokenizer, _, _ = load_run_model(cfg)
        device = choose_device(args.device)
        model.to(device).eval()
        plan = decode_plan(cfg)
        settings = next(s for s in plan.settings if s.block_length == plan.primary)
        preparer = DiffusionSFTDataModule.from_config(cfg, tokenizer).preparer(cfg.eval.split)
        log.info("blocksft: %s on %s, decoding %s", args.pretrained, device, settings)
        return cls(model, tokenizer, preparer, settings, args, device)

    # ------------------------------------------------------------------------------- tokenisation
    def prompt_ids(self, context: str) -> list[int]:
        """The token ids of a context as ``mode=eval`` makes a prompt of a question."""
        if self.rendered_by_harness:
            return self.tokenizer(context, add_special_tokens=False)["input_ids"]
        return self.preparer.encode_prompts([self.preparer.prompt_text(context)])[0]

    def continuation_ids(self, continuation: str) -> list[int]:
        """The token ids of a continuation, tokenised on its own as a training answer."""
        return self.preparer.encode_answers([continuation])[0]

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """lm-eval's ``--apply_chat_template``: the tokenizer's chat template renders ``messages``, and contexts
        are used as they come from then on."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"--apply_chat_template: the tokenizer of pretrained={self.args.pretrained} has no chat template "
                "(without the flag, the data config's prompt template applies)"
            )
        self.rendered_by_harness = True
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    # ------------------------------------------------------------------------------- generation
    @property
    def sampled(self) -> bool:
        """Whether decoding draws random numbers (then every request is decoded alone, with its own seed)."""
        return self.settings.temperature > 0 or self.settings.remasking == "random"

    def generate(self, requests: Sequence[tuple[str, dict]], progress: bool = False) -> list[str]:
        """One text per (context, lm-eval generation kwargs) request (module docstring)."""
        _warn_unused_gen_kwargs([kwargs for _, kwargs in requests])
        prompts = [self.prompt_ids(context) for context, _ in requests]
        size = 1 if self.sampled else self.args.batch_size
        texts = []
        with tqdm(total=len(requests), disable=not progress, desc="blocksft generate") as bar:
            for start in range(0, len(requests), size):
                canvases = self.decode_canvases(prompts[start : start + size], requests[start][0])
                for canvas, (_, kwargs) in zip(canvases, requests[start : start + size]):
                    texts.append(self.response_text(canvas, kwargs or {}))
                bar.update(len(canvases))
        return texts

    def decode_canvases(self, prompts: Sequence[Sequence[int]], seed_text: str) -> torch.Tensor:
        """Generated canvases [B, gen_length] of left-padded ``prompts`` (a generator seeded by ``seed_text``
        when decoding is sampled)."""
        ids, attention_mask = left_pad(prompts, self.tokenizer.pad_token_id)
        generator = None
        if self.sampled:
            generator = torch.Generator(self.device).manual_seed(request_seed(self.args.seed, seed_text))
        output = decode(
            self.model,
            ids.to(self.device),
            self.settings,
            mask_id=self.tokenizer.mask_token_id,
            attention_mask=attention_mask.to(self.device),
            generator=generator,
        )
        return output[:, ids.shape[1] :].cpu()

    def response_text(self, canvas: torch.Tensor, gen_kwargs: dict) -> str:
        """The text ``mode=eval`` records for ``canvas`` [gen_length] (up to the first EOS), kept to
        ``max_gen_toks`` tokens and cut at the first ``until`` string."""
        limit = gen_kwargs.get("max_gen_toks")
        if limit is not None:
            canvas = canvas[: int(limit)]
        return cut_at_stop(response_texts(canvas[None], self.tokenizer)[0], gen_kwargs.get("until"))

    # ------------------------------------------------------------------------------- likelihood
    def loglikelihood(self, requests: Sequence[tuple[str, str]], progress: bool = False) -> list[tuple[float, bool]]:
        """(log-likelihood estimate, is_greedy) per (context, continuation) request (module docstring)."""
        results = []
        mask_id = self.tokenizer.mask_token_id
        for context, continuation in tqdm(requests, disable=not progress, desc="blocksft loglikelihood"):
            prompt, target = self.prompt_ids(context), self.continuation_ids(continuation)
            if not target:  # log p(empty) = 0
                results.append((0.0, True))
                continue
            generator = torch.Generator().manual_seed(request_seed(self.args.seed, context, continuation))
            estimate = loglikelihood(
                self.model,
                prompt,
                target,
                mask_id=mask_id,
                mc_num=self.args.mc_num,
                batch_size=self.args.mc_batch_size,
                generator=generator,
            )
            greedy = self.args.greedy_check and greedy_continuation(self.model, prompt, target, mask_id=mask_id)
            results.append((estimate, greedy))
        return results


def _warn_unused_gen_kwargs(all_kwargs: Sequence[dict | None]) -> None:
    """One warning naming the generation kwargs of the tasks that the scorer does not use (decoding is set by the
    model arguments), unless they only restate greedy decoding."""
    unused = sorted(
        {
            f"{key}={value!r}"
            for kwargs in all_kwargs
            for key, value in (kwargs or {}).items()
            if key not in HONOURED_GEN_KWARGS and GREEDY_GEN_KWARGS.get(key, object()) != value
        }
    )
    if unused:
        log.warning(
            "blocksft: generation kwargs not used (decoding follows the model arguments): %s", ", ".join(unused)
        )
