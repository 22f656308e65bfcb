"""Source rows -> prompt text, token ids and reference answer, through a cached ``datasets.map``.

Prompt layout (the same for training and decoding, so training blocks start exactly where the
decoder starts generating): the question is put into ``prompt_template`` (``{question}`` is the
placeholder); with a chat template the result is the user turn of
``apply_chat_template(..., add_generation_prompt=True)`` (which ends with the assistant header),
otherwise it is the plain text preceded by the tokenizer's BOS token if it has one. The response is
the answer field tokenised on its own (no special tokens); the collator appends EOS.

Rows are never truncated. A row that cannot be used gets a named ``drop_reason`` (in the order
checked):

==============================  =============================================================
``malformed_json``              JSONL line that is not valid JSON
``not_a_json_object``           JSONL line holding a list, number or string
``non_text_field``              a field holds a list or object
``missing_prompt_field``        the question field is absent or null
``missing_answer_field``        the answer field is absent or null (training rows; eval rows
                                without ``target_field``)
``missing_target_field``        ``target_field`` is set and absent or null
``empty_prompt``                the question is empty or whitespace
``empty_answer``                the answer is empty or whitespace
``no_reference_answer``         no final answer in the answer field (``#### n``, ``\\boxed{}``,
                                ``The answer is:``), so the row cannot be scored
``prompt_longer_than_max_prompt_len``  the templated prompt has more than ``max_prompt_len`` tokens
``answer_longer_than_response_len``    answer + EOS exceeds ``response_len`` (training rows only:
                                decoding needs the prompt only, and benchmarks are not shortened)
==============================  =============================================================
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, Features, Sequence, Value

from blocksft.data.jsonl import ERROR_COLUMN, ORIGIN_COLUMN
from blocksft.errors import require
from blocksft.evaluation.answers import reference_answer

log = logging.getLogger(__name__)

#: Bump when the preparation below changes what it writes: old caches are then ignored.
PREPARE_VERSION = 1
CHAT_TEMPLATE_MODES = ("auto", True, False)
MIN_ROWS_PER_PROCESS = 2000  # smaller datasets are not worth a worker process
PREPARED_FEATURES = Features(
    {
        "prompt": Value("string"),
        "target": Value("string"),
        "prompt_ids": Sequence(Value("int32")),
        "answer_ids": Sequence(Value("int32")),
        "drop_reason": Value("string"),
        "origin": Value("string"),
    }
)


def check_chat_template(mode):
    """``data.chat_template``: ``auto``, true or false (the one statement of the rule)."""
    require(mode in CHAT_TEMPLATE_MODES, "data.chat_template", mode, "auto, true or false")
    return mode


def resolve_chat_template(tokenizer, mode) -> bool:
    """``data.chat_template``: ``auto`` uses the tokenizer's chat template if it has one; ``true``
    requires one (ValueError otherwise); ``false`` never uses it."""
    check_chat_template(mode)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if mode is True and not has_template:
        raise ValueError("data.chat_template=true but the tokenizer has no chat template (use auto or false)")
    return has_template if mode == "auto" else bool(mode)


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything in the tokenizer that changes token ids or the chat rendering."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    parts = [
        type(tokenizer).__name__,
        vocab,
        str(getattr(tokenizer, "chat_template", None)),
        str(tokenizer.bos_token_id),
        str(tokenizer.eos_token_id),
        json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PrepareSettings:
    """Everything that decides a prepared row besides the tokenizer and the source rows."""

    prompt_template: str
    chat: bool
    question_field: str
    answer_field: str
    target_field: str | None
    answer_scheme: str
    max_prompt_len: int
    response_len: int
    check_answer_len: bool  # False for decoding splits


class RowPreparer:
    """Batched ``datasets.map`` function (``with_indices=True``): source rows -> ``PREPARED_FEATURES``.
    Picklable, so it runs in ``num_proc`` worker processes."""

    def __init__(self, tokenizer, settings: PrepareSettings, origin_label: str) -> None:
        self.tokenizer, self.settings, self.origin_label = tokenizer, settings, origin_label

    def prompt_text(self, question: str) -> str:
        text = self.settings.prompt_template.replace("{question}", question)
        if self.settings.chat:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text

    def encode_prompts(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        bos = self.tokenizer.bos_token_id
        return [[bos, *row] for row in ids] if bos is not None and not self.settings.chat else ids

    def text_problem(self, error: str, question, answer, target_text) -> str:
        """The drop reason decided from the row's text alone ('' if none)."""
        s = self.settings
        if error:
            return error
        if question is None:
            return "missing_prompt_field"
        if answer is None and (s.check_answer_len or s.target_field is None):
            return "missing_answer_field"
        if s.target_field is not None and target_text is None:
            return "missing_target_field"
        if not question.strip():
            return "empty_prompt"
        if answer is not None and not answer.strip() and (s.check_answer_len or s.target_field is None):
            return "empty_answer"
        return ""

    def target(self, answer: str | None, target_text: str | None) -> str | None:
        if self.settings.target_field is not None:
            return target_text.strip() or None
        return reference_answer(answer, self.settings.answer_scheme)

    def encode_answers(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def length_problem(self, prompt_ids: list[int], answer_ids: list[int]) -> str:
        """The drop reason decided from the token counts ('' if none)."""
        if len(prompt_ids) > self.settings.max_prompt_len:
            return "prompt_longer_than_max_prompt_len"
        if self.settings.check_answer_len and len(answer_ids) + 1 > self.settings.response_len:
            return "answer_longer_than_response_len"
        return ""

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        s, size = self.settings, len(indices)
        questions, answers, target_texts = (
            _text_column(batch, name, size) for name in (s.question_field, s.answer_field, s.target_field)
        )
        errors = batch.get(ERROR_COLUMN) or [""] * size
        origins = batch.get(ORIGIN_COLUMN) or [f"{self.origin_label} row {i}" for i in indices]
        # 1. problems visible in the text, then the reference answer of the remaining rows
        reasons = [self.text_problem(*row) for row in zip(errors, questions, answers, target_texts)]
        targets = [None if r else self.target(a, t) for r, a, t in zip(reasons, answers, target_texts)]
        reasons = [r or ("" if t else "no_reference_answer") for r, t in zip(reasons, targets)]
        # 2. template and tokenise the usable rows in one batched call each
        good = [i for i, reason in enumerate(reasons) if not reason]
        prompts, prompt_ids, answer_ids = [""] * size, [[] for _ in range(size)], [[] for _ in range(size)]
        for i in good:
            prompts[i] = self.prompt_text(questions[i])
        encoded = zip(
            self.encode_prompts([prompts[i] for i in good]), self.encode_answers([answers[i] or "" for i in good])
        )
        # 3. length limits: a row that does not fit is dropped, never truncated
        for i, (p_ids, a_ids) in zip(good, encoded):
            prompt_ids[i], answer_ids[i], reasons[i] = p_ids, a_ids, self.length_problem(p_ids, a_ids)
        return {
            "prompt": prompts,
            "target": [t or "" for t in targets],
            "prompt_ids": prompt_ids,
            "answer_ids": answer_ids,
            "drop_reason": reasons,
            "origin": origins,
        }


def _text_column(batch: dict[str, list], name: str | None, size: int) -> list[str | None]:
    """``batch[name]`` with non-null values as text; all None if the column is absent or unnamed."""
    values = batch[name] if name and name in batch else [None] * size
    return [value if value is None or isinstance(value, str) else str(value) for value in values]


@dataclass
class PreparedSplit:
    """A prepared split: kept rows (``prompt``, ``target``, ``prompt_ids``, ``answer_ids``, dense
    ``index``), drop counts per reason, the first dropped row's origin per reason, and whether the
    tokenised rows came from the on-disk cache."""

    dataset: Dataset
    dropped: Counter
    first_dropped: dict[str, str]
    cache_reused: bool


def fingerprint(raw: Dataset, tokenizer_hash: str, settings: PrepareSettings, label: str) -> str:
    """Cache key of a prepared split: source rows, tokenizer, settings and this module's version."""
    parts = [str(PREPARE_VERSION), raw._fingerprint, tokenizer_hash, repr(settings), label]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _drop_summary(prepared: Dataset) -> tuple[Counter, dict[str, str], np.ndarray]:
    """(count per reason, first origin per reason, kept positions) from the Arrow columns."""
    reasons = prepared.data.column("drop_reason")
    counts = Counter({entry["values"].as_py(): entry["counts"].as_py() for entry in pc.value_counts(reasons)})
    counts.pop("", None)
    origins = prepared.data.column("origin")
    first = {reason: origins[pc.index(reasons, reason).as_py()].as_py() for reason in counts}
    kept = np.flatnonzero(pc.equal(reasons, "").to_numpy(zero_copy_only=False))
    return counts, first, kept


def prepare_split(
    raw: Dataset, preparer: RowPreparer, *, split: str, tokenizer_hash: str, cache_dir: str | Path | None, num_proc: int
) -> PreparedSplit:
    """Tokenise ``raw`` with ``preparer`` (batched, ``num_proc`` processes), count and drop bad rows.

    With ``cache_dir`` the tokenised rows are Arrow files there named by :func:`fingerprint`, so a
    second run with the same source rows, tokenizer and settings reuses them; any change of those
    gives a new name. Without it, datasets' default caching applies (in memory for in-memory rows).
    """
    key = fingerprint(raw, tokenizer_hash, preparer.settings, split)
    cache_file = kept_file = None
    reused = False
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache_file, kept_file = (str(Path(cache_dir) / f"{stem}-{key}-{split}.arrow") for stem in ("prepared", "kept"))
        reused = any(Path(cache_dir).glob(f"prepared-{key}-{split}*.arrow"))
    processes = max(1, min(num_proc, os.cpu_count() or 1, len(raw) // MIN_ROWS_PER_PROCESS))
    prepared = raw.map(
        preparer,
        batched=True,
        with_indices=True,
        remove_columns=raw.column_names,
        features=PREPARED_FEATURES,
        num_proc=processes if processes > 1 else None,
        cache_file_name=cache_file,
        new_fingerprint=key,
        desc=f"tokenise {split}",
    )
    counts, first, kept = _drop_summary(prepared)
    dataset = prepared.remove_columns(["drop_reason", "origin"])
    if len(kept) < len(dataset):
        dataset = dataset.select(kept).flatten_indices(cache_file_name=kept_file, new_fingerprint=f"{key}-kept")
    dataset = dataset.add_column("index", np.arange(len(dataset), dtype=np.int64))
    return PreparedSplit(
        dataset,
        Counter({f"{split}/{r}": n for r, n in counts.items()}),
        {f"{split}/{r}": origin for r, origin in first.items()},
        reused,
    )
