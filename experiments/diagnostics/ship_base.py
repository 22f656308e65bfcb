"""Ship a pretraining run's export as the project's base: ``python -m experiments.diagnostics.ship_base <run folder>``.

Copies ``<run>/export/`` (weights, config, tokenizer) into ``experiments/base/`` (``--to``) and writes
next to it ``provenance.json`` (command, resolved config and its fingerprint, git commit, data
fingerprint, steps, wall time, final and held-out loss, parameter count, sha256 of every shipped
file) and ``MODEL_CARD.md`` (the same, for people). ``tests/test_shipped_base.py`` checks the shipped
weights against the recorded sha256.

The data fingerprint is the sha256 of the corpus the run trained and was evaluated on, regenerated
from the recorded ``data.source`` (the procedural corpus is deterministic given its config), so a
re-generation with other code would show as a different fingerprint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from blocksft.folders import portable
from blocksft.models.init_from import sha256_file
from blocksft.runs.results import RunResult

ROOT = Path(__file__).resolve().parents[2]

PROVENANCE = "provenance.json"
CARD = "MODEL_CARD.md"


def data_fingerprint(source_cfg: dict) -> str:
    """sha256 of every split's documents of the recorded ``data.source``, in split order."""
    splits = instantiate(OmegaConf.create(source_cfg)).load()
    digest = hashlib.sha256()
    for split, texts in splits.items():
        digest.update(json.dumps([split, texts]).encode())
    return digest.hexdigest()


def completed_run(run: Path) -> RunResult:
    """The run's ``results.json``; exits naming the run unless it is a completed run with an export."""
    if not (run / "export" / "config.json").is_file():
        raise SystemExit(f"{run / 'export'}: no export (config.json) to ship")
    result = RunResult.from_json(json.loads((run / "results.json").read_text()))
    if not result.completed:
        raise SystemExit(f"{run}/results.json: status {result.status!r}; ship only a completed pretraining run")
    return result


def provenance(run: Path, target: Path, note: str | None) -> dict:
    """What ``provenance.json`` records of the run ``run`` shipped into ``target``."""
    result = completed_run(run)
    record = json.loads((run / "run_config.json").read_text())
    overrides = (
        OmegaConf.create(record["hydra_files"]["overrides.yaml"])
        if "overrides.yaml" in record.get("hydra_files", {})
        else []
    )
    config = result.config
    return {
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python train.py", *map(str, overrides)]),
        "git_commit": result.git_commit,
        "note": note,
        "config_fingerprint": result.config_fingerprint,
        "data_fingerprint": data_fingerprint(config["data"]["source"]),
        "num_parameters": result.num_parameters,
        "vocab_size": json.loads((target / "config.json").read_text()).get("vocab_size"),
        "steps": result.steps,
        "supervised_tokens": result.supervised_tokens,
        "train_seconds": result.train_seconds,
        "wall_seconds": result.wall_seconds,
        "final_train_loss": result.final_train_loss,
        "heldout_loss": result.eval_loss,
        "files_sha256": {
            p.name: sha256_file(p) for p in sorted(target.iterdir()) if p.is_file() and p.name not in (PROVENANCE, CARD)
        },
        "config": config,
    }


def model_card(record: dict) -> str:
    config = record["config"]
    model, source = config["model"], config["data"]["source"]
    minutes = (record["wall_seconds"] or 0) / 60
    files = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in record["files_sha256"].items())
    note = f"\n{record['note']}\n" if record.get("note") else ""
    return f"""# The shipped base: a {record["num_parameters"] / 1e6:.2f}M-parameter masked diffusion LM

Pretrained by this project's own pretraining config; `model=base` (the default) fine-tunes it, and
`model=base_scratch` is the same architecture and tokenizer at random init.

| | |
|---|---|
| command | `{record["command"]}` |
| git commit | `{record["git_commit"]}` |
| config fingerprint | `{record["config_fingerprint"]}` |
| data fingerprint (sha256 of the corpus) | `{record["data_fingerprint"]}` |
| architecture | tiny bidirectional transformer, hidden {model["hidden_size"]}, {model["num_layers"]} layers, {model["num_heads"]} heads, MLP {model["intermediate_size"]}, rotary positions |
| tokenizer | BPE, {record["vocab_size"]} ids, numbers {model["bpe"]["numbers"]} (every integer below 100 is one token) |
| objective | LLaDA masked-diffusion pretraining: whole document masked at t ~ U(eps, 1), loss weighted 1/t (`{config["objective"]["weighting"]}`) |
| corpus | {source["sizes"]["train"]:,} procedural documents (seed {source["seed"]}): formats {", ".join(k for k, v in source["formats"].items() if v)}; operands 1-{source["max_operand"]}, values 0-{source["max_result"]}, {source["min_ops"]}-{source["max_ops"]} steps |
| steps | {record["steps"]:,} of batch {config["data"]["batch_size"]} x {config["data"]["response_len"]} tokens, AdamW lr {config["optim"]["optimizer"]["lr"]} |
| wall time | {minutes:.1f} min on 2 CPU cores |
| final training loss | {record["final_train_loss"]:.4f} |
| held-out loss ({source["sizes"]["validation"]} documents) | {record["heldout_loss"]:.4f} |
{note}
## Files

| file | sha256 |
|---|---|
{files}

`provenance.json` holds all of the above and the whole resolved config; `tests/test_shipped_base.py`
checks these digests and that the base loads.
"""  # noqa: E501 (the model card's table rows are one line each)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.diagnostics.ship_base", description=__doc__.splitlines()[0]
    )
    parser.add_argument("run", type=Path, help="a completed pretraining run folder (holding export/ and results.json)")
    parser.add_argument("--to", type=Path, default=ROOT / "experiments" / "base")
    parser.add_argument("--note", default=None, help="a sentence for the card (e.g. how the code was committed)")
    args = parser.parse_args(argv)
    completed_run(args.run)  # before the current base is removed
    if args.to.exists():
        shutil.rmtree(args.to)
    shutil.copytree(args.run / "export", args.to)
    record = provenance(args.run, args.to, args.note)
    (args.to / PROVENANCE).write_text(portable(json.dumps(record, indent=2)) + "\n")
    (args.to / CARD).write_text(model_card(record))
    print(
        f"shipped {args.run} -> {args.to}: {record['num_parameters']:,} parameters, "
        f"{sum(p.stat().st_size for p in args.to.iterdir()) / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
