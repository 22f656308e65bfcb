"""Answer extraction and scoring for GSM8K, MATH and MetaMathQA style outputs.

Pure string functions (no torch). The main entry point is :func:`score`::

    score("... 7 + 5 = 12\\n#### 12", "12", "gsm8k")
    # {'extracted': '12', 'correct': True,
    #  'extracted_flexible': '12', 'correct_flexible': True}

Extractors return ``None`` when no answer can be found; a ``None`` extraction is
never correct.
"""

from __future__ import annotations

import re
from fractions import Fraction

from blocksft.errors import require

__all__ = [
    "SCHEMES",
    "check_scheme",
    "normalize_number",
    "gsm8k_strict",
    "gsm8k_flexible",
    "gsm8k_target",
    "math_boxed",
    "normalize_math",
    "the_answer_is",
    "any_format_answer",
    "answers_equal",
    "reference_answer",
    "score",
]

SCHEMES: tuple[str, ...] = ("gsm8k", "math", "metamathqa")


def check_scheme(scheme) -> str:
    """``data.answer_scheme``: one of :data:`SCHEMES` (the one statement of the rule)."""
    require(scheme in SCHEMES, "data.answer_scheme", scheme, f"one of {', '.join(SCHEMES)}")
    return scheme


# --------------------------------------------------------------------------- numbers

# A number as it appears in free text: optional sign (a "-" only counts as a sign
# when it does not follow a word character, so "10-20" yields 10 and 20), optional
# "$", digits with optional thousands separators, optional decimal part.
_NUMBER_BODY = r"\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\$?\.\d+"
_NUMBER_RE = re.compile(r"(?:(?<![\w.])[-+])?(?:" + _NUMBER_BODY + r")")
# Anchored variant used right after a "####" marker (sign always allowed).
_LEADING_NUMBER_RE = re.compile(r"\s*([-+]?\s?(?:" + _NUMBER_BODY + r"))")


def normalize_number(s: str) -> str:
    """Canonical string form of a number written as text.

    Strips whitespace, ``$``, thousands commas, a trailing ``.`` and a leading
    ``+``; removes leading zeros of the integer part and trailing zeros of the
    decimal part (``"72.0" -> "72"``, ``"3.50" -> "3.5"``, ``"-0" -> "0"``).
    Strings that are not plain decimal numbers are returned stripped of the
    above characters but otherwise unchanged.
    """
    t = s.strip().replace(",", "").replace("$", "").replace(" ", "")
    t = t.rstrip(".")
    if t.startswith("+"):
        t = t[1:]
    m = re.fullmatch(r"(-?)(\d*)(?:\.(\d*))?", t)
    if not m or not (m.group(2) or m.group(3)):
        return t
    sign, int_part, frac_part = m.group(1), m.group(2), m.group(3) or ""
    int_part = int_part.lstrip("0") or "0"
    frac_part = frac_part.rstrip("0")
    out = int_part + ("." + frac_part if frac_part else "")
    if out == "0":
        sign = ""
    return sign + out


def gsm8k_strict(text: str) -> str | None:
    """The number right after the LAST ``####`` marker, normalised, else None."""
    if text is None:
        return None
    idx = text.rfind("####")
    if idx < 0:
        return None
    m = _LEADING_NUMBER_RE.match(text, idx + 4)
    if not m:
        return None
    return normalize_number(m.group(1))


def gsm8k_flexible(text: str) -> str | None:
    """The last number anywhere in the text, normalised (lm-eval flexible-extract)."""
    if text is None:
        return None
    matches = _NUMBER_RE.findall(text)
    if not matches:
        return None
    return normalize_number(matches[-1])


def gsm8k_target(answer_field: str) -> str:
    """Reference number of a GSM8K ``answer`` field (the text after ``####``)."""
    target = gsm8k_strict(answer_field)
    if target is None:
        raise ValueError(f"GSM8K answer field has no '#### <number>' line: {answer_field[-80:]!r}")
    return target


# --------------------------------------------------------------------------- MATH


def math_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced.

    Also accepts the brace-less form ``\\boxed 5`` (content up to the next ``$``
    or whitespace). Returns None if there is no (complete) box.
    """
    if text is None:
        return None
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    j = idx + (len("\\boxed") if text.startswith("\\boxed", idx) else len("\\fbox"))
    if text.startswith(" ", j) and not text[j:].lstrip().startswith("{"):
        m = re.match(r"\s+([^\s$]+)", text[j:])
        return m.group(1) if m else None
    while j < len(text) and text[j] == " ":
        j += 1
    if j >= len(text) or text[j] != "{":
        return None
    depth = 0
    for k in range(j, len(text)):
        c = text[k]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1 : k]
    return None  # unbalanced


def _fix_fracs(s: str) -> str:
    r"""``\frac12 -> \frac{1}{2}``, ``\frac1{2} -> \frac{1}{2}``, ``\frac{1}2 -> \frac{1}{2}``."""
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if not part:
            continue
        if part[0] == "{":
            # numerator already braced; find its end, then fix the denominator
            depth, end = 0, None
            for k, c in enumerate(part):
                depth += c == "{"
                depth -= c == "}"
                if depth == 0:
                    end = k
                    break
            if end is None:
                out += part
                continue
            num, rest = part[: end + 1], part[end + 1 :]
            if rest and rest[0] != "{":
                rest = "{" + rest[0] + "}" + rest[1:]
            out += num + rest
        else:
            if len(part) < 2:
                out += part
                continue
            a, b, rest = part[0], part[1], part[2:]
            if b == "{":
                out += "{" + a + "}" + b + rest
            else:
                out += "{" + a + "}{" + b + "}" + rest
    return out


def _fix_sqrt(s: str) -> str:
    r"""``\sqrt3 -> \sqrt{3}``."""
    return re.sub(r"\\sqrt([^{\[\\])", r"\\sqrt{\1}", s)


def _fix_slash_fraction(s: str) -> str:
    """``a/b`` with integer a, b (the whole string) -> ``\\frac{a}{b}``."""
    m = re.fullmatch(r"(-?)(\d+)/(\d+)", s)
    if not m:
        return s
    return f"{m.group(1)}\\frac{{{m.group(2)}}}{{{m.group(3)}}}"


def normalize_math(s: str) -> str:
    r"""Normalise a MATH answer string for comparison (in the spirit of MATH's
    ``strip_string``).

    Rules, in order: drop newlines and ``\!``; ``\\`` -> ``\``; ``tfrac``/``dfrac``
    -> ``frac``; drop ``\left``/``\right``; drop degrees ``^{\circ}``/``^\circ``;
    drop ``\$`` and ``$``; drop a trailing unit ``\text{...}``/``\mbox{...}``
    (a string that is only ``\text{X}`` becomes ``X``); drop ``\%``/``%``;
    ``" ."``/``"{."`` -> ``" 0."``/``"{0."`` and a leading ``.`` -> ``0.``; drop a
    short left-hand side ``x=``/``k =`` (at most 2 chars); ``\sqrt3 -> \sqrt{3}``;
    remove all spaces; ``\frac12 -> \frac{1}{2}``; drop a trailing ``.``; a plain
    ``a/b`` -> ``\frac{a}{b}``. ``0.5`` is kept as ``0.5`` (numerical equality with
    ``\frac{1}{2}`` is handled by :func:`answers_equal`).
    """
    if s is None:
        return ""
    s = s.replace("\n", "").replace("\\!", "")
    s = s.replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "")
    s = s.strip()
    # units at the end: "5 \text{ cm}" -> "5"; "\text{(A)}" alone -> "(A)"
    m = re.fullmatch(r"(.*?)\s*\\(?:text|mbox|textbf|mathrm)\{([^{}]*)\}\s*\.?", s, flags=re.S)
    if m:
        s = m.group(1) if m.group(1).strip() else m.group(2)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.strip()
    if s.startswith("."):
        s = "0" + s
    lhs = s.split("=")
    if len(lhs) == 2 and len(lhs[0].strip()) <= 2:
        s = lhs[1]
    s = s.replace(" ", "")
    s = _fix_sqrt(s)
    s = _fix_fracs(s)
    s = s.rstrip(".")
    s = _fix_slash_fraction(s)
    return s


# --------------------------------------------------------------------------- MetaMathQA

_ANSWER_IS_RE = re.compile(r"the answer is\s*:?", re.IGNORECASE)


def the_answer_is(text: str) -> str | None:
    """MetaMathQA style: the text after the last ``The answer is:`` (first line only,
    stripped, trailing period removed). None if absent or empty."""
    if text is None:
        return None
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].strip()
    rest = rest.split("\n", 1)[0].strip()
    rest = rest.rstrip(".").strip()
    return rest or None


def _unbox(answer: str | None) -> str | None:
    """``"$\\boxed{5}$"`` -> ``"5"`` (a final-answer line that boxes its answer); other strings unchanged."""
    if answer is None:
        return None
    return math_boxed(answer) or answer


def any_format_answer(text: str) -> str | None:
    """Format-agnostic final answer: of ``\\boxed{}``, ``The answer is:`` and ``#### n``, the one written
    last in ``text``; without any of them, the last number (lm-eval's flexible-extract). Used as the
    flexible score of the ``math`` and ``metamathqa`` schemes, so that a model writing another format
    than the scorer expects shows up as strict << flexible."""
    if text is None:
        return None
    found = []
    boxed_at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if boxed_at >= 0 and (boxed := math_boxed(text)):
        found.append((boxed_at, boxed))
    markers = list(_ANSWER_IS_RE.finditer(text))
    if markers and (stated := the_answer_is(text)):
        found.append((markers[-1].start(), _unbox(stated)))
    hashes_at = text.rfind("####")
    if hashes_at >= 0 and (hashed := gsm8k_strict(text)):
        found.append((hashes_at, hashed))
    return max(found)[1] if found else gsm8k_flexible(text)


# --------------------------------------------------------------------------- references

_REFERENCE_READERS = {"gsm8k": gsm8k_strict, "math": math_boxed, "metamathqa": the_answer_is}


def reference_answer(answer_field: str | None, scheme: str) -> str | None:
    """The final answer written in a dataset's answer field, or None if it holds none.

    Read with ``scheme``'s own format first (GSM8K ``#### n``, normalised; MATH the last
    ``\\boxed{}``; MetaMathQA ``The answer is: X``), then with the other two formats in the order
    of :data:`SCHEMES`, so a GSM8K or MATH reference can score a MetaMathQA-style model. A found
    answer that is itself boxed (a MATH solution ending "the answer is $\\boxed{5}$") is unboxed. This
    is the one place that reads references: the data module stores its result as a row's ``target``
    and :func:`score` uses it on full answer fields.
    """
    check_scheme(scheme)
    if not answer_field:
        return None
    for name in (scheme, *(s for s in SCHEMES if s != scheme)):
        found = _REFERENCE_READERS[name](answer_field)
        if found:
            return _unbox(found)
    return None


# --------------------------------------------------------------------------- comparison


_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\.?")
_FRAC_RE = re.compile(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}")


def _as_fraction(s: str | None) -> Fraction | None:
    """Exact value of a plain number (``"1,234.50"``, ``"$5"``), ``a/b`` or
    ``\\frac{a}{b}`` string, else None. Comma lists such as ``"1,2"`` are not numbers."""
    if s is None:
        return None
    t = s.strip().replace("\\$", "").replace("$", "").strip()
    if _PLAIN_NUMBER_RE.fullmatch(t):
        return Fraction(normalize_number(t))
    m = _FRAC_RE.fullmatch(normalize_math(s))
    if m:
        den = Fraction(m.group(3))
        if den == 0:
            return None
        val = Fraction(m.group(2)) / den
        return -val if m.group(1) else val
    t = normalize_math(s)
    if _PLAIN_NUMBER_RE.fullmatch(t):
        return Fraction(normalize_number(t))
    return None


def answers_equal(a: str | None, b: str | None) -> bool:
    """Equality of two answer strings: identical after stripping, numerically equal
    (``"3.50" == "3.5"``, ``"1,000" == "1000"``, ``"0.5" == "\\frac{1}{2}"``), or
    identical after :func:`normalize_math`."""
    if a is None or b is None:
        return False
    if a.strip() == b.strip():
        return True
    fa, fb = _as_fraction(a), _as_fraction(b)
    if fa is not None and fb is not None:
        return fa == fb
    return normalize_math(a) == normalize_math(b)


def _numbers_equal(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    na, nb = normalize_number(a), normalize_number(b)
    if na == nb:
        return True
    fa, fb = _as_fraction(na), _as_fraction(nb)
    return fa is not None and fa == fb


def score(prediction_text: str, target: str, scheme: str) -> dict:
    """Extract the answer of ``prediction_text`` and compare it with ``target``.

    ``scheme``:
      * ``"gsm8k"``: strict ``#### n`` extraction plus lm-eval style flexible
        extraction (last number). ``target`` may be a bare number or a full GSM8K
        answer field. Returns ``extracted``, ``correct``, ``extracted_flexible``,
        ``correct_flexible``.
      * ``"math"``: last ``\\boxed{}``, compared after :func:`normalize_math`
        (or numerically). ``target`` may be a bare answer or a solution containing
        ``\\boxed{}``. Returns ``extracted``, ``correct``, ``correct_exact``
        (``prediction_text.strip() == target.strip()``), ``extracted_flexible``,
        ``correct_flexible`` (:func:`any_format_answer`).
      * ``"metamathqa"``: text after the last ``The answer is:`` (unboxed); ``target``
        may be a bare answer, a full MetaMathQA response, a GSM8K answer or a MATH
        solution. Returns ``extracted``, ``correct``, ``extracted_flexible``,
        ``correct_flexible`` (:func:`any_format_answer`).
    """
    check_scheme(scheme)
    prediction_text = prediction_text or ""
    target = "" if target is None else str(target)

    if scheme == "gsm8k":
        ref = reference_answer(target, scheme) or normalize_number(target)
        strict = gsm8k_strict(prediction_text)
        flexible = gsm8k_flexible(prediction_text)
        return {
            "extracted": strict,
            "correct": _numbers_equal(strict, ref),
            "extracted_flexible": flexible,
            "correct_flexible": _numbers_equal(flexible, ref),
        }

    if scheme == "math":
        ref = reference_answer(target, scheme) or target
        extracted = math_boxed(prediction_text)
        strict = {
            "extracted": extracted,
            "correct": answers_equal(extracted, ref),
            "correct_exact": prediction_text.strip() == target.strip(),
        }
    else:  # metamathqa
        ref = reference_answer(target, scheme) or target.strip().rstrip(".")
        extracted = _unbox(the_answer_is(prediction_text))
        strict = {"extracted": extracted, "correct": answers_equal(extracted, ref)}
    flexible = any_format_answer(prediction_text)
    return {**strict, "extracted_flexible": flexible, "correct_flexible": answers_equal(flexible, ref)}
