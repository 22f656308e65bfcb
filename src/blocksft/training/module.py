"""Lightning module: wires a masking strategy, a backbone, the loss and the decoder. No logic of its own
beyond bookkeeping (token counters, random streams, per-sample evaluation records).

Names: ``self.masking`` is the masking strategy (CLI group ``strategy=``); ``self.trainer.strategy`` is
Lightning's distribution strategy (DDP, FSDP, DeepSpeed)."""

from __future__ import annotations

import functools
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import lightning as L
import torch

from blocksft.errors import NonFiniteLossError
from blocksft.evaluation.answers import score
from blocksft.evaluation.decoding import DecodePlan, decode
from blocksft.evaluation.metrics import decode_cost, device_description
from blocksft.evaluation.termination import (
    answer_lengths,
    eos_counts_by_block,
    has_eos,
    parse_failed,
    termination_summary,
)
from blocksft.masking import MaskingStrategy
from blocksft.training.objective import masked_diffusion_step
from blocksft.training.optim import warmup_cosine_factor

MAX_LOGGED_BLOCKS = 16  # active-block shares (per step) and EOS shares (per eval) are logged for the first blocks only
RANK_SEED_STRIDE = 1_000_003  # rank r masks with seed + r * stride: streams differ per rank


def response_texts(canvas: torch.Tensor, tokenizer) -> list[str]:
    """Generated canvas [B, gen_length] -> text up to (excluding) the first EOS of each row."""
    length = answer_lengths(canvas, tokenizer.eos_token_id)
    return tokenizer.batch_decode([row[:n].tolist() for row, n in zip(canvas, length)], skip_special_tokens=True)


@dataclass(frozen=True)
class ScheduleSettings:
    total_steps: int
    warmup_frac: float = 0.1
    min_lr_ratio: float = 0.01
    warmup_type: str = "linear"


class DiffusionSFTModule(L.LightningModule):
    """SFT of a masked diffusion LM.

    ``model`` must offer ``encode(ids, attention_mask) -> hidden`` and ``project(hidden) -> logits``
    (the LM head is applied at loss positions only) and ``model(ids, attention_mask=...).logits``
    for decoding. ``token_budget`` stops training once the cumulative ``token_count``
    ("eligible" or "masked") reaches it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        masking: MaskingStrategy,
        *,
        optimizer: functools.partial,
        schedule: ScheduleSettings,
        decode: DecodePlan,
        loss_weighting: str = "mean_masked",
        token_budget: int | None = None,
        token_count: str = "eligible",
        answer_scheme: str = "gsm8k",
        eval_name: str = "val",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.model, self.tokenizer, self.masking = model, tokenizer, masking
        self.optimizer_factory, self.schedule, self.decode = optimizer, schedule, decode
        self.loss_weighting = loss_weighting
        self.token_budget, self.token_count = token_budget, token_count
        self.answer_scheme, self.eval_name, self.seed = answer_scheme, eval_name, seed
        self.mask_id, self.eos_id = tokenizer.mask_token_id, tokenizer.eos_token_id
        self.supervised_tokens = 0
        self.eligible_tokens = 0
        self.active_block_counts: Counter = Counter()
        self.last_train_loss: torch.Tensor | None = None  # the last step's loss, kept in checkpoints
        self.mask_generator = torch.Generator().manual_seed(seed)
        self.eval_records: list[dict] = []
        self.decode_seconds: defaultdict[int, float] = defaultdict(float)  # per decode block length
        self.eos_counts: dict[int, torch.Tensor] = {}  # per decode block length: eos_counts_by_block, summed
        self._rng_state_to_restore: torch.Tensor | None = None

    # ----------------------------------------------------------------------------- training
    def setup(self, stage: str) -> None:
        """One masking stream per rank (rank 0 keeps ``seed``), on the device the batches live on."""
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        rank = self.trainer.global_rank if self._trainer is not None else 0
        if self.mask_generator.device != device or rank:
            self.mask_generator = torch.Generator(device=device).manual_seed(self.seed + RANK_SEED_STRIDE * rank)

    @property
    def _world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """[world, *tensor.shape] from every rank ([1, ...] in a single process)."""
        return self.all_gather(tensor) if self._world_size > 1 else tensor.unsqueeze(0)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        masked = self.masking.mask_batch(batch, self.mask_generator)
        loss = masked_diffusion_step(self.model, batch, masked, self.loss_weighting)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"train/loss is {loss.item()} at step {self.global_step}; "
                "the last good checkpoint is kept in checkpoints/last.ckpt"
            )
        self._count_tokens(masked, batch["index"])
        self.last_train_loss = loss.detach()
        batch_size = masked.noisy_ids.shape[0]  # rows: the batch's samples, or more/fewer (blocksft.masking.multirow)
        self.log("train/rows", float(batch_size), batch_size=batch_size)
        self.log("train/source_samples", float(masked.num_source_samples), batch_size=batch_size)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/mask_rate", masked.mask_rate.mean(), batch_size=batch_size)
        self.log(
            "train/masked_fraction",
            masked.loss_mask.sum() / masked.eligible_mask.sum().clamp_min(1),
            batch_size=batch_size,
        )
        self.log("train/zero_loss_samples", (~masked.loss_mask.any(dim=1)).float().mean(), batch_size=batch_size)
        self.log("train/supervised_tokens", float(self.supervised_tokens), batch_size=batch_size)
        self.log("train/eligible_tokens", float(self.eligible_tokens), batch_size=batch_size)
        if masked.active_block is not None:
            self.log("train/active_block_mean", masked.active_block.float().mean(), batch_size=batch_size)
            shares = torch.bincount(masked.active_block, minlength=1)[:MAX_LOGGED_BLOCKS].float() / batch_size
            for block_index, share in enumerate(shares.tolist()):
                self.log(f"train/active_block_share/{block_index}", share, batch_size=batch_size)
        return loss

    def _count_tokens(self, masked, sample_index: torch.Tensor) -> None:
        """Counters over all ranks (so a token budget stops every rank at the same step); with several
        ranks, the masking strategy shares what this step changed in its state (``sync_ranks``)."""
        counts = torch.stack([masked.loss_mask.sum(), masked.eligible_mask.sum()])
        if self._world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        self.supervised_tokens += int(counts[0])
        self.eligible_tokens += int(counts[1])
        if masked.active_block is not None:
            self.active_block_counts.update(self._gather(masked.active_block).flatten().tolist())
        if self._world_size > 1:
            self.masking.sync_ranks(
                sample_index, self._gather, lambda t: self.trainer.strategy.reduce(t, reduce_op="max")
            )
        if self.token_budget_spent():
            self.trainer.should_stop = True

    def token_budget_spent(self) -> bool:
        if self.token_budget is None:
            return False
        return (self.supervised_tokens if self.token_count == "masked" else self.eligible_tokens) >= self.token_budget

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[p for p in self.model.parameters() if p.requires_grad])
        schedule = self.schedule
        factor = functools.partial(
            warmup_cosine_factor,
            total_steps=schedule.total_steps,
            warmup_frac=schedule.warmup_frac,
            min_lr_ratio=schedule.min_lr_ratio,
            warmup_type=schedule.warmup_type,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------------------- checkpoint state
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["blocksft"] = {
            "mask_generator": self.mask_generator.get_state(),  # rank 0's; every rank's below
            "strategy": self.masking.state_dict(),  # key kept: checkpoints of earlier versions
            "supervised_tokens": self.supervised_tokens,
            "eligible_tokens": self.eligible_tokens,
            "active_block_counts": dict(self.active_block_counts),
            "last_train_loss": None if self.last_train_loss is None else float(self.last_train_loss),
            "torch_rng_state": torch.get_rng_state(),  # dropout and anything else drawing from the global stream
        }
        if self._world_size > 1:  # Lightning writes rank 0's checkpoint only: keep every rank's streams
            checkpoint["blocksft"]["rank_states"] = {
                "mask_generator": self._gather(self.mask_generator.get_state().to(self.device)).cpu(),
                "torch_rng_state": self._gather(torch.get_rng_state().to(self.device)).cpu(),
            }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("blocksft")
        if state is None:
            return
        ranks = state.get("rank_states")
        rank = self.trainer.global_rank if self._trainer is not None else 0
        if ranks is not None and rank < len(ranks["mask_generator"]):
            # .clone(): Generator.set_state on a row view (non-zero storage offset) crashes torch 2.13
            state = {
                **state,
                "mask_generator": ranks["mask_generator"][rank].clone(),
                "torch_rng_state": ranks["torch_rng_state"][rank].clone(),
            }
        self.mask_generator.set_state(state["mask_generator"])
        self.masking.load_state_dict(state["strategy"])
        self.supervised_tokens = int(state["supervised_tokens"])
        self.eligible_tokens = int(state["eligible_tokens"])
        self.active_block_counts = Counter(state["active_block_counts"])
        if (loss := state.get("last_train_loss")) is not None:  # absent from checkpoints of earlier versions
            self.last_train_loss = torch.tensor(loss)
        self._rng_state_to_restore = state.get("torch_rng_state")

    def on_train_start(self) -> None:
        # Restored here, not in on_load_checkpoint: building the trainer and data between the two
        # may draw from the global stream, and the next draw must be the first of the next step.
        if self._rng_state_to_restore is not None:
            torch.set_rng_state(self._rng_state_to_restore)
            self._rng_state_to_restore = None
        if self.token_budget_spent():  # resumed after the budget's last step (killed while decoding): no more steps
            self.trainer.should_stop = True

    # ----------------------------------------------------------------------------- evaluation
    def on_test_epoch_start(self) -> None:
        self.eval_records = []
        self.decode_seconds = defaultdict(float)
        self.eos_counts = {}

    def test_step(self, batch: dict, batch_index: int) -> None:
        prompt_ids, attention_mask = batch["prompt_ids"], batch["attention_mask"]
        for settings in self.decode.settings:
            block_length = settings.block_length
            started = time.perf_counter()
            output, stats = decode(
                self.model, prompt_ids, settings, mask_id=self.mask_id, attention_mask=attention_mask, return_stats=True
            )
            if output.is_cuda:  # kernels run asynchronously: wait for them before reading the clock
                torch.cuda.synchronize(output.device)
            self.decode_seconds[block_length] += time.perf_counter() - started
            canvas = output[:, prompt_ids.shape[1] :]
            texts = self.decode_responses(canvas)
            answer_tokens, eos = answer_lengths(canvas, self.eos_id).tolist(), has_eos(canvas, self.eos_id).tolist()
            counts = eos_counts_by_block(canvas, self.eos_id, block_length, self.mask_id)
            self.eos_counts[block_length] = self.eos_counts.get(block_length, 0) + counts
            for row, (prompt, target, index, text) in enumerate(
                zip(batch["prompt"], batch["target"], batch["index"], texts)
            ):
                record = {
                    "index": int(index),
                    "decode_block_length": block_length,
                    "prompt": prompt,
                    "generation": text,
                    "target": target,
                    "nfe": int(stats.nfe[row]),
                    "positions_fed": int(stats.positions_fed[row]),
                    "answer_tokens": answer_tokens[row],
                    "has_eos": eos[row],
                }
                record.update(score(text, target, self.answer_scheme))
                record["parse_failed"] = parse_failed(record)
                record["early_eos"] = eos[row] and record["parse_failed"]
                self.eval_records.append(record)

    def decode_responses(self, canvas: torch.Tensor) -> list[str]:
        return response_texts(canvas, self.tokenizer)

    def on_test_epoch_end(self) -> None:
        costs, termination = self.decode_cost_by_decode_block(), self.termination_by_decode_block()
        for block_length, metrics in self.accuracy_by_decode_block().items():
            prefix = f"{self.eval_name}/"
            suffix = "" if block_length == self.decode.primary else f"@block{block_length}"
            numbers = {k: v for k, v in costs.get(block_length, {}).items() if isinstance(v, (int, float))}
            ends = dict(termination.get(block_length, {}))
            shares = ends.pop("eos_share_by_block", [])[:MAX_LOGGED_BLOCKS]
            numbers.update({**ends, **{f"eos_share/{k}": share for k, share in enumerate(shares)}})
            for name, value in {**metrics, **numbers}.items():
                if value is not None:
                    self.log(f"{prefix}{name}{suffix}", float(value))

    def decode_cost_by_decode_block(self) -> dict[int, dict]:
        """{decode block length: :func:`blocksft.evaluation.metrics.decode_cost`} over ``eval_records``."""
        device = device_description(self.device)
        summary: dict[int, dict] = {}
        for block_length in self.decode.block_lengths:
            records = [r for r in self.eval_records if r["decode_block_length"] == block_length]
            if records:
                summary[block_length] = decode_cost(
                    [r["nfe"] for r in records],
                    [r["positions_fed"] for r in records],
                    [r["answer_tokens"] for r in records],
                    self.decode_seconds[block_length],
                    self.decode.gen_length,
                    device,
                )
        return summary

    def termination_by_decode_block(self) -> dict[int, dict]:
        """{decode block length: :func:`blocksft.evaluation.termination.termination_summary`} over ``eval_records``
        and the EOS counts per decoding block."""
        summary: dict[int, dict] = {}
        for block_length in self.decode.block_lengths:
            records = [r for r in self.eval_records if r["decode_block_length"] == block_length]
            if records:
                summary[block_length] = termination_summary(
                    [r["answer_tokens"] for r in records],
                    [r["has_eos"] for r in records],
                    [r["parse_failed"] for r in records],
                    self.eos_counts[block_length],
                )
        return summary

    def accuracy_by_decode_block(self) -> dict[int, dict[str, float]]:
        """{decode block length: {"accuracy": strict, "accuracy_flexible": ...}} over ``eval_records``."""
        summary: dict[int, dict[str, float]] = {}
        for block_length in self.decode.block_lengths:
            records = [r for r in self.eval_records if r["decode_block_length"] == block_length]
            if not records:
                continue
            metrics = {"accuracy": sum(r["correct"] for r in records) / len(records)}
            if "correct_flexible" in records[0]:
                metrics["accuracy_flexible"] = sum(r["correct_flexible"] for r in records) / len(records)
            summary[block_length] = metrics
        return summary
