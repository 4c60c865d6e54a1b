"""The data order of a training run, a function of (seed, step) alone: which examples each rank sees at a step, the
per-example noise generators, and the batch itself (indexed in memory, or read ahead from a streamed data set); so a
run resumes exactly and N ranks of B/N see what one process of B sees."""
from __future__ import annotations

from typing import Optional

import torch

from ..utils import sample_generators


class DataOrder:
    """`indices(step)`, `generators(step)` and `batch(step)` of this rank, for a global batch of `batch_size`."""

    def __init__(self, x, batch_size: int, rank: int, world: int, seed: int, steps: int, workers: int = 0,
                 pin: bool = False):
        self.x, self.batch_size, self.rank, self.seed = x, batch_size, rank, seed
        self.local_batch = batch_size // world
        self.steps, self.workers, self.pin = steps, workers, pin
        self._stream: Optional[list] = None  # [the step its next batch is for, a streamed data set's reader]

    def indices(self, step: int) -> torch.Tensor:
        """This rank's example indices at `step`: a fresh permutation each epoch, seeded by (seed, epoch)."""
        n, b = len(self.x), self.batch_size
        epoch, k = divmod(step, n // b)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
        start = k * b + self.rank * self.local_batch
        return perm[start:start + self.local_batch]

    def generators(self, step: int):
        """One generator per example of this rank's batch, seeded by its place in the whole run."""
        offset = step * self.batch_size + self.rank * self.local_batch
        return sample_generators(self.seed + 1, self.local_batch, offset)

    def batch(self, step: int, idx: torch.Tensor) -> torch.Tensor:
        """The examples idx = indices(step): indexed in memory, or from a streamed data set's reader (started where
        the step is not the next one it would give: the first step, or after a resume)."""
        if not hasattr(self.x, "batches"):  # in memory
            return self.x[idx]
        if self._stream is None or self._stream[0] != step:
            self._stream = [step, self.x.batches(self.indices, step, self.steps, self.workers, self.pin)]
        self._stream[0] += 1
        return next(self._stream[1])
