"""Procedural tasks of ``reasoning-gym`` (Apache-2.0, fully offline) as a data source (``data=reasoning_gym``).

Rows use the GSM8K schema: ``question``; ``answer`` = the task's chain of thought when it has one
(``gsm_symbolic``: ``metadata.answer_cot``, which ends in ``#### N``), else ``#### <answer>``;
``target`` = the bare answer; ``task`` = the generator's name. So ``answer_scheme=gsm8k`` scores
every task, and ``data.target_field=target`` scores tasks whose answers are not numbers.

Each split is generated with its own seed (``seed + split position``) from every task in
``tasks`` (``{name: {option: value}}`` or a list of names; options go to
``reasoning_gym.create_dataset``), ``sizes[split]`` rows per task, interleaved by task. Evaluation
splits come first; training rows whose question also appears in an earlier split are dropped (logged),
so splits never share a question. The generated rows are written once to an Arrow file in
``cache_dir`` keyed by tasks, sizes, seed and the package's version, and read back afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata

from datasets import Dataset, Features, Value

log = logging.getLogger(__name__)

FIELDS = ("question", "answer", "target", "task")
FEATURES = Features({field: Value("string") for field in FIELDS})


def _import():
    try:
        import reasoning_gym
    except ImportError as error:  # a dependency of the project; absent only in a partial install
        raise ImportError("data=reasoning_gym needs the reasoning-gym package (pip install reasoning-gym)") from error
    return reasoning_gym


def task_options(tasks: Mapping[str, Mapping | None] | Sequence[str]) -> dict[str, dict]:
    """``{name: options}`` from a mapping or a list of task names."""
    if isinstance(tasks, str):
        tasks = [tasks]
    if isinstance(tasks, Mapping):
        return {str(name): dict(options or {}) for name, options in tasks.items()}
    return {str(name): {} for name in tasks}


def to_row(task: str, entry: dict) -> dict[str, str]:
    """One reasoning-gym entry -> the GSM8K-schema row (see the module docstring)."""
    target = str(entry["answer"]).strip()
    chain = (entry.get("metadata") or {}).get("answer_cot")
    return {
        "question": str(entry["question"]).strip(),
        "answer": chain.strip() if chain else f"#### {target}",
        "target": target,
        "task": task,
    }


def generate_rows(tasks, size: int, seed: int) -> list[dict[str, str]]:
    """``size`` rows of every task in ``tasks``, generated with ``seed``, interleaved task by task."""
    reasoning_gym = _import()
    per_task = []
    for name, options in task_options(tasks).items():
        try:
            dataset = reasoning_gym.create_dataset(name, size=size, seed=seed, **options)
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"data.source.tasks.{name}: reasoning-gym cannot build it ({error})") from None
        per_task.append([to_row(name, dataset[index]) for index in range(size)])
    return [rows[index] for index in range(size) for rows in per_task]


def _rows(tasks: dict, sizes: dict, seed: int, version: str) -> Iterator[dict]:
    """Generator behind ``Dataset.from_generator`` for one split (``sizes`` has that split only; the
    ``seen`` questions of earlier splits travel in ``tasks['__exclude__']``)."""
    ((split, size),) = sizes.items()
    exclude = set(tasks.get("__exclude__", ()))
    options = {name: value for name, value in tasks.items() if name != "__exclude__"}
    dropped = 0
    for row in generate_rows(options, size, seed):
        if row["question"] in exclude:
            dropped += 1
            continue
        yield row
    if dropped:
        log.info("reasoning_gym %s: dropped %d rows whose question is in an earlier split", split, dropped)


class ReasoningGymSource:
    """``reasoning-gym`` tasks as splits (see the module docstring)."""

    def __init__(
        self,
        tasks: Mapping[str, Mapping | None] | Sequence[str],
        sizes: Mapping[str, int],
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        self.tasks = task_options(tasks)
        if not self.tasks:
            raise ValueError("data.source.tasks: name at least one reasoning-gym task, e.g. [gsm_symbolic]")
        self.sizes = {split: int(size) for split, size in sizes.items()}
        self.seed, self.cache_dir = int(seed), cache_dir

    def load_splits(self, fields: Sequence[str] = ()) -> dict[str, Dataset]:
        _import()
        version = metadata.version("reasoning-gym")
        order = [split for split in self.sizes if split != "train"] + (["train"] if "train" in self.sizes else [])
        seen: list[str] = []
        out: dict[str, Dataset] = {}
        for position, split in enumerate(order):
            kwargs = {
                "tasks": {**self.tasks, "__exclude__": sorted(seen)},
                "sizes": {split: self.sizes[split]},
                "seed": self.seed + position,
                "version": version,
            }
            out[split] = Dataset.from_generator(
                _rows,
                features=FEATURES,
                gen_kwargs=kwargs,
                cache_dir=None if self.cache_dir is None else str(self.cache_dir),
            )
            seen.extend(out[split]["question"])
        return {split: out[split] for split in self.sizes}

    def describe(self, split: str) -> str:
        return f"reasoning-gym {','.join(self.tasks)} (seed {self.seed}) split {split!r}"
