"""Confidence-threshold (Fast-dLLM parallel) decoding and the per-row decoding cost (DecodeStats)."""

from __future__ import annotations

import pytest
import torch

from blocksft.evaluation.decoding import generate, generate_batched
from helpers.decoding import MASK_ID, PAD_ID, CacheRecorder, Recorder, TinyBidirectional, random_prompts, tiny_lm

PROMPTS = [[3, 7, 1, 12, 5, 9, 2], [4, 8], torch.tensor([11, 2, 6, 6]), [5]]


@pytest.fixture(scope="module")
def model():
    return TinyBidirectional()


def reference_threshold(model, prompt, *, gen_length, block_length, threshold):
    """Plain per-row, per-position transcription of Fast-dLLM's rule (batch 1, slow, obviously correct):
    per step, commit the most confident masked position of the block and every other one whose
    confidence is >= threshold; next block when none is masked. Returns (canvas, forwards)."""
    x = torch.cat([prompt, torch.full((1, gen_length), MASK_ID, dtype=torch.long)], dim=1)
    prompt_len, forwards = prompt.shape[1], 0
    for start in range(prompt_len, prompt_len + gen_length, block_length):
        while any(int(x[0, p]) == MASK_ID for p in range(start, start + block_length)):
            logits = model(x).logits.detach().double()[0]
            logits[:, MASK_ID] = float("-inf")
            forwards += 1
            candidates = []
            for p in range(start, start + block_length):
                if int(x[0, p]) == MASK_ID:
                    probs = torch.softmax(logits[p], dim=-1)
                    token = int(probs.argmax())
                    candidates.append((float(probs[token]), p, token))
            candidates.sort(key=lambda c: (-c[0], c[1]))
            for rank, (confidence, p, token) in enumerate(candidates):
                if rank == 0 or confidence >= threshold:
                    x[0, p] = token
    return x, forwards


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.6, 1.0])
def test_matches_the_reference_rule_and_counts_its_forwards(model, threshold):
    for seed in range(3):
        prompt = random_prompts(1, 5, seed=seed)
        out, stats = generate(
            model,
            prompt,
            steps=16,
            gen_length=16,
            block_length=4,
            mask_id=MASK_ID,
            confidence_threshold=threshold,
            return_stats=True,
        )
        expected, forwards = reference_threshold(model, prompt, gen_length=16, block_length=4, threshold=threshold)
        assert torch.equal(out, expected)
        assert stats.nfe.tolist() == [forwards] and 4 <= forwards <= 16  # 1 .. block_length per block
        assert stats.positions_fed.tolist() == [forwards * (5 + 16)]


def test_threshold_actually_varies_the_forward_count(model):
    prompt = random_prompts(6, 5, seed=4)
    nfe = {
        t: generate(
            model,
            prompt,
            steps=16,
            gen_length=16,
            block_length=8,
            mask_id=MASK_ID,
            confidence_threshold=t,
            return_stats=True,
        )[1].nfe
        for t in (1e-9, 0.5, 1.0)
    }
    assert nfe[1e-9].tolist() == [2] * 6  # every block in one step
    assert (nfe[1e-9] <= nfe[0.5]).all() and (nfe[0.5] <= nfe[1.0]).all()
    assert nfe[1.0].max() <= 16


def test_every_position_above_threshold_in_one_step_equals_the_one_step_schedule(model):
    prompt = random_prompts(3, 6, seed=2)
    kwargs = dict(gen_length=12, block_length=4, mask_id=MASK_ID)
    parallel = generate(model, prompt, steps=12, confidence_threshold=1e-12, **kwargs)
    assert torch.equal(parallel, generate(model, prompt, steps=3, **kwargs))  # one step per block commits all


def test_a_block_stops_when_it_has_no_masked_position(model):
    rec = Recorder(model)
    prompt = random_prompts(2, 4, seed=5)
    out, stats = generate(
        rec, prompt, steps=8, gen_length=8, block_length=4, mask_id=MASK_ID, confidence_threshold=0.5, return_stats=True
    )
    assert not (out[:, 4:] == MASK_ID).any()
    per_row = [
        reference_threshold(model, prompt[i : i + 1], gen_length=8, block_length=4, threshold=0.5)[1] for i in range(2)
    ]
    assert stats.nfe.tolist() == per_row
    assert max(per_row) <= len(rec.inputs) <= sum(per_row)  # the batch runs while any row has a masked position
    for before, after in zip(rec.inputs, rec.inputs[1:]):  # each forward follows at least one commit
        assert (after == MASK_ID).sum() < (before == MASK_ID).sum()


@pytest.mark.parametrize("prefix_cache", [False, True])
def test_batched_equals_batch_one_token_for_token_and_in_cost(prefix_cache):
    model = tiny_lm(num_layers=2)
    kwargs = dict(
        pad_id=PAD_ID,
        steps=8,
        gen_length=8,
        block_length=4,
        mask_id=MASK_ID,
        confidence_threshold=0.4,
        prefix_cache=prefix_cache,
        return_stats=True,
    )
    batched, stats = generate_batched(model, PROMPTS, **kwargs)
    assert len(set(stats.nfe.tolist())) > 1, "rows should need different numbers of forwards"
    for row, prompt in enumerate(PROMPTS):
        alone, alone_stats = generate_batched(model, [prompt], **kwargs)
        assert torch.equal(batched[row], alone[0]) and (alone[0] != MASK_ID).all()
        assert stats.nfe[row] == alone_stats.nfe[0] and stats.positions_fed[row] == alone_stats.positions_fed[0]


def test_fixed_schedule_cost_follows_steps_and_blocks():
    model = tiny_lm(num_layers=2)
    lengths = [len(p) if not isinstance(p, torch.Tensor) else p.numel() for p in PROMPTS]
    common = dict(pad_id=PAD_ID, gen_length=8, block_length=4, mask_id=MASK_ID, return_stats=True)
    _, exact = generate_batched(model, PROMPTS, steps=8, **common)
    assert exact.nfe.tolist() == [8] * 4  # decode.steps forwards per problem
    assert exact.positions_fed.tolist() == [8 * (n + 8) for n in lengths]  # left padding not counted
    _, cached = generate_batched(CacheRecorder(model), PROMPTS, steps=8, prefix_cache=True, **common)
    # per block: one whole-canvas forward, then steps_per_block - 1 forwards of x[:, block_start:]
    assert cached.nfe.tolist() == [8] * 4
    assert cached.positions_fed.tolist() == [2 * (n + 8) + 3 * 8 + 3 * 4 for n in lengths]


def test_cfg_counts_both_passes(model):
    prompt = random_prompts(2, 5, seed=1)
    _, stats = generate(
        model, prompt, steps=4, gen_length=8, block_length=4, mask_id=MASK_ID, cfg_scale=1.0, return_stats=True
    )
    assert stats.nfe.tolist() == [4, 4] and stats.positions_fed.tolist() == [2 * 4 * 13] * 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(confidence_threshold=0.0), "confidence_threshold"),
        (dict(confidence_threshold=1.5), "confidence_threshold"),
        (dict(confidence_threshold=0.9, remasking="random"), "low_confidence"),
    ],
)
def test_bad_threshold_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(model, random_prompts(1, 3), steps=4, gen_length=4, block_length=4, mask_id=MASK_ID, **kwargs)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["decode=semi_ar_threshold", "decode.confidence_threshold=1.5"],
            "decode.confidence_threshold=1.5 is invalid: allowed null (fixed per-step schedule) or a number in (0, 1]",
        ),
        (["decode=semi_ar_threshold", "decode.confidence_threshold=0"], "decode.confidence_threshold=0 is invalid"),
        (
            ["decode=semi_ar_threshold", "decode.remasking=random"],
            "decode.remasking='random' is invalid: allowed low_confidence with decode.confidence_threshold=0.9",
        ),
    ],
)
def test_bad_threshold_config_is_a_one_line_error(overrides, message):
    from blocksft.config.validation import ConfigError, validate_config
    from blocksft.runs.compose import compose_config

    with pytest.raises(ConfigError) as error:
        validate_config(compose_config(overrides))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_threshold_option_composes_and_combines_with_the_prefix_cache():
    from blocksft.config.validation import validate_config
    from blocksft.runs.compose import compose_config

    cfg = compose_config(["decode=semi_ar_threshold", "decode.prefix_cache=true"])
    validate_config(cfg)
    assert cfg.decode.confidence_threshold == 0.9 and cfg.decode.steps == cfg.decode.gen_length == 64
    assert compose_config([]).decode.confidence_threshold is None  # the default stays the exact fixed schedule
