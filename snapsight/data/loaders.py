"""The part every training loader shares: which items each process reads, batch by batch, in each epoch.

:class:`BatchOrder` holds a run's data order as a pure function of ``(seed, epoch)``: a fresh permutation per
epoch, cut into global batches of ``batch_size``, of which process ``rank`` of ``world_size`` reads its own
contiguous slice of ``batch_size // world_size`` items. ``set_epoch`` and ``skip_batches`` are the hooks
:func:`snapsight.train.loop.fit` calls, so a resumed run reads exactly the batches an uninterrupted one would
have read. The loaders built on it (in-memory tensors, streamed files, image-text pairs) add only how an
index becomes a batch.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import SnapsightError

Permutation = Callable[[int, int, int], torch.Tensor]


def torch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """``(n,)`` int64 permutation from torch's generator seeded by ``(seed, epoch)`` (the image loaders' order)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def numpy_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """``(n,)`` int64 permutation from numpy's generator seeded by ``[seed, epoch]`` (the image-text pairs' order,
    kept so that alignment runs resume and rebuild with the batches they started with)."""
    return torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))


class BatchOrder:
    """Resumable per-process batch order over ``num_items`` items.

    ``batch_size`` is the global batch; it must divide evenly over the ``world_size`` processes. With
    ``drop_last`` an epoch is ``num_items // batch_size`` full batches (every step sees the same batch size),
    otherwise the last, shorter batch is read whole by every process.
    """

    def __init__(self, num_items: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, drop_last: bool = True, permutation: Permutation = torch_permutation):
        if batch_size % world_size:
            raise SnapsightError(f"batch size {batch_size} must be divisible by the number of processes {world_size}")
        self.num_items, self.batch_size, self.local_batch_size = num_items, batch_size, batch_size // world_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.shuffle, self.drop_last, self.permutation = shuffle, drop_last, permutation
        self.epoch, self._skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_batches(self, n: int) -> None:
        """Start the next iteration ``n`` batches into the epoch (resume)."""
        self._skip = n

    def __len__(self) -> int:
        n = self.num_items
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch_order(self) -> torch.Tensor:
        """``(num_items,)`` int64: every item once, in this epoch's order (the same on every process)."""
        if self.shuffle:
            return self.permutation(self.num_items, self.seed, self.epoch)
        return torch.arange(self.num_items)

    def take_skip(self) -> int:
        """The batches to skip at the start of this iteration; a skip applies to one iteration only."""
        skip, self._skip = self._skip, 0
        return skip

    def local_batches(self) -> Iterator[torch.Tensor]:
        """This process's item indices ``(local_batch_size,)`` for each remaining batch of the epoch."""
        order = self.epoch_order()
        lo, hi = self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size
        for b in range(self.take_skip(), len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield idx[lo:hi] if len(idx) == self.batch_size else idx

    def process_share(self) -> torch.Tensor:
        """Every ``world_size``-th item of the epoch's order from ``rank`` on: the share of a process that fills
        its batches itself (a streaming reader that skips unreadable files and wraps around)."""
        return self.epoch_order()[self.rank::self.world_size]
