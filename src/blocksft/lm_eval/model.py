"""The lm-eval model ``blocksft``: lm-eval's ``LM`` interface over :class:`blocksft.lm_eval.scorer.DiffusionScorer`.

Importing this module registers it (``lm_eval.api.registry.register_model``); ``python -m blocksft.lm_eval``
does. ``loglikelihood_rolling`` (perplexity tasks) is not defined for a masked diffusion LM here and raises
``NotImplementedError``.
"""

from __future__ import annotations

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from blocksft.lm_eval.args import ModelArgs
from blocksft.lm_eval.scorer import DiffusionScorer

MODEL_NAME = "blocksft"


@register_model(MODEL_NAME)
class BlockSFTLM(LM):
    """``--model blocksft --model_args pretrained=...,k=v``: the model arguments of ``blocksft.lm_eval.args``;
    lm-eval's ``--batch_size`` and ``--device`` arrive as the ``batch_size`` and ``device`` arguments."""

    def __init__(self, **model_args) -> None:
        super().__init__()
        self.scorer = DiffusionScorer.load(ModelArgs.parse(model_args))

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """One text per request ``(context, gen_kwargs)``: ``until`` and ``max_gen_toks`` are honoured."""
        texts = self.scorer.generate([(r.args[0], r.args[1]) for r in requests], progress=not disable_tqdm)
        for request, text in zip(requests, texts):
            self.cache_hook.add_partial("generate_until", request.args, text)
        return texts

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(log-likelihood estimate, is_greedy) per request ``(context, continuation)``."""
        results = self.scorer.loglikelihood([(r.args[0], r.args[1]) for r in requests], progress=not disable_tqdm)
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "blocksft: loglikelihood_rolling (perplexity tasks such as wikitext) is not implemented for masked "
            "diffusion LMs; use generate_until or loglikelihood (multiple-choice) tasks"
        )

    @property
    def tokenizer_name(self) -> str:
        return self.scorer.args.pretrained.replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """lm-eval's ``--apply_chat_template``: the tokenizer renders the chat (the prompt template is then not
        applied; ``DiffusionScorer.render_chat``)."""
        return self.scorer.render_chat(chat_history, add_generation_prompt)
