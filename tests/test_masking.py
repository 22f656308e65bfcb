"""Property tests of the masking invariants (classical, blockwise and its ablation knobs)."""

import pytest
import torch

from blocksft.masking import BlockSampler, BlockwiseMasking, ClassicalMasking

MASK = 1


def make_batch(batch_size=64, prompt_width=10, response_len=40, seed=0, scope=None):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 50, (batch_size, prompt_width + response_len), generator=generator)
    start = torch.full((batch_size,), prompt_width)
    scope = torch.full((batch_size,), response_len) if scope is None else scope
    return input_ids, start, scope


def regions(input_ids, start, scope, active, block_size):
    rel = torch.arange(input_ids.shape[1])[None, :] - start[:, None]
    in_resp = (rel >= 0) & (rel < scope[:, None])
    s = (active * block_size)[:, None]
    e = torch.minimum(s + block_size, scope[:, None])
    return rel < 0, in_resp & (rel < s), in_resp & (rel >= s) & (rel < e), in_resp & (rel >= e), ~in_resp & (rel >= 0)


@pytest.mark.parametrize("seed", range(5))
def test_classical_masks_only_response_and_loss_equals_masked(seed):
    ids, start, scope = make_batch(seed=seed)
    out = ClassicalMasking(eps=1e-3, mask_id=MASK)(ids, start, scope, torch.Generator().manual_seed(seed))
    prompt = torch.arange(ids.shape[1])[None, :] < start[:, None]
    assert torch.equal(out.noisy_ids[prompt], ids[prompt])
    assert torch.equal(out.loss_mask, out.noisy_ids == MASK)
    assert not (out.loss_mask & ~out.eligible_mask).any()
    assert out.eligible_mask.sum(1).tolist() == scope.tolist()
    assert ((out.mask_rate >= 1e-3) & (out.mask_rate < 1)).all()


def test_classical_mask_rate_matches_sampled_p():
    ids, start, scope = make_batch(batch_size=4000, response_len=200)
    out = ClassicalMasking(mask_id=MASK)(ids, start, scope, torch.Generator().manual_seed(1))
    fraction = out.loss_mask.sum(1).float() / 200
    assert (fraction - out.mask_rate).abs().mean() < 0.03
    # p ~ U(eps, 1): mean ~0.5, quartiles ~0.25/0.75
    assert abs(out.mask_rate.mean().item() - 0.5) < 0.02
    assert abs(out.mask_rate.quantile(0.25).item() - 0.25) < 0.03


@pytest.mark.parametrize("block_size", [1, 4, 7, 16, 40, 64])
@pytest.mark.parametrize("sampling", ["uniform", "without_replacement"])
def test_blockwise_invariants(block_size, sampling):
    ids, start, scope = make_batch(response_len=40)
    scope = torch.randint(1, 41, scope.shape, generator=torch.Generator().manual_seed(3))
    strategy = BlockwiseMasking(block_size, mask_id=MASK, block_sampling=sampling)
    out = strategy(ids, start, scope, torch.Generator().manual_seed(0), torch.arange(len(ids)))
    prompt, prefix, active, suffix, tail = regions(ids, start, scope, out.active_block, block_size)
    num_blocks = (scope + block_size - 1) // block_size
    assert ((out.active_block >= 0) & (out.active_block < num_blocks)).all()
    assert torch.equal(out.noisy_ids[prompt | prefix | tail], ids[prompt | prefix | tail])  # clean prompt/prefix/tail
    assert (out.noisy_ids[suffix] == MASK).all()  # suffix fully hidden
    assert torch.equal(out.eligible_mask, active)  # loss scope = active block
    assert not (out.loss_mask & ~active).any()  # loss only inside the active block
    assert torch.equal(out.loss_mask, active & (out.noisy_ids == MASK))


def test_blockwise_partial_last_block_and_short_response():
    ids, start, _ = make_batch(batch_size=200, response_len=40)
    scope = torch.tensor([37] * 100 + [5] * 100)  # 37 = 4 full blocks of 8 + partial 5; 5 < one block
    strategy = BlockwiseMasking(8, mask_id=MASK, block_sampling="uniform")
    out = strategy(ids, start, scope, torch.Generator().manual_seed(0))
    last = out.active_block[:100] == 4
    assert last.any()
    assert (out.eligible_mask[:100][last].sum(1) == 5).all()
    assert (out.active_block[100:] == 0).all()
    assert (out.eligible_mask[100:].sum(1) == 5).all()


def test_blockwise_ablation_knobs():
    ids, start, scope = make_batch(batch_size=2000, response_len=64)
    generator = torch.Generator().manual_seed(0)
    visible = BlockwiseMasking(16, mask_id=MASK, suffix_mask_prob=0.0, block_sampling="uniform")(
        ids, start, scope, generator
    )
    _, prefix, active, suffix, _ = regions(ids, start, scope, visible.active_block, 16)
    assert torch.equal(visible.noisy_ids[suffix], ids[suffix])  # suffix fully visible
    half = BlockwiseMasking(16, mask_id=MASK, suffix_mask_prob=0.5, prefix_mask_rate=0.2, block_sampling="uniform")
    out = half(ids, start, scope, generator)
    _, prefix, active, suffix, _ = regions(ids, start, scope, out.active_block, 16)
    assert abs((out.noisy_ids[suffix] == MASK).float().mean().item() - 0.5) < 0.02
    assert abs((out.noisy_ids[prefix] == MASK).float().mean().item() - 0.2) < 0.02
    assert not (out.loss_mask & (prefix | suffix)).any()  # noise outside the active block carries no loss


def test_without_replacement_covers_every_block_once_then_refills():
    sampler = BlockSampler("without_replacement")
    generator = torch.Generator().manual_seed(0)
    num_blocks = torch.tensor([5, 3, 1, 4])
    index = torch.arange(4)
    seen = [sampler.sample(num_blocks, generator, index) for _ in range(5)]
    chosen = torch.stack(seen, 1)  # [4, 5]
    assert sorted(chosen[0].tolist()) == [0, 1, 2, 3, 4]
    assert sorted(chosen[1, :3].tolist()) == [0, 1, 2]
    assert sorted(chosen[3, :4].tolist()) == [0, 1, 2, 3]
    assert (chosen[2] == 0).all()
    assert sampler.refills > 0


def test_block_sampler_state_round_trip_reproduces_choices():
    generator = torch.Generator().manual_seed(0)
    sampler = BlockSampler()
    num_blocks, index = torch.full((6,), 4), torch.arange(6)
    sampler.sample(num_blocks, generator, index)
    state, gen_state = sampler.state_dict(), generator.get_state()
    expected = [sampler.sample(num_blocks, generator, index) for _ in range(3)]
    restored = BlockSampler()
    restored.load_state_dict(state)
    generator.set_state(gen_state)
    assert all(torch.equal(a, restored.sample(num_blocks, generator, index)) for a in expected)


def test_uniform_block_choice_is_uniform():
    sampler = BlockSampler("uniform")
    choices = sampler.sample(torch.full((40000,), 4), torch.Generator().manual_seed(0), None)
    counts = torch.bincount(choices, minlength=4).float() / 40000
    assert (counts - 0.25).abs().max() < 0.01


def test_same_generator_seed_same_masks():
    ids, start, scope = make_batch()
    a = BlockwiseMasking(8, mask_id=MASK, block_sampling="uniform")(ids, start, scope, torch.Generator().manual_seed(7))
    b = BlockwiseMasking(8, mask_id=MASK, block_sampling="uniform")(ids, start, scope, torch.Generator().manual_seed(7))
    assert torch.equal(a.noisy_ids, b.noisy_ids)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"block_size": 0}, "block.size"),
        ({"block_size": 8, "eps": 0.0}, "eps"),
        ({"block_size": 8, "eps": 1.0}, "eps"),
        ({"block_size": 8, "prefix_mask_rate": 1.5}, "prefix_mask_rate"),
        ({"block_size": 8, "suffix_mask_prob": -0.1}, "suffix_mask_prob"),
        ({"block_size": 8, "block_sampling": "cyclic"}, "block_sampling"),
    ],
)
def test_bad_strategy_arguments_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        BlockwiseMasking(**kwargs)


def test_unaligned_span_has_block_length_and_starts_anywhere():
    from blocksft.masking import UnalignedBlockMasking

    ids, start, scope = make_batch(batch_size=3000, response_len=40)
    out = UnalignedBlockMasking(8, mask_id=MASK)(ids, start, scope, torch.Generator().manual_seed(0))
    rel = torch.arange(ids.shape[1])[None, :] - start[:, None]
    span_start = torch.where(out.eligible_mask, rel, 10**6).min(1).values
    assert (out.eligible_mask.sum(1) == 8).all()
    assert (span_start % 8 != 0).float().mean() > 0.8  # mostly unaligned
    assert span_start.min() == 0 and span_start.max() == 32  # every offset in [0, L - B] reachable
    after = (rel >= span_start[:, None] + 8) & (rel < 40)
    before = (rel >= 0) & (rel < span_start[:, None])
    assert (out.noisy_ids[after] == MASK).all() and torch.equal(out.noisy_ids[before], ids[before])
    assert not (out.loss_mask & ~out.eligible_mask).any()


def test_matched_classical_masks_as_many_tokens_as_blockwise_on_average():
    from blocksft.masking import MatchedClassicalMasking

    ids, start, scope = make_batch(batch_size=4000, response_len=40)
    generator = torch.Generator().manual_seed(0)
    matched = MatchedClassicalMasking(8, mask_id=MASK)(ids, start, scope, generator)
    blockwise = BlockwiseMasking(8, mask_id=MASK, block_sampling="uniform")(ids, start, scope, generator)
    assert abs(matched.loss_mask.sum(1).float().mean() - blockwise.loss_mask.sum(1).float().mean()) < 0.15
    assert torch.equal(matched.loss_mask, matched.noisy_ids == MASK)  # nothing hidden without loss
    assert matched.eligible_mask.sum(1).tolist() == scope.tolist()


def test_sync_ranks_gives_every_rank_the_block_pools_of_one_process():
    """Two ranks mask halves of a batch; after ``sync_ranks`` (gather/reduce simulated) both hold the
    pools of every row, as one process masking the whole batch would."""
    ids, start, scope = make_batch(batch_size=4, response_len=40)
    index, halves = torch.arange(4), (slice(0, 2), slice(2, 4))
    ranks = [BlockwiseMasking(8, mask_id=MASK), BlockwiseMasking(8, mask_id=MASK)]
    for seed, (masking, half) in enumerate(zip(ranks, halves)):
        masking(ids[half], start[half], scope[half], torch.Generator().manual_seed(seed), index[half])
    width = max(masking.sampler.used.shape[1] for masking in ranks)
    pools = torch.stack([masking.sampler.pool_rows(index[half], width) for masking, half in zip(ranks, halves)])
    indices = torch.stack([index[half] for half in halves])
    for masking, half in zip(ranks, halves):
        gathered = iter([pools, indices])  # what all_gather returns on every rank, in call order
        masking.sync_ranks(
            index[half],
            gather=lambda tensor, gathered=gathered: next(gathered),
            reduce_max=lambda tensor: torch.tensor(width),
        )
    assert torch.equal(ranks[0].sampler.used[:4], ranks[1].sampler.used[:4])
    assert ranks[0].sampler.used[:4].sum(dim=1).tolist() == [1, 1, 1, 1]  # one block drawn per row, on either rank
    ClassicalMasking(mask_id=MASK).sync_ranks(index, gather=None, reduce_max=None)  # stateless: nothing to share
