"""Section 5: prefix-KV-cached (approximate) vs exact decoding of validation problems of the default
data (through the project's data module), per decoding block length of the study: speed-up, positions
fed to the model, accuracy of each, identical generations. Pass a trained export with ``--model``;
without it the model is a random init and the accuracies are marked meaningless."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from blocksft.config.validation import decode_block_lengths
from blocksft.evaluation.answers import score
from blocksft.evaluation.decoding import generate
from blocksft.training.module import response_texts
from experiments.bench.generation import ForwardTimer, decoding_model, validation_batches
from experiments.bench.render import fmt_time, table
from experiments.bench.timing import ratio, summarise, synchronize


@dataclass(frozen=True)
class PrefixCacheSettings:
    problems: int = 256
    batch: int = 256
    blocks: tuple[int, ...] = (4, 8, 16, 32)
    repeats: int = 2


FULL = PrefixCacheSettings()
QUICK = PrefixCacheSettings(problems=4, batch=4, blocks=(8,), repeats=1)


def prefix_cache_section(
    *,
    num_problems: int = 256,
    batch_size: int = 256,
    block_lengths: Sequence[int] | None = (4, 8, 16, 32),
    repeats: int = 2,
    model_path: str | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Prefix-cached (approximate) vs exact decoding of validation problems, same run.

    Per decoding block length (``None`` = the default config's): both decoders decode the same
    batches (``generate`` with the batch's ``attention_mask``, as ``test_step``), repetitions
    interleaved; reports the speed-up (median wall time, exact / cached), forward calls, token positions
    fed to the model per problem, accuracy of each decoder (``blocksft.evaluation.answers.score``), and how many
    generations are identical. With a random-init model, accuracies are meaningless (marked).
    """
    model, tokenizer, description = decoding_model(model_path, seed, device)
    timer = ForwardTimer(model)
    batches, scheme, cfg = validation_batches(tokenizer, num_problems, batch_size, device)
    block_lengths = tuple(block_lengths) if block_lengths else decode_block_lengths(cfg)
    settings = {
        "gen_length": cfg.decode.gen_length,
        "steps": cfg.decode.steps,
        "temperature": cfg.decode.temperature,
        "remasking": cfg.decode.remasking,
    }

    def run(block_length: int, cached: bool) -> list[torch.Tensor]:
        return [
            generate(
                timer,
                batch["prompt_ids"],
                attention_mask=batch["attention_mask"],
                block_length=block_length,
                mask_id=tokenizer.mask_token_id,
                prefix_cache=cached,
                **settings,
            )[:, batch["prompt_ids"].shape[1] :]
            for batch in batches
        ]

    run(block_lengths[0], False)  # warm-up
    run(block_lengths[0], True)
    targets = [target for batch in batches for target in batch["target"]]
    result: dict[str, Any] = {
        "model": description,
        "trained": bool(model_path),
        "num_problems": len(targets),
        "batch_size": batch_size,
        "settings": settings,
        "answer_scheme": scheme,
        "blocks": {},
    }
    for block_length in block_lengths:
        times: dict[str, list[float]] = {"exact": [], "cached": []}
        counts, outputs = {}, {}
        for _ in range(repeats):
            for name in times:
                timer.reset()
                synchronize(device)
                start = time.perf_counter()
                outputs[name] = torch.cat(run(block_length, name == "cached"))
                synchronize(device)
                times[name].append(time.perf_counter() - start)
                counts[name] = {
                    "forward_calls": timer.calls,
                    "nfe_per_problem": timer.rows / len(targets),
                    "positions_per_problem": timer.positions / len(targets),
                    "overhead_share": (times[name][-1] - timer.seconds) / times[name][-1],
                }
        entry: dict[str, Any] = {"block_length": block_length}
        for name in times:
            texts = response_texts(outputs[name], tokenizer)
            correct = [bool(score(text, target, scheme)["correct"]) for text, target in zip(texts, targets)]
            entry[name] = {
                "time": summarise(times[name]),
                "problems_per_s": len(targets) / statistics.median(times[name]),
                "accuracy": sum(correct) / len(correct),
                **counts[name],
            }
            entry[name]["correct"] = correct
        entry["speedup"] = ratio(statistics.median(times["exact"]), statistics.median(times["cached"]))
        entry["identical_generations"] = int((outputs["exact"] == outputs["cached"]).all(dim=1).sum())
        entry["accuracy_difference"] = entry["cached"]["accuracy"] - entry["exact"]["accuracy"]
        entry["changed_verdicts"] = sum(
            a != b for a, b in zip(entry["exact"].pop("correct"), entry["cached"].pop("correct"))
        )
        result["blocks"][str(block_length)] = entry
    return result


def measure(s: PrefixCacheSettings, seed: int, device: torch.device, model_path: str | None) -> dict[str, Any]:
    return prefix_cache_section(
        num_problems=s.problems,
        batch_size=s.batch,
        block_lengths=s.blocks,
        repeats=s.repeats,
        model_path=model_path,
        seed=seed,
        device=device,
    )


def render(pc: dict[str, Any]) -> list[str]:
    settings = pc["settings"]
    lines = [
        f"## 5. Prefix-cached vs exact decoding ({pc['num_problems']} validation problems, batch "
        f"{pc['batch_size']}, gen_length {settings['gen_length']}, steps {settings['steps']})",
        "",
        f"Model: {pc['model']}."
        + ("" if pc["trained"] else " **Random init: the accuracies below are meaningless** (pass --model)."),
        "The cache is approximate (prefix keys/values frozen within a block, see blocksft.evaluation.decoding); "
        "both decoders run in the same process, repetitions interleaved.",
        "",
    ]
    rows = []
    for e in pc["blocks"].values():
        exact, cached = e["exact"], e["cached"]
        rows.append(
            [
                e["block_length"],
                fmt_time(exact["time"]["median_s"]),
                fmt_time(cached["time"]["median_s"]),
                f"**{e['speedup']:.2f}x**",
                f"{exact['positions_per_problem']:.0f} / {cached['positions_per_problem']:.0f}",
                f"{exact['nfe_per_problem']:g} / {cached['nfe_per_problem']:g}",
                f"{exact['accuracy']:.2%}",
                f"{cached['accuracy']:.2%}",
                f"{e['accuracy_difference']:+.2%}",
                f"{e['identical_generations']}/{pc['num_problems']}",
                e["changed_verdicts"],
            ]
        )
    return lines + table(
        [
            "decode block",
            "exact time",
            "cached time",
            "speed-up",
            "positions fed / problem (exact / cached)",
            "NFE / problem (exact / cached)",
            "accuracy exact",
            "accuracy cached",
            "difference",
            "identical generations",
            "changed verdicts",
        ],
        rows,
    )
