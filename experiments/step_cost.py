"""Time training steps of any config: ``python experiments/step_cost.py experiment=pretrain_base [overrides]``.

Builds the run's model, data and module exactly as ``train.py`` does (``blocksft.runs.run``), then times
``--steps`` optimizer steps (training step + backward + AdamW) after ``--warmup`` untimed ones, and
prints parameters, sequence length, wall and CPU seconds per step. ``--decode N`` also times one
decoding pass (``decode.*`` of the config, first block length) over N evaluation prompts of an SFT
data config. CPU seconds (all threads of this
process) do not depend on other jobs sharing the machine; wall seconds do, so both are printed, with
the load average. No output folder, checkpoint or logger is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from blocksft.runs.cli import quote_numeric_group_overrides  # noqa: E402
from blocksft.models.loader import load_initial_model  # noqa: E402
from blocksft.data.documents import datamodule_from_config  # noqa: E402
from blocksft.data.batch_plan import plan_batches  # noqa: E402
from blocksft.runs.identity import register_resolvers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--decode", type=int, default=0, help="time decoding of this many evaluation prompts")
    args, overrides = parser.parse_known_args()
    register_resolvers()  # ${project_root:} (model=base), as train.py does
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["paths.output_dir=/tmp/step-cost", *quote_numeric_group_overrides(overrides)])
    torch.manual_seed(cfg.seed)
    model, tokenizer, _, _ = load_initial_model(cfg, train=True)
    strategy = instantiate(cfg.strategy.masking, mask_id=tokenizer.mask_token_id)
    datamodule = datamodule_from_config(cfg, tokenizer, plan_batches(cfg.data.batch_size, cfg.data.get("micro_batch_size"), 1))
    datamodule.setup("fit")
    from blocksft.training.heldout_loss import batch_loss

    optimizer = instantiate(cfg.optim.optimizer)(params=[p for p in model.parameters() if p.requires_grad])
    batches = iter(datamodule.train_dataloader())
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    wall = cpu = 0.0
    for step in range(args.warmup + args.steps):
        batch = next(batches)
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        loss = batch_loss(model, strategy, batch, generator, cfg.objective.weighting)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            wall += time.perf_counter() - started_wall
            cpu += time.process_time() - started_cpu
    parameters = sum(p.numel() for p in model.parameters())
    print(f"parameters={parameters} batch={batch['input_ids'].shape[0]} sequence={batch['input_ids'].shape[1]} "
          f"threads={torch.get_num_threads()} wall_s_per_step={wall / args.steps:.3f} "
          f"cpu_s_per_step={cpu / args.steps:.3f} loadavg={os.getloadavg()[0]:.1f} last_loss={loss.item():.3f}")
    if args.decode:
        time_decoding(cfg, model.eval(), tokenizer, datamodule, args.decode)


@torch.no_grad()
def time_decoding(cfg, model, tokenizer, datamodule, count: int) -> None:
    from blocksft.config.validation import decode_block_lengths
    from blocksft.evaluation.decoding import generate

    batch = datamodule.eval_collator([datamodule.eval_set[i] for i in range(min(count, len(datamodule.eval_set)))])
    block_length = decode_block_lengths(cfg)[0]
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    generate(model, batch["prompt_ids"], steps=cfg.decode.steps, gen_length=cfg.decode.gen_length,
             block_length=block_length, temperature=cfg.decode.temperature, remasking=cfg.decode.remasking,
             mask_id=tokenizer.mask_token_id, attention_mask=batch["attention_mask"])
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    print(f"decode prompts={batch['prompt_ids'].shape[0]} prompt_width={batch['prompt_ids'].shape[1]} "
          f"gen_length={cfg.decode.gen_length} steps={cfg.decode.steps} block_length={block_length} "
          f"wall_s={wall:.2f} cpu_s={cpu:.2f} loadavg={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
