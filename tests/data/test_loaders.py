"""BatchOrder, the order every training loader reads in, against a hand-written reference."""
import numpy as np
import pytest
import torch

from snapsight.data.loaders import BatchOrder, numpy_permutation, torch_permutation
from snapsight.data.sources import TensorSource
from snapsight.errors import SnapsightError


def _reference(n, batch, seed, epoch, rank, world, drop_last=True):
    """The order as runs have always resumed it: a torch permutation seeded seed * 1_000_003 + epoch, cut into
    global batches; each process takes its contiguous slice of a full batch, a short last batch is read whole."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    local = batch // world
    steps = n // batch if drop_last else -(-n // batch)
    out = []
    for b in range(steps):
        chunk = order[b * batch:(b + 1) * batch]
        out.append(chunk[rank * local:(rank + 1) * local] if len(chunk) == batch else chunk)
    return out


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("world", [1, 2, 4])
def test_local_batches_follow_the_reference_order(world, drop_last):
    for rank in range(world):
        for epoch in (0, 1, 7):
            order = BatchOrder(37, 8, seed=3, rank=rank, world_size=world, drop_last=drop_last)
            order.set_epoch(epoch)
            got = [idx.tolist() for idx in order.local_batches()]
            assert got == _reference(37, 8, 3, epoch, rank, world, drop_last)
            assert len(got) == len(order)


def test_skip_applies_to_one_iteration_only():
    order = BatchOrder(40, 8, seed=1)
    order.set_epoch(2)
    full = [idx.tolist() for idx in order.local_batches()]
    order.skip_batches(3)
    assert [idx.tolist() for idx in order.local_batches()] == full[3:]
    assert [idx.tolist() for idx in order.local_batches()] == full


def test_unshuffled_order_and_process_shares_cover_every_item_once():
    order = BatchOrder(10, 4, shuffle=False)
    assert [idx.tolist() for idx in order.local_batches()] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    shares = [BatchOrder(11, 4, seed=5, rank=r, world_size=2).process_share() for r in range(2)]
    assert sorted(torch.cat(shares).tolist()) == list(range(11))
    assert shares[0].tolist() == torch_permutation(11, 5, 0)[0::2].tolist()


def test_permutations_depend_only_on_seed_and_epoch():
    assert torch.equal(numpy_permutation(9, 4, 1), torch.from_numpy(np.random.default_rng([4, 1]).permutation(9)))
    assert torch.equal(torch_permutation(9, 4, 1), torch_permutation(9, 4, 1))
    assert not torch.equal(torch_permutation(50, 4, 1), torch_permutation(50, 4, 2))


def test_batch_must_divide_over_the_processes():
    with pytest.raises(SnapsightError, match="divisible"):
        BatchOrder(10, 5, world_size=2)


def test_tensor_loader_reads_the_reference_order():
    labels = torch.arange(30)
    src = TensorSource(torch.zeros(30, 1, 2, 2, dtype=torch.uint8), labels)
    for rank in range(2):
        loader = src.loader(8, seed=9, rank=rank, world_size=2)
        loader.set_epoch(4)
        assert [b["labels"].tolist() for b in loader] == _reference(30, 8, 9, 4, rank, 2)
