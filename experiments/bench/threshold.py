"""Section 6: confidence-threshold decoding vs exact decoding on the same trained model.

Decodes the first ``num_problems`` validation problems of the default data with the exact fixed
schedule (``decode=semi_ar``) and with Fast-dLLM's threshold rule at each threshold
(``decode=semi_ar_threshold``), in the same batches, repetitions interleaved. Per decoder: forward
passes per problem (NFE, mean / min / max), positions fed per problem, problems/s (median wall
time), accuracy, and, against exact decoding, identical generations and changed verdicts. For the
threshold decoders it also checks batched == batch-1 token for token (and NFE) on the first
``consistency_problems`` problems.

    python -m experiments.bench --sections 6 --model outputs/studies/main/classical-B8-seed0-steps/export [--quick]

runs it with the other sections' machinery (``--device cuda`` included). ``measure_threshold(...) -> dict``
and ``render_threshold(result) -> str`` are the section's two halves; ``measure``/``render`` adapt them to
the section table. ``python -m experiments.bench.threshold --study <sweep folder>`` instead tabulates
the eval-only study ``multirun_sweeps/threshold_decoding.yaml`` (one job per threshold, each job's
``results.json`` accuracy and ``decode_cost``) into ``<sweep folder>/threshold_report.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from blocksft.evaluation.answers import score
from blocksft.evaluation.decoding import generate
from blocksft.evaluation.metrics import device_description
from blocksft.training.module import response_texts
from experiments.bench.generation import decoding_model, validation_batches

THRESHOLDS = (0.5, 0.7, 0.9, 0.95)


@dataclass(frozen=True)
class ThresholdSettings:
    problems: int = 256
    batch: int = 256
    thresholds: tuple[float, ...] = THRESHOLDS
    repeats: int = 2
    consistency_problems: int = 16


FULL = ThresholdSettings()
QUICK = ThresholdSettings(problems=8, batch=8, thresholds=(0.9,), repeats=1, consistency_problems=2)


def decode_all(
    model, batches, settings: dict, threshold: float | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every batch decoded: (canvases [N, gen_length], NFE [N], positions fed [N])."""
    canvases, nfe, positions = [], [], []
    device = next(model.parameters()).device
    for batch in batches:
        out, stats = generate(
            model,
            batch["prompt_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            confidence_threshold=threshold,
            return_stats=True,
            **settings,
        )
        canvases.append(out[:, batch["prompt_ids"].shape[1] :].cpu())
        nfe.append(stats.nfe.cpu())
        positions.append(stats.positions_fed.cpu())
    return torch.cat(canvases), torch.cat(nfe), torch.cat(positions)


def batch_one_check(
    model, batches, settings: dict, threshold: float, batched: torch.Tensor, nfe: torch.Tensor, count: int
) -> dict:
    """The first ``count`` problems decoded one at a time (padding removed) against the batched run."""
    prompts = [ids[mask.bool()] for batch in batches for ids, mask in zip(batch["prompt_ids"], batch["attention_mask"])]
    same_tokens = same_nfe = 0
    device = next(model.parameters()).device
    for i, prompt in enumerate(prompts[:count]):
        out, stats = generate(
            model, prompt[None, :].to(device), confidence_threshold=threshold, return_stats=True, **settings
        )
        same_tokens += bool(torch.equal(out[0, prompt.numel() :].cpu(), batched[i]))
        same_nfe += int(stats.nfe[0]) == int(nfe[i])
    checked = min(count, len(prompts))
    return {
        "checked": checked,
        "identical_tokens": same_tokens,
        "identical_nfe": same_nfe,
        "holds": same_tokens == same_nfe == checked,
    }


def measure_threshold(
    model_path: str | None,
    *,
    num_problems: int = 256,
    batch_size: int = 256,
    thresholds=THRESHOLDS,
    block_length: int | None = None,
    repeats: int = 2,
    consistency_problems: int = 16,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Exact vs threshold decoding of the same validation problems by the trained export ``model_path``
    (random init without one: numbers then meaningless) on ``device`` (outputs are copied to the CPU
    inside the timed region, which waits for a GPU)."""
    model, tokenizer, description = decoding_model(model_path, seed, device)
    batches, _, cfg = validation_batches(tokenizer, num_problems, batch_size, device)
    settings = {
        "gen_length": cfg.decode.gen_length,
        "steps": cfg.decode.steps,
        "mask_id": tokenizer.mask_token_id,
        "block_length": block_length or cfg.block.size,
        "temperature": 0.0,
        "remasking": "low_confidence",
    }
    targets = [target for batch in batches for target in batch["target"]]
    decoders = {"exact": None, **{f"threshold_{t:g}": float(t) for t in thresholds}}
    decode_all(model, batches[:1], settings, None)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in decoders}
    outputs: dict[str, tuple] = {}
    for _ in range(repeats):
        for name, threshold in decoders.items():
            started = time.perf_counter()
            outputs[name] = decode_all(model, batches, settings, threshold)  # (.cpu() waits for the device)
            times[name].append(time.perf_counter() - started)
    result: dict[str, Any] = {
        "model": description,
        "num_problems": len(targets),
        "batch_size": batch_size,
        "repeats": repeats,
        "settings": {k: v for k, v in settings.items() if k != "mask_id"},
        "answer_scheme": cfg.data.answer_scheme,
        "device": device_description(str(torch.device(device))),
        "decoders": {},
    }
    verdicts = {}
    for name, threshold in decoders.items():
        canvas, nfe, positions = outputs[name]
        verdicts[name] = [
            bool(score(text, target, cfg.data.answer_scheme)["correct"])
            for text, target in zip(response_texts(canvas, tokenizer), targets)
        ]
        seconds = statistics.median(times[name])
        entry = {
            "confidence_threshold": threshold,
            "seconds": seconds,
            "problems_per_s": len(targets) / seconds,
            "nfe_per_problem": nfe.float().mean().item(),
            "nfe_min": int(nfe.min()),
            "nfe_max": int(nfe.max()),
            "positions_per_problem": positions.float().mean().item(),
            "accuracy": sum(verdicts[name]) / len(targets),
            "identical_to_exact": int((canvas == outputs["exact"][0]).all(dim=1).sum()),
            "changed_verdicts": sum(a != b for a, b in zip(verdicts[name], verdicts["exact"])),
        }
        if threshold is not None:
            exact = result["decoders"]["exact"]
            entry["speedup"] = exact["seconds"] / seconds
            entry["nfe_reduction"] = exact["nfe_per_problem"] / entry["nfe_per_problem"]
            entry["batched_equals_batch_one"] = batch_one_check(
                model, batches, settings, threshold, canvas, nfe, consistency_problems
            )
        result["decoders"][name] = entry
    return result


def measure(settings: ThresholdSettings, seed: int, device: torch.device, model_path: str | None) -> dict[str, Any]:
    """The section-table entry point (``experiments.bench.sections``)."""
    return measure_threshold(
        model_path,
        num_problems=settings.problems,
        batch_size=settings.batch,
        thresholds=settings.thresholds,
        repeats=settings.repeats,
        consistency_problems=settings.consistency_problems,
        seed=seed,
        device=str(device),
    )


def render(result: dict[str, Any]) -> list[str]:
    """The section-table renderer: Markdown lines."""
    return render_threshold(result).splitlines() + [""]


def render_threshold(result: dict[str, Any]) -> str:
    """The section as Markdown: settings, then one row per decoder."""
    s = result["settings"]
    lines = [
        "## 6. Confidence-threshold decoding vs exact decoding (same model)",
        "",
        f"Model: {result['model']}, {result['num_problems']} validation problems in batches of {result['batch_size']}, "
        f"gen_length {s['gen_length']}, decode block {s['block_length']}, exact schedule {s['steps']} steps, greedy; "
        f"median of {result['repeats']} interleaved repetitions on {result['device']}. Threshold rule (Fast-dLLM): "
        "per step commit every masked position of the block with confidence >= threshold, at least the most "
        "confident; a block ends when none is masked.",
        "",
        "| decoder | NFE / problem (min-max) | positions / problem | problems/s | speed-up | accuracy "
        "| identical to exact | changed verdicts | batched == batch-1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    n = result["num_problems"]
    for name, d in result["decoders"].items():
        check = d.get("batched_equals_batch_one")
        speedup = f"{d['speedup']:.2f}x" if "speedup" in d else "1"
        consistency = (
            "n/a"
            if check is None
            else (f"{check['identical_tokens']} / {check['checked']} tokens, {check['identical_nfe']} NFE")
        )
        lines.append(
            f"| {name} | {d['nfe_per_problem']:.1f} ({d['nfe_min']}-{d['nfe_max']}) "
            f"| {d['positions_per_problem']:,.0f} | "
            f"{d['problems_per_s']:.1f} | {speedup} | {d['accuracy']:.1%} | {d['identical_to_exact']} / {n} | "
            f"{d['changed_verdicts']} | {consistency} |"
        )
    return "\n".join(lines) + "\n"


def summarize_study(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per completed job of a ``threshold_decoding`` sweep (``multirun_sweeps/threshold_decoding.yaml``):
    threshold (None = exact), accuracy (strict, flexible) and decode cost, sorted exact first."""
    rows = []
    for path in sorted(Path(sweep_dir).glob("*/results.json")):
        results = json.loads(path.read_text())
        if results.get("status") != "completed" or not results.get("decode_cost"):
            continue
        cost = results["decode_cost"]
        rows.append(
            {
                "job": path.parent.name,
                "confidence_threshold": results["config"]["decode"].get("confidence_threshold"),
                "ckpt_path": results.get("ckpt_path"),
                "accuracy": results["accuracy"],
                "accuracy_flexible": results.get("accuracy_flexible"),
                **cost,
            }
        )
    return sorted(rows, key=lambda r: (r["confidence_threshold"] is not None, r["confidence_threshold"] or 0.0))


def render_study(rows: list[dict[str, Any]]) -> str:
    """The sweep as Markdown: accuracy and cost per threshold, speed-ups against the exact job."""
    exact = next((r for r in rows if r["confidence_threshold"] is None), None)
    lines = [
        "## Threshold decoding study (eval only, one trained model)",
        "",
        f"Model `{rows[0]['ckpt_path'] if rows else 'n/a'}`; {rows[0]['problems'] if rows else 0} problems per job "
        f"on {rows[0]['device'] if rows else 'n/a'}.",
        "",
        "| threshold | accuracy | flexible | NFE / problem (min-max) | positions / problem | problems/s "
        "| speed-up vs exact |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = r["problems_per_second"]
        speedup = (
            f"{rate / exact['problems_per_second']:.2f}x" if exact and rate and exact["problems_per_second"] else "n/a"
        )
        flexible = "n/a" if r["accuracy_flexible"] is None else f"{r['accuracy_flexible']:.1%}"
        lines.append(
            f"| {'exact' if r['confidence_threshold'] is None else r['confidence_threshold']} | {r['accuracy']:.1%} | "
            f"{flexible} | {r['nfe_per_problem']:.1f} ({r['nfe_min']}-{r['nfe_max']}) | "
            f"{r['positions_fed_per_problem']:,.0f} | {rate or 0:.1f} | {speedup} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``--study <sweep folder>``: tabulate a threshold_decoding sweep (decoding runs via
    ``python -m experiments.bench``)."""
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.threshold", description=main.__doc__)
    parser.add_argument("--study", type=Path, required=True, help="a threshold_decoding sweep folder")
    args = parser.parse_args(argv)
    rows = summarize_study(args.study)
    (args.study / "threshold_report.md").write_text(render_study(rows))
    print(render_study(rows))
    return 0 if rows else 2


if __name__ == "__main__":
    sys.exit(main())
