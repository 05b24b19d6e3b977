"""Batches of image-text pairs for the shared training loop, resumable and sharded over processes."""
from __future__ import annotations

import random
from typing import Any, Callable, Iterator

import torch

from ..data.loaders import BatchOrder, numpy_permutation
from ..errors import SnapsightError
from ..train import distributed as dist_utils


class _PairItems(torch.utils.data.Dataset):
    def __init__(self, pairs: Any, transform: Callable[[Any], torch.Tensor], seed: int):
        self.pairs, self.transform, self.seed = pairs, transform, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, str, int]:
        i, epoch = key
        rng = random.Random((self.seed * 1_000_003 + epoch) * 10_000_019 + i)  # caption choice: f(seed, epoch, i)
        return self.transform(self.pairs.load(i)), self.pairs.caption(i, rng), int(self.pairs.groups[i])


def _collate(items: list[tuple[torch.Tensor, str, int]]) -> dict[str, Any]:
    return {"images": torch.stack([x[0] for x in items]), "captions": [x[1] for x in items],
            "groups": torch.tensor([x[2] for x in items], dtype=torch.long)}


class PairLoader(BatchOrder):
    """Shuffled batches ``{"images": (B, 3, S, S), "captions": list[str], "groups": (B,) int}`` of pairs.

    ``batch_size`` is the global batch, each process yields its share (``rank``/``world_size`` default to
    the running process group). Order and caption draws depend only on ``(seed, epoch)``, so
    :func:`~snapsight.train.loop.fit` can resume exactly (``set_epoch``, ``skip_batches``).
    """

    def __init__(self, pairs: Any, transform: Callable[[Any], torch.Tensor], batch_size: int, seed: int = 0,
                 num_workers: int = 0, rank: int | None = None, world_size: int | None = None):
        world = world_size or dist_utils.get_world_size()
        if len(pairs) < batch_size:
            raise SnapsightError(f"{len(pairs)} image-text pairs are fewer than one batch of {batch_size}")
        super().__init__(len(pairs), batch_size, seed=seed, rank=dist_utils.get_rank() if rank is None else rank,
                         world_size=world, permutation=numpy_permutation)
        self.pairs, self.num_workers = pairs, num_workers
        self.items = _PairItems(pairs, transform, seed)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batches = [[(int(i), self.epoch) for i in idx] for idx in self.local_batches()]
        loader = torch.utils.data.DataLoader(self.items, batch_sampler=batches, num_workers=self.num_workers,
                                             collate_fn=_collate, persistent_workers=False)
        return iter(loader)
