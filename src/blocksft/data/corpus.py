"""Seeded corpus of plain documents for pretraining (``data=pretrain_corpus``): procedural arithmetic
written as text in several formats, none of them the SFT layout (a question, a newline, equation
lines, ``#### n``), so that fine-tuning has a format to adapt to while the skill is already there.

A document is paragraphs separated by a blank line, added while the document stays within
``max_chars`` (at least one paragraph; a paragraph that does not fit is redrawn a few times). Each
paragraph is one item in a format drawn with the weights of ``formats``; the problems come from the SFT
generator (``blocksft.data.arithmetic``, same knobs), so the corpus carries the per-step skill of the chain tasks:

* ``story``: the word problem told with its computation inline ("..., so now she has 7 + 5 = 12.");
* ``worked``: "Problem: <question> Solution: 7 + 5 = 12, then 12 - 3 = 9. The answer is 9.";
* ``chain``: a bare chain "7 + 5 - 3 = ? First 7 + 5 = 12. Next 12 - 3 = 9. Result: 9.";
* ``table``: "start 7 | + 5 -> 12 | - 3 -> 9 | end 9";
* ``facts``: single-operation facts "7 + 5 = 12; 19 - 4 = 15; ..." drawn uniformly over every fact of
  the range (left operand 0..max_result: the running values of chains);
* ``reasoning_gym``: a question and its answer from the ``reasoning_gym_tasks`` generators
  ("Q: ... A: ..."), when that list is not empty.

Rows: ``{"text": document}``; splits are disjoint by document text; deterministic given ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from datasets import Dataset

from blocksft.data.arithmetic import _NAMES, ArithmeticConfig, _render, _sample_steps

FORMATS = ("story", "worked", "chain", "table", "facts", "reasoning_gym")
FACTS_PER_PARAGRAPH = 6
REDRAWS = 3  # draws of a paragraph that does not fit before a document ends


def _story(rng: random.Random, config: ArithmeticConfig, start: int, steps) -> str:
    template = config.templates[rng.randrange(len(config.templates))]
    name, pronoun = _NAMES[rng.randrange(len(_NAMES))]
    singular, item = template.items[rng.randrange(len(template.items))]
    sentences = [
        template.start.format(name=name, p=pronoun, item=item, count=f"{start} {singular if start == 1 else item}")
    ]
    current = start
    for index, (op, n, new) in enumerate(steps):
        pattern = template.plus if op == "+" else template.minus if op == "-" else template.times
        text = pattern.format(name=name, p=pronoun, item=item, n=n).rstrip(".")
        text = "Then " + text if index else text[0].upper() + text[1:]
        sentences.append(f"{text}, so that makes {current} {op} {n} = {new}.")
        current = new
    return " ".join(sentences) + f" In the end there are {current} {item}."


def _question(rng: random.Random, config: ArithmeticConfig, start: int, steps) -> str:
    return _render(rng, config, start, steps)["question"]


def _equations(start: int, steps) -> list[str]:
    current, lines = start, []
    for op, n, new in steps:
        lines.append(f"{current} {op} {n} = {new}")
        current = new
    return lines


def _fact(rng: random.Random, config: ArithmeticConfig) -> str:
    """One ``a op b = c`` drawn uniformly over every fact of the knobs' range: ``a`` in [0, max_result]
    (a chain's running value can be any of them, not only a starting amount), ``b`` in [1, max_operand],
    ``c`` in [0, max_result]; ``*`` multipliers as the generator draws them."""
    while True:
        a, op = rng.randint(0, config.max_result), config.operations[rng.randrange(len(config.operations))]
        if op == "*":
            b = rng.randint(2, max(2, min(5, config.max_operand)))
        else:
            b = rng.randint(1, config.max_operand)
        c = a + b if op == "+" else a - b if op == "-" else a * b
        if 0 <= c <= config.max_result:
            return f"{a} {op} {b} = {c}"


def render_item(kind: str, rng: random.Random, config: ArithmeticConfig, rg_items: list[str]) -> str:
    """One paragraph of format ``kind`` drawn with ``rng``."""
    if kind == "reasoning_gym":
        return rg_items[rng.randrange(len(rg_items))]
    if kind == "facts":
        return "; ".join(_fact(rng, config) for _ in range(FACTS_PER_PARAGRAPH)) + "."
    sampled = None
    while sampled is None:
        sampled = _sample_steps(rng, config)
    start, steps = sampled
    result = steps[-1][2]
    if kind == "story":
        return _story(rng, config, start, steps)
    if kind == "worked":
        return (
            f"Problem: {_question(rng, config, start, steps)} Solution: {', then '.join(_equations(start, steps))}. "
            f"The answer is {result}."
        )
    if kind == "chain":
        expression = f"{start} " + " ".join(f"{op} {n}" for op, n, _ in steps)
        lines = _equations(start, steps)
        return (
            f"{expression} = ? First {lines[0]}."
            + "".join(f" Next {line}." for line in lines[1:])
            + f" Result: {result}."
        )
    if kind == "table":
        return f"start {start} | " + " | ".join(f"{op} {n} -> {new}" for op, n, new in steps) + f" | end {result}"
    raise ValueError(f"data.source.formats: unknown format {kind!r}; allowed {', '.join(FORMATS)}")


def reasoning_gym_paragraphs(tasks: Sequence[str], size: int, seed: int) -> list[str]:
    """``size`` "Q: ... A: ..." paragraphs per task of ``reasoning_gym`` (imported only when used)."""
    from blocksft.data.reasoning_gym import generate_rows

    rows = generate_rows(list(tasks), size, seed)
    return [f"Q: {row['question'].strip()}\nA: {row['answer'].strip()}" for row in rows]


class ProceduralCorpusSource:
    """Pretraining documents (schema ``text``); ``sizes: {split: documents}``, disjoint splits."""

    def __init__(
        self,
        sizes: Mapping[str, int],
        seed: int = 0,
        max_chars: int = 240,
        formats: Mapping[str, float] | None = None,
        reasoning_gym_tasks: Sequence[str] = (),
        reasoning_gym_size: int = 2000,
        **knobs,
    ) -> None:
        self.sizes = {split: int(size) for split, size in sizes.items()}
        self.seed, self.max_chars = seed, int(max_chars)
        self.formats = dict(formats or {"story": 1.0, "worked": 1.0, "chain": 1.0, "table": 1.0, "facts": 1.0})
        unknown = [kind for kind in self.formats if kind not in FORMATS]
        if unknown or not self.formats or any(float(w) < 0 for w in self.formats.values()):
            raise ValueError(
                f"data.source.formats={self.formats}: allowed non-negative weights of {', '.join(FORMATS)}"
            )
        self.reasoning_gym_tasks, self.reasoning_gym_size = list(reasoning_gym_tasks), int(reasoning_gym_size)
        if self.formats.get("reasoning_gym", 0) > 0 and not self.reasoning_gym_tasks:
            raise ValueError("data.source.formats.reasoning_gym > 0 needs data.source.reasoning_gym_tasks")
        if "operations" in knobs:
            knobs["operations"] = tuple(knobs["operations"])
        self.config = ArithmeticConfig(**knobs)

    def document(self, rng: random.Random, kinds: list[str], weights: list[float], rg_items: list[str]) -> str:
        """Paragraphs while they fit in ``max_chars``; a paragraph that does not fit is redrawn up to
        ``REDRAWS`` times before the document ends."""
        paragraphs: list[str] = []
        length, misses = -2, 0
        while misses <= REDRAWS:
            paragraph = render_item(rng.choices(kinds, weights)[0], rng, self.config, rg_items)
            if paragraphs and length + 2 + len(paragraph) > self.max_chars:
                misses += 1
                continue
            paragraphs.append(paragraph)
            length += 2 + len(paragraph)
        return "\n\n".join(paragraphs)

    def load(self) -> dict[str, list[str]]:
        """Documents per split: evaluation splits first, so they do not change with the train size."""
        rng = random.Random(self.seed)
        kinds = [kind for kind, weight in self.formats.items() if float(weight) > 0]
        weights = [float(self.formats[kind]) for kind in kinds]
        rg_items = (
            reasoning_gym_paragraphs(self.reasoning_gym_tasks, self.reasoning_gym_size, self.seed)
            if "reasoning_gym" in kinds
            else []
        )
        order = [split for split in self.sizes if split != "train"] + (["train"] if "train" in self.sizes else [])
        seen: set[str] = set()
        out: dict[str, list[str]] = {}
        for split in order:
            documents: list[str] = []
            misses = 0
            while len(documents) < self.sizes[split]:
                text = self.document(rng, kinds, weights, rg_items)
                if text in seen:
                    misses += 1
                    if misses > 10_000:
                        raise ValueError(f"data.source: only {len(documents)} distinct {split} documents; lower sizes")
                    continue
                misses = 0
                seen.add(text)
                documents.append(text)
            out[split] = documents
        return {split: out[split] for split in self.sizes}

    def load_splits(self, fields: Sequence[str] = ()) -> dict[str, Dataset]:
        return {split: Dataset.from_dict({"text": texts}) for split, texts in self.load().items()}

    def describe(self, split: str) -> str:
        return f"procedural corpus (seed {self.seed}) split {split!r}"
