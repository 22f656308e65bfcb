"""Block-causal attention (strategy=blockwise_block_causal, decode.attention=block_causal): the mask's
invariants, that the future cannot reach the active block through the backbone, the exact prefix cache
of the decoder, the config keys and their one-line errors, and a smoke run end to end."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from blocksft.config.validation import ConfigError, validate_config
from blocksft.evaluation.decoding import generate, generate_batched
from blocksft.masking import BlockCausalMasking, BlockwiseMasking, block_causal_attention, response_positions
from blocksft.models.hf import HFBackbone
from blocksft.models.tiny import TinyDiffusionConfig, TinyDiffusionLM
from blocksft.runs.compose import compose_config
from blocksft.runs.identity import apply_run_record, decode_label, job_identity
from blocksft.training.objective import masked_diffusion_step
from helpers.runs import run_in_process

MASK_ID, VOCAB = 1, 24


def tiny_model(layers: int = 2) -> TinyDiffusionLM:
    torch.manual_seed(0)
    config = TinyDiffusionConfig(
        vocab_size=VOCAB, hidden_size=32, num_layers=layers, num_heads=2, intermediate_size=64, mask_token_id=MASK_ID
    )
    return TinyDiffusionLM(config).eval()


def draw(strategy, seed: int = 0, batch: int = 6, prompt: int = 5, response: int = 16, scope=None):
    """A batch of random ids with a ``prompt``-token prompt, masked by ``strategy``."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (batch, prompt + response), generator=generator)
    start = torch.full((batch,), prompt)
    scope = torch.full((batch,), response) if scope is None else scope
    masked = strategy(ids, start, scope, torch.Generator().manual_seed(seed), torch.arange(batch))
    return ids, start, scope, masked


def reference_mask(relative: torch.Tensor, block_start: int, block_end: int) -> torch.Tensor:
    """The block-causal rule spelled out position by position (test reference only)."""
    length = relative.shape[0]
    segment = [0 if r < block_start else (1 if r < block_end else 2) for r in relative.tolist()]
    return torch.tensor([[segment[j] <= segment[i] for j in range(length)] for i in range(length)])


# ---------------------------------------------------------------------------------- the mask
@pytest.mark.parametrize("block_size, scope", [(4, 16), (4, 14), (8, 16), (16, 16), (5, 16)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_is_block_causal_and_loss_sits_in_the_active_block(block_size, scope, seed):
    strategy = BlockCausalMasking(block_size, mask_id=MASK_ID, block_sampling="uniform")
    ids, start, length, masked = draw(strategy, seed, scope=torch.full((6,), scope))
    batch, width = ids.shape
    attention = masked.attention_mask
    assert attention.shape == (batch, width, width) and attention.dtype == torch.bool
    relative = response_positions(ids, start)
    block_start = masked.active_block * block_size
    for row in range(batch):  # the reference rule, and what it means
        b0, b1 = int(block_start[row]), int(block_start[row]) + block_size
        assert torch.equal(attention[row], reference_mask(relative[row], b0, b1))
        before_end = relative[row] < b1
        assert not attention[row][before_end][:, ~before_end].any()  # nothing before the block end sees later keys
        prefix = relative[row] < b0
        assert not attention[row][prefix][:, ~prefix].any()  # the prefix attends only within itself
        assert attention[row][~prefix & before_end][:, before_end].all()  # the block sees prefix and itself
    assert attention.any(dim=2).all()  # every query has a key (no NaN rows)
    # prompt never masked; nothing masked outside the loss; loss inside the active block and the scope
    prompt = relative < 0
    assert torch.equal(masked.noisy_ids[prompt], ids[prompt])
    assert torch.equal(masked.noisy_ids != ids, masked.loss_mask)
    in_block = (relative >= block_start[:, None]) & (relative < block_start[:, None] + block_size)
    in_scope = (relative >= 0) & (relative < length[:, None])
    assert not (masked.loss_mask & ~(in_block & in_scope)).any()
    assert torch.equal(masked.eligible_mask, in_block & in_scope)
    assert ((masked.mask_rate > 0) & (masked.mask_rate <= 1)).all()


def test_same_draws_as_blockwise_but_the_future_stays_clean():
    kwargs = dict(mask_id=MASK_ID, p_min=0.2, p_max=0.8, tail_eos_in_loss=None)
    _, _, _, causal = draw(BlockCausalMasking(4, **kwargs), seed=3)
    ids, start, _, blockwise = draw(BlockwiseMasking(4, **kwargs), seed=3)
    for field in ("loss_mask", "eligible_mask", "mask_rate", "active_block"):
        assert torch.equal(getattr(causal, field), getattr(blockwise, field)), field
    later = response_positions(ids, start) >= (causal.active_block[:, None] + 1) * 4
    assert later.any() and torch.equal(causal.noisy_ids[later], ids[later])  # not replaced by [MASK]
    assert (blockwise.noisy_ids[later] == MASK_ID).all()
    assert blockwise.attention_mask is None


def test_the_mask_function_is_vectorised_over_rows_of_different_blocks():
    relative = torch.arange(-2, 6)[None].expand(3, -1)
    mask = block_causal_attention(relative, torch.tensor([0, 2, 4]), torch.tensor([2, 4, 6]))
    for row, (b0, b1) in enumerate([(0, 2), (2, 4), (4, 6)]):
        assert torch.equal(mask[row], reference_mask(relative[row], b0, b1))


# ---------------------------------------------------------------------------------- through the backbone
def perturb_future(ids, start, masked, block_size):
    """``ids`` with every token after each row's active block replaced (rows whose block is not the last)."""
    later = response_positions(ids, start) >= (masked.active_block[:, None] + 1) * block_size
    assert later.any()
    changed = ids.clone()
    changed[later] = (ids[later] - 2 + 1) % (VOCAB - 2) + 2
    return changed, later


def active_logits(model, noisy, attention, active):
    with torch.no_grad():
        return model.project(model.encode(noisy, attention))[active]


def test_a_future_token_cannot_change_an_active_block_logit_under_the_strategys_mask():
    model = tiny_model()
    strategy = BlockCausalMasking(4, mask_id=MASK_ID, block_sampling="uniform")
    ids, start, _, masked = draw(strategy, seed=5, batch=8)
    pad = torch.ones_like(ids)
    pad[:, :2] = 0  # left padding of the prompt: the key mask combines with the strategy's mask
    changed, later = perturb_future(ids, start, masked, 4)
    noisy_changed = torch.where(later, changed, masked.noisy_ids)
    active = masked.eligible_mask
    attention = masked.attention_mask & pad.bool()[:, None, :]
    assert torch.equal(
        active_logits(model, masked.noisy_ids, attention, active),
        active_logits(model, noisy_changed, attention, active),
    )
    # the same change does reach the block under full attention (so the check above can fail)
    full = active_logits(model, masked.noisy_ids, pad, active) - active_logits(model, noisy_changed, pad, active)
    assert full.abs().max() > 1e-4
    # and the training loss does not move
    batch = {"input_ids": ids, "attention_mask": pad}
    loss = masked_diffusion_step(model, batch, masked)
    masked.noisy_ids = noisy_changed
    assert torch.equal(
        masked_diffusion_step(model, {"input_ids": torch.where(later, changed, ids), "attention_mask": pad}, masked),
        loss,
    )


def test_a_per_example_mask_of_all_true_equals_the_key_mask():
    model = tiny_model()
    ids = torch.randint(2, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    pad = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9])
    per_example = pad.bool()[:, None, :].expand(-1, 9, -1)
    with torch.no_grad():
        real = pad.bool()
        assert torch.allclose(
            model(ids, attention_mask=pad).logits[real], model(ids, attention_mask=per_example).logits[real], atol=1e-6
        )


def test_hf_backbone_passes_the_mask_as_4d_and_bert_keeps_the_future_out(tmp_path):
    from helpers.hf_models import build, save_tiny_bert

    bert = build(save_tiny_bert(tmp_path / "bert"))[0].model
    backbone = HFBackbone(bert, attention_mask_format="4d").eval()
    assert backbone.supports_attention_mask_2d and not HFBackbone(bert).supports_attention_mask_2d
    strategy = BlockCausalMasking(4, mask_id=4, block_sampling="uniform")
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 30, (4, 21), generator=generator)
    start, scope = torch.full((4,), 5), torch.full((4,), 16)
    masked = strategy(ids, start, scope, generator, torch.arange(4))
    later = response_positions(ids, start) >= (masked.active_block[:, None] + 1) * 4
    changed = torch.where(later, (ids + 1) % 25 + 5, masked.noisy_ids)
    with torch.no_grad():
        one = backbone.project(backbone.encode(masked.noisy_ids, masked.attention_mask))[masked.eligible_mask]
        two = backbone.project(backbone.encode(changed, masked.attention_mask))[masked.eligible_mask]
    assert later.any() and torch.allclose(one, two, atol=1e-6)
    with pytest.raises(ValueError, match="model.attention_mask=4d"):
        HFBackbone(bert).encode(masked.noisy_ids, masked.attention_mask)


# ---------------------------------------------------------------------------------- decoding
DECODES = [
    dict(steps=16, block_length=4),
    dict(steps=8, block_length=4),
    dict(steps=16, block_length=8),
    dict(steps=4, block_length=4, confidence_threshold=0.3),
    dict(steps=16, block_length=4, temperature=1.0),
]


@pytest.mark.parametrize("settings", DECODES)
def test_block_causal_decoding_gives_the_same_tokens_with_and_without_prefix_cache(settings):
    model = tiny_model(layers=3)
    prompts = [torch.randint(2, VOCAB, (n,), generator=torch.Generator().manual_seed(n)) for n in (3, 7, 5)]
    outputs = {}
    for cache in (False, True):
        outputs[cache] = generate_batched(
            model,
            prompts,
            pad_id=0,
            gen_length=16,
            mask_id=MASK_ID,
            prefix_cache=cache,
            attention="block_causal",
            generator=torch.Generator().manual_seed(0),
            return_stats=True,
            **settings,
        )
    (plain, plain_stats), (cached, cached_stats) = outputs[False], outputs[True]
    assert all(torch.equal(a, b) for a, b in zip(plain, cached))
    assert torch.equal(plain_stats.nfe, cached_stats.nfe)
    assert (cached_stats.positions_fed < plain_stats.positions_fed).all()


def test_block_causal_decoding_cannot_see_the_canvas_after_the_block():
    """The tokens of the first blocks do not depend on how long the canvas is (they do under full
    attention, where the future [MASK]s are attended), and batched equals batch size 1."""
    model = tiny_model(layers=3)
    prompt = torch.randint(2, VOCAB, (1, 6), generator=torch.Generator().manual_seed(1))
    short = generate(model, prompt, steps=8, gen_length=8, block_length=4, mask_id=MASK_ID, attention="block_causal")
    long = generate(model, prompt, steps=24, gen_length=24, block_length=4, mask_id=MASK_ID, attention="block_causal")
    assert torch.equal(long[:, :14], short)
    prompts = [torch.randint(2, VOCAB, (n,), generator=torch.Generator().manual_seed(n)) for n in (2, 6, 4)]
    batched = generate_batched(
        model, prompts, pad_id=0, steps=8, gen_length=8, block_length=4, mask_id=MASK_ID, attention="block_causal"
    )
    for prompt_ids, canvas in zip(prompts, batched):
        alone = generate(
            model, prompt_ids[None], steps=8, gen_length=8, block_length=4, mask_id=MASK_ID, attention="block_causal"
        )
        assert torch.equal(alone[0, prompt_ids.numel() :], canvas)


def test_block_causal_decoding_refuses_a_model_without_a_per_example_mask():
    class NoMask(torch.nn.Module):
        def forward(self, x, **_):
            return torch.zeros(*x.shape, VOCAB)

    with pytest.raises(ValueError, match="attention='block_causal' needs a model"):
        generate(
            NoMask(),
            torch.ones(1, 3, dtype=torch.long),
            steps=4,
            gen_length=4,
            block_length=4,
            mask_id=MASK_ID,
            attention="block_causal",
        )
    with pytest.raises(ValueError, match="attention='causal'"):
        generate(
            tiny_model(),
            torch.ones(1, 3, dtype=torch.long),
            steps=4,
            gen_length=4,
            block_length=4,
            mask_id=MASK_ID,
            attention="causal",
        )


# ---------------------------------------------------------------------------------- config
def test_strategy_composes_and_decoding_follows_it_unless_set():
    cfg = compose_config(["strategy=blockwise_block_causal", "block=8"])
    validate_config(cfg)
    assert cfg.decode.attention == "block_causal"
    strategy = instantiate(cfg.strategy.masking, mask_id=MASK_ID)
    assert isinstance(strategy, BlockCausalMasking) and strategy.block_size == 8
    assert (
        compose_config(["strategy=blockwise_block_causal", "decode=semi_ar_cached"]).decode.attention == "block_causal"
    )
    assert (
        compose_config(["strategy=blockwise_block_causal", "decode=semi_ar_threshold"]).decode.attention
        == "block_causal"
    )
    mismatch = compose_config(["strategy=blockwise_block_causal", "decode.attention=full"])  # a deliberate ablation
    validate_config(mismatch)
    for strategy_name in ("classical", "blockwise", "blockwise_complementary"):
        assert compose_config([f"strategy={strategy_name}"]).decode.attention == "full"


def test_an_evaluation_of_a_block_causal_run_decodes_block_causally(tmp_path):
    from omegaconf import OmegaConf

    record = compose_config(["debug=smoke", "strategy=blockwise_block_causal"])
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "config.json").write_text("{}")
    (tmp_path / "run_config.json").write_text(json.dumps({"config": OmegaConf.to_container(record, resolve=False)}))
    cfg = apply_run_record(compose_config(["mode=eval", f"ckpt_path={tmp_path}"]))
    assert cfg.strategy.name == "blockwise_block_causal" and cfg.decode.attention == "block_causal"
    assert decode_label(cfg).endswith("-blockcausal")
    ablation = apply_run_record(compose_config(["mode=eval", f"ckpt_path={tmp_path}", "decode.attention=full"]))
    assert ablation.decode.attention == "full" and not decode_label(ablation).endswith("-blockcausal")


def test_default_fingerprints_do_not_carry_the_new_key():
    view, _ = job_identity(compose_config(["strategy=blockwise"]))
    assert "attention" not in view["decode"]
    view, _ = job_identity(compose_config(["strategy=blockwise_block_causal"]))
    assert view["decode"]["attention"] == "block_causal" and view["strategy"]["attention"] == "block_causal"


@pytest.mark.parametrize(
    "override, key",
    [
        (
            "strategy=blockwise_block_causal model=hf_masked_lm model.name_or_path=/nonexistent",
            "strategy=blockwise_block_causal",
        ),
        (
            "decode.attention=block_causal model=hf_masked_lm model.name_or_path=/nonexistent",
            "decode.attention=block_causal",
        ),
        ("decode.attention=causal", "decode.attention"),
        ("strategy=blockwise +strategy.attention=block_causal", "strategy.attention"),
        (
            "strategy=blockwise_block_causal strategy.masking.p_min=0.5 strategy.masking.p_max=0.5",
            "strategy.masking.p_min",
        ),
        ("strategy=blockwise_block_causal strategy.masking.block_sampling=cyclic", "strategy.masking.block_sampling"),
    ],
)
def test_bad_combinations_are_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as error:
        validate_config(compose_config(override.split()))
    message = str(error.value)
    assert message.startswith(key) and "\n" not in message
    if "hf_masked_lm" in override:
        assert "per-example 2-D attention mask" in message and "model.name_or_path=/nonexistent" in message


def test_a_hugging_face_model_that_takes_a_4d_mask_is_accepted():
    validate_config(
        compose_config(
            [
                "strategy=blockwise_block_causal",
                "model=hf_masked_lm",
                "model.name_or_path=/nonexistent",
                "model.attention_mask=4d",
            ]
        )
    )


# ---------------------------------------------------------------------------------- end to end
def test_smoke_run_trains_and_decodes_block_causally(tmp_path):
    run_in_process(["strategy=blockwise_block_causal", "block=8", "debug=smoke", "decode=semi_ar_cached"], tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["strategy"] == "blockwise_block_causal" and results["steps"] == 10
    assert results["decode"]["attention"] == "block_causal" and results["decode"]["prefix_cache"] is True
    assert 0 < results["supervised_tokens"] <= results["eligible_tokens"] <= 10 * 16 * 8
