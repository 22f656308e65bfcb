"""Global batch planning, the distributed trainer presets, the SLURM launcher preset, and a real
2-process DDP run on CPU (gloo)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from blocksft.config.validation import ConfigError, validate_config
from blocksft.data.batch_plan import plan_batches, world_size
from blocksft.runs.compose import compose_config
from helpers.project import ROOT
from helpers.runs import run_train


@pytest.mark.parametrize(
    ("global_batch", "micro", "world", "expected"),
    [
        (32, None, 1, (32, 1)),
        (32, None, 8, (4, 1)),
        (32, 2, 8, (2, 2)),
        (32, 8, 1, (8, 4)),
        (256, 4, 16, (4, 4)),
    ],
)
def test_global_batch_is_split_into_micro_batches_and_accumulation(global_batch, micro, world, expected):
    plan = plan_batches(global_batch, micro, world)
    assert (plan.micro_batch, plan.accumulate) == expected
    assert plan.micro_batch * plan.world_size * plan.accumulate == global_batch


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=3"], "data.batch_size"),
        (["data.micro_batch_size=5"], "data.micro_batch_size"),
        (["data.micro_batch_size=0"], "data.micro_batch_size"),
    ],
)
def test_uneven_batch_splits_are_config_errors(overrides, key):
    with pytest.raises(ConfigError, match=key):
        validate_config(compose_config(overrides))


def test_world_size_counts_devices_and_nodes():
    assert world_size(OmegaConf.create({"devices": 2, "num_nodes": 4})) == 8
    assert world_size(OmegaConf.create({"devices": [0, 1, 2]})) == 3
    assert world_size(OmegaConf.create({"devices": "auto", "accelerator": "cpu"})) == 1


@pytest.mark.parametrize("preset", ["ddp", "fsdp", "deepspeed"])
def test_distributed_presets_compose_with_lightning_strategies(preset):
    cfg = compose_config([f"trainer={preset}"])
    validate_config(cfg)
    assert cfg.trainer.strategy._target_.startswith("lightning.pytorch.strategies.")
    assert cfg.trainer.use_distributed_sampler is False, "the data module shards its own resumable stream"


def test_deepspeed_preset_is_zero_stage_2():
    assert compose_config(["trainer=deepspeed"]).trainer.strategy.stage == 2


def test_slurm_launcher_preset_matches_the_plugin_schema():
    plugin = pytest.importorskip("hydra_plugins.hydra_submitit_launcher.config")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["+sweep=main", "hydra/launcher=submitit_slurm"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    fields = {f.name for f in dataclasses.fields(plugin.SlurmQueueConf)}
    assert set(launcher) <= fields, f"keys unknown to the plugin: {set(launcher) - fields}"
    assert launcher._target_ == plugin.SlurmQueueConf._target_
    assert OmegaConf.select(cfg, "hydra.launcher.name") == "main"


#: A 2-process DDP run on CPU (gloo): 12 steps of global batch 16, a checkpoint every 4 steps
DDP = [
    "debug=smoke",
    "strategy=blockwise",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "budget.value=12",
    "checkpoint.every_n_train_steps=4",
    "data.batch_size=16",
    "logger=none",
]


def digest(folder) -> list[str]:
    """Overrides that make each rank write the SHA-256 of its final weights into ``folder``."""
    return ["+callbacks.digest._target_=callbacks.DumpWeightsDigest", f"+callbacks.digest.folder={folder}"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """The folder of one uninterrupted ``DDP`` run (``train.py`` starts the ranks), with each rank's weight digest:
    the run the agreement test reads and the kill test resumes to."""
    folder = tmp_path_factory.mktemp("ddp") / "straight"
    result = run_train([*DDP, *digest(folder)], folder, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return folder


@pytest.mark.slow
def test_ddp_two_cpu_processes_agree_and_write_results_once(ddp_run):
    digests = [(ddp_run / f"weights_rank{r}.txt").read_text() for r in (0, 1)]
    assert digests[0] == digests[1], "the two ranks ended with different weights"
    results = list(ddp_run.rglob("results.json"))
    assert len(results) == 1
    record = json.loads(results[0].read_text())
    assert record["status"] == "completed" and record["steps"] == 12
    # 12 steps x global batch 16, counted over both ranks
    assert sum(record["active_block_counts"].values()) == 12 * 16


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["trainer=gpu"], "trainer.accelerator"),
        (["trainer=deepspeed", "trainer.accelerator=cpu"], "trainer.strategy"),
    ],
)
def test_missing_hardware_or_package_stops_before_any_model_is_built(overrides, key, tmp_path):
    import importlib.util

    import torch

    if key == "trainer.accelerator" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    if key == "trainer.strategy" and importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed")
    result = run_train(["debug=smoke", *overrides], tmp_path)
    assert result.returncode == 2
    assert f"config error: {key}=" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_ddp_run_killed_and_resumed_ends_like_the_uninterrupted_ddp_run(ddp_run, tmp_path):
    """Per-rank masking streams and the shared block pools survive a SIGKILL: both ranks resume to the
    weights of the DDP run that was never interrupted."""
    straight, crashed = ddp_run, tmp_path / "crashed"
    killed = run_train(
        [*DDP, "+callbacks.kill._target_=callbacks.KillAtStep", "+callbacks.kill.step=6"], crashed, timeout=600
    )
    assert killed.returncode != 0 and not (crashed / "results.json").exists()
    resumed = run_train([*DDP, *digest(crashed)], crashed, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    for rank in (0, 1):
        assert (crashed / f"weights_rank{rank}.txt").read_text() == (straight / f"weights_rank{rank}.txt").read_text()
    results = [json.loads((d / "results.json").read_text()) for d in (straight, crashed)]
    assert results[0]["active_block_counts"] == results[1]["active_block_counts"]
