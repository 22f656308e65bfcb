"""Property tests of the issue-16 corruption schemes: all blocks and complementary masks (rows per
sample, row accounting), the mask-rate range and the EOS-tail count of every strategy."""

import pytest
import torch

from blocksft.masking import BlockwiseMasking, ClassicalMasking, MatchedClassicalMasking, UnalignedBlockMasking
from blocksft.masking.multirow import AllBlocksMasking, ComplementaryMasking, plan_rows

MASK = 1
ALL = [
    ClassicalMasking,
    BlockwiseMasking,
    UnalignedBlockMasking,
    MatchedClassicalMasking,
    AllBlocksMasking,
    ComplementaryMasking,
]


def make(cls, **kwargs):
    if cls is not ClassicalMasking:
        kwargs.setdefault("block_size", 8)
    if cls in (BlockwiseMasking, UnalignedBlockMasking):
        kwargs.setdefault("block_sampling", "uniform")
    return cls(mask_id=MASK, **kwargs)


def make_batch(batch_size=64, prompt_width=10, response_len=40, seed=0, varied=True):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 50, (batch_size, prompt_width + response_len), generator=generator)
    start = torch.full((batch_size,), prompt_width)
    scope = (
        torch.randint(1, response_len + 1, (batch_size,), generator=generator)
        if varied
        else torch.full((batch_size,), response_len)
    )
    return input_ids, start, scope


def row_regions(out, ids, start, scope, block_size):
    """Per row: prompt, prefix, active block, suffix, out-of-scope tail ([R, L] bool each)."""
    source = torch.arange(len(ids)) if out.source_row is None else out.source_row
    rel = torch.arange(ids.shape[1])[None, :] - start[source][:, None]
    length = scope[source][:, None]
    in_resp = (rel >= 0) & (rel < length)
    s = (out.active_block * block_size)[:, None]
    e = torch.minimum(s + block_size, length)
    return rel < 0, in_resp & (rel < s), in_resp & (rel >= s) & (rel < e), in_resp & (rel >= e), ~in_resp & (rel >= 0)


# ------------------------------------------------------------------------------------- all blocks
@pytest.mark.parametrize("block_size", [1, 4, 8, 40])
@pytest.mark.parametrize("rows", ["batch", "expand"])
def test_all_blocks_rows_are_blockwise_rows(block_size, rows):
    ids, start, scope = make_batch()
    out = AllBlocksMasking(block_size, mask_id=MASK, rows=rows)(ids, start, scope, torch.Generator().manual_seed(0))
    clean = ids[out.source_row]
    prompt, prefix, active, suffix, tail = row_regions(out, ids, start, scope, block_size)
    visible = prompt | prefix | tail
    assert torch.equal(out.noisy_ids[visible], clean[visible])  # prompt never masked, prefix clean
    assert (out.noisy_ids[suffix] == MASK).all()  # later response tokens hidden
    assert torch.equal(out.eligible_mask, active)
    assert torch.equal(out.loss_mask, active & (out.noisy_ids == MASK))  # loss = the masked tokens of the block
    assert torch.equal(out.response_len, scope[out.source_row])


def test_all_blocks_expand_gives_every_block_of_every_sample_once():
    ids, start, scope = make_batch()
    out = AllBlocksMasking(8, mask_id=MASK, rows="expand")(ids, start, scope, torch.Generator().manual_seed(0))
    num_blocks = (scope + 7) // 8
    assert out.noisy_ids.shape[0] == int(num_blocks.sum())
    pairs = sorted(zip(out.source_row.tolist(), out.active_block.tolist()))
    assert pairs == [(i, b) for i in range(len(ids)) for b in range(int(num_blocks[i]))]
    assert out.num_source_samples == len(ids)


@pytest.mark.parametrize("seed", range(4))
def test_all_blocks_batch_keeps_the_row_count_and_expands_whole_samples(seed):
    ids, start, scope = make_batch(batch_size=16, seed=seed, varied=False)  # 40 tokens, block 8: K = 5
    out = AllBlocksMasking(8, mask_id=MASK)(ids, start, scope, torch.Generator().manual_seed(seed))
    assert out.noisy_ids.shape[0] == 16  # rows per step = the batch: budgets keep their meaning
    assert out.num_source_samples == 4  # ceil(16 / 5) samples
    per_sample = {
        i: sorted(b for s, b in zip(out.source_row.tolist(), out.active_block.tolist()) if s == i) for i in range(4)
    }
    assert per_sample[0] == per_sample[1] == per_sample[2] == [0, 1, 2, 3, 4]  # whole samples, each block once
    assert len(per_sample[3]) == 1  # the sample cut short gives one of its blocks


def test_all_blocks_batch_cut_sample_gives_a_random_block():
    ids, start, scope = make_batch(batch_size=6, varied=False)  # K = 5: sample 1 gives 1 block
    chosen = [
        AllBlocksMasking(8, mask_id=MASK)(ids, start, scope, torch.Generator().manual_seed(s)).active_block[-1].item()
        for s in range(200)
    ]
    counts = torch.bincount(torch.tensor(chosen), minlength=5)
    assert (counts > 20).all()


def test_plan_rows_is_vectorised_bookkeeping():
    source, slot = plan_rows(torch.tensor([2, 3, 1]), "expand", torch.Generator(), shuffle_slots=False)
    assert source.tolist() == [0, 0, 1, 1, 1, 2] and slot.tolist() == [0, 1, 0, 1, 2, 0]
    source, slot = plan_rows(torch.tensor([2, 3, 1]), "batch", torch.Generator(), shuffle_slots=False)
    assert source.tolist() == [0, 0, 1] and slot.tolist() == [0, 1, 0]


# ---------------------------------------------------------------------------------- complementary
@pytest.mark.parametrize("rows", ["batch", "expand"])
@pytest.mark.parametrize("seed", range(3))
def test_complement_covers_the_active_block_exactly_once(rows, seed):
    ids, start, scope = make_batch(seed=seed)
    strategy = ComplementaryMasking(8, mask_id=MASK, rows=rows, prefix_mask_rate=0.3, suffix_mask_prob=0.5)
    out = strategy(ids, start, scope, torch.Generator().manual_seed(seed), torch.arange(len(ids)))
    rows_expected = len(ids) if rows == "batch" else 2 * len(ids)
    assert out.noisy_ids.shape[0] == rows_expected and out.num_source_samples == rows_expected // 2
    assert torch.equal(out.source_row[0::2], out.source_row[1::2])
    assert torch.equal(out.active_block[0::2], out.active_block[1::2])
    mask, complement = out.loss_mask[0::2], out.loss_mask[1::2]
    block = out.eligible_mask[0::2]
    assert not (mask & complement).any()  # disjoint
    assert torch.equal(mask | complement, block)  # together: the whole block, each token once
    prompt, prefix, active, suffix, tail = row_regions(out, ids, start, scope, 8)
    assert torch.equal(out.eligible_mask, active)
    clean = ids[out.source_row]
    assert torch.equal(out.noisy_ids[prompt | tail], clean[prompt | tail])  # prompt never masked
    assert torch.equal(out.loss_mask, active & (out.noisy_ids == MASK))
    outside = ~active
    assert torch.equal(out.noisy_ids[0::2][outside[0::2]], out.noisy_ids[1::2][outside[1::2]])  # same context noise
    assert torch.allclose(out.mask_rate[0::2] + out.mask_rate[1::2], torch.ones(rows_expected // 2))


def test_complement_rows_batch_needs_an_even_batch():
    ids, start, scope = make_batch(batch_size=5)
    with pytest.raises(ValueError, match="data.batch_size"):
        ComplementaryMasking(8, mask_id=MASK)(ids, start, scope, torch.Generator(), torch.arange(5))


# ---------------------------------------------------------------------------------- rate range
@pytest.mark.parametrize("cls", ALL)
def test_mask_rate_within_p_min_p_max(cls):
    ids, start, scope = make_batch(batch_size=2000)
    out = make(cls, p_min=0.3, p_max=0.8)(ids, start, scope, torch.Generator().manual_seed(0), torch.arange(2000))
    rate = out.mask_rate[0::2] if cls is ComplementaryMasking else out.mask_rate  # the pair's second row is 1 - p
    assert ((rate >= 0.3) & (rate < 0.8)).all()
    assert rate.min() < 0.32 and rate.max() > 0.78  # the whole range is used


def test_default_rate_draws_are_the_old_eps_formula():
    """p_min/p_max default to (eps, 1): the same draws, bit for bit, as ``eps + (1 - eps) * rand``."""
    ids, start, scope = make_batch()
    for cls in (ClassicalMasking, BlockwiseMasking):
        generator, reference = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        out = make(cls)(ids, start, scope, generator)
        if cls is BlockwiseMasking:
            torch.rand(len(ids), generator=reference)  # the uniform block draw comes first
        expected = 1e-3 + (1.0 - 1e-3) * torch.rand(len(ids), generator=reference)
        assert torch.equal(out.mask_rate, expected)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"p_min": 0.5, "p_max": 0.5}, "p_min"),
        ({"p_min": 0.9, "p_max": 0.2}, "p_min"),
        ({"p_max": 1.5}, "p_max"),
        ({"p_min": 0.0}, "p_min"),
        ({"tail_eos_in_loss": -1}, "tail_eos_in_loss"),
        ({"rows": "some"}, "rows"),
    ],
)
def test_bad_new_arguments_name_the_key(kwargs, key):
    cls = AllBlocksMasking if "rows" in kwargs else BlockwiseMasking
    with pytest.raises(ValueError, match=key):
        cls(8, mask_id=MASK, **kwargs)


# ---------------------------------------------------------------------------------- EOS tail
def eos_batch(batch_size=64, response_len=24, seed=0):
    """A training batch as TrainCollator builds it: answer + EOS + EOS tail; EOS id 2."""
    generator = torch.Generator().manual_seed(seed)
    answer_len = torch.randint(2, response_len + 1, (batch_size,), generator=generator)  # answer + its EOS
    ids = torch.randint(5, 50, (batch_size, 6 + response_len), generator=generator)
    rel = torch.arange(response_len)[None, :]
    ids[:, 6:] = torch.where(rel >= answer_len[:, None] - 1, 2, ids[:, 6:])
    return {
        "input_ids": ids,
        "response_start": torch.full((batch_size,), 6),
        "answer_len": answer_len,
        "loss_scope_len": torch.full((batch_size,), response_len),
        "index": torch.arange(batch_size),
    }


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("tail", [None, 0, 3])
def test_eos_tail_count_is_respected(cls, tail):
    batch = eos_batch()
    strategy = make(cls, tail_eos_in_loss=tail)
    out = strategy.mask_batch(batch, torch.Generator().manual_seed(0))
    source = torch.arange(64) if out.source_row is None else out.source_row
    rel = torch.arange(batch["input_ids"].shape[1])[None, :] - 6
    tail_position = rel - (batch["answer_len"][source][:, None] - 1)  # 0 = the answer's EOS, 1.. = the tail
    in_tail = tail_position >= 1
    allowed = rel < 24 if tail is None else tail_position <= tail
    assert not (out.eligible_mask & ~allowed).any()  # no tail EOS beyond the count is in the loss scope
    assert not (out.loss_mask & ~allowed).any()
    cut = in_tail & ~allowed
    clean = batch["input_ids"][source]
    assert torch.equal(out.noisy_ids[cut], clean[cut])  # the cut tail stays visible and clean
    if tail is not None:
        assert torch.equal(out.response_len, torch.minimum(batch["answer_len"] + tail, torch.tensor(24))[source])
    if tail is None and cls is ClassicalMasking:  # default: the whole response is in scope
        assert (out.eligible_mask.sum(1) == 24).all()


def test_tail_zero_equals_a_visible_tail():
    batch = eos_batch()
    visible = {**batch, "loss_scope_len": batch["answer_len"]}  # what data.tail_padding=visible collates
    a = ClassicalMasking(mask_id=MASK, tail_eos_in_loss=0).mask_batch(batch, torch.Generator().manual_seed(3))
    b = ClassicalMasking(mask_id=MASK).mask_batch(visible, torch.Generator().manual_seed(3))
    assert torch.equal(a.noisy_ids, b.noisy_ids) and torch.equal(a.loss_mask, b.loss_mask)


# ---------------------------------------------------------------------------------- loss wiring
@pytest.mark.parametrize("cls", [AllBlocksMasking, ComplementaryMasking])
def test_loss_runs_on_expanded_rows_against_the_source_tokens(cls):
    from blocksft.training.objective import masked_diffusion_step

    class Echo(torch.nn.Module):
        """encode: one-hot of the noisy ids; project: identity. Checks rows/targets line up."""

        def encode(self, ids, attention_mask):
            assert attention_mask.shape == ids.shape
            return torch.nn.functional.one_hot(ids, 60).float() * 50

        def project(self, hidden):
            return hidden

    batch = eos_batch(batch_size=8)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    masked = make(cls, rows="expand").mask_batch(batch, torch.Generator().manual_seed(0))
    loss = masked_diffusion_step(Echo(), batch, masked)
    assert torch.isfinite(loss) and loss > 1.0  # masked positions predict [MASK], never the clean token
    # Targets come from the source sample of each row: feeding the clean ids gives ~0 loss.
    masked.noisy_ids = masked.rows_of(batch["input_ids"]).clone()
    assert masked_diffusion_step(Echo(), batch, masked) < 1e-6


# ---------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("strategy, rows", [("blockwise_all_blocks", "batch"), ("blockwise_complementary", "batch")])
def test_smoke_run_of_each_new_strategy_logs_rows_and_source_samples(strategy, rows, tmp_path):
    import csv
    import json

    from helpers.runs import run_in_process

    args = [
        f"strategy={strategy}",
        "block=8",
        "data=arithmetic",
        "debug=smoke",
        f"strategy.masking.rows={rows}",
        "strategy.masking.p_min=0.1",
        "strategy.masking.p_max=0.9",
        "strategy.masking.tail_eos_in_loss=2",
    ]
    run_in_process(args, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["strategy"] == strategy and results["steps"] == 10
    assert 0 < results["supervised_tokens"] <= results["eligible_tokens"] <= 10 * 16 * 8  # one block per row
    with open(tmp_path / "csv" / "metrics.csv") as handle:
        steps = [row for row in csv.DictReader(handle) if row.get("train/rows")]
    assert len(steps) == 10 and all(float(row["train/rows"]) == 16 for row in steps)  # rows = data.batch_size
    sources = [float(row["train/source_samples"]) for row in steps]
    if strategy == "blockwise_all_blocks":  # ceil(16 / K) samples; K <= 32 / 8 blocks (fewer: the EOS tail is cut at 2)
        assert all(4 <= s < 16 for s in sources)
    else:
        assert sources == [8.0] * 10  # 8 pairs of rows
    rates = [float(row["train/mask_rate"]) for row in steps]
    assert all(0.1 <= r <= 0.9 for r in rates)


# ---------------------------------------------------------------------------------- budget accounting
@pytest.mark.parametrize(
    "cls, rows",
    [
        (BlockwiseMasking, None),
        (AllBlocksMasking, "batch"),
        (AllBlocksMasking, "expand"),
        (ComplementaryMasking, "batch"),
        (ComplementaryMasking, "expand"),
    ],
)
def test_expected_tokens_per_batch_slot_match_what_a_step_spends(cls, rows):
    """Token budgets size their step count as expected_eligible(scope).mean() x batch size (x E[p] for
    ``budget.count=masked``): the tokens a step really spends must match."""
    strategy = make(cls, **({} if rows is None else {"rows": rows}), p_min=0.2, p_max=0.6)
    generator, eligible, supervised, steps = torch.Generator().manual_seed(0), 0, 0, 200
    for step in range(steps):
        ids, start, scope = make_batch(batch_size=16, seed=step)
        out = strategy(ids, start, scope, generator, torch.arange(16) + 16 * step)
        eligible += int(out.eligible_mask.sum())
        supervised += int(out.loss_mask.sum())
    ids, start, scope = make_batch(batch_size=4000, seed=10_000)
    expected = strategy.expected_eligible(scope).mean().item() * 16 * steps
    assert abs(eligible / expected - 1) < 0.06
    assert abs(supervised / (expected * strategy.expected_mask_rate()) - 1) < 0.08


@pytest.mark.slow
def test_complementary_run_killed_and_resumed_gives_the_same_bits(tmp_path):
    """Complementary masks keep blockwise's block pools: a SIGKILLed run resumes to the same weights."""
    from helpers.runs import run_in_process, run_train

    run = [
        "debug=smoke",
        "strategy=blockwise_complementary",
        "budget.value=20",
        "checkpoint.every_n_train_steps=10",
        "seed=3",
        "logger=csv",
        "strategy.masking.tail_eos_in_loss=1",
    ]
    kill = ["+callbacks.kill._target_=callbacks.KillAtStep", "+callbacks.kill.step=15"]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    run_in_process(run, straight)
    killed = run_train([*run, *kill], crashed)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_in_process(run, crashed)
    weights = [(d / "export" / "model.safetensors").read_bytes() for d in (straight, crashed)]
    assert weights[0] == weights[1]
