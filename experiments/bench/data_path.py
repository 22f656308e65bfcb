"""Tokenisation benchmark of the data path at MetaMathQA scale (395k rows).

Usage::

    python -m experiments.bench.data_path [--rows 395000] [--num-proc 2] [--out bench_data.json] [--workdir DIR]

Writes a synthetic corpus in MetaMathQA's schema (``query``/``response``/``type``/
``original_question``; the 8 types in the corpus' proportions, GSM8K 240k : MATH 155k; lengths drawn
around those of the real rows; GSM responses end ``#### n`` + ``The answer is: n``, MATH ones carry a
``\\boxed{}`` and ``The answer is:``) as JSONL in a temporary folder, then prepares it twice through
the real path (``HubSource`` with a ``data_files`` override -> ``DiffusionSFTDataModule.setup``:
JSONL -> Arrow, official prompt template, char tokenizer, ``datasets.map`` with ``num_proc``
processes and the on-disk cache): a *cold* run with an empty cache and a *cached* second run.

Each run is a fresh subprocess (unless ``--no-isolate``), so its peak RSS is its own: ``peak_rss_mb``
is the main process, ``peak_rss_workers_mb`` the largest tokenisation worker. Rows/s counts source
rows (all splits) per wall second of ``setup``. Prints a Markdown table; ``--out`` writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: MetaMathQA-395K type counts (GSM8K-derived 240k, MATH-derived 155k).
TYPE_COUNTS = {
    "GSM_AnsAug": 80_000,
    "GSM_Rephrased": 80_000,
    "GSM_SV": 40_000,
    "GSM_FOBAR": 40_000,
    "MATH_AnsAug": 75_000,
    "MATH_Rephrased": 50_000,
    "MATH_SV": 15_000,
    "MATH_FOBAR": 15_000,
}
OFFICIAL_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{question}\n\n### Response: Let's think step by step."
)
_WORDS = (
    "she",
    "buys",
    "each",
    "total",
    "apples",
    "dollars",
    "per",
    "hour",
    "week",
    "times",
    "more",
    "than",
    "twice",
    "half",
    "left",
    "after",
    "the",
    "of",
    "and",
    "how",
    "many",
    "does",
    "have",
    "if",
    "value",
)


def _sentence(rng: random.Random, words: int) -> str:
    body = " ".join(rng.choice(_WORDS) if rng.random() < 0.8 else str(rng.randint(2, 999)) for _ in range(words))
    return body[0].upper() + body[1:] + "."


def _text(rng: random.Random, mean_words: float) -> str:
    words = max(8, int(rng.lognormvariate(0, 0.45) * mean_words))
    sentences, left = [], words
    while left > 0:
        size = min(left, rng.randint(6, 16))
        sentences.append(_sentence(rng, size))
        left -= size
    return " ".join(sentences)


def synthetic_row(rng: random.Random, kind: str) -> dict:
    """One MetaMathQA-schema row of type ``kind`` (GSM: ~45-word query, ~90-word response; MATH: longer)."""
    is_gsm = kind.startswith("GSM")
    answer = str(rng.randint(1, 5000))
    question = _text(rng, 45 if is_gsm else 40) + " How many are there?"
    if kind.endswith(("SV", "FOBAR")):
        question += " What is the value of unknown variable x?"
    steps = "\n".join(_text(rng, 14) for _ in range(rng.randint(3, 7) if is_gsm else rng.randint(3, 9)))
    if is_gsm:
        tail = f"\n#### {answer}\nThe answer is: {answer}"
    else:
        tail = f" So the result is $\\boxed{{{answer}}}$.\nThe answer is: {answer}"
    return {"query": question, "response": steps + tail, "type": kind, "original_question": question}


def write_corpus(path: Path, rows: int, seed: int = 0) -> float:
    """Stream ``rows`` synthetic rows (types in MetaMathQA proportions) to ``path``; returns its size in MB."""
    rng = random.Random(seed)
    kinds, weights = list(TYPE_COUNTS), list(TYPE_COUNTS.values())
    with path.open("w") as handle:
        for _ in range(rows):
            handle.write(json.dumps(synthetic_row(rng, rng.choices(kinds, weights)[0])) + "\n")
    return path.stat().st_size / 2**20


def peak_rss_mb() -> tuple[float, float]:
    """(this process, largest waited-for child) peak resident set size in MB (Linux reports KB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1024, workers / 1024


def prepare_once(corpus: str, cache_dir: str, num_proc: int, response_len: int, max_prompt_len: int) -> dict:
    """One ``setup`` of the data module on ``corpus``: seconds, rows/s, kept/dropped rows, cache reuse."""
    from blocksft.data.datamodule import DiffusionSFTDataModule
    from blocksft.data.settings import LoaderSettings, RowSettings
    from blocksft.data.sources import HubSource
    from blocksft.data.tokenizer import build_char_tokenizer

    with open(corpus) as handle:
        rows = sum(1 for _ in handle)
    source = HubSource(
        "meta-math/MetaMathQA",
        {"train": "train"},
        data_files={"train": corpus},
        holdout={"validation": min(500, rows // 10)},
        cache_dir=cache_dir,
    )
    datamodule = DiffusionSFTDataModule(
        source,
        build_char_tokenizer(),
        LoaderSettings(
            response_len=response_len, batch_size=32, eval_batch_size=32, num_proc=num_proc, cache_dir=cache_dir
        ),
        RowSettings(
            max_prompt_len=max_prompt_len,
            prompt_template=OFFICIAL_TEMPLATE,
            question_field="query",
            answer_field="response",
            answer_scheme="metamathqa",
        ),
    )
    started = time.perf_counter()
    datamodule.setup()
    seconds = time.perf_counter() - started
    own, workers = peak_rss_mb()
    return {
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1),
        "train_rows": len(datamodule.train_set),
        "eval_rows": len(datamodule.eval_set),
        "dropped": dict(datamodule.dropped),
        "cache_reused": all(datamodule.cache_reused.values()),
        "peak_rss_mb": round(own, 1),
        "peak_rss_workers_mb": round(workers, 1),
    }


def _phase(isolate: bool, **kwargs) -> dict:
    if not isolate:
        return prepare_once(**kwargs)
    command = [sys.executable, "-m", "experiments.bench.data_path", "--phase", json.dumps(kwargs)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(
    rows: int,
    num_proc: int = 2,
    response_len: int = 1024,
    max_prompt_len: int = 1024,
    seed: int = 0,
    workdir: str | Path | None = None,
    isolate: bool = True,
) -> dict:
    """Generate a ``rows``-row corpus, prepare it cold then cached; the figures of both runs."""
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        corpus = Path(folder) / "metamathqa.jsonl"
        started = time.perf_counter()
        corpus_mb = write_corpus(corpus, rows, seed)
        generate_seconds = time.perf_counter() - started
        kwargs = dict(
            corpus=str(corpus),
            cache_dir=str(Path(folder) / "cache"),
            num_proc=num_proc,
            response_len=response_len,
            max_prompt_len=max_prompt_len,
        )
        cold = _phase(isolate, **kwargs)
        cached = _phase(isolate, **kwargs)
    return {
        "rows": rows,
        "num_proc": num_proc,
        "response_len": response_len,
        "max_prompt_len": max_prompt_len,
        "tokenizer": "char",
        "isolated_processes": isolate,
        "corpus_mb": round(corpus_mb, 1),
        "generate_seconds": round(generate_seconds, 2),
        "cold": cold,
        "cached": cached,
        "cache_reused": cached["cache_reused"] and not cold["cache_reused"],
    }


def markdown(report: dict) -> str:
    lines = [
        f"Data path, {report['rows']:,} synthetic MetaMathQA rows ({report['corpus_mb']} MB JSONL), "
        f"char tokenizer, num_proc={report['num_proc']}",
        "",
        "| run | seconds | rows/s | peak RSS MB (main) | peak RSS MB (workers) | cache reused |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in ("cold", "cached"):
        r = report[name]
        lines.append(
            f"| {name} | {r['seconds']} | {r['rows_per_second']:,.0f} | {r['peak_rss_mb']} | "
            f"{r['peak_rss_workers_mb']} | {r['cache_reused']} |"
        )
    lines.append("")
    lines.append(
        f"kept {report['cold']['train_rows']:,} train + {report['cold']['eval_rows']} eval rows; "
        f"dropped {report['cold']['dropped'] or 'none'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench.data_path",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=395_000)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--response-len", type=int, default=1024)
    parser.add_argument("--max-prompt-len", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", default=None, help="folder for the temporary corpus and cache (default: system temp)"
    )
    parser.add_argument("--no-isolate", action="store_true", help="run both phases in this process")
    parser.add_argument("--out", default=None, help="write the JSON report here")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # internal: one isolated phase
    args = parser.parse_args(argv)
    if args.phase is not None:
        print(json.dumps(prepare_once(**json.loads(args.phase))))
        return None
    report = run(
        args.rows,
        args.num_proc,
        args.response_len,
        args.max_prompt_len,
        args.seed,
        args.workdir,
        isolate=not args.no_isolate,
    )
    print(markdown(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
