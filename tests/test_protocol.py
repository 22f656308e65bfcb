"""The declared protocol of a study: its family of comparisons, Holm-adjusted verdicts that wait for every
declared seed, read only from the declared split, and pairs across CPU kernels marked."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from experiments.reporting.protocol import (
    CONTROL_BETTER,
    NO_DIFFERENCE,
    TREATMENT_BETTER,
    Protocol,
    ProtocolError,
    family_verdicts,
    study_protocol,
)
from experiments.reporting.render import render_markdown
from experiments.reporting.runs import normalize_run
from experiments.reporting.stats import holm_adjust, paired_t_test, t_critical, t_quantile, t_two_sided_p
from experiments.reporting.summary import summarize

PROTOCOL = {
    "seeds": [0, 1, 2, 3, 4],
    "split": "test",
    "min_eval_size": 512,
    "family": {
        "equal_steps": {"treatment": {"strategy": "blockwise"}, "control": {"strategy": "classical"}},
        "matched_decode": {
            "treatment": {"strategy": "blockwise"},
            "control": {"strategy": "classical", "decode": 64},
            "seeds": [0, 1, 2],
        },
    },
}


def run(strategy, seed, accuracy, at_64=None, split="test", size=1000, isa="AVX512/AMX", protocol=PROTOCOL):
    """A report row read from a results.json as a run writes it (``normalize_run``)."""
    by_block = {"16": accuracy} | ({"64": at_64} if at_64 is not None else {})
    raw = {
        "status": "completed",
        "strategy": strategy,
        "block_size": 16,
        "decode_block_length": 16,
        "seed": seed,
        "accuracy": accuracy,
        "accuracy_by_decode_block": by_block,
        "eval_split": split,
        "eval_size": size,
        "environment": {"kernel_isa": isa},
        "config": {"protocol": protocol},
    }
    job = f"{strategy}-seed{seed}"
    return normalize_run(raw, job, Path(job), [])


BLOCKWISE = [0.70, 0.72, 0.69, 0.75, 0.71]
CLASSICAL = [0.50, 0.55, 0.48, 0.52, 0.51]
CLASSICAL_64 = [0.70, 0.74, 0.70, 0.70, 0.70]


def study(**kwargs):
    return [run("blockwise", s, a, **kwargs) for s, a in enumerate(BLOCKWISE)] + [
        run("classical", s, a, at_64=b, **kwargs) for s, (a, b) in enumerate(zip(CLASSICAL, CLASSICAL_64, strict=True))
    ]


def test_student_t_matches_the_tables():
    assert t_critical(1) == pytest.approx(12.7062, abs=1e-3)
    assert t_critical(4) == pytest.approx(2.7764, abs=1e-4)
    assert t_critical(9) == pytest.approx(2.2622, abs=1e-4)
    assert t_quantile(1 - 0.05 / 6, 4) == pytest.approx(3.9608, abs=1e-3)  # Bonferroni over 3, df 4
    assert t_two_sided_p(2.2622, 9) == pytest.approx(0.05, abs=1e-4)
    assert t_two_sided_p(0.0, 7) == pytest.approx(1.0)
    assert t_two_sided_p(math.inf, 3) == 0.0


def test_paired_t_test_edges():
    assert paired_t_test([0.1]) is None
    assert paired_t_test([0.1, 0.1, 0.1]) == 0.0
    assert paired_t_test([0.0, 0.0]) == 1.0


def test_holm_adjusts_step_down_and_keeps_order():
    assert holm_adjust([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_a_complete_family_gets_holm_verdicts_with_both_intervals():
    rows = {r["name"]: r for r in family_verdicts(study(), Protocol.parse(PROTOCOL))}
    steps, matched = rows["equal_steps"], rows["matched_decode"]
    assert steps["n_pairs"] == 5 and steps["verdict"] == TREATMENT_BETTER
    assert steps["mean"] == pytest.approx(sum(BLOCKWISE) / 5 - sum(CLASSICAL) / 5)
    assert steps["family_ci_low"] < steps["ci_low"] < steps["mean"] < steps["ci_high"] < steps["family_ci_high"]
    assert steps["holm_p"] >= steps["p_value"]
    assert matched["seeds"] == [0, 1, 2]  # its own declared seeds only
    assert matched["control_mean"] == pytest.approx(sum(CLASSICAL_64[:3]) / 3)
    assert matched["verdict"] == NO_DIFFERENCE


def test_the_control_can_win():
    swapped = {
        **PROTOCOL,
        "family": {"x": {"treatment": {"strategy": "classical"}, "control": {"strategy": "blockwise"}}},
    }
    runs = [r | {"protocol": swapped} for r in study()]
    (row,) = family_verdicts(runs, Protocol.parse(swapped))
    assert row["verdict"] == CONTROL_BETTER


def test_no_verdict_until_every_declared_seed_finished():
    runs = [r for r in study() if not (r["strategy"] == "blockwise" and r["seed"] == 4)]
    rows = family_verdicts(runs, Protocol.parse(PROTOCOL))
    assert [r["verdict"] for r in rows] == [
        "pending: 4 of 5 declared seeds",
        "pending: 3 of 3 declared seeds, not the family's",
    ]


def test_validation_runs_and_small_test_sets_give_no_verdict():
    (row, _) = family_verdicts(study(split="validation"), Protocol.parse(PROTOCOL))
    assert row["verdict"] == "no verdict: scored on validation, the protocol reads test"
    (row, _) = family_verdicts(study(size=256), Protocol.parse(PROTOCOL))
    assert row["verdict"] == "no verdict: 256 problems scored, the protocol needs 512"


def test_pairs_across_cpu_kernels_are_counted():
    runs = [r | {"kernel_isa": "AVX2/AVX2"} if r["strategy"] == "classical" and r["seed"] < 2 else r for r in study()]
    rows = family_verdicts(runs, Protocol.parse(PROTOCOL))
    assert rows[0]["cross_isa_seeds"] == [0, 1]
    assert rows[0]["kernel_isa"] == ["AVX2/AVX2", "AVX512/AMX"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"family": {}}, "protocol.seeds"),
        ({"seeds": [0], "split": "train"}, "protocol.split"),
        ({"seeds": [0], "min_eval_size": 0}, "protocol.min_eval_size"),
        ({"seeds": [0], "family": {"x": {"treatment": {"strategy": "a"}}}}, "protocol.family.x"),
        (
            {"seeds": [0], "family": {"x": {"treatment": {}, "control": {"strategy": "a"}}}},
            "protocol.family.x.treatment",
        ),
        (
            {
                "seeds": [0],
                "family": {"x": {"treatment": {"strategy": "a"}, "control": {"decode": 0, "strategy": "b"}}},
            },
            "protocol.family.x.control.decode",
        ),
        ({"seeds": [0], "family": {"x": {"treatment": {"a": 1}, "control": {"b": 1}, "seeds": "0"}}}, "x.seeds"),
    ],
)
def test_a_malformed_protocol_names_its_key(raw, message):
    with pytest.raises(ProtocolError, match=message.replace(".", r"\.")):
        Protocol.parse(raw)


def test_one_study_one_protocol():
    runs = study()
    runs[0] = runs[0] | {"protocol": {**PROTOCOL, "seeds": [0, 1]}}
    with pytest.raises(ProtocolError, match="different protocols"):
        study_protocol(runs)
    assert study_protocol([r | {"protocol": None} for r in study()]) is None


def test_the_report_shows_the_family_and_its_verdicts():
    runs = study()
    summary = summarize(runs, "main")
    assert summary["protocol"]["family_size"] == 2
    assert [c["verdict"] for c in summary["claims"]] == [TREATMENT_BETTER, NO_DIFFERENCE]
    assert "Holm p" in summary["claims"][0]["evidence"]
    text = render_markdown(summary, runs, [])
    assert "## Declared comparisons" in text and "**treatment better**" in text and "family-wise" in text
    # the family is the only verdict table: no unadjusted blockwise − classical pairs beside it
    assert summary["paired"] == [] and "## Main comparison" not in text
    assert "synthetic arithmetic (ours, equal_steps)" in text and "Holm p = " in text


def test_the_paper_table_holds_only_comparisons_of_blockwise_against_another_strategy():
    within = {"treatment": {"strategy": "blockwise"}, "control": {"strategy": "blockwise", "decode": 64}}
    declared = {**PROTOCOL, "family": {**PROTOCOL["family"], "blockwise_decode_64": within}}
    runs = [run("blockwise", s, a, at_64=a - 0.2, protocol=declared) for s, a in enumerate(BLOCKWISE)] + [
        run("classical", s, a, at_64=b, protocol=declared)
        for s, (a, b) in enumerate(zip(CLASSICAL, CLASSICAL_64, strict=True))
    ]
    text = render_markdown(summarize(runs, "main"), runs, [])
    paper_table, claims = text.split("## Paper comparison")[1].split("### Claims")
    assert "(ours, equal_steps)" in paper_table and "(ours, matched_decode)" in paper_table
    assert "blockwise_decode_64" not in paper_table  # one strategy against itself: not Blockwise SFT vs a baseline
    assert "blockwise_decode_64: strategy=blockwise beats strategy=blockwise, decode 64" in claims
    # a family with no such comparison (an EOS study): no undeclared best-against-best row either
    only = {**PROTOCOL, "family": {"blockwise_decode_64": within}}
    runs = [r | {"protocol": only} for r in runs]
    paper_table = render_markdown(summarize(runs, "main"), runs, []).split("## Paper comparison")[1].split("###")[0]
    assert "(ours" not in paper_table and "GSM8K (paper)" in paper_table


def test_selection_names_each_arms_best_setting_with_every_seed():
    from experiments.reporting.render import selection as selection_section
    from experiments.reporting.selection import selection

    def tuned(strategy, seed, lr, ema, accuracy):
        raw = {
            "status": "completed",
            "strategy": strategy,
            "block_size": 16,
            "seed": seed,
            "accuracy": accuracy,
            "eval_split": "validation",
            "config": {"optim": {"optimizer": {"lr": lr}, "ema_decay": ema}},
        }
        return normalize_run(raw, f"{strategy}-{lr}-{ema}-{seed}", Path("x"), [])

    runs = [
        tuned("classical", 0, 1e-3, None, 0.50),
        tuned("classical", 1, 1e-3, None, 0.54),
        tuned("classical", 0, 2e-3, 0.995, 0.70),  # best mean, but seed 1 has not finished
        tuned("classical", 0, 5e-4, 0.995, 0.40),
        tuned("classical", 1, 5e-4, 0.995, 0.42),
    ]
    (arm,) = selection(runs, seeds=[0, 1])
    assert arm["knobs"] == ["lr", "ema_decay"]
    assert arm["best"] == {"lr": 1e-3, "ema_decay": 0.0, "mean": pytest.approx(0.52), "n": 2}
    assert not arm["complete"] and arm["settings"][0]["lr"] == 2e-3
    assert arm["edges"] == []  # 1e-3 lies inside the learning rates tried
    assert selection([r for r in runs if r["lr"] == 1e-3]) == []  # nothing tuned
    # arms at their own tuned settings (a study after tuning): the learning rate differs only between strategies
    arms = [tuned("classical", 0, 4e-3, 0.995, 0.6), tuned("blockwise", 0, 2e-3, 0.995, 0.8)]
    assert selection(arms) == []
    higher = [*runs, tuned("classical", 0, 4e-3, None, 0.3), tuned("classical", 1, 4e-3, None, 0.3)]
    (arm,) = selection([r for r in higher if r["lr"] != 5e-4], seeds=[0, 1])
    assert arm["best"]["lr"] == 1e-3 and arm["edges"] == [{"knob": "lr", "value": 1e-3, "side": "lowest"}]
    summary = {"selection": [arm]}
    assert "lr=0.001 is the lowest value tried: the grid should be extended" in "\n".join(selection_section(summary))


def test_a_protocol_without_comparisons_says_so_and_gives_no_verdict():
    empty = {**PROTOCOL, "family": {}}
    runs = [r | {"protocol": empty} for r in study()]
    summary = summarize(runs, "tuning")
    assert summary["family"] == [] and summary["claims"] == []
    text = render_markdown(summary, runs, [])
    assert "## Declared protocol" in text and "no comparison" in text and "## Declared comparisons" not in text
    assert "Every configuration has all its declared seeds." in text
    partial = summarize([r for r in runs if not (r["strategy"] == "classical" and r["seed"] == 4)], "tuning")
    assert "**Partial: 1 of 2 configurations have all declared seeds**" in render_markdown(partial, runs, [])
