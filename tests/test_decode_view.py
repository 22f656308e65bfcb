"""The decode-view loss (``diagnostics.decode_view``): the views are exactly the decoder's (hand-made batch and
invariants), the loss is the direct per-view cross-entropy (and, with block-causal attention, the decoder's cut
canvas), the metrics land in ``metrics.csv`` at their steps only, training is byte for byte the same with and
without it, it is not part of a run's identity, and bad values are refused in one line naming the key."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from blocksft.config.validation import validate_config
from blocksft.errors import ConfigError
from blocksft.evaluation.decoding import block_causal_mask
from blocksft.masking.decode_view import block_ranks, decode_views
from blocksft.models.tiny import TinyDiffusionConfig, TinyDiffusionLM
from blocksft.runs.compose import compose_config
from blocksft.runs.identity import job_identity
from blocksft.training.decode_view import DecodeViewSettings, decode_view_losses, decode_view_metrics, fixed_draws
from helpers.runs import SMOKE_RUN, run_in_process, run_train

MASK_ID, PAD_ID, VOCAB = 1, 0, 40


def hand_made_batch() -> dict[str, torch.Tensor]:
    """Two rows, a 3-token prompt (row 0 left-padded), a 6-token response; row 1's loss scope is 4 tokens
    (its last two are a visible EOS tail)."""
    return {
        "input_ids": torch.tensor([[PAD_ID, 11, 12, 21, 22, 23, 24, 25, 26], [13, 14, 15, 31, 32, 33, 34, 35, 36]]),
        "attention_mask": torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 9]),
        "response_start": torch.tensor([3, 3]),
        "loss_scope_len": torch.tensor([6, 4]),
    }


HAND_DRAWS = torch.tensor(
    [[0.0] * 3 + [0.9, 0.1, 0.5, 0.3, 0.7, 0.2], [0.0] * 3 + [0.2, 0.4, 0.6, 0.8, 0.1, 0.9]], dtype=torch.float64
)
# Block size 4: block 0 is response positions 0-3, block 1 positions 4-5 (a cut last block of 2).
# Ratio 0.5 masks round(0.5 * 4) = 2 tokens of block 0 and round(0.5 * 2) = 1 of block 1: the smallest draws.
# (block, ratio) -> per row (masked response positions, loss positions)
HAND_EXPECTED = {
    (0, 0.5): [({1, 3, 4, 5}, {1, 3}), ({0, 1, 4, 5}, {0, 1})],
    (0, 1.0): [({0, 1, 2, 3, 4, 5}, {0, 1, 2, 3}), ({0, 1, 2, 3, 4, 5}, {0, 1, 2, 3})],
    (1, 0.5): [({5}, {5}), ({4}, set())],  # row 1: position 4 is outside its loss scope
    (1, 1.0): [({4, 5}, {4, 5}), ({4, 5}, set())],
}


def test_hand_made_views_mask_exactly_the_decoders_positions():
    batch, ratios = hand_made_batch(), (0.5, 1.0)
    views = decode_views(
        batch["input_ids"], batch["response_start"], batch["loss_scope_len"], 4, ratios, HAND_DRAWS, MASK_ID
    )
    assert views.num_blocks == 2 and views.noisy_ids.shape == (2 * 2 * 2, 9)
    for (block, ratio), rows in HAND_EXPECTED.items():
        for row, (masked, loss) in enumerate(rows):
            view = (block * len(ratios) + ratios.index(ratio)) * 2 + row
            assert (int(views.block[view]), int(views.ratio[view]), int(views.row[view])) == (
                block,
                ratios.index(ratio),
                row,
            )
            noisy, clean = views.noisy_ids[view], batch["input_ids"][row]
            assert {i - 3 for i in range(9) if noisy[i] == MASK_ID} == masked, (block, ratio, row)
            assert torch.equal(noisy[noisy != MASK_ID], clean[noisy != MASK_ID])  # what is not masked is clean
            assert {i - 3 for i in range(9) if views.loss_mask[view, i]} == loss, (block, ratio, row)


@pytest.mark.parametrize("block_size, width, scope", [(4, 16, 16), (4, 14, 11), (5, 16, 16), (16, 16, 9), (3, 10, 10)])
def test_views_keep_the_prompt_and_earlier_blocks_clean_and_hide_the_future(block_size, width, scope):
    generator = torch.Generator().manual_seed(block_size + width)
    prompt, rows = 7, 5
    ids = torch.randint(2, VOCAB, (rows, prompt + width), generator=generator)
    start = torch.full((rows,), prompt)
    scopes = torch.full((rows,), scope)
    ratios = (0.25, 0.5, 0.75, 1.0)
    draws = torch.rand(ids.shape, generator=generator)
    views = decode_views(ids, start, scopes, block_size, ratios, draws, MASK_ID)
    num_blocks = math.ceil(width / block_size)
    assert views.num_blocks == num_blocks and views.noisy_ids.shape[0] == num_blocks * len(ratios) * rows
    relative = torch.arange(prompt + width) - prompt
    for view in range(views.noisy_ids.shape[0]):
        k, ratio, row = int(views.block[view]), ratios[int(views.ratio[view])], int(views.row[view])
        masked = views.noisy_ids[view] == MASK_ID
        lo, hi = k * block_size, min((k + 1) * block_size, width)
        assert not masked[relative < lo].any()  # prompt and earlier blocks clean
        assert masked[relative >= hi].all()  # every later position masked
        in_block = (relative >= lo) & (relative < hi)
        assert int(masked[in_block].sum()) == max(1, round(ratio * (hi - lo)))  # the ratio's count, exactly
        chosen = draws[row][in_block].argsort()[: int(masked[in_block].sum())]  # the smallest draws of the block
        assert torch.equal(masked[in_block].nonzero().flatten().sort().values, chosen.sort().values)
        assert torch.equal(views.loss_mask[view], masked & in_block & (relative < scope))
    # nested: what a smaller ratio masks, a larger one masks too
    grid = views.noisy_ids.view(num_blocks, len(ratios), rows, -1) == MASK_ID
    assert (grid[:, :-1] <= grid[:, 1:]).all()


def test_block_ranks_count_within_each_block_from_zero():
    relative = torch.arange(-2, 7)[None]  # 2 prompt positions, then blocks of 3: [0, 1, 2] [3, 4, 5] [6]
    draws = torch.tensor([[0.0, 0.0, 0.5, 0.1, 0.9, 0.3, 0.2, 0.6, 0.4]])
    ranks = block_ranks(relative, 3, draws)
    assert ranks[0, 2:].tolist() == [1, 0, 2, 1, 0, 2, 0]


def tiny_model(dropout: float = 0.0) -> TinyDiffusionLM:
    torch.manual_seed(0)
    config = TinyDiffusionConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        mask_token_id=MASK_ID,
        dropout=dropout,
    )
    return TinyDiffusionLM(config).eval()


def random_batch(seed: int = 0, rows: int = 6, prompt: int = 5, width: int = 12) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (rows, prompt + width), generator=generator)
    attention = torch.ones_like(ids)
    attention[0, :2] = 0  # a left-padded row
    ids[0, :2] = PAD_ID
    return {
        "input_ids": ids,
        "attention_mask": attention,
        "response_start": torch.full((rows,), prompt),
        "loss_scope_len": torch.tensor([width, width, 7, width, 9, width])[:rows],
    }


@pytest.mark.parametrize("rows_per_forward", [1, 7, 1000])
def test_losses_are_the_direct_cross_entropy_of_each_view(rows_per_forward):
    model, batch, ratios, block_size = tiny_model(), random_batch(), (0.25, 0.5, 1.0), 4
    draws = fixed_draws(batch, seed=3)
    views = decode_views(
        batch["input_ids"], batch["response_start"], batch["loss_scope_len"], block_size, ratios, draws, MASK_ID
    )
    losses = decode_view_losses(model, batch, views, len(ratios), block_size, rows_per_forward)
    assert losses.shape == (3, 3)
    for k in range(3):
        for j in range(len(ratios)):
            token_losses = []
            for view in ((views.block == k) & (views.ratio == j)).nonzero().flatten().tolist():
                row = int(views.row[view])
                with torch.no_grad():
                    logits = model(views.noisy_ids[view][None], attention_mask=batch["attention_mask"][row][None])
                logits = logits.logits[0]
                at = views.loss_mask[view]
                token_losses += F.cross_entropy(logits[at], batch["input_ids"][row][at], reduction="none").tolist()
            assert float(losses[k, j]) == pytest.approx(sum(token_losses) / len(token_losses), rel=1e-5)


def test_block_causal_losses_are_those_of_the_decoders_cut_canvas():
    """With ``decode.attention=block_causal`` the decoder runs on the canvas cut after the block with the prefix
    attending within itself (``evaluation.decoding.block_causal_mask``): the same loss."""
    model, batch, ratios, block_size = tiny_model(), random_batch(seed=1), (0.5, 1.0), 4
    views = decode_views(
        batch["input_ids"],
        batch["response_start"],
        batch["loss_scope_len"],
        block_size,
        ratios,
        fixed_draws(batch, 0),
        MASK_ID,
    )
    losses = decode_view_losses(model, batch, views, len(ratios), block_size, 5, attention="block_causal")
    full = decode_view_losses(model, batch, views, len(ratios), block_size, 5)
    assert not torch.allclose(losses, full)  # (the prefix does not see the block, nor the block the future)
    start = int(batch["response_start"][0])
    for k in range(views.num_blocks):
        for j in range(len(ratios)):
            chosen = ((views.block == k) & (views.ratio == j)).nonzero().flatten()
            end = start + (k + 1) * block_size
            ids, rows = views.noisy_ids[chosen, :end], views.row[chosen]
            mask = block_causal_mask(batch["attention_mask"][rows], len(chosen), start + k * block_size, end, "cpu")
            with torch.no_grad():
                logits = model(ids, attention_mask=mask).logits
            at = views.loss_mask[chosen, :end]
            expected = F.cross_entropy(logits[at], batch["input_ids"][rows, :end][at])
            assert float(losses[k, j]) == pytest.approx(float(expected), rel=1e-5)


def test_metrics_are_named_per_block_and_ratio_and_skip_empty_cells():
    losses = torch.tensor([[1.0, 3.0], [float("nan"), 5.0], [float("nan"), float("nan")]])
    metrics = decode_view_metrics(losses, (0.5, 1.0))
    assert metrics == {
        "decode_view/loss": pytest.approx((2.0 + 5.0) / 2),
        "decode_view/loss_block0": 2.0,
        "decode_view/loss_block1": 5.0,
        "decode_view/loss_mask0.5": 1.0,
        "decode_view/loss_mask1": 4.0,
        "decode_view/loss_block0_mask0.5": 1.0,
        "decode_view/loss_block0_mask1": 3.0,
        "decode_view/loss_block1_mask1": 5.0,
    }


def test_fixed_draws_use_their_own_generator_and_not_the_prompt_width():
    batch, state = random_batch(), torch.get_rng_state()
    wider = {**batch, "input_ids": torch.cat([torch.zeros(6, 3, dtype=torch.long), batch["input_ids"]], dim=1)}
    wider["response_start"] = batch["response_start"] + 3
    first, second = fixed_draws(batch, 7), fixed_draws(wider, 7)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first[:, 5:], second[:, 8:]) and not first[:, :5].any()


# ---------------------------------------------------------------------------------- in a run
def decode_view_rows(run_dir: Path) -> dict[int, dict[str, float]]:
    """step -> the decode_view/* values of that step's rows in the run's metrics.csv."""
    found: dict[int, dict[str, float]] = {}
    with (run_dir / "csv" / "metrics.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            values = {k: float(v) for k, v in row.items() if k.startswith("decode_view/") and v}
            if values:
                assert int(row["step"]) not in found, f"step {row['step']} logged twice"
                found[int(row["step"])] = values
    return found


def test_the_smoke_run_logs_the_decode_view_loss_at_its_last_step(smoke_run):
    rows = decode_view_rows(smoke_run)  # every_n_steps 200 > its 10 steps: the last step only (row 9)
    assert list(rows) == [9]
    names = set(rows[9])
    assert {"decode_view/loss", "decode_view/loss_block0", "decode_view/loss_block1"} <= names  # block 32, 64 tokens
    assert {"decode_view/loss_mask0.25", "decode_view/loss_block1_mask1"} <= names
    assert all(math.isfinite(v) and v > 0 for v in rows[9].values())


def test_training_is_byte_for_byte_the_same_with_and_without_it(tmp_path):
    """Dropout (drawn from the global stream), the weight average and gradient accumulation (several batch ends
    per step) on: the diagnostic every 3 steps and at the last changes neither the weights nor the generations."""
    common = [*SMOKE_RUN, "model.dropout=0.1", "optim.ema_decay=0.9", "data.micro_batch_size=8"]
    run_in_process([*common, "diagnostics.decode_view.every_n_steps=0"], tmp_path / "off")
    run_in_process([*common, "diagnostics.decode_view.every_n_steps=3"], tmp_path / "on")
    for name in ("export/model.safetensors", "generations.jsonl"):
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes(), name
    assert decode_view_rows(tmp_path / "off") == {}
    assert list(decode_view_rows(tmp_path / "on")) == [2, 5, 8, 9]  # after steps 3, 6, 9 and the last, 10


@pytest.mark.slow
def test_a_sigkilled_run_resumes_with_the_same_decode_view_rows(tmp_path):
    """Killed at step 25 after the checkpoint of step 20: the rows of steps 10 and 20 survive the resume (logged
    before that checkpoint flushed the log) and the resumed run logs 30 with the uninterrupted run's values."""
    run = [*SMOKE_RUN, "model.dropout=0.1", "budget.value=30", "checkpoint.every_n_train_steps=10"]
    run += ["diagnostics.decode_view.every_n_steps=10"]
    run_in_process(run, tmp_path / "straight")
    crashed, kill = tmp_path / "crashed", ["+callbacks.kill._target_=callbacks.KillAtStep", "+callbacks.kill.step=25"]
    killed = run_train([*run, *kill], crashed)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "resuming from" in run_in_process(run, crashed).log
    straight = decode_view_rows(tmp_path / "straight")
    assert list(straight) == [9, 19, 29] and decode_view_rows(crashed) == straight


def test_it_is_not_part_of_a_runs_identity():
    default = job_identity(compose_config([]))[1]
    for override in ("diagnostics.decode_view.every_n_steps=0", "diagnostics.decode_view.size=8", "~diagnostics"):
        assert job_identity(compose_config([override]))[1] == default, override


@pytest.mark.parametrize(
    "override, key",
    [
        ("diagnostics.decode_view.every_n_steps=-1", "diagnostics.decode_view.every_n_steps"),
        ("diagnostics.decode_view.every_n_steps=2.5", "diagnostics.decode_view.every_n_steps"),
        ("diagnostics.decode_view.size=0", "diagnostics.decode_view.size"),
        ("diagnostics.decode_view.mask_ratios=[]", "diagnostics.decode_view.mask_ratios"),
        ("diagnostics.decode_view.mask_ratios=[0.5,1.5]", "diagnostics.decode_view.mask_ratios"),
        ("diagnostics.decode_view.mask_ratios=[0,0.5]", "diagnostics.decode_view.mask_ratios"),
        ("diagnostics.decode_view.mask_ratios=[0.5,0.5]", "diagnostics.decode_view.mask_ratios"),
        ("diagnostics.decode_view.mask_ratios=0.5", "diagnostics.decode_view.mask_ratios"),
        ("diagnostics.decode_view.block_size=0", "diagnostics.decode_view.block_size"),
        ("diagnostics.decode_view.block_size=128", "diagnostics.decode_view.block_size"),
        ("diagnostics.decode_view.batch_size=0", "diagnostics.decode_view.batch_size"),
        ("diagnostics.decode_view.seed=x", "diagnostics.decode_view.seed"),
        ("diagnostics.decode_view=5", "diagnostics.decode_view"),
    ],
)
def test_bad_values_are_refused_in_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as error:
        validate_config(compose_config([override]))
    message = str(error.value)
    assert message.startswith(f"{key}=") and "\n" not in message


def test_it_is_on_by_default_at_the_training_block_and_the_eval_batch():
    settings = DecodeViewSettings.from_config(compose_config(["block=8", "eval.batch_size=16"]))
    assert settings.enabled and (settings.every_n_steps, settings.size) == (200, 32)
    assert (settings.block_size, settings.batch_size, settings.mask_ratios) == (8, 16, (0.25, 0.5, 0.75, 1.0))


@pytest.mark.parametrize("override", ["diagnostics.decode_view.every_n_steps=null", "diagnostics=null", "~diagnostics"])
def test_it_can_be_switched_off_or_left_out(override):
    cfg = compose_config([override])
    validate_config(cfg)
    assert not DecodeViewSettings.from_config(cfg).enabled
