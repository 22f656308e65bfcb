"""Runs never mislabel, shadow or overwrite each other (issue 17): one test per case of the issue.

1. a smoke sweep writes under its own root, and a job folder holding another config's completed run is
   refused, never skipped; 2. mode=eval takes its labels from the evaluated run and writes next to it;
3. folder names differ between configs; 4. a rejected config leaves no folder; 5. a folder given as a
   training ckpt_path is one line naming the key; 6. redirected output gets progress lines.
(7, the README's figures, is tests/test_readme_figures.py.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from blocksft.config.validation import ConfigError
from blocksft.folders import require_path
from blocksft.runs.compose import compose_config
from blocksft.runs.identity import apply_run_record, check_folder, fingerprint, identity_view, job_identity
from blocksft.runs.progress import ProgressLog, expected_steps, progress_callbacks
from helpers.project import ROOT
from helpers.runs import config_errors, run_train, train_cli

TRAINED = ["debug=smoke", "strategy=blockwise", "block=16", "seed=3", "study=probe", "progress.every_n_steps=5"]


def hydra_folders(overrides: list[str]) -> tuple[str, str, str]:
    """(run dir, sweep dir, sweep subdir) Hydra would use for these overrides."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return tuple(str(OmegaConf.select(cfg, f"hydra.{key}")) for key in ("run.dir", "sweep.dir", "sweep.subdir"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One smoke training run (blockwise, block 16, seed 3, study probe) in its own folder."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = run_train(TRAINED, run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


# ------------------------------------------------------------------------- 1. shadowing / skip_completed


@pytest.mark.parametrize("study", ["main", "ablation_suffix"])
def test_smoke_sweep_writes_under_its_own_root_not_into_the_study(study):
    _, real_dir, _ = hydra_folders([f"+sweep={study}"])
    _, smoke_dir, _ = hydra_folders([f"+sweep={study}", "debug=smoke"])
    assert real_dir == f"outputs/studies/{study}"
    assert smoke_dir == f"outputs/debug/studies/{study}"


def test_a_completed_job_of_another_config_is_refused_not_skipped(trained):
    run_dir, _ = trained
    before = {name: (run_dir / name).read_text() for name in ("results.json", ".hydra/overrides.yaml")}
    again = run_train([*TRAINED, "budget.value=12"], run_dir)
    assert again.returncode == 2 and "skipping" not in again.stderr + again.stdout
    [line] = config_errors(again)
    assert "paths.output_dir=" in line and "budget.value: 10 -> 12" in line
    assert {name: (run_dir / name).read_text() for name in before} == before, "the refused command changed the run"


def test_check_folder_accepts_the_owner_and_refuses_others(tmp_path):
    view, digest = job_identity(compose_config(["debug=smoke"]))
    (tmp_path / "run_config.json").write_text(json.dumps({"config_fingerprint": digest, "config": view}))
    check_folder(tmp_path, view, digest)
    check_folder(tmp_path / "empty", view, digest)
    other_view, other_digest = job_identity(compose_config(["debug=smoke", "seed=1"]))
    with pytest.raises(ConfigError, match=r"seed: 0 -> 1"):
        check_folder(tmp_path, other_view, other_digest)


def test_fingerprint_ignores_output_and_logging_keys_only():
    base = job_identity(compose_config(["debug=smoke"]))[1]
    same = [
        "logger=none",
        "paths.log_dir=/elsewhere",
        "progress.every_n_steps=7",
        "checkpoint.every_n_train_steps=3",
        "+callbacks.kill._target_=callbacks.KillAtStep",
        "data.num_workers=1",
    ]
    assert job_identity(compose_config(["debug=smoke", *same]))[1] == base
    for changed in (
        "optim.optimizer.lr=0.01",
        "data.source.sizes.train=128",
        "decode.steps=16",
        "mode=eval",
        "optim.ema_decay=0.99",
    ):
        assert job_identity(compose_config(["debug=smoke", changed]))[1] != base, changed


def test_a_key_added_later_keeps_earlier_records_identity_at_its_implicit_default():
    """Records written before ``optim.ema_decay`` or ``decode.attention`` existed match today's config
    at their implicit values (null, full), so finished study jobs are still skipped and reused."""
    view, digest = job_identity(compose_config(["debug=smoke"]))
    assert "ema_decay" not in view["optim"] and "attention" not in view["decode"]  # what older records hold
    newer = json.loads(json.dumps(view))
    newer["optim"]["ema_decay"], newer["decode"]["attention"] = None, "full"  # what a record holds today
    assert fingerprint(identity_view(newer)) == digest
    newer["optim"]["ema_decay"] = 0.99
    assert fingerprint(identity_view(newer)) != digest


def test_a_path_inside_the_checkout_is_part_of_the_identity_as_a_project_relative_path():
    """``model=base_scratch`` names the shipped tokenizer by ``${project_root:}``: its identity must not hold
    this checkout's location, or a kept record (paths made portable) no longer hashes to its fingerprint and
    the same job in another clone is a new computation."""
    view, digest = job_identity(compose_config(["model=base_scratch"]))
    assert str(ROOT) not in json.dumps(view)
    assert view["model"]["tokenizer"] == "experiments/base"
    moved = json.loads(json.dumps(view).replace('"experiments/base"', json.dumps(f"{ROOT}/experiments/base")))
    assert fingerprint(identity_view(moved)) == digest
    elsewhere = json.loads(json.dumps(view).replace('"experiments/base"', '"/elsewhere/experiments/base"'))
    assert fingerprint(identity_view(elsewhere)) != digest  # a path outside the checkout stays as written


# ------------------------------------------------------------------------------- 2. eval labels and folder


def test_eval_takes_labels_from_the_run_and_writes_next_to_it(trained):
    run_dir, _ = trained
    result = train_cli(["mode=eval", f"ckpt_path={run_dir}", "debug=smoke", "decode.block_length=8"])
    assert result.returncode == 0, result.stderr[-3000:]
    [results_path] = (run_dir / "eval").glob("*/results.json")
    assert results_path.parent.name.startswith("long_chains-validation16-B8-steps64-")
    results = json.loads(results_path.read_text())
    assert (results["mode"], results["strategy"], results["block_size"], results["seed"], results["study"]) == (
        "eval",
        "blockwise",
        16,
        3,
        "probe",
    )
    assert results["decode"]["block_lengths"] == [8] and results["decode_block_length"] == 8
    trained_record = json.loads((run_dir / "run_config.json").read_text())
    assert results["trained_run"]["dir"] == str(run_dir)
    assert results["trained_run"]["config_fingerprint"] == trained_record["config_fingerprint"]
    assert results["trained_run"]["config"]["strategy"]["name"] == "blockwise"


def test_eval_never_takes_the_remote_code_opt_in_from_the_run_record(tmp_path):
    record = compose_config(["debug=smoke", "model.trust_remote_code=true", "strategy=blockwise"])
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "config.json").write_text("{}")
    (tmp_path / "run_config.json").write_text(json.dumps({"config": OmegaConf.to_container(record, resolve=False)}))
    cfg = apply_run_record(compose_config(["mode=eval", f"ckpt_path={tmp_path}"]))
    assert cfg.strategy.name == "blockwise" and cfg.model.hidden_size == 32
    assert cfg.model.trust_remote_code is False


# ----------------------------------------------------------------------------------------- 3. folder names


def test_different_configs_get_different_folders_and_the_same_config_the_same_name():
    variants = [
        [],
        ["debug=smoke"],
        ["data=jsonl", "data.source.files={train: a.jsonl}"],
        ["optim.optimizer.lr=3e-3"],
        ["budget=tokens"],
        ["model.hidden_size=64"],
    ]
    names = [Path(hydra_folders(v)[0]).parent for v in variants]
    assert len(set(names)) == len(variants), names
    assert names[0] == Path(hydra_folders([])[0]).parent, "the name is a pure function of the config"
    assert names[0].parts[:2] == ("outputs", "runs") and names[1].parts[:3] == ("outputs", "debug", "runs")
    assert "-jsonl-base-" in names[2].name and names[0].name.startswith("classical-B16-seed0-long_chains-base-")
    # an ad-hoc multirun over a key that is not in the name still gives each job its own folder
    subdirs = {hydra_folders(["optim.optimizer.lr=" + lr])[2] for lr in ("1e-3", "2e-3")}
    assert len(subdirs) == 2


# ---------------------------------------------------------------------------------- 4. no folder when rejected


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("block.size=0", "block.size=0"),
        ("block.size=12", "decode.block_length=12"),
        ("block.size=128", "block.size=128"),
    ],
)
def test_a_rejected_config_leaves_no_folder(override, key, tmp_path):
    result = train_cli([override, f"paths.log_dir={tmp_path / 'out'}"])
    assert result.returncode == 2
    assert [line.split(" is invalid")[0] for line in config_errors(result)] == [f"config error: {key}"]
    assert not (tmp_path / "out").exists(), sorted(str(p) for p in (tmp_path / "out").rglob("*"))


def test_a_rejected_config_in_an_explicit_new_folder_removes_it(tmp_path):
    result = run_train(["block.size=0"], tmp_path / "new" / "run")
    assert result.returncode == 2 and not (tmp_path / "new" / "run").exists()


# ------------------------------------------------------------------------------- 5. path arguments by kind


def test_a_folder_as_training_ckpt_path_is_one_line_naming_the_key(trained, tmp_path):
    run_dir, _ = trained
    result = run_train(["debug=smoke", f"ckpt_path={run_dir / 'export'}"], tmp_path / "resumed")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = config_errors(result)
    assert line.startswith("config error: ckpt_path=") and "a Lightning checkpoint file (.ckpt)" in line
    assert "got a folder" in line


def test_require_path_names_the_key_and_the_accepted_kinds(tmp_path):
    (tmp_path / "run" / "export").mkdir(parents=True)
    (tmp_path / "run" / "export" / "config.json").write_text("{}")
    (tmp_path / "last.ckpt").write_bytes(b"")
    assert require_path("ckpt_path", tmp_path / "run", ("run_dir", "export", "checkpoint")) == "run_dir"
    assert require_path("ckpt_path", tmp_path / "run" / "export", ("run_dir", "export")) == "export"
    assert require_path("model.init_from", tmp_path / "last.ckpt", ("export", "checkpoint")) == "checkpoint"
    with pytest.raises(
        ConfigError,
        match=r"^model\.init_from='.*' is invalid: allowed a save_pretrained folder .* "
        r"\(got nothing exists at that path\)$",
    ):
        require_path("model.init_from", tmp_path / "missing", ("export",))
    with pytest.raises(ConfigError, match=r"allowed a Lightning checkpoint file \(\.ckpt\) \(got a \.json file\)"):
        require_path("ckpt_path", tmp_path / "run" / "export" / "config.json", ("checkpoint",))


# ----------------------------------------------------------------------------------- 6. progress without a TTY


def test_redirected_output_gets_progress_lines_with_total_loss_rate_and_eta(trained):
    run_dir, result = trained
    output = result.stdout + result.stderr
    assert "train step 10/10 (100%)" in (run_dir / "train.log").read_text(), "the log file shows progress too"
    lines = [line for line in output.splitlines() if "train step " in line]
    assert [line.split("train step ")[1].split()[0] for line in lines] == ["5/10", "10/10"], lines
    assert all(" loss " in line and "supervised tok/s" in line and "ETA " in line for line in lines)
    assert "/-2" not in output and "Epoch 0/" not in output


def test_progress_settings_choose_a_step_bar_on_a_terminal_and_log_lines_otherwise():
    callbacks, bar = progress_callbacks({"bar": "auto", "every_n_steps": 50}, interactive=False)
    assert bar is False and [type(c).__name__ for c in callbacks] == ["ProgressLog"]
    callbacks, bar = progress_callbacks({"bar": "auto", "every_n_steps": 50}, interactive=True)
    assert bar is True and [type(c).__name__ for c in callbacks] == ["StepProgressBar"]
    assert progress_callbacks({"bar": False, "every_n_steps": 0}, interactive=True) == ([], False)
    line = ProgressLog(10).line(step=30, total=100, loss=0.5, tokens=3000, elapsed=30.0)
    assert line == "train step 30/100 (30%) loss 0.5000 | 100 supervised tok/s | elapsed 0:00:30 | ETA 0:01:10"


def test_a_token_budget_shows_its_expected_steps_and_its_last_step(caplog):
    """A token budget's trainer runs to a max_steps cap (20,000) and stops on tokens: the total shown is the
    expected step count (the LR schedule's length), and the step it stopped at gets its line."""
    from types import SimpleNamespace

    trainer = SimpleNamespace(global_step=0, max_steps=20000, is_global_zero=True, callback_metrics={})
    module = SimpleNamespace(supervised_tokens=0)
    assert expected_steps(900, 20000) == 900
    assert expected_steps(None, 20000) == 20000, "nothing planned: the trainer's max_steps"
    assert expected_steps(900, 500) == 500, "never past the cap"
    [progress], _ = progress_callbacks({"bar": False, "every_n_steps": 100}, interactive=False, planned_steps=900)
    progress.on_train_start(trainer, module)
    with caplog.at_level("INFO", logger="blocksft"):
        for step in (100, 850):
            trainer.global_step = step
            progress.on_train_batch_end(trainer, module, None, None, step)
        progress.on_train_end(trainer, module)  # stopped by the token budget at step 850
        trainer.global_step = 950
        progress.on_train_end(trainer, module)  # a budget that needed more steps than expected
    shown = [
        r.getMessage().split("train step ")[1].split(" (")[0] for r in caplog.records if "train step" in r.getMessage()
    ]
    assert shown == ["100/900", "850/900", "950/950"]
