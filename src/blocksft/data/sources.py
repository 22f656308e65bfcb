"""Data sources: each returns rows in its dataset's own schema, split by split.

A source has ``load() -> dict[split, list[dict]]``; the data module reads the question and answer
fields named in the data config and scores with the configured answer scheme.
"""

from __future__ import annotations

from blocksft.data.arithmetic import ArithmeticConfig, generate_splits


class ArithmeticSource:
    """The embedded default: seeded GSM8K-style word problems (schema ``question``/``answer``)."""

    def __init__(self, sizes: dict[str, int], seed: int = 0, **knobs) -> None:
        for split, size in sizes.items():
            if int(size) < 0:
                raise ValueError(f"data.source.sizes.{split}={size}: must be >= 0")
        self.sizes = {split: int(size) for split, size in sizes.items()}
        self.seed = seed
        if "operations" in knobs:
            knobs["operations"] = tuple(knobs["operations"])
        self.config = ArithmeticConfig(**knobs)

    def load(self) -> dict[str, list[dict]]:
        return generate_splits(self.config, self.sizes, self.seed)
