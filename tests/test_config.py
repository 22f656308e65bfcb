"""Every config option composes and validates; bad values fail with one line naming the key."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from blocksft.config.validation import ConfigError, decode_block_lengths, validate_config
from blocksft.runs.compose import compose_config
from helpers.project import CONF
from helpers.runs import run_train


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group", ["model", "data", "strategy", "block", "decode", "budget", "trainer", "logger", "debug"]
)
def test_every_option_of_every_group_composes_and_validates(group):
    assert options(group), f"conf/{group} is empty"
    for option in options(group):
        overrides = [f"{group}={option}"]
        if group == "block" and int(option) > compose_config().data.response_len:
            overrides.append(f"data.response_len={option}")  # a block must fit in the response
        if group == "model" and compose_config(overrides).model.get("requires_remote_code"):
            overrides.append("model.trust_remote_code=true")  # an explicit opt-in, refused without it
        if group == "data" and option == "jsonl":
            overrides.append("data.source.files={train: t.jsonl}")  # required (???): no default files
        if group == "strategy" and option == "pretrain":
            overrides.append("data=pretrain_corpus")  # whole-document masking needs documents
        validate_config(compose_config(overrides))


def test_defaults_are_the_embedded_offline_run():
    cfg = compose_config()
    assert (cfg.model.name, cfg.data.name, cfg.strategy.name, cfg.block.size) == (
        "base",
        "long_chains",
        "classical",
        16,
    )
    assert cfg.trainer.accelerator == "cpu" and cfg.model.init_from.endswith("experiments/base")
    assert cfg.decode.gen_length == cfg.data.response_len == 64
    assert decode_block_lengths(cfg) == (16,)


@pytest.mark.parametrize("size", [4, 8, 16, 32, 64])
def test_block_group_sets_training_block_and_default_decode_block(size):
    cfg = compose_config(["strategy=blockwise", f"block={size}", "data.response_len=64"])
    strategy = instantiate(cfg.strategy.masking, mask_id=1)
    assert strategy.block_size == size
    assert decode_block_lengths(cfg) == (size,)


def test_decode_block_length_can_be_a_list_and_overrides_the_training_block():
    cfg = compose_config(["strategy=blockwise", "block=16", "decode.block_length=[8,16,32]"])
    validate_config(cfg)
    assert decode_block_lengths(cfg) == (8, 16, 32)
    assert cfg.strategy.masking.block_size == 16


@pytest.mark.parametrize("name", ["classical", "blockwise"])
def test_strategies_instantiate(name):
    cfg = compose_config([f"strategy={name}"])
    assert type(instantiate(cfg.strategy.masking, mask_id=1)).__name__.lower().startswith(name)


NEW_STRATEGIES = {"blockwise_all_blocks": "AllBlocksMasking", "blockwise_complementary": "ComplementaryMasking"}


@pytest.mark.parametrize("name", sorted(NEW_STRATEGIES))
@pytest.mark.parametrize("rows", ["batch", "expand"])
def test_multirow_strategies_compose_with_every_knob(name, rows):
    overrides = [
        f"strategy={name}",
        "block=4",
        f"strategy.masking.rows={rows}",
        "strategy.masking.p_min=0.1",
        "strategy.masking.p_max=0.9",
        "strategy.masking.tail_eos_in_loss=2",
    ]
    cfg = compose_config(overrides)
    validate_config(cfg)
    strategy = instantiate(cfg.strategy.masking, mask_id=1)
    assert type(strategy).__name__ == NEW_STRATEGIES[name] and cfg.strategy.name == name
    assert (strategy.block_size, strategy.rows, strategy.p_min, strategy.p_max, strategy.tail_eos_in_loss) == (
        4,
        rows,
        0.1,
        0.9,
        2,
    )


@pytest.mark.parametrize(
    "name",
    [
        "classical",
        "blockwise",
        "blockwise_unaligned",
        "classical_matched",
        "blockwise_visible_future",
        "blockwise_all_blocks",
        "blockwise_complementary",
        "blockwise_block_causal",
    ],
)
def test_rate_range_and_eos_tail_compose_for_every_strategy(name):
    default = instantiate(compose_config([f"strategy={name}"]).strategy.masking, mask_id=1)
    assert (default.p_min, default.p_max, default.tail_eos_in_loss) == (1e-3, 1.0, None)  # today's behaviour
    cfg = compose_config(
        [
            f"strategy={name}",
            "strategy.masking.p_min=0.3",
            "strategy.masking.p_max=0.8",
            "strategy.masking.tail_eos_in_loss=0",
        ]
    )
    validate_config(cfg)
    strategy = instantiate(cfg.strategy.masking, mask_id=1)
    assert (strategy.p_min, strategy.p_max, strategy.tail_eos_in_loss) == (0.3, 0.8, 0)


def test_resolved_config_prints_readably():
    text = OmegaConf.to_yaml(compose_config(), resolve=True)
    assert "name: classical" in text and "gen_length: 64" in text and "block_length: 16" in text


@pytest.mark.parametrize(
    "override, key",
    [
        ("block.size=0", "block.size"),
        ("block.size=128", "block.size"),
        ("block=64 data.response_len=32", "block.size"),
        ("decode.block_length=7", "decode.block_length"),
        ("decode.steps=31", "decode.steps"),
        ("strategy.masking.eps=0", "strategy.masking.eps"),
        ("strategy.masking.eps=1.5", "strategy.masking.eps"),
        ("strategy=blockwise strategy.masking.prefix_mask_rate=1.2", "strategy.masking.prefix_mask_rate"),
        ("strategy=blockwise strategy.masking.suffix_mask_prob=-0.5", "strategy.masking.suffix_mask_prob"),
        ("strategy=blockwise strategy.masking.block_sampling=cyclic", "strategy.masking.block_sampling"),
        ("strategy.masking.p_min=0.6 strategy.masking.p_max=0.4", "strategy.masking.p_min"),
        ("strategy=blockwise strategy.masking.p_min=0.5 strategy.masking.p_max=0.5", "strategy.masking.p_min"),
        ("strategy.masking.eps=0.5 strategy.masking.p_max=0.3", "strategy.masking.p_min"),
        ("strategy.masking.p_min=0", "strategy.masking.p_min"),
        ("strategy=blockwise_all_blocks strategy.masking.p_max=1.2", "strategy.masking.p_max"),
        ("strategy.masking.tail_eos_in_loss=-1", "strategy.masking.tail_eos_in_loss"),
        ("strategy=classical_matched strategy.masking.tail_eos_in_loss=1.5", "strategy.masking.tail_eos_in_loss"),
        ("strategy=blockwise_all_blocks strategy.masking.rows=all", "strategy.masking.rows"),
        ("strategy=blockwise_complementary data.batch_size=15", "data.batch_size"),
        ("strategy=blockwise_complementary data.batch_size=12 data.micro_batch_size=3", "data.batch_size"),
        (
            "strategy=blockwise_block_causal strategy.masking.p_min=0.7 strategy.masking.p_max=0.7",
            "strategy.masking.p_min",
        ),
        ("decode.attention=causal", "decode.attention"),
        ("strategy=blockwise_block_causal model=hf_masked_lm model.name_or_path=/x", "strategy=blockwise_block_causal"),
        ("decode.attention=block_causal model=llada_8b model.trust_remote_code=true", "decode.attention=block_causal"),
        ("budget.value=0", "budget.value"),
        ("budget=tokens budget.count=all", "budget.count"),
        ("decode.remasking=greedy", "decode.remasking"),
        ("decode.temperature=-1", "decode.temperature"),
        ("objective.weighting=sum", "objective.weighting"),
        ("data.tail_padding=hidden", "data.tail_padding"),
        ("optim.optimizer.lr=0", "optim.optimizer.lr"),
        ("optim.ema_decay=1.0", "optim.ema_decay"),
        ("optim.ema_decay=0", "optim.ema_decay"),
        ("mode=serve", "mode"),
        ("mode=eval model=base_scratch", "ckpt_path"),  # model=base names its weights (init_from)
        ("ckpt_path=/no/such/run", "ckpt_path"),
    ],
)
def test_bad_values_raise_naming_the_key(override, key):
    cfg = compose_config(override.split())
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    message = str(error.value)
    assert message.startswith(key) and "\n" not in message


def test_bad_value_on_the_command_line_exits_non_zero_with_one_line(tmp_path):
    result = run_train(["decode.block_length=7"], tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert len(lines) == 1 and "decode.block_length=7" in lines[0] and "[1, 2, 4, 8, 16, 32, 64]" in lines[0]
    assert not (tmp_path / "results.json").exists()


def test_unknown_group_option_lists_the_valid_ones(tmp_path):
    result = run_train(["strategy=nonsense"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "config error: strategy=nonsense is invalid: allowed one of " + ", ".join(options("strategy"))
    ]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["model=gpt5"], "model=gpt5"),
        (["data=nope", "seed=1"], "data=nope"),
        (["-m", "block=8,12"], "block=12"),
        (["+arm=blockwise_b5"], "arm=blockwise_b5"),
        (["data=common/loader"], "data=common/loader"),
        (["strategy=common/rate"], "strategy=common/rate"),  # shared keys
    ],
)
def test_unknown_options_of_every_group_are_named_in_one_line(argv, error):
    from blocksft.runs.cli import quote_numeric_group_overrides, unknown_group_option

    message = unknown_group_option(quote_numeric_group_overrides(argv), CONF)
    assert message.startswith(f"config error: {error} is invalid: allowed one of ")


def test_known_options_sweeps_and_hydra_groups_pass_the_option_check():
    from blocksft.runs.cli import unknown_group_option

    argv = [
        "strategy=blockwise,classical",
        "block='8'",
        "model.hidden_size=3",
        "hydra/launcher=basic",
        "experiment=paper_gsm8k",
        "+sweep=main",
        "debug=null",
        "seed=choice(1,2)",
    ]
    assert unknown_group_option(argv, CONF) is None


@pytest.mark.parametrize("overrides", [[], ["block=8"], ["data.batch_size=16"]])
def test_token_budget_is_what_the_equal_steps_blockwise_run_spends(overrides):
    """budget=tokens: batch x block eligible tokens a step for budget=steps' step count (921,600 at the default)."""
    cfg = compose_config(["budget=tokens", *overrides])
    steps = compose_config(["budget=steps"]).budget.value
    assert cfg.budget.value == steps * cfg.data.batch_size * cfg.block.size and isinstance(cfg.budget.value, int)
    if not overrides:
        assert cfg.budget.value == 921_600


@pytest.mark.parametrize(("experiment", "type_prefix"), [("paper_gsm8k", "GSM"), ("paper_math", "MATH")])
def test_paper_experiments_set_the_papers_recipe(experiment, type_prefix):
    cfg = compose_config([f"experiment={experiment}"])
    validate_config(cfg)
    assert (cfg.model.name, cfg.data.name, cfg.data.source.type_prefix) == ("llada_8b", "metamathqa", type_prefix)
    assert cfg.model.trust_remote_code is True and cfg.model.lora.enabled
    assert (cfg.model.lora.r, cfg.model.lora.alpha, cfg.model.lora.dropout) == (256, 512, 0.05)
    assert cfg.optim.optimizer.lr == 1e-5 and list(cfg.optim.optimizer.betas) == [0.9, 0.95]
    assert (cfg.optim.warmup_frac, cfg.optim.min_lr_ratio, cfg.trainer.gradient_clip_val) == (0.1, 0.01, 1.0)
    assert (cfg.data.batch_size, cfg.data.response_len, cfg.block.size) == (32, 256, 32)
    assert (cfg.decode.steps, cfg.decode.block_length, cfg.decode.gen_length) == (128, 32, 256)
    assert cfg.trainer.strategy.stage == 2 and cfg.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("data", ["gsm8k", "math"])
def test_paper_experiment_evaluation_command_composes(data, tmp_path):
    experiment = "paper_gsm8k" if data == "gsm8k" else "paper_math"
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "adapter_config.json").write_text("{}")  # a run folder with a LoRA adapter export
    cfg = compose_config(
        [
            f"experiment={experiment}",
            "mode=eval",
            f"data={data}",
            "data.source.type_prefix=null",
            "eval.split=test",
            f"ckpt_path={tmp_path}",
        ]
    )
    validate_config(cfg)
    assert cfg.data.name == data and cfg.data.source.type_prefix is None


def test_issue_example_composes_llada_gsm8k_deepspeed():
    cfg = compose_config(["model=llada_8b", "data=gsm8k", "trainer=deepspeed"])
    assert cfg.model.name_or_path == "GSAI-ML/LLaDA-8B-Instruct" and cfg.trainer.strategy.stage == 2


def test_decode_attention_is_full_by_default_and_follows_a_block_causal_strategy():
    assert compose_config().decode.attention == "full"
    for decode in ("semi_ar", "semi_ar_cached", "semi_ar_threshold"):
        cfg = compose_config(["strategy=blockwise_block_causal", f"decode={decode}"])
        validate_config(cfg)
        assert cfg.decode.attention == "block_causal"
    validate_config(
        compose_config(["strategy=blockwise_block_causal", "model=dream_7b", "model.trust_remote_code=true"])
    )


def test_prefix_cache_is_off_by_default_and_refused_for_models_without_a_cache():
    assert compose_config().decode.prefix_cache is False
    assert compose_config(["decode=semi_ar_cached"]).decode.prefix_cache is True
    with pytest.raises(ConfigError, match="decode.prefix_cache"):
        validate_config(
            compose_config(["decode=semi_ar_cached", "model=hf_masked_lm", "model.name_or_path=/nonexistent"])
        )


def test_a_required_key_left_unset_fails_in_one_line_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.source\.files is required but not set"):
        validate_config(compose_config(["data=jsonl"]))
    done = run_train(["data=jsonl"], tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines[-1].startswith("config error: data.source.files is required"), done.stderr


def test_metrics_are_prefixed_by_the_split_they_score():
    """``eval.name`` follows ``eval.split``: ``val/`` for validation (as every recorded run), ``test/`` for test,
    also when an evaluation preset swaps in its benchmark's split."""
    from blocksft.config.validation import with_eval_benchmark

    assert compose_config().eval.name == "val"
    assert compose_config(["eval.split=test"]).eval.name == "test"
    preset = compose_config(["experiment=paper_gsm8k", "mode=eval", "model.name_or_path=x"])
    assert with_eval_benchmark(preset).eval.name == "test"
