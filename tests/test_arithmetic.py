import random
import re
import time

import pytest

from blocksft.data.arithmetic import (
    TEMPLATES,
    ArithmeticConfig,
    generate_problem,
    generate_splits,
)
from blocksft.evaluation.answers import gsm8k_target

LINE_RE = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)")
SIZES = {"train": 400, "validation": 50, "test": 50}


def check_row(row: dict, config: ArithmeticConfig) -> list[tuple[str, int]]:
    """Assert that a row is well formed and arithmetically correct; return its [(op, operand)]."""
    assert set(row) == {"question", "answer"}
    q, a = row["question"], row["answer"]
    assert q.isascii() and a.isascii()
    assert "<<" not in a
    lines = a.split("\n")
    assert re.fullmatch(r"#### \d+", lines[-1]), a
    assert "\n#### " in a and "\n\n" not in a
    steps = lines[:-1]
    assert config.min_ops <= len(steps) <= config.max_ops, a
    ops, prev = [], None
    for line in steps:
        m = LINE_RE.fullmatch(line)
        assert m, f"bad solution line {line!r}"
        x, op, n, y = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        expected = x + n if op == "+" else x - n if op == "-" else x * n
        assert y == expected, line
        assert 0 <= y <= config.max_result
        if prev is not None:
            assert x == prev, "lines must chain"
        assert op in config.operations
        if op == "*":
            assert 2 <= n <= min(5, config.max_operand)
        else:
            assert 1 <= n <= config.max_operand
        ops.append((op, n))
        prev = y
    # the final answer equals the recomputed value
    assert gsm8k_target(a) == str(prev)
    # the question mentions the start value and the operands, in order, and nothing else
    start = int(LINE_RE.fullmatch(steps[0]).group(1))
    assert 1 <= start <= config.max_operand
    assert [int(t) for t in re.findall(r"\d+", q)] == [start] + [n for _, n in ops]
    assert q.endswith("?")
    return ops


def _template_regex(template) -> re.Pattern:
    pat = re.escape(template.start)
    nouns = "|".join(w for pair in template.items for w in pair)
    pat = pat.replace(re.escape("{name}"), r"[A-Z][a-z]+").replace(re.escape("{count}"), rf"\d+ (?:{nouns})")
    return re.compile(pat + " ")


def template_index(question: str) -> int:
    hits = [i for i, t in enumerate(TEMPLATES) if _template_regex(t).match(question)]
    assert len(hits) == 1, question
    return hits[0]


# ------------------------------------------------------------------ big default sample


@pytest.fixture(scope="module")
def default_splits():
    # CPU seconds of this process, not wall time: a job sharing the cores must not fail the bound (it takes about
    # 0.4 s; the bound catches a generator that turned quadratic, it is not a speed figure).
    t0 = time.process_time()
    splits = generate_splits(ArithmeticConfig(), {"train": 50_000, "validation": 500, "test": 500}, seed=0)
    elapsed = time.process_time() - t0
    return splits, elapsed


def test_default_50k_fast_disjoint_and_correct(default_splits):
    splits, elapsed = default_splits
    assert elapsed < 5.0, f"generating 51k rows took {elapsed:.2f} CPU s"
    assert list(splits) == ["train", "validation", "test"]
    assert [len(v) for v in splits.values()] == [50_000, 500, 500]
    qs = {k: {r["question"] for r in v} for k, v in splits.items()}
    assert all(len(qs[k]) == len(splits[k]) for k in splits)  # no duplicates within a split
    assert not qs["train"] & qs["validation"]
    assert not qs["train"] & qs["test"]
    assert not qs["validation"] & qs["test"]
    cfg = ArithmeticConfig()
    for row in splits["validation"] + splits["test"] + splits["train"][:2000]:
        check_row(row, cfg)
    lengths = [len(r["answer"]) for v in splits.values() for r in v]
    assert max(lengths) <= 60
    # all templates and both ops are used
    assert {template_index(r["question"]) for r in splits["train"][:2000]} == set(range(len(TEMPLATES)))


def test_example_format():
    row = generate_problem(random.Random(3), ArithmeticConfig(min_ops=2, max_ops=2))
    q, a = row["question"], row["answer"]
    assert len(a.split("\n")) == 3
    assert " Then " in q


# ------------------------------------------------------------------ determinism


def test_determinism_and_seed_sensitivity():
    cfg = ArithmeticConfig()
    random.seed(123)
    a = generate_splits(cfg, SIZES, seed=7)
    random.seed(456)  # the global RNG must not matter
    b = generate_splits(cfg, SIZES, seed=7)
    c = generate_splits(cfg, SIZES, seed=8)
    assert a == b
    assert a["train"] != c["train"] and a["test"] != c["test"]

    r1 = [generate_problem(random.Random(5), cfg) for _ in range(3)]
    r2 = [generate_problem(random.Random(5), cfg) for _ in range(3)]
    assert r1 == r2


def test_eval_splits_independent_of_train_size():
    cfg = ArithmeticConfig()
    small = generate_splits(cfg, {"train": 10, "validation": 30, "test": 30}, seed=1)
    big = generate_splits(cfg, {"train": 300, "validation": 30, "test": 30}, seed=1)
    assert small["validation"] == big["validation"] and small["test"] == big["test"]
    assert big["train"][:10] == small["train"]


def test_custom_split_names_and_zero_size():
    out = generate_splits(ArithmeticConfig(), {"test": 5, "train": 0, "dev": 3}, seed=0)
    assert list(out) == ["test", "train", "dev"]
    assert [len(v) for v in out.values()] == [5, 0, 3]


# ------------------------------------------------------------------ knobs


@pytest.mark.parametrize(
    "cfg",
    [
        ArithmeticConfig(max_operand=5, min_ops=1, max_ops=1, operations=("+",)),
        ArithmeticConfig(max_operand=9, min_ops=3, max_ops=3, operations=("-",)),
        ArithmeticConfig(max_operand=3, min_ops=2, max_ops=4, operations=("*", "+")),
        ArithmeticConfig(max_operand=50, min_ops=1, max_ops=3, operations=("+", "-", "*"), max_result=60),
        ArithmeticConfig(max_operand=100, min_ops=2, max_ops=2, operations=("*",), max_result=200),
    ],
)
def test_knobs_respected(cfg):
    rng = random.Random(0)
    seen_ops, seen_counts, operands = set(), set(), []
    for _ in range(400):
        ops = check_row(generate_problem(rng, cfg), cfg)
        seen_ops |= {o for o, _ in ops}
        seen_counts.add(len(ops))
        operands += [n for o, n in ops if o != "*"]
    assert seen_ops == set(cfg.operations)
    assert seen_counts == set(range(cfg.min_ops, cfg.max_ops + 1))
    if operands:
        assert max(operands) <= cfg.max_operand


def test_operand_range_is_covered():
    cfg = ArithmeticConfig(max_operand=6, operations=("+",), min_ops=1, max_ops=1)
    rng = random.Random(0)
    values = set()
    for _ in range(300):
        m = LINE_RE.fullmatch(generate_problem(rng, cfg)["answer"].split("\n")[0])
        values |= {int(m.group(1)), int(m.group(3))}
    assert values == set(range(1, 7))


@pytest.mark.parametrize("k", [1, 3])
def test_num_templates(k):
    rng = random.Random(0)
    cfg = ArithmeticConfig(num_templates=k)
    used = {template_index(generate_problem(rng, cfg)["question"]) for _ in range(300)}
    assert used == set(range(k))


def test_operations_list_is_converted():
    cfg = ArithmeticConfig(operations=["+", "*"])
    assert cfg.operations == ("+", "*")
    hash(cfg)  # still hashable (frozen)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_operand": 0}, "max_operand"),
        ({"max_operand": 2.5}, "max_operand"),
        ({"min_ops": 0}, "min_ops"),
        ({"min_ops": 3, "max_ops": 2}, "min_ops"),
        ({"operations": ("/",)}, "operations"),
        ({"operations": ()}, "operations"),
        ({"operations": ("+", "x")}, "operations"),
        ({"max_result": 0}, "max_result"),
        ({"num_templates": 0}, "num_templates"),
        ({"num_templates": len(TEMPLATES) + 1}, "num_templates"),
        ({"operations": ("*",), "max_operand": 1}, "max_operand"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError) as e:
        ArithmeticConfig(**kwargs)
    msg = str(e.value)
    assert field in msg and "\n" not in msg
    if field == "operations":
        assert "'+'" in msg and "'-'" in msg and "'*'" in msg


def test_too_small_problem_space_raises():
    # start 1, one "+1" step, one template: only (names x items) distinct questions
    cfg = ArithmeticConfig(max_operand=1, min_ops=1, max_ops=1, operations=("+",), num_templates=1)
    space = 16 * len(TEMPLATES[0].items)
    full = generate_splits(cfg, {"train": space - 10, "test": 10}, seed=0)  # exactly fits
    assert sum(len(v) for v in full.values()) == space
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="too small") as e:
        generate_splits(cfg, {"train": space, "test": 10}, seed=0)
    assert f"'train': {space}" in str(e.value)
    assert time.perf_counter() - t0 < 3.0


def test_bad_sizes():
    with pytest.raises(ValueError, match="sizes"):
        generate_splits(ArithmeticConfig(), {"train": -1}, seed=0)
    with pytest.raises(ValueError, match="sizes"):
        generate_splits(ArithmeticConfig(), {}, seed=0)
