"""Does a base carry the per-step skill of the chain task?
``python -m experiments.diagnostics.probe_skill <init_from> [overrides]``

Loads a model exactly as a run with ``model.init_from=<init_from>`` would (an export folder, a run
folder or a pretraining ``.ckpt``; the config is composed as ``train.py`` composes it
(``blocksft.runs.compose.compose_config``) from ``experiment=pretrain_base`` and the overrides, so a ``.ckpt``
gets the pretraining run's tokenizer), then asks it every arithmetic fact of the data knobs
(``a op b = c`` with a in [0, max_result], b in [1, max_operand], c in [0, max_result]) with the
result masked, in two contexts:

* ``fact``: the fact alone, as the corpus' facts paragraphs write it (``"7 + 5 = [MASK]."``);
* ``answer_line``: a line of the SFT answer format after the line that produced ``a``
  (``"8 - 1 = 7\\n7 + 5 = [MASK]"``).

Prints the share of facts whose masked result the model predicts exactly (argmax at every masked
position, one forward pass, the rest of the row [EOS] as in pretraining). A base with the skill is
near 100 % on ``fact``; a random init is near 1 / (number of results).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from blocksft.models.loader import load_initial_model
from blocksft.runs.compose import compose_config


def facts(max_operand: int, max_result: int, operations) -> list[tuple[int, str, int, int]]:
    """Every (a, op, b, c) of the generator's range, in a fixed order."""
    out = []
    for a in range(max_result + 1):
        for b in range(1, max_operand + 1):
            if "+" in operations and a + b <= max_result:
                out.append((a, "+", b, a + b))
            if "-" in operations and b <= a:
                out.append((a, "-", b, a - b))
    return out


@torch.no_grad()
def masked_result_accuracy(model, tokenizer, texts: list[tuple[str, str, str]], length: int = 32) -> float:
    """``texts``: (before, result, after); the share whose result tokens the model fills in exactly."""
    rows, targets = [], []
    for before, result, after in texts:
        head = tokenizer(before, add_special_tokens=False)["input_ids"]
        mid = tokenizer(result, add_special_tokens=False)["input_ids"]
        tail = tokenizer(after, add_special_tokens=False)["input_ids"]
        ids = (head + mid + tail + [tokenizer.eos_token_id] * length)[:length]
        target = torch.full((length,), -100)
        target[len(head) : len(head) + len(mid)] = torch.tensor(mid)
        ids = torch.tensor(ids)
        ids[target >= 0] = tokenizer.mask_token_id
        rows.append(ids)
        targets.append(target)
    input_ids, target = torch.stack(rows), torch.stack(targets)
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
    hit = (logits.argmax(-1) == target) | (target < 0)
    return hit.all(-1).float().mean().item()


def probe(init_from: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, tuple[float, int]]:
    """{context: (share of facts predicted exactly, number of facts)} for the model a run with
    ``model.init_from=<init_from>`` and ``overrides`` (on ``experiment=pretrain_base``) starts from."""
    cfg = compose_config(
        ["experiment=pretrain_base", f"model.init_from={init_from}", *overrides],
        Path(tempfile.gettempdir()) / "blocksft-probe-skill",
    )
    model, tokenizer, _, _ = load_initial_model(cfg, train=False)
    model.eval()
    source = cfg.data.source
    table = facts(int(source.max_operand), int(source.max_result), list(source.operations))
    contexts = {
        "fact": [(f"{a} {op} {b} =", f" {c}", ".") for a, op, b, c in table],
        "answer_line": [(f"{a + 1} - 1 = {a}\n{a} {op} {b} =", f" {c}", "\n") for a, op, b, c in table],
    }
    return {name: (masked_result_accuracy(model, tokenizer, texts), len(texts)) for name, texts in contexts.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.diagnostics.probe_skill", description=__doc__.splitlines()[0]
    )
    parser.add_argument("init_from", help="an export folder, a run folder or a pretraining .ckpt")
    parser.add_argument("overrides", nargs="*", help="config overrides, as on train.py's command line")
    args = parser.parse_args(argv)
    for name, (accuracy, count) in probe(args.init_from, args.overrides).items():
        print(f"{name}: {accuracy:.3f} of {count} facts (init_from={args.init_from})")


if __name__ == "__main__":
    main()
