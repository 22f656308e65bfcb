"""Studies share runs (blocksft.runs.reuse): a study job whose computation another study completed is copied
from it, marked, and never confused with a run of another config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from blocksft.runs.compose import compose_config
from blocksft.runs.identity import RESULTS, RUN_RECORD, job_identity
from blocksft.runs.results import RunResult
from blocksft.runs.reuse import adopt_run, computation_fingerprint, find_equivalent_run, origin_of, training_fingerprint
from experiments import reporting as rep
from helpers.records import SMOKE, record_run, view_of
from helpers.runs import run_in_process


def test_the_computation_fingerprint_ignores_the_study_label_only():
    main, _ = view_of(["study=main"])
    other, _ = view_of(["study=scratch_vs_base"])
    seed, _ = view_of(["study=main", "seed=3"])
    assert computation_fingerprint(main) == computation_fingerprint(other)
    assert computation_fingerprint(main) != computation_fingerprint(seed)
    assert (
        job_identity(compose_config([*SMOKE, "study=main"]))[1] != job_identity(compose_config([*SMOKE, "study=x"]))[1]
    )


def view_with_strategy(strategy: str, overrides: list[str]) -> tuple[dict, str]:
    return job_identity(
        compose_config([*(o for o in SMOKE if not o.startswith("strategy=")), f"strategy={strategy}", *overrides])
    )


def test_the_strategy_name_labels_a_run_its_masking_is_what_it_computes():
    visible, _ = view_with_strategy("blockwise_visible_future", ["study=controls"])
    suffix, _ = view_with_strategy("blockwise", ["study=suffix", "strategy.masking.suffix_mask_prob=0.0"])
    hidden, _ = view_with_strategy("blockwise", ["study=suffix"])
    assert visible["strategy"]["name"] != suffix["strategy"]["name"]
    assert computation_fingerprint(visible) == computation_fingerprint(suffix)
    assert training_fingerprint(visible) == training_fingerprint(suffix)
    assert computation_fingerprint(visible) != computation_fingerprint(hidden), "the masking differs"
    assert visible["strategy"]["name"] == "blockwise_visible_future", "the view itself was changed"


def test_a_copy_is_relabelled_with_this_jobs_study_and_strategy_name(tmp_path: Path):
    studies = tmp_path / "studies"
    source = record_run(studies / "suffix" / "job", ["study=suffix", "strategy.masking.suffix_mask_prob=0.0"])
    view, digest = view_with_strategy("blockwise_visible_future", ["study=controls"])
    here = studies / "controls" / "job"
    assert find_equivalent_run(studies, view, here) == source
    result = adopt_run(source, here, view, digest)
    assert (result.study, result.strategy, result.config_fingerprint) == (
        "controls",
        "blockwise_visible_future",
        digest,
    )
    assert json.loads((here / RESULTS).read_text())["strategy"] == "blockwise_visible_future"
    assert json.loads((source / RESULTS).read_text())["study"] == "suffix", "the source run was changed"


def test_only_a_completed_training_run_of_the_same_computation_is_found(tmp_path: Path):
    studies = tmp_path / "studies"
    record_run(studies / "a_failed" / "job", ["study=a_failed"], status="failed")
    record_run(studies / "b_eval" / "job", ["study=b_eval"], mode="eval")
    record_run(studies / "c_other_seed" / "job", ["study=c_other_seed", "seed=7"])
    here = studies / "scratch_vs_base" / "job"
    view, _ = view_of(["study=scratch_vs_base"])
    assert find_equivalent_run(studies, view, here) is None
    source = record_run(studies / "main" / "job", ["study=main"])
    assert find_equivalent_run(studies, view, here) == source
    assert find_equivalent_run(studies, view, source) is None, "a folder never reuses itself"
    assert find_equivalent_run(tmp_path / "missing", view, here) is None


def test_a_study_job_already_run_by_another_study_is_copied_marked_and_then_skipped(tmp_path: Path):
    root = tmp_path / "outputs"
    source, target = root / "studies" / "main" / "job", root / "studies" / "scratch_vs_base" / "job"
    common = [*SMOKE, f"paths.root_dir={root}"]
    run_in_process([*common, "study=main"], source)

    copied = run_in_process([*common, "study=scratch_vs_base"], target)
    log = copied.log
    assert "reused:" in log and "train step" not in log and "accuracy=" not in log
    original, result = (json.loads((folder / RESULTS).read_text()) for folder in (source, target))
    assert result["reused_from"] == {
        "dir": os.path.realpath(source),
        "study": "main",
        "config_fingerprint": original["config_fingerprint"],
    }
    assert result["study"] == "scratch_vs_base" and result["config"]["study"] == "scratch_vs_base"
    assert result["config_fingerprint"] == job_identity(compose_config([*common, "study=scratch_vs_base"]))[1]
    assert result["config_fingerprint"] != original["config_fingerprint"]
    same = ("accuracy", "accuracy_by_decode_block", "steps", "supervised_tokens", "wall_seconds", "git_commit", "seed")
    assert {key: result[key] for key in same} == {key: original[key] for key in same}
    assert (target / "generations.jsonl").read_bytes() == (source / "generations.jsonl").read_bytes()
    assert (target / "export").is_dir() and (target / "checkpoints" / "last.ckpt").is_file()
    for name in ("checkpoints/last.ckpt", "generations.jsonl"):  # copies: a later run in target cannot touch source
        assert not os.path.samefile(target / name, source / name)
    assert json.loads((target / RUN_RECORD).read_text())["config_fingerprint"] == result["config_fingerprint"]
    assert json.loads((source / RESULTS).read_text()) == original, "the source run was changed"

    again = run_in_process([*common, "study=scratch_vs_base"], target)
    assert "skipping" in again.log

    [run] = rep.load_runs(root / "studies" / "scratch_vs_base")
    assert run["linked_from"] == os.path.realpath(source) and run["accuracy"] == original["accuracy"]


@pytest.mark.parametrize("override", ["reuse_runs=false", "study=null"])
def test_no_reuse_when_switched_off_or_outside_a_study(override: str, tmp_path: Path):
    from blocksft.runs.job import reusable_run

    root = tmp_path / "outputs"
    record_run(root / "studies" / "main" / "job", ["study=main"])
    cfg = compose_config([*SMOKE, f"paths.root_dir={root}", "study=other", override])
    view, _ = job_identity(cfg)
    assert reusable_run(cfg, view, root / "studies" / "other" / "job") is None
    cfg = compose_config([*SMOKE, f"paths.root_dir={root}", "study=other"])
    assert reusable_run(cfg, job_identity(cfg)[0], root / "studies" / "other" / "job") is not None


def test_a_token_budget_job_is_the_steps_run_that_spent_that_budget_exactly(tmp_path: Path):
    """budget=tokens stops at the first step whose eligible count reaches the budget: a steps run of the same
    config and schedule length that spent exactly that many tokens is its computation; one token more is not."""
    root = tmp_path / "outputs"
    common = [*SMOKE, f"paths.root_dir={root}"]
    steps_run = root / "studies" / "main" / "steps"
    run_in_process([*common, "study=main", "budget=steps", "budget.value=10"], steps_run)
    original = json.loads((steps_run / RESULTS).read_text())
    spent = original["eligible_tokens"]
    assert original["steps"] == 10 and spent == 10 * 16 * 16, "smoke: batch 16, block 16, every block full"

    same = root / "studies" / "schemes" / "tokens"
    copied = run_in_process([*common, "study=schemes", "budget=tokens", f"budget.value={spent}"], same)
    log = copied.log
    assert "reused:" in log and "budget=steps at 10 steps spent exactly" in log and "accuracy=" not in log
    result = json.loads((same / RESULTS).read_text())
    assert result["budget"] == {"kind": "tokens", "value": spent, "count": "eligible", "max_steps": 20000}
    assert result["reused_from"]["dir"] == os.path.realpath(steps_run) and "because" in result["reused_from"]
    keys = ("accuracy", "steps", "eligible_tokens", "supervised_tokens", "final_train_loss")
    assert {k: result[k] for k in keys} == {k: original[k] for k in keys}
    weights = "export/model.safetensors"
    assert (same / weights).read_bytes() == (steps_run / weights).read_bytes()

    more = root / "studies" / "schemes" / "tokens_plus_one"
    trained = run_in_process([*common, "study=schemes", "budget=tokens", f"budget.value={spent + 1}"], more)
    assert "reused:" not in trained.log
    assert json.loads((more / RESULTS).read_text())["steps"] == 11, "the budget is reached one step later"


def test_the_training_fingerprint_ignores_labels_and_decode_settings_only():
    main, _ = view_of(["study=main"])
    grid, _ = view_of(
        [
            "study=grid",
            "+grid=[8,16]",
            "decode.block_length=[8,16]",
            "decode.steps=32",
            "eval.split=test",
            "eval.size=8",
        ]
    )
    assert training_fingerprint(main) == training_fingerprint(grid)
    assert computation_fingerprint(main) != computation_fingerprint(grid), "decoded otherwise: another run"
    for trained_otherwise in (["seed=3"], ["strategy=classical"], ["block=8"], ["budget.value=11"]):
        assert training_fingerprint(main) != training_fingerprint(view_of(["study=grid", *trained_otherwise])[0])


def test_scoring_another_split_or_size_trains_the_same_bytes(tmp_path: Path):
    """What ``EVALUATION_KEYS`` promises: ``eval`` changes what is scored, never the training (the export)."""
    common = [*SMOKE, f"paths.root_dir={tmp_path}"]
    run_in_process(common, tmp_path / "a")
    run_in_process([*common, "eval.split=test", "eval.size=8", "eval.batch_size=4"], tmp_path / "b")
    weights = "export/model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()


def test_a_training_is_found_only_where_its_last_checkpoint_is_kept(tmp_path: Path):
    studies = tmp_path / "studies"
    source = record_run(studies / "main" / "job", ["study=main"])
    view, _ = view_of(["study=grid", "decode.block_length=[8,16]"])
    here = studies / "grid" / "job"
    assert find_equivalent_run(studies, view, here) is None, "decoded otherwise: not the whole run"
    assert find_equivalent_run(studies, view, here, scope="training") is None, "no checkpoint to decode"
    with pytest.raises(ValueError, match="scope='weights'"):
        find_equivalent_run(studies, view, here, scope="weights")
    assert source.is_dir()


def test_a_copy_names_the_run_that_computed_it():
    source = Path("/studies/grid/job")
    trained_here = RunResult(status="completed", mode="train", study="grid", git_commit="c1")
    assert origin_of(source, trained_here, "f1") == {"dir": str(source), "config_fingerprint": "f1", "study": "grid"}
    copied = RunResult(
        status="completed",
        mode="train",
        study="x",
        git_commit="c0",
        reused_from={"dir": "/studies/main/job", "config_fingerprint": "f0", "study": "main"},
    )
    assert origin_of(source, copied, "f1") == copied.reused_from
    assert origin_of(source, copied, "f1", "training") == copied.reused_from
    decoded_here = RunResult(
        status="completed",
        mode="train",
        study="grid",
        git_commit="c1",
        reused_from={
            "dir": "/studies/main/job",
            "config_fingerprint": "f0",
            "study": "main",
            "scope": "training",
            "git_commit": "c0",
            "wall_seconds_here": 9.0,
        },
    )
    assert origin_of(source, decoded_here, "f1")["dir"] == str(source), "its decoding was computed here"
    assert origin_of(source, decoded_here, "f1", "training") == {
        "dir": "/studies/main/job",
        "config_fingerprint": "f0",
        "study": "main",
        "git_commit": "c0",
    }


def test_a_job_decoded_otherwise_decodes_the_training_of_another_study(tmp_path: Path):
    """The block-size grid's arms train what the main study trained and decode at more block lengths: the job
    copies that run's last checkpoint, trains no step, decodes the same model (here the weight average) and
    records that training's steps, tokens, loss and seconds, and where it came from."""
    root = tmp_path / "outputs"
    common = [*SMOKE, f"paths.root_dir={root}", "optim.ema_decay=0.9"]
    source, target = root / "studies" / "main" / "job", root / "studies" / "grid" / "job"
    run_in_process([*common, "study=main", "decode.block_length=16"], source)
    original = json.loads((source / RESULTS).read_text())

    grid = [*common, "study=grid", "+grid=[8,16]", "decode.block_length=${grid}"]
    decoded = run_in_process(grid, target)
    log = decoded.log
    assert "training reused:" in log and "nothing to train" in log and "train step" not in log and "accuracy=" in log
    result = json.loads((target / RESULTS).read_text())
    weights = "export/model.safetensors"
    assert (target / weights).read_bytes() == (source / weights).read_bytes(), "not the model the source trained"
    assert result["accuracy_by_decode_block"]["16"] == original["accuracy"] and set(
        result["accuracy_by_decode_block"]
    ) == {"8", "16"}
    at_16 = [
        [
            r
            for r in map(json.loads, (folder / "generations.jsonl").read_text().splitlines())
            if r["decode_block_length"] == 16
        ]
        for folder in (source, target)
    ]
    assert at_16[0] == at_16[1] and len(at_16[0]) == original["eval_size"]
    same = ("steps", "supervised_tokens", "eligible_tokens", "final_train_loss", "train_seconds", "active_block_counts")
    assert {k: result[k] for k in same} == {k: original[k] for k in same}
    assert result["reused_from"] == {
        "dir": os.path.realpath(source),
        "config_fingerprint": original["config_fingerprint"],
        "study": "main",
        "scope": "training",
        "git_commit": original["git_commit"],
        "wall_seconds_here": result["reused_from"]["wall_seconds_here"],
    }
    assert result["wall_seconds"] == pytest.approx(
        original["train_seconds"] + result["reused_from"]["wall_seconds_here"], abs=0.02
    )
    assert result["config_fingerprint"] == job_identity(compose_config(grid))[1]
    assert json.loads((source / RESULTS).read_text()) == original, "the source run was changed"

    again = run_in_process(grid, target)
    assert "skipping" in again.log
    [run] = rep.load_runs(root / "studies" / "grid")
    assert run["training_from"] == os.path.realpath(source) and run["linked_from"] is None
    summary = rep.summarize([run], "grid")
    assert summary["training_linked"] == {run["job"]: os.path.realpath(source)} and not summary["linked"]
