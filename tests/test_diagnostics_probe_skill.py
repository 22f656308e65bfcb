"""experiments/diagnostics/probe_skill.py (``python -m experiments.diagnostics.probe_skill <init_from>``): every
fact of the chain task's range, asked with the result masked, and the shipped base's recorded score."""

from __future__ import annotations

import json

import torch

from blocksft.models import load_exported
from experiments.diagnostics import probe_skill
from helpers.project import ROOT

BASE = ROOT / "experiments" / "base"


def test_the_facts_are_every_true_fact_of_the_range_once():
    table = probe_skill.facts(max_operand=5, max_result=20, operations=["+", "-"])
    assert len(table) == len(set(table)) == 180  # the "180 facts" of the docs and the model card
    assert all((a + b if op == "+" else a - b) == c and 0 <= c <= 20 and 1 <= b <= 5 for a, op, b, c in table)
    assert (20, "-", 5, 15) in table and (0, "+", 1, 1) in table and (3, "-", 4, -1) not in table
    assert {op for _, op, _, _ in probe_skill.facts(5, 20, ["+"])} == {"+"}


class ConstantModel(torch.nn.Module):
    """Predicts ``token`` at every position and keeps the rows it was asked."""

    def __init__(self, token: int, vocab_size: int) -> None:
        super().__init__()
        self.token, self.vocab_size, self.asked = token, vocab_size, None

    def forward(self, input_ids, attention_mask=None):
        self.asked = input_ids
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        logits[..., self.token] = 1.0
        return type("Output", (), {"logits": logits})()


def test_only_the_result_is_masked_and_only_an_exact_result_counts():
    _, tokenizer = load_exported(BASE)
    seven = tokenizer(" 7", add_special_tokens=False)["input_ids"]
    assert len(seven) == 1  # whole numbers are one token: the result is one masked position
    model = ConstantModel(seven[0], len(tokenizer))
    share = probe_skill.masked_result_accuracy(model, tokenizer, [("1 + 6 =", " 7", "."), ("1 + 1 =", " 2", ".")])
    assert share == 0.5
    head = tokenizer("1 + 6 =", add_special_tokens=False)["input_ids"]
    tail = tokenizer(".", add_special_tokens=False)["input_ids"]
    row = model.asked[0].tolist()
    assert row[: len(head)] == head and row[len(head)] == tokenizer.mask_token_id
    assert row[len(head) + 1 : len(head) + 1 + len(tail)] == tail
    assert set(row[len(head) + 1 + len(tail) :]) == {tokenizer.eos_token_id}  # the rest [EOS], as in pretraining
    assert (model.asked == tokenizer.mask_token_id).sum(dim=1).tolist() == [1, 1]


def test_the_shipped_base_scores_what_its_card_records(capsys):
    """``block=32``, a numeric group option, composes as on train.py's command line (the script's own
    Hydra composition refused it)."""
    probe_skill.main([str(BASE), "block=32"])
    out = capsys.readouterr().out
    note = json.loads((BASE / "provenance.json").read_text())["note"]
    assert "82.2 % of the 180 bare facts, 95.0 % inside an answer line" in note
    assert f"fact: 0.822 of 180 facts (init_from={BASE})" in out
    assert f"answer_line: 0.950 of 180 facts (init_from={BASE})" in out


def test_a_random_init_knows_no_facts():
    """A random init with the base's tokenizer (``debug=smoke``: ``model.init_from=null``): near
    1 / (number of results)."""
    shares = probe_skill.probe("null", ["debug=smoke"])
    assert shares["fact"][1] == 180 and shares["fact"][0] < 0.2 and shares["answer_line"][0] < 0.2
