"""experiments/diagnostics/chains.py (``python -m experiments.diagnostics.chains <run>``): the per-answer checks
that say whether a chain answer failed on the format, the arithmetic, the chaining or the reading of the question."""

from __future__ import annotations

import json

import pytest

from experiments.diagnostics import chains as chain_diagnostics

PROMPT = "Mia has 7 apples. She buys 5 more. Then she gives away 3. How many apples does Mia have now?\n"


@pytest.mark.parametrize(
    "generation, expected",
    [
        (
            "7 + 5 = 12\n12 - 3 = 9\n#### 9",
            dict(well_formed=True, chained=True, operands_read=True, steps=2, steps_right=2),
        ),
        (
            "7 + 5 = 13\n13 - 3 = 10\n#### 10",
            dict(well_formed=True, chained=True, operands_read=True, steps=2, steps_right=1),
        ),
        (
            "7 + 5 = 12\n11 - 3 = 8\n#### 8",
            dict(well_formed=True, chained=False, operands_read=True, steps=2, steps_right=2),
        ),
        (
            "7 + 3 = 10\n10 - 5 = 5\n#### 5",
            dict(well_formed=True, chained=True, operands_read=False, steps=2, steps_right=2),
        ),
        ("7 + 5 = 12\n12 - 3 = 9", dict(well_formed=False, chained=True, operands_read=True, steps=2, steps_right=2)),
        ("#### 9", dict(well_formed=True, chained=False, operands_read=False, steps=0, steps_right=0)),
    ],
)
def test_each_check_fails_on_its_own_defect(generation, expected):
    assert chain_diagnostics.answer_checks(PROMPT, generation) == expected


def test_shares_are_per_decode_block_and_steps_right_counts_lines(tmp_path, capsys):
    rows = [
        {"decode_block_length": 8, "prompt": PROMPT, "generation": "7 + 5 = 12\n12 - 3 = 9\n#### 9", "correct": True},
        {"decode_block_length": 8, "prompt": PROMPT, "generation": "7 + 5 = 13\n#### 13", "correct": False},
        {"decode_block_length": 16, "prompt": PROMPT, "generation": "nonsense", "correct": False},
    ]
    summary = chain_diagnostics.summarize(rows)
    assert summary[8] == {
        "n": 2,
        "correct": 0.5,
        "well_formed": 1.0,
        "steps_right": 2 / 3,
        "chained": 1.0,
        "operands_read": 0.5,
    }
    assert summary[16]["steps_right"] == 0.0 and summary[16]["well_formed"] == 0.0
    (tmp_path / "generations.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    chain_diagnostics.main([str(tmp_path)])
    assert "| 8 | 2 | 50.0 % | 100.0 % | 66.7 % | 100.0 % | 50.0 % |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="missing: no generations.jsonl"):  # named after the others are printed
        chain_diagnostics.main([str(tmp_path / "missing"), str(tmp_path)])
    assert "| 8 | 2 | 50.0 % |" in capsys.readouterr().out
