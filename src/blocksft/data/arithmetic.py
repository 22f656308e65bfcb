"""Seeded generator of short GSM8K-style arithmetic word problems.

This is the project's offline default dataset. Rows use GSM8K's schema exactly::

    {"question": "Mia has 7 apples. She buys 5 more. Then she gives away 3. "
                 "How many apples does Mia have now?",
     "answer": "7 + 5 = 12\\n12 - 3 = 9\\n#### 9"}

The text is ASCII only, short and regular so that a tiny character-level model
can learn it; difficulty is controlled by :class:`ArithmeticConfig`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ALLOWED_OPERATIONS",
    "TEMPLATES",
    "ArithmeticConfig",
    "generate_problem",
    "generate_splits",
]

ALLOWED_OPERATIONS: tuple[str, ...] = ("+", "-", "*")
MAX_MULTIPLIER = 5  # multipliers for "*" are drawn from [2, min(MAX_MULTIPLIER, max_operand)]

_FEMALE = ("Mia", "Ava", "Lily", "Emma", "Zoe", "Nora", "Ella", "Ruby")
_MALE = ("Leo", "Sam", "Max", "Ben", "Tom", "Jack", "Noah", "Eli")
_NAMES: tuple[tuple[str, str], ...] = tuple((n, "she") for n in _FEMALE) + tuple((n, "he") for n in _MALE)


@dataclass(frozen=True)
class _Template:
    """One story. Placeholders: {name}, {p} (pronoun), {item} (plural noun), {n}
    (operand) and, in ``start`` only, {count} ("1 apple" / "7 apples")."""

    start: str  # first sentence, introduces the starting amount
    plus: str  # sentence for "+", lower-case first word (no name first)
    minus: str  # sentence for "-"
    times: str  # sentence for "*"
    question: str
    items: tuple[tuple[str, str], ...]  # (singular, plural)


TEMPLATES: tuple[_Template, ...] = (
    _Template(
        "{name} has {count}.",
        "{p} buys {n} more.",
        "{p} gives away {n}.",
        "{p} ends up with {n} times as many.",
        "How many {item} does {name} have now?",
        (("apple", "apples"), ("pear", "pears"), ("plum", "plums"), ("book", "books"), ("pen", "pens")),
    ),
    _Template(
        "{name} collects {count}.",
        "{p} finds {n} more.",
        "{p} loses {n}.",
        "{p} ends up with {n} times as many.",
        "How many {item} does {name} have now?",
        (("sticker", "stickers"), ("shell", "shells"), ("stamp", "stamps"), ("card", "cards"), ("coin", "coins")),
    ),
    _Template(
        "{name} bakes {count}.",
        "{p} bakes {n} more.",
        "{p} eats {n}.",
        "{p} ends up with {n} times as many.",
        "How many {item} are left?",
        (("cookie", "cookies"), ("muffin", "muffins"), ("pie", "pies"), ("cake", "cakes"), ("bun", "buns")),
    ),
    _Template(
        "A jar holds {count}.",
        "{name} adds {n} more.",
        "{name} takes out {n}.",
        "the number of {item} grows {n} times.",
        "How many {item} are in the jar now?",
        (("marble", "marbles"), ("bead", "beads"), ("candy", "candies"), ("button", "buttons"), ("nut", "nuts")),
    ),
    _Template(
        "{name} has {count}.",
        "{p} earns {n} more.",
        "{p} spends {n}.",
        "{p} ends up with {n} times as much.",
        "How many dollars does {name} have now?",
        (("dollar", "dollars"),),
    ),
    _Template(
        "A bus has {count}.",
        "at a stop, {n} get on.",
        "at a stop, {n} get off.",
        "the number of {item} grows {n} times.",
        "How many {item} are on the bus now?",
        (("person", "people"), ("kid", "kids"), ("adult", "adults")),
    ),
    _Template(
        "{name} plants {count}.",
        "{p} plants {n} more.",
        "{n} of them die.",
        "the number of {item} grows {n} times.",
        "How many {item} does {name} have now?",
        (("tree", "trees"), ("rose", "roses"), ("tulip", "tulips"), ("bush", "bushes")),
    ),
    _Template(
        "A shelf has {count}.",
        "{name} puts {n} more on it.",
        "{name} takes {n} off it.",
        "the number of {item} grows {n} times.",
        "How many {item} are on the shelf now?",
        (("book", "books"), ("toy", "toys"), ("cup", "cups"), ("plate", "plates"), ("box", "boxes")),
    ),
)


def _allowed_str(values: Sequence[str]) -> str:
    return "{" + ", ".join(repr(v) for v in values) + "}"


@dataclass(frozen=True)
class ArithmeticConfig:
    """Difficulty knobs of the generator.

    max_operand:   operands (and the starting amount) are drawn from [1, max_operand];
                   multipliers for "*" from [2, min(5, max_operand)].
    min_ops/max_ops: number of operations per problem, uniform in [min_ops, max_ops].
    operations:    subset of ("+", "-", "*"); every value stays in [0, max_result].
    max_result:    upper bound of every intermediate and final value.
    num_templates: None = all templates, k = only the first k templates.
    """

    max_operand: int = 20
    min_ops: int = 1
    max_ops: int = 2
    operations: tuple[str, ...] = ("+", "-")
    max_result: int = 999
    num_templates: int | None = None

    def __post_init__(self) -> None:
        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.max_operand) or self.max_operand < 1:
            raise ValueError(f"ArithmeticConfig.max_operand must be an int >= 1, got {self.max_operand!r}")
        if not is_int(self.min_ops) or not is_int(self.max_ops) or not 1 <= self.min_ops <= self.max_ops:
            raise ValueError(
                f"ArithmeticConfig.min_ops/max_ops must be ints with 1 <= min_ops <= max_ops, "
                f"got min_ops={self.min_ops!r}, max_ops={self.max_ops!r}"
            )
        ops = self.operations
        if isinstance(ops, str):
            ops = tuple(ops)  # "+-" -> ("+", "-")
        try:
            ops = tuple(str(o) for o in ops)  # accepts lists / OmegaConf ListConfig
        except TypeError:
            raise ValueError(
                f"ArithmeticConfig.operations must be a non-empty subset of {_allowed_str(ALLOWED_OPERATIONS)}, "
                f"got {self.operations!r}"
            ) from None
        if not ops or any(o not in ALLOWED_OPERATIONS for o in ops):
            raise ValueError(
                f"ArithmeticConfig.operations must be a non-empty subset of {_allowed_str(ALLOWED_OPERATIONS)}, "
                f"got {self.operations!r}"
            )
        object.__setattr__(self, "operations", tuple(dict.fromkeys(ops)))
        if self.operations == ("*",) and self.max_operand < 2:
            raise ValueError(
                f"ArithmeticConfig.max_operand must be >= 2 when operations is ('*',) (multipliers are >= 2), "
                f"got {self.max_operand!r}"
            )
        if not is_int(self.max_result) or self.max_result < 1:
            raise ValueError(f"ArithmeticConfig.max_result must be an int >= 1, got {self.max_result!r}")
        if self.num_templates is not None and (
            not is_int(self.num_templates) or not 1 <= self.num_templates <= len(TEMPLATES)
        ):
            raise ValueError(
                f"ArithmeticConfig.num_templates must be None or an int in [1, {len(TEMPLATES)}], "
                f"got {self.num_templates!r}"
            )

    @property
    def templates(self) -> tuple[_Template, ...]:
        return TEMPLATES if self.num_templates is None else TEMPLATES[: self.num_templates]


_MAX_PROBLEM_RESTARTS = 1000


def _sample_steps(rng: random.Random, config: ArithmeticConfig) -> tuple[int, list[tuple[str, int, int]]] | None:
    """Start value and [(op, operand, result), ...], or None on a dead end."""
    hi = min(config.max_operand, config.max_result)
    cur = rng.randint(1, hi)
    start = cur
    n_ops = rng.randint(config.min_ops, config.max_ops)
    steps = []
    for _ in range(n_ops):
        # Feasible operand ranges for each allowed op (never negative, never > max_result).
        choices = []
        for op in config.operations:
            if op == "+":
                top = min(config.max_operand, config.max_result - cur)
                if top >= 1:
                    choices.append((op, 1, top))
            elif op == "-":
                top = min(config.max_operand, cur)
                if top >= 1:
                    choices.append((op, 1, top))
            else:  # "*"
                if cur >= 1:
                    top = min(MAX_MULTIPLIER, config.max_operand, config.max_result // cur)
                    if top >= 2:
                        choices.append((op, 2, top))
        if not choices:
            return None
        op, lo, top = choices[rng.randrange(len(choices))]
        n = rng.randint(lo, top)
        new = cur + n if op == "+" else cur - n if op == "-" else cur * n
        steps.append((op, n, new))
        cur = new
    return start, steps


def _render(rng: random.Random, config: ArithmeticConfig, start: int, steps) -> dict:
    tpl = config.templates[rng.randrange(len(config.templates))]
    name, pronoun = _NAMES[rng.randrange(len(_NAMES))]
    singular, item = tpl.items[rng.randrange(len(tpl.items))]
    count = f"{start} {singular if start == 1 else item}"
    sentences = [tpl.start.format(name=name, p=pronoun, item=item, count=count)]
    lines = []
    cur = start
    for i, (op, n, new) in enumerate(steps):
        pattern = tpl.plus if op == "+" else tpl.minus if op == "-" else tpl.times
        s = pattern.format(name=name, p=pronoun, item=item, n=n)
        s = "Then " + s if i > 0 else s[0].upper() + s[1:]
        sentences.append(s)
        lines.append(f"{cur} {op} {n} = {new}")
        cur = new
    sentences.append(tpl.question.format(name=name, p=pronoun, item=item))
    lines.append(f"#### {cur}")
    return {"question": " ".join(sentences), "answer": "\n".join(lines)}


def generate_problem(rng: random.Random, config: ArithmeticConfig | None = None) -> dict:
    """One GSM8K-style row ``{"question": str, "answer": str}`` drawn with ``rng``."""
    config = ArithmeticConfig() if config is None else config
    for _ in range(_MAX_PROBLEM_RESTARTS):
        sampled = _sample_steps(rng, config)
        if sampled is not None:
            return _render(rng, config, *sampled)
    raise ValueError(
        f"could not sample a valid problem in {_MAX_PROBLEM_RESTARTS} attempts for {config}; "
        "the knobs leave (almost) no valid problems (e.g. only '-' with many ops)"
    )


def generate_splits(config: ArithmeticConfig, sizes: dict[str, int], seed: int) -> dict[str, list[dict]]:
    """Generate disjoint splits, e.g. ``sizes={"train": 10000, "validation": 500, "test": 500}``.

    No question appears twice, within or across splits. Deterministic given ``seed``
    (uses only ``random.Random(seed)``). Non-train splits are filled first (in the
    order of ``sizes``) and ``"train"`` last, so evaluation splits do not change when
    only the train size changes. The returned dict has the keys of ``sizes`` in order.

    Raises ValueError if the problem space is too small to provide
    ``sum(sizes.values())`` unique questions.
    """
    if not isinstance(sizes, dict) or not sizes:
        raise ValueError(f"sizes must be a non-empty dict of split name -> count, got {sizes!r}")
    for k, v in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"sizes[{k!r}] must be an int >= 0, got {v!r}")
    total = sum(sizes.values())
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    max_misses = max(20_000, total)  # consecutive duplicates before giving up
    misses = 0
    while len(rows) < total:
        row = generate_problem(rng, config)
        if row["question"] in seen:
            misses += 1
            if misses > max_misses:
                raise ValueError(
                    f"problem space too small: only {len(rows)} unique problems found for sizes={sizes} "
                    f"(total {total}) after {max_misses} consecutive duplicates; "
                    "increase max_operand, max_ops, operations or num_templates, or request fewer rows"
                )
            continue
        misses = 0
        seen.add(row["question"])
        rows.append(row)

    order = [k for k in sizes if k != "train"] + (["train"] if "train" in sizes else [])
    out: dict[str, list[dict]] = {}
    pos = 0
    for k in order:
        out[k] = rows[pos : pos + sizes[k]]
        pos += sizes[k]
    return {k: out[k] for k in sizes}
