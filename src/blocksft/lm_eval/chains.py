"""The rows of the shipped lm-eval tasks (``tasks/*.yaml``), read from the project's own data configs.

lm-eval reads a task's rows through its ``custom_dataset`` function (``tasks/utils.py`` names the ones here), so
nothing is downloaded or written: :func:`eval_rows` composes ``conf/data/<data_config>.yaml`` as ``train.py``
would (``blocksft_chains`` reads ``data_config: null``, the default task: its generator knobs, seed and sizes),
builds its source and reads its ``validation`` and ``test`` splits, in order: the rows ``mode=eval`` decodes
(``eval.size=N`` is ``--limit N``). Unlike ``mode=eval``, no row is dropped for its prompt length; rows without a
question or a reference answer are (they cannot be scored).

* :func:`chains_dataset`: question, answer, ``target`` (the reference answer ``mode=eval`` scores against) and
  ``answer_scheme``; :func:`process_results` scores a generation with ``blocksft.evaluation.answers.score``
  (``exact_match``: strict extraction, GSM8K ``#### n`` for the chains; ``exact_match_flexible``: the last number).
* :func:`chains_mc_dataset`: the same questions with four candidate final answers (``#### n``): the reference and
  three distractors near it, drawn and placed with a generator seeded by the data's seed, the split and the row.
"""

from __future__ import annotations

import functools
import random

from datasets import Dataset, DatasetDict
from hydra.utils import instantiate

from blocksft.data.settings import RowSettings
from blocksft.evaluation.answers import reference_answer, score
from blocksft.runs.compose import compose_config

EVAL_SPLITS = ("validation", "test")
CHOICES = 4
DISTRACTOR_SPREAD = 10  # distractors are drawn from the integers within this distance of the answer


@functools.lru_cache(maxsize=4)
def eval_rows(data_config: str | None = None) -> tuple[dict[str, list[dict]], int]:
    """({split: rows} of the eval splits of ``conf/data/<data_config>.yaml`` (None: the default task,
    ``conf/train.yaml``'s data), the data's seed). A row holds
    ``index`` (its position in the split), ``question``, ``answer``, ``target`` and ``answer_scheme``."""
    data = compose_config([f"data={data_config}"] if data_config else []).data
    rows = RowSettings.from_config(data)
    splits = instantiate(data.source).load_splits(rows.fields())
    out: dict[str, list[dict]] = {}
    for split in (name for name in EVAL_SPLITS if name in splits):
        out[split] = []
        for index, row in enumerate(splits[split]):
            question, answer = row[rows.question_field], row[rows.answer_field]
            target = row[rows.target_field] if rows.target_field else reference_answer(answer, rows.answer_scheme)
            if question and target:
                out[split].append(
                    {
                        "index": index,
                        "question": question,
                        "answer": answer or "",
                        "target": str(target).strip(),
                        "answer_scheme": rows.answer_scheme,
                    }
                )
    return out, int(data.source.get("seed", 0) or 0)


def chains_dataset(data_config: str | None = None, **_metadata) -> DatasetDict:
    """The generation task's rows (``custom_dataset``; lm-eval also passes the task's metadata, not used)."""
    splits, _ = eval_rows(data_config)
    return DatasetDict({split: Dataset.from_list(rows) for split, rows in splits.items()})


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval's per-document metrics of a generation: ``blocksft.evaluation.answers.score`` as ``mode=eval``."""
    scored = score(results[0], doc["target"], doc["answer_scheme"])
    return {"exact_match": float(scored["correct"]), "exact_match_flexible": float(scored["correct_flexible"])}


def distractors(answer: int, rng: random.Random, count: int = CHOICES - 1) -> list[int]:
    """``count`` distinct integers other than ``answer`` within ``DISTRACTOR_SPREAD`` of it, non-negative when
    ``answer`` is."""
    low = max(0, answer - DISTRACTOR_SPREAD) if answer >= 0 else answer - DISTRACTOR_SPREAD
    pool = [value for value in range(low, answer + DISTRACTOR_SPREAD + 1) if value != answer]
    return rng.sample(pool, count)


def chains_mc_dataset(data_config: str | None = None, **_metadata) -> DatasetDict:
    """The multiple-choice task's rows: ``question``, ``choices`` (four ``#### n`` lines) and ``label`` (the
    reference's place). ``ValueError`` when a reference answer is not an integer."""
    splits, seed = eval_rows(data_config)
    out = {}
    for split, rows in splits.items():
        mc_rows = []
        for row in rows:
            if not row["target"].lstrip("-").isdigit():
                raise ValueError(
                    f"blocksft_chains_mc needs integer answers; {split} row {row['index']}: {row['target']}"
                )
            rng = random.Random(f"{seed}:{split}:{row['index']}")
            answer = int(row["target"])
            values = [answer, *distractors(answer, rng)]
            rng.shuffle(values)
            choices = [f"#### {value}" for value in values]
            mc_rows.append({**row, "choices": choices, "label": values.index(answer)})
        out[split] = Dataset.from_list(mc_rows)
    return DatasetDict(out)
