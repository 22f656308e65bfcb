import pytest

from blocksft.evaluation.answers import (
    SCHEMES,
    answers_equal,
    gsm8k_flexible,
    gsm8k_strict,
    gsm8k_target,
    math_boxed,
    normalize_math,
    normalize_number,
    score,
    the_answer_is,
)

GSM8K_SOLUTION = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n"
    "#### 72"
)


# ----------------------------------------------------------------- normalize_number


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("72", "72"),
        ("72.0", "72"),
        ("72.", "72"),
        ("3.50", "3.5"),
        ("1,234", "1234"),
        ("$1,234.00", "1234"),
        ("+5", "5"),
        ("-3", "-3"),
        ("-0", "0"),
        ("007", "7"),
        (".5", "0.5"),
        (" 42 ", "42"),
    ],
)
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


# ----------------------------------------------------------------- gsm8k_strict


@pytest.mark.parametrize(
    "text, expected",
    [
        (GSM8K_SOLUTION, "72"),
        ("#### 72", "72"),
        ("####72", "72"),
        ("so\n#### 1,234", "1234"),
        ("#### $18", "18"),
        ("#### -3", "-3"),
        ("#### +4", "4"),
        ("#### 72.0", "72"),
        ("#### 72.", "72"),
        ("#### 3.50", "3.5"),
        ("#### 5\nmore text #### 6", "6"),  # last marker wins
        ("#### 5 apples", "5"),
        ("the answer is 72", None),  # no marker
        ("#### ", None),  # marker without number
        ("#### 5\n####", None),  # last marker has no number
        ("", None),
    ],
)
def test_gsm8k_strict(text, expected):
    assert gsm8k_strict(text) == expected


# ----------------------------------------------------------------- gsm8k_flexible


@pytest.mark.parametrize(
    "text, expected",
    [
        (GSM8K_SOLUTION, "72"),
        ("She has 3 apples and buys 4, so 7.", "7"),
        ("Total is $1,234.50 today", "1234.5"),
        ("It dropped to -5 degrees", "-5"),
        ("pages 10-20", "20"),  # a hyphen after a digit is not a sign
        ("x = 3.0", "3"),
        ("first 1, 2, 3", "3"),  # a comma list is not a thousands number
        ("no numbers here", None),
        ("", None),
    ],
)
def test_gsm8k_flexible(text, expected):
    assert gsm8k_flexible(text) == expected


def test_gsm8k_target():
    assert gsm8k_target(GSM8K_SOLUTION) == "72"
    assert gsm8k_target("a\nb\n#### 1,000") == "1000"
    assert gsm8k_target("#### -7") == "-7"
    with pytest.raises(ValueError, match="####"):
        gsm8k_target("The answer is 72")
    with pytest.raises(ValueError):
        gsm8k_target("#### ")


# ----------------------------------------------------------------- math_boxed


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so the answer is $\boxed{5}$.", "5"),
        (r"$\boxed{\frac{1}{2}}$", r"\frac{1}{2}"),
        (r"\boxed{\sqrt{\frac{a}{b}}}", r"\sqrt{\frac{a}{b}}"),  # nested braces
        (r"\boxed{1} then \boxed{2}", "2"),  # last box wins
        (r"\fbox{7}", "7"),
        (r"\boxed{3} and \fbox{4}", "4"),
        (r"\boxed {x+1}", "x+1"),
        (r"$\boxed 5$", "5"),
        (r"\boxed{unbalanced", None),
        ("no box here", None),
        ("", None),
    ],
)
def test_math_boxed(text, expected):
    assert math_boxed(text) == expected


# ----------------------------------------------------------------- normalize_math


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1 + 2", "1+2"),  # spaces
        (r"\left( 1, 2 \right)", "(1,2)"),  # \left / \right
        (r"10\!000", "10000"),  # \!
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),  # dfrac
        (r"\tfrac{3}{4}", r"\frac{3}{4}"),  # tfrac
        (r"90^\circ", "90"),  # degrees
        (r"90^{\circ}", "90"),
        (r"\$5", "5"),  # dollars
        ("$x$", "x"),
        (r"5 \text{ cm}", "5"),  # unit at end
        (r"12\mbox{ inches}", "12"),
        (r"\text{(A)}", "(A)"),  # only text: unwrap
        (r"50\%", "50"),  # percent
        ("7.", "7"),  # trailing period
        ("0.5", "0.5"),  # kept as is
        (".5", "0.5"),  # leading period
        (r"\frac{.5}{2}", r"\frac{0.5}{2}"),
        (r"\frac12", r"\frac{1}{2}"),  # fracs
        (r"\frac1{2}", r"\frac{1}{2}"),
        (r"\frac{1}2", r"\frac{1}{2}"),
        (r"\frac{a}{b}", r"\frac{a}{b}"),
        ("3/4", r"\frac{3}{4}"),  # simple a/b
        ("-3/4", r"-\frac{3}{4}"),
        ("x/4", "x/4"),  # not a simple fraction
        ("x=5", "5"),  # short lhs removed
        ("k = 2", "2"),
        ("abc=5", "abc=5"),  # long lhs kept
        (r"\sqrt3", r"\sqrt{3}"),
        (r"\sqrt 3", r"\sqrt{3}"),
        (r"\sqrt{3}", r"\sqrt{3}"),
        ("line\nbreak", "linebreak"),
        (None, ""),
    ],
)
def test_normalize_math(raw, expected):
    assert normalize_math(raw) == expected


# ----------------------------------------------------------------- the_answer_is


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Janet has 3 eggs.\nThe answer is: 18", "18"),
        ("The answer is: 18.", "18"),
        ("The answer is:  \\frac{1}{2} ", "\\frac{1}{2}"),
        ("The answer is: 5\nThe answer is: 6", "6"),  # last one wins
        ("The answer is: 7\nextra generated text", "7"),  # first line only
        ("the answer is 9", "9"),
        ("The answer is:", None),
        ("no answer", None),
        ("", None),
    ],
)
def test_the_answer_is(text, expected):
    assert the_answer_is(text) == expected


# ----------------------------------------------------------------- answers_equal


@pytest.mark.parametrize(
    "a, b, equal",
    [
        ("3.50", "3.5", True),
        ("1,000", "1000", True),
        ("$5", "5", True),
        ("0.5", r"\frac{1}{2}", True),
        (r"\dfrac12", "1/2", True),
        ("-2/4", "-0.5", True),
        ("x=3", "3", True),
        ("1,2", "12", False),  # a list is not a thousands number
        ("3", "4", False),
        (r"\sqrt{2}", r"\sqrt2", True),
        (None, "3", False),
    ],
)
def test_answers_equal(a, b, equal):
    assert answers_equal(a, b) is equal


# ----------------------------------------------------------------- score


def test_score_gsm8k():
    r = score("3 + 4 = 7\n#### 7", "7", "gsm8k")
    assert r == {"extracted": "7", "correct": True, "extracted_flexible": "7", "correct_flexible": True}

    # full GSM8K answer field as target
    assert score("#### 72", GSM8K_SOLUTION, "gsm8k")["correct"] is True
    # numerically equal forms
    r = score("#### 3.50", "3.5", "gsm8k")
    assert r["correct"] and r["extracted"] == "3.5"
    assert score("#### 1,234", "1234", "gsm8k")["correct"]
    assert score("#### -3", "-3", "gsm8k")["correct"]
    assert not score("#### 3", "-3", "gsm8k")["correct"]

    # no marker: strict fails, flexible can still succeed
    r = score("so she has 7 apples", "7", "gsm8k")
    assert r["extracted"] is None and r["correct"] is False
    assert r["extracted_flexible"] == "7" and r["correct_flexible"] is True

    # wrong answer
    r = score("#### 8", "7", "gsm8k")
    assert r["correct"] is False and r["correct_flexible"] is False

    # empty prediction
    r = score("", "7", "gsm8k")
    assert r["extracted"] is None and r["extracted_flexible"] is None and not r["correct"]


def test_score_math():
    r = score(r"so $\boxed{\dfrac{1}{2}}$", r"\frac{1}{2}", "math")
    assert r["extracted"] == r"\dfrac{1}{2}"
    assert r["correct"] is True and r["correct_exact"] is False

    # target given as a full solution with a box
    assert score(r"\boxed{3/4}", r"Hence $\boxed{\frac34}$.", "math")["correct"]
    # numeric equality
    assert score(r"\boxed{0.5}", r"\frac{1}{2}", "math")["correct"]
    # raw exact match
    r = score("  42 ", "42", "math")
    assert r["correct_exact"] is True and r["extracted"] is None and r["correct"] is False
    # wrong
    assert not score(r"\boxed{2}", "3", "math")["correct"]
    assert set(score("", "1", "math")) == {
        "extracted",
        "correct",
        "correct_exact",
        "extracted_flexible",
        "correct_flexible",
    }


def test_score_metamathqa():
    r = score("2 + 3 = 5\nThe answer is: 5", "5", "metamathqa")
    assert r == {"extracted": "5", "correct": True, "extracted_flexible": "5", "correct_flexible": True}
    # target given as a full MetaMathQA response
    assert score("The answer is: 5.0", "blah\nThe answer is: 5", "metamathqa")["correct"]
    assert score("The answer is: \\frac12", "\\frac{1}{2}", "metamathqa")["correct"]
    r = score("I think 5", "5", "metamathqa")
    assert r["extracted"] is None and not r["correct"]
    assert not score("The answer is: 6", "5", "metamathqa")["correct"]


def test_score_unknown_scheme():
    with pytest.raises(ValueError) as e:
        score("#### 1", "1", "mmlu")
    msg = str(e.value)
    assert "mmlu" in msg
    for s in SCHEMES:
        assert s in msg
