"""experiments/bench (python -m experiments.bench): the section functions on tiny sizes, structural invariants only.

No timing assertions: the timings of a shared CPU are not testable. What is checked is that the
compared variants compute the same thing (loss at loss positions == full projection, batched decode
== batch-1 decode, the two masking baselines agree draw for draw) and that the baselines obey the same
masking invariants as ours.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch

from blocksft.masking import BlockwiseMasking
from experiments.bench import (
    common,
    decoding,
    generation,
    loss_positions,
    masking,
    official_masking,
    prefix_cache,
    throughput,
    timing,
)
from experiments.bench import sections as bench_sections

TINY_SPEC = loss_positions.LossSpec(
    vocab_size=97,
    hidden_size=16,
    num_layers=1,
    num_heads=2,
    intermediate_size=32,
    batch_size=4,
    prompt_len=10,
    response_len=12,
    block_size=4,
    seed=0,
)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread for this module: on a shared 2-core machine, OpenMP threads that wait for a
    busy core make tiny ops orders of magnitude slower; the tests check results, not speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sections(single_thread) -> dict:
    """Every section once, on tiny sizes (shared by the tests below)."""
    return {
        "masking": masking.masking_section(
            batch_size=4,
            prompt_len=8,
            response_len=20,
            block_size=8,
            dataset_size=16,
            inner=1,
            scale=(6, 4, 40),
            train_batch=2,
            train_block=8,
            repeats=1,
            warmup=0,
        ),
        "loss_positions": loss_positions.loss_positions_section(TINY_SPEC, repeats=1, warmup=0, measure_memory=False),
        "decoding": decoding.decoding_section(
            num_prompts=3,
            gen_length=8,
            block_length=4,
            steps=8,
            sweep_block_lengths=(4, 8),
            repeats=1,
            sweep_repeats=1,
        ),
        "throughput": throughput.training_throughput_section(batch_size=2, repeats=1, warmup=0, matmul_size=64),
        "prefix_cache": prefix_cache.prefix_cache_section(
            num_problems=3, batch_size=2, block_lengths=(8, 32), repeats=1
        ),
    }


# ----------------------------------------------------------------------------- 2. loss positions


def test_loss_at_positions_equals_full_projection(sections):
    kinds = sections["loss_positions"]["kinds"]
    assert set(kinds) == {"classical", "blockwise"}
    for kind, entry in kinds.items():
        assert entry["loss_tokens"] > 0, kind
        assert entry["loss_abs_diff"] < 1e-5, kind
        assert entry["grad_max_abs_diff"] < 1e-5, kind
        assert entry["grad_max_abs"] > 0, kind  # the gradients compared are not trivially zero
        assert entry["logits_shape"]["loss_positions"] == [entry["loss_tokens"], TINY_SPEC.vocab_size]
        assert set(entry["time"]) == {"loss_positions", "full_projection"}


def test_gradient_agreement_detects_a_different_mask():
    model, batch, masks = loss_positions.loss_setup(TINY_SPEC)
    same = loss_positions.gradient_agreement(model, batch, masks["classical"])
    assert same["loss_abs_diff"] < 1e-5 and same["grad_max_abs_diff"] < 1e-5
    # sanity of the comparison itself: two different masks do give different losses
    first = common.loss_and_backward(model, batch, masks["classical"])
    model.zero_grad(set_to_none=True)
    second = common.loss_and_backward(model, batch, masks["blockwise"])
    assert abs(float(first) - float(second)) > 1e-5


def test_peak_memory_probe_reports_rss():
    probe = loss_positions.peak_memory_probe(TINY_SPEC, "classical", "full_projection")
    assert probe["peak_rss_delta_mib"] >= 0
    assert probe["peak_rss_mib"] >= probe["rss_before_mib"] > 0


# ----------------------------------------------------------------------------- 1. masking


def _check_loop(
    batch, calls: int, block_size: int, baseline=official_masking.loop_blockwise_mask
) -> list[torch.Tensor]:
    ids, starts, lengths = batch["input_ids"], batch["response_start"], batch["loss_scope_len"]
    pools: dict[int, set[int]] = {}
    rng = random.Random(0)
    actives = []
    for _ in range(calls):
        noisy, loss, active = baseline(
            ids, starts, lengths, batch["index"], pools, rng, block_size=block_size, mask_id=common.MASK_ID
        )
        assert noisy.shape == ids.shape and loss.dtype == torch.bool
        assert (
            official_masking.blockwise_violations(ids, noisy, loss, starts, lengths, active, block_size, common.MASK_ID)
            == []
        )
        actives.append(active)
    return actives


@pytest.mark.parametrize("baseline", [official_masking.official_blockwise_mask, official_masking.loop_blockwise_mask])
def test_baselines_satisfy_the_blockwise_invariants(baseline):
    block_size = 4
    batch = common.synthetic_batch(6, 9, 21, vocab_size=50, seed=1)  # 21 = 5 full blocks + a partial one
    actives = _check_loop(batch, calls=7, block_size=block_size, baseline=baseline)
    # without replacement: each sample visits each of its 6 blocks once, then gets no block (official)
    used = torch.stack(actives[:6]).sort(dim=0).values
    assert torch.equal(used, torch.arange(6)[:, None].expand(6, 6))
    assert (actives[6] == -1).all()


def test_official_transcription_and_every_position_loop_agree_draw_for_draw():
    batch = common.synthetic_batch(5, 7, 19, vocab_size=50, seed=3)
    args = (batch["input_ids"], batch["response_start"], batch["loss_scope_len"], batch["index"])
    official_pools, loop_pools = {}, {}
    official_rng, loop_rng = random.Random(4), random.Random(4)
    for _ in range(6):  # 5 blocks per sample, then exhausted pools
        official = official_masking.official_blockwise_mask(
            *args, official_pools, official_rng, block_size=4, mask_id=common.MASK_ID
        )
        loop = official_masking.loop_blockwise_mask(*args, loop_pools, loop_rng, block_size=4, mask_id=common.MASK_ID)
        assert all(torch.equal(a, b) for a, b in zip(official, loop))
        assert official[1].any() or (official[2] == -1).all()


def test_official_two_phase_mask_regions():
    ids = list(range(10, 30))  # prompt 6 tokens, answer 14 tokens, block 4: blocks 0..3 (the last has 2 tokens)
    noisy, flags = official_masking.official_two_phase_mask(ids, 6, 1, 4, common.MASK_ID, random.Random(0))
    assert noisy[:10] == ids[:10] and not any(flags[:10])  # prompt and clean prefix
    assert all(noisy[i] == common.MASK_ID for i in range(14, 20)) and not any(flags[14:])  # hidden suffix
    assert all(noisy[i] == (common.MASK_ID if flags[i] else ids[i]) for i in range(10, 14))
    noisy, _ = official_masking.official_two_phase_mask(
        ids, 6, 1, 4, common.MASK_ID, random.Random(0), suffix_mask_prob=0.0
    )
    assert noisy[14:] == ids[14:]


def test_ours_satisfies_the_same_invariants():
    block_size = 4
    batch = common.synthetic_batch(6, 9, 21, vocab_size=50, seed=1)
    ids, starts, lengths = batch["input_ids"], batch["response_start"], batch["loss_scope_len"]
    strategy = BlockwiseMasking(block_size, mask_id=common.MASK_ID)
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        masked = strategy(ids, starts, lengths, generator, batch["index"])
        assert (
            official_masking.blockwise_violations(
                ids,
                masked.noisy_ids,
                masked.loss_mask,
                starts,
                lengths,
                masked.active_block,
                block_size,
                common.MASK_ID,
            )
            == []
        )


def test_invariant_checker_catches_violations():
    block_size = 4
    batch = common.synthetic_batch(3, 6, 12, vocab_size=50, seed=2)
    ids, starts, lengths = batch["input_ids"], batch["response_start"], batch["loss_scope_len"]
    noisy, loss, _ = official_masking.official_blockwise_mask(
        ids, starts, lengths, batch["index"], {}, random.Random(0), block_size=block_size, mask_id=common.MASK_ID
    )
    active = torch.zeros(3, dtype=torch.long)  # pretend block 0 was active: the suffix is blocks 1-2

    def violations(noisy_ids, loss_mask):
        return official_masking.blockwise_violations(
            ids, noisy_ids, loss_mask, starts, lengths, active, block_size, common.MASK_ID
        )

    clean = ids.clone()
    clean[:, 6 + block_size :] = common.MASK_ID  # a valid mask: block 0 clean and without loss, suffix hidden
    no_loss = torch.zeros_like(loss)
    assert violations(clean, no_loss) == []
    suffix_visible = clean.clone()
    suffix_visible[0, -1] = ids[0, -1]
    assert "suffix_not_all_masked" in violations(suffix_visible, no_loss)
    prompt_changed = clean.clone()
    prompt_changed[1, 5] = common.MASK_ID
    assert "prompt_or_outside_response_changed" in violations(prompt_changed, no_loss)
    loss_in_suffix = no_loss.clone()
    loss_in_suffix[2, -1] = True
    assert "loss_outside_active_block" in violations(clean, loss_in_suffix)


def test_masking_section_structure(sections):
    masking = sections["masking"]
    assert masking["invariants_ok"], masking["invariant_violations"]
    assert set(masking["time"]) == {
        "ours_classical",
        "ours_blockwise",
        "official_blockwise",
        "loop_blockwise",
        "floor_rand_where",
    }
    assert set(masking["invariant_violations"]) == {"ours_blockwise", "official_blockwise", "loop_blockwise"}
    assert masking["speedup_blockwise_vs_loop"] > 0 and masking["speedup_blockwise_vs_official"] > 0
    assert masking["speedup_ceiling_vs_loop"] > 0
    assert masking["larger_batch"]["batch_shape"] == [6, 44]
    share = masking["share_of_step"]
    assert share["batch_shape"][0] == 2 and share["batch_shape"][1] > 32  # prompt + response 32
    assert 0 < share["classical_share"] and 0 < share["blockwise_share"]


# ----------------------------------------------------------------------------- 3. decoding


def test_batched_decode_equals_batch_one(sections):
    decoding = sections["decoding"]
    assert decoding["tokens_identical"] and decoding["identical_problems"] == 3
    batched, single = decoding["modes"]["batched"], decoding["modes"]["batch_size_1"]
    assert batched["forward_calls"] == 8 and single["forward_calls"] == 3 * 8
    assert batched["nfe_per_problem"] == single["nfe_per_problem"] == 8
    assert 0 <= batched["overhead_share"] < 1 and 0 <= single["overhead_share"] < 1
    assert [(e["block_length"], e["prefix_cache"]) for e in decoding["sweep"].values()] == [
        (4, False),
        (4, True),
        (8, False),
        (8, True),
    ]
    assert all(e["nfe_per_problem"] == 8 for e in decoding["sweep"].values())
    sweep = decoding["sweep"]
    assert sweep["block_4_cached"]["positions_per_problem"] < sweep["block_4"]["positions_per_problem"]
    # one block: the cache is built from the prompt only and everything after it is fed at each step
    assert sweep["block_8_cached"]["positions_per_problem"] < sweep["block_8"]["positions_per_problem"]


def test_prefix_cache_section_structure(sections):
    cache = sections["prefix_cache"]
    assert cache["num_problems"] == 3 and not cache["trained"]
    assert set(cache["blocks"]) == {"8", "32"}
    for entry in cache["blocks"].values():
        exact, cached = entry["exact"], entry["cached"]
        assert exact["nfe_per_problem"] == cached["nfe_per_problem"] == cache["settings"]["steps"]
        assert cached["positions_per_problem"] < exact["positions_per_problem"]
        assert 0 <= exact["accuracy"] <= 1 and 0 <= cached["accuracy"] <= 1
        assert 0 <= entry["identical_generations"] <= 3 and entry["speedup"] > 0


def test_prefix_cache_is_exact_with_one_step_per_block():
    """Sanity of the section's plumbing: with one step per block the cached decode equals the exact one."""
    model, tokenizer, _ = generation.decoding_model(None)
    prompts = generation.arithmetic_prompts(3, tokenizer)
    kwargs = dict(batched=True, gen_length=8, block_length=4, steps=2)
    exact = generation.decode(generation.ForwardTimer(model), prompts, tokenizer, **kwargs)
    cached = generation.decode(generation.ForwardTimer(model), prompts, tokenizer, prefix_cache=True, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(exact, cached))


def test_forward_timer_counts_calls():
    model, tokenizer, _ = generation.decoding_model(None)
    timer = generation.ForwardTimer(model)
    prompts = generation.arithmetic_prompts(2, tokenizer)
    out = generation.decode(timer, prompts, tokenizer, batched=False, gen_length=4, block_length=4, steps=2)
    assert len(out) == 2 and all(o.shape == (4,) for o in out)
    assert (timer.calls, timer.rows) == (4, 4) and timer.seconds > 0
    assert timer.positions == sum(p.numel() + 4 for p in prompts) * 2


# ----------------------------------------------------------------------------- 4. throughput and report


def test_throughput_section_structure(sections):
    throughput = sections["throughput"]
    assert set(throughput["steps"]) == {"fp32", "bf16_autocast"}
    for entry in throughput["steps"].values():
        flops = entry["flops_per_step"]
        assert flops["total"] == flops["dense"] + flops["lm_head"] + flops["attention"] > 0
        assert entry["tokens_per_s"] > 0 and entry["share_of_fp32_peak"] > 0
    assert throughput["matmul_peak"]["fp32_flops"] > 0 and throughput["matmul_peak"]["bf16_flops"] > 0


def test_training_flops_formula():
    tokenizer = common.default_tokenizer()
    model = common.default_model(tokenizer)
    flops = throughput.training_flops(model, batch_size=2, seq_len=10, loss_tokens=5)
    hidden, inter, layers, vocab = 128, 512, 4, len(tokenizer)
    block_weights = layers * (4 * hidden * hidden + 2 * hidden * inter)
    assert flops["block_linear_params"] == block_weights
    assert flops["dense"] == 6 * block_weights * 2 * 10
    assert flops["lm_head"] == 6 * hidden * vocab * 5
    assert flops["attention"] == 12 * layers * hidden * 10**2 * 2


def test_report_renders_every_section(sections):
    results = {"quick": True, "settings": {}, "machine": timing.machine_info(), "wall_time_s": 1.0, **sections}
    results["targets"] = bench_sections.target_checks(results)
    names = [c["target"] for c in results["targets"]]
    assert any("speed-up" in n for n in names) and any("identical" in n for n in names)
    text = bench_sections.render_markdown(results)
    for heading in (
        "## 1. Masking",
        "## 2. LM head",
        "## 3. Decoding",
        "## 4. Training throughput",
        "## 5. Prefix-cached",
        "## Targets",
    ):
        assert heading in text
    assert results["machine"]["torch_version"] in text


# ----------------------------------------------------------------------------- the sections table and devices


@dataclass(frozen=True)
class ExtraSettings:
    size: int


def test_a_section_is_one_entry_of_the_table(monkeypatch):
    calls = []

    def measure(settings, seed, device, model_path):
        calls.append((settings.size, seed, device.type, model_path))
        return {"value": settings.size}

    extra = bench_sections.Section(
        9,
        "extra",
        ExtraSettings(100),
        ExtraSettings(1),
        measure,
        lambda result: [f"## 9. Extra ({result['value']})", ""],
        lambda result: [check_target("extra value", result["value"])],
    )
    monkeypatch.setitem(bench_sections.SECTIONS, 9, extra)
    results = bench_sections.run_benchmark((9,), quick=True, seed=3, device="cpu")
    assert calls == [(1, 3, "cpu", None)]
    assert results["settings"] == {"extra": {"size": 1}} and results["extra"] == {"value": 1}
    assert [c["target"] for c in results["targets"]] == ["extra value"]
    text = bench_sections.render_markdown(results)
    assert "## 9. Extra (1)" in text and "## 1. Masking" not in text and "| extra value |" in text
    assert "GPU" not in text  # the CPU report keeps the machine table it always had


def check_target(name, value):
    from experiments.bench.render import check

    return check(name, value, ">= 1x", value >= 1)


def test_the_benchmark_times_the_training_code():
    """The timed loss is blocksft's training step (objective.masked_diffusion_step), not a copy."""
    from blocksft.training.objective import masked_diffusion_step

    model, batch, masks = loss_positions.loss_setup(TINY_SPEC)
    timed = common.loss_and_backward(model, batch, masks["blockwise"])
    assert float(timed) == float(masked_diffusion_step(model, batch, masks["blockwise"]))


def test_device_choice():
    assert timing.resolve_device("cpu").type == "cpu"
    assert timing.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="--device"):
        timing.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            timing.resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_section_runs_on_cuda():
    results = bench_sections.run_benchmark(tuple(bench_sections.SECTIONS), quick=True, device="cuda")
    assert results["machine"]["device"].startswith("cuda") and results["machine"]["gpu"]["name"]
    assert results["decoding"]["tokens_identical"]
    for entry in results["loss_positions"]["kinds"].values():
        assert entry["loss_abs_diff"] < 1e-4
        assert all(m["peak_cuda_delta_mib"] > 0 for m in entry["memory"].values())
    assert results["throughput"]["steps"]["fp32"]["tokens_per_s"] > 0
    assert "GPU (timed device)" in bench_sections.render_markdown(results)
