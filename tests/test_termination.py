"""How generations end (blocksft.evaluation.termination): exact figures on hand-made canvases and texts, and the
fields a smoke run writes into results.json, generations.jsonl and its CSV log."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from blocksft.evaluation.answers import score
from blocksft.evaluation.metrics import evaluation_fields
from blocksft.evaluation.termination import (
    answer_lengths,
    eos_counts_by_block,
    has_eos,
    parse_failed,
    termination_summary,
)
from blocksft.runs.results import RunResult

EOS, MASK, WORD = 0, 9, 5
#: four generations of 8 tokens: EOS after 2 tokens, no EOS, all EOS, a first EOS at 5 and another at 7
CANVAS = torch.tensor(
    [
        [WORD, WORD, EOS, EOS, EOS, EOS, EOS, EOS],
        [WORD] * 8,
        [EOS] * 8,
        [WORD, WORD, WORD, WORD, WORD, EOS, WORD, EOS],
    ]
)


def test_answer_tokens_and_eos_per_row():
    assert answer_lengths(CANVAS, EOS).tolist() == [2, 8, 0, 5]  # no EOS: the whole canvas
    assert has_eos(CANVAS, EOS).tolist() == [True, False, True, True]


@pytest.mark.parametrize(
    "block_length, eos, committed",
    [
        (4, [6, 10], [16, 16]),  # every EOS counts, not only the first (row 3's block 1: two)
        (2, [2, 4, 5, 5], [8, 8, 8, 8]),
        (8, [16], [32]),
    ],
)
def test_eos_counts_per_decoding_block(block_length, eos, committed):
    counts = eos_counts_by_block(CANVAS, EOS, block_length)
    assert counts.dtype == torch.long and counts.tolist() == [eos, committed]


def test_positions_left_masked_are_not_committed():
    canvas = torch.tensor([[MASK, MASK, EOS, WORD], [MASK, MASK, EOS, EOS]])
    assert eos_counts_by_block(canvas, EOS, 2, mask_id=MASK).tolist() == [[0, 3], [0, 4]]
    summary = termination_summary([2, 2], [True, True], [True, True], eos_counts_by_block(canvas, EOS, 2, MASK))
    assert summary["eos_share_by_block"] == [None, 0.75]  # a block with nothing committed has no share


def test_eos_counts_need_whole_blocks():
    with pytest.raises(ValueError, match="not a multiple of block_length 3"):
        eos_counts_by_block(CANVAS, EOS, 3)


def test_summary_of_hand_made_generations():
    failed = [False, True, True, False]  # rows 1 (no EOS) and 2 (all EOS) hold no answer
    summary = termination_summary(
        answer_lengths(CANVAS, EOS).tolist(),
        has_eos(CANVAS, EOS).tolist(),
        failed,
        eos_counts_by_block(CANVAS, EOS, 4),
    )
    assert summary["parse_failure_rate"] == 0.5
    assert summary["early_eos_rate"] == 0.25  # row 2 only: row 1 failed without any EOS
    assert summary["no_eos_rate"] == 0.25
    # [0, 2, 5, 8] with linear interpolation: positions 0.3, 1.5 and 2.7
    assert summary["answer_tokens_p10"] == pytest.approx(0.6)
    assert summary["answer_tokens_p50"] == pytest.approx(3.5)
    assert summary["answer_tokens_p90"] == pytest.approx(7.1)
    assert summary["eos_share_by_block"] == [0.375, 0.625]
    assert [summary[f"answer_tokens_p{p}"] for p in (10, 50, 90)] == pytest.approx(
        np.percentile([2, 8, 0, 5], [10, 50, 90])
    )


def test_all_eos_and_no_eos_extremes():
    all_eos = torch.full((3, 8), EOS)
    summary = termination_summary([0] * 3, [True] * 3, [True] * 3, eos_counts_by_block(all_eos, EOS, 4))
    assert summary["early_eos_rate"] == summary["parse_failure_rate"] == 1.0 and summary["no_eos_rate"] == 0.0
    assert summary["answer_tokens_p10"] == summary["answer_tokens_p90"] == 0.0
    assert summary["eos_share_by_block"] == [1.0, 1.0]
    no_eos = torch.full((2, 8), WORD)
    summary = termination_summary([8, 8], [False, False], [False, True], eos_counts_by_block(no_eos, EOS, 8))
    assert summary["early_eos_rate"] == 0.0 and summary["no_eos_rate"] == 1.0 and summary["parse_failure_rate"] == 0.5
    assert summary["answer_tokens_p50"] == 8.0 and summary["eos_share_by_block"] == [0.0]
    with pytest.raises(ValueError, match="same non-zero number of rows"):
        termination_summary([], [], [], torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.parametrize(
    "scheme, target, texts, failures",
    [
        ("gsm8k", "12", ["7 + 5 = 12\n#### 12", "#### 13", "7 + 5 = 12", "", "#### twelve"], [0, 0, 1, 1, 1]),
        (
            "math",
            "\\frac{1}{2}",
            ["so $\\boxed{\\frac{1}{2}}$", "\\boxed{3}", "\\boxed{\\frac{1}{2}", "1/2"],
            [0, 0, 1, 1],
        ),
    ],
)
def test_parse_failures_follow_the_strict_rule(scheme, target, texts, failures):
    """A wrong answer is no parse failure; a missing, unbalanced or unmarked one is, even when flexible finds it."""
    scored = [score(text, target, scheme) for text in texts]
    assert [parse_failed(s) for s in scored] == [bool(f) for f in failures]
    n = len(texts)
    summary = termination_summary([1] * n, [True] * n, [parse_failed(s) for s in scored], torch.ones(2, 1))
    assert summary["parse_failure_rate"] == pytest.approx(sum(failures) / n)


def test_evaluation_fields_put_the_parse_failure_rate_beside_the_termination_figures():
    ends = {"parse_failure_rate": 0.5, "early_eos_rate": 0.25, "eos_share_by_block": [0.0, 1.0]}
    fields = evaluation_fields({8: {"accuracy": 0.5}}, {8: {}}, 8, {4: {**ends, "parse_failure_rate": 0.75}, 8: ends})
    assert fields["parse_failure_rate"] == 0.5
    assert fields["parse_failure_rate_by_decode_block"] == {"4": 0.75, "8": 0.5}
    assert fields["termination"] == {"early_eos_rate": 0.25, "eos_share_by_block": [0.0, 1.0]}
    assert set(fields["termination_by_decode_block"]) == {"4", "8"}
    assert evaluation_fields({}, {}, 8)["termination"] is None  # no decoding (held-out loss)


def test_a_record_written_before_the_fields_reads_them_as_empty():
    old = RunResult.from_json({"status": "completed", "accuracy": 0.5, "accuracy_by_decode_block": {"8": 0.5}})
    assert old.parse_failure_rate is None and old.parse_failure_rate_by_decode_block == {}
    assert old.termination == {} and old.termination_by_decode_block == {}
    bad = RunResult.from_json({"status": "completed", "parse_failure_rate": "x", "termination": [1]})
    assert bad.parse_failure_rate is None and bad.termination == {}


def test_a_smoke_run_records_how_its_generations_end(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    records = [json.loads(line) for line in (smoke_run / "generations.jsonl").read_text().splitlines()]
    primary = str(results["decode_block_length"])
    assert set(results["termination_by_decode_block"]) == set(results["accuracy_by_decode_block"]) == {primary}
    assert results["termination"] == results["termination_by_decode_block"][primary]
    assert results["parse_failure_rate"] == results["parse_failure_rate_by_decode_block"][primary]
    gen_length = results["config"]["decode"]["gen_length"]
    ends = results["termination"]
    assert len(ends["eos_share_by_block"]) == gen_length // results["decode_block_length"]
    assert all(0.0 <= share <= 1.0 for share in ends["eos_share_by_block"])
    # the per-sample fields agree with the summary
    for record in records:
        assert record["parse_failed"] == (record["extracted"] is None)
        assert record["early_eos"] == (record["has_eos"] and record["parse_failed"])
        assert record["has_eos"] == (record["answer_tokens"] < gen_length)
    n = len(records)
    assert results["parse_failure_rate"] == pytest.approx(sum(r["parse_failed"] for r in records) / n)
    assert ends["early_eos_rate"] == pytest.approx(sum(r["early_eos"] for r in records) / n)
    assert ends["no_eos_rate"] == pytest.approx(sum(not r["has_eos"] for r in records) / n)
    lengths = [r["answer_tokens"] for r in records]
    assert [ends[f"answer_tokens_p{p}"] for p in (10, 50, 90)] == pytest.approx(np.percentile(lengths, [10, 50, 90]))
    assert RunResult.from_json(results).termination == ends
    header = (smoke_run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("val/parse_failure_rate", "val/early_eos_rate", "val/no_eos_rate", "val/answer_tokens_p50"):
        assert name in header
    assert "val/eos_share/0" in header
