"""The training data order: an endless stream of shuffled passes that can start at any batch.

Batch ``i`` of a run is a pure function of ``(seed, i, rank, world_size)``: pass ``k`` over the data
uses the permutation drawn from ``seed + k``, and a run resumed at batch ``i`` (``start_batch``)
yields exactly the batches the uninterrupted run would have yielded from ``i`` on. Nothing about the
order lives in a random stream that a crash could lose, so resuming needs only the number of batches
already consumed (``DiffusionSFTDataModule.state_dict``).

With several ranks and gradient accumulation, each optimizer step consumes one *global* batch of
``batch_size * world_size * accumulate`` consecutive rows of the pass: micro-step ``j`` of the step
takes the ``j``-th chunk of ``batch_size * world_size`` rows and rank ``r`` its ``r``-th slice. The rows
of every optimizer step are therefore the same on 1 device or 64, whatever the micro-batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ShuffledBatchStream(Sampler[list[int]]):
    """Yields lists of row indices (a ``batch_sampler``) forever; training stops by step budget.

    ``start_batch`` counts micro-steps. Each pass drops the rows left over after the last full
    optimizer step (a different remainder every pass). If ``num_rows < global_batch``, a global batch is the whole
    (shuffled) data, split as evenly as possible over ranks.
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        seed: int,
        *,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        accumulate: int = 1,
    ) -> None:
        if num_rows <= 0:
            raise ValueError(f"ShuffledBatchStream: num_rows={num_rows} must be positive")
        if batch_size <= 0:
            raise ValueError(f"ShuffledBatchStream: batch_size={batch_size} must be positive")
        if not 0 <= rank < world_size:
            raise ValueError(f"ShuffledBatchStream: rank={rank} must be in [0, world_size={world_size})")
        if accumulate <= 0:
            raise ValueError(f"ShuffledBatchStream: accumulate={accumulate} must be positive")
        if start_batch < 0:
            raise ValueError(f"ShuffledBatchStream: start_batch={start_batch} must be >= 0")
        self.num_rows, self.batch_size, self.seed = num_rows, batch_size, seed
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size
        self.global_batch = batch_size * world_size  # rows per micro-step, all ranks
        steps_per_pass = max(1, num_rows // (self.global_batch * accumulate))
        self.batches_per_pass = steps_per_pass * accumulate  # micro-steps

    def permutation(self, pass_index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + pass_index)
        return torch.randperm(self.num_rows, generator=generator)

    def batch(self, batch_index: int) -> list[int]:
        """This rank's rows of global batch ``batch_index`` (pure function of the index)."""
        pass_index, position = divmod(batch_index, self.batches_per_pass)
        order = self.permutation(pass_index)
        rows = order[position * self.global_batch : (position + 1) * self.global_batch]
        return rows.tensor_split(self.world_size)[self.rank].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        batch_index = self.start_batch
        pass_index, position = divmod(batch_index, self.batches_per_pass)
        while True:
            order = self.permutation(pass_index)
            for batch_in_pass in range(position, self.batches_per_pass):
                rows = order[batch_in_pass * self.global_batch : (batch_in_pass + 1) * self.global_batch]
                yield rows.tensor_split(self.world_size)[self.rank].tolist()
            pass_index, position = pass_index + 1, 0
