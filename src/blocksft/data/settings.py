"""What a data module is built from, read from the run config in one place (``from_config``).

* ``LoaderSettings``: how rows are cut, padded, batched and cached; every ``data.format``.
* ``RowSettings``: how a prompt/response row is read and templated (``data.format=prompt_response``);
  documents (``blocksft.data.documents``) need only their ``data.text_field``.

Each dataclass owns the rules of the keys it carries: constructing one with a bad value raises
``InvalidValue`` (``blocksft.errors``), one line naming the config key. Free of Lightning, so
``blocksft.config.validation`` builds them to check a config before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from blocksft.data.collate import TailPadding, check_tail_padding
from blocksft.data.prepare import check_chat_template
from blocksft.errors import is_int, require
from blocksft.evaluation.answers import check_scheme


def _positive(key: str, value) -> None:
    require(is_int(value) and value > 0, key, value, "a positive integer")


def _positive_or_null(key: str, value) -> None:
    require(value is None or (is_int(value) and value > 0), key, value, "a positive integer or null")


@dataclass(frozen=True)
class LoaderSettings:
    """The keys every data format shares (``conf/data/common/loader.yaml``), plus the eval split and seed."""

    response_len: int  # tokens of the response (answer + EOS + EOS tail), or of a whole document
    batch_size: int  # rows per training batch this process loads: the batch plan's micro-batch
    eval_batch_size: int
    eval_split: str = "validation"
    eval_size: int | None = None  # the first N rows of the eval split (None = all)
    tail_padding: TailPadding = "in_response"
    max_train_rows: int | None = None
    num_workers: int = 0
    num_proc: int = 1
    cache_dir: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _positive("data.response_len", self.response_len)
        check_tail_padding(self.tail_padding)
        _positive("data.batch_size", self.batch_size)
        _positive("data.eval_batch_size", self.eval_batch_size)
        _positive("data.num_proc", self.num_proc)
        _positive_or_null("data.max_train_rows", self.max_train_rows)
        _positive_or_null("eval.size", self.eval_size)

    @classmethod
    def from_config(cls, cfg: DictConfig, micro_batch: int) -> LoaderSettings:
        """From ``data.*``, ``eval.split``, ``eval.size`` and ``seed``; ``micro_batch`` is the batch plan's
        (``blocksft.data.batch_plan.plan_batches``)."""
        data = cfg.data
        return cls(
            response_len=data.response_len,
            batch_size=micro_batch,
            eval_batch_size=data.eval_batch_size,
            eval_split=cfg.eval.split,
            eval_size=cfg.eval.size,
            tail_padding=data.tail_padding,
            max_train_rows=data.get("max_train_rows"),
            num_workers=data.num_workers,
            num_proc=data.get("num_proc", 1),
            cache_dir=data.get("cache_dir"),
            seed=cfg.seed,
        )


@dataclass(frozen=True)
class RowSettings:
    """How a prompt/response row becomes a prompt, a response and a reference answer (``blocksft.data.prepare``)."""

    max_prompt_len: int
    prompt_template: str = "{question}\n"  # {question} is replaced by the question field
    chat_template: str | bool = "auto"  # auto | true | false (blocksft.data.prepare.resolve_chat_template)
    question_field: str = "question"
    answer_field: str = "answer"
    target_field: str | None = None  # a field holding the bare reference answer; None = read the answer field
    answer_scheme: str = "gsm8k"

    def __post_init__(self) -> None:
        _positive("data.max_prompt_len", self.max_prompt_len)
        require(
            isinstance(self.prompt_template, str) and "{question}" in self.prompt_template,
            "data.prompt_template",
            self.prompt_template,
            "a string containing {question}",
        )
        check_chat_template(self.chat_template)
        check_scheme(self.answer_scheme)
        for key in ("question_field", "answer_field"):
            value = getattr(self, key)
            require(isinstance(value, str) and value != "", f"data.{key}", value, "a non-empty field name")
        target = self.target_field
        require(
            target is None or (isinstance(target, str) and target != ""),
            "data.target_field",
            target,
            "null or a field name",
        )

    @classmethod
    def from_config(cls, data: DictConfig) -> RowSettings:
        return cls(
            max_prompt_len=data.max_prompt_len,
            prompt_template=data.prompt_template,
            chat_template=data.get("chat_template", "auto"),
            question_field=data.question_field,
            answer_field=data.answer_field,
            target_field=data.get("target_field"),
            answer_scheme=data.answer_scheme,
        )

    def fields(self) -> list[str]:
        """The source fields a row is read from."""
        return [self.question_field, self.answer_field, *([self.target_field] if self.target_field else [])]
