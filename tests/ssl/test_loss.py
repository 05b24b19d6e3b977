import math

import pytest
import torch
import torch.nn.functional as F

from snapsight.ssl.loss import nt_xent_loss


def naive_nt_xent(z_a, z_b, temperature):
    """Chen et al. 2020, eq. 1, written as the paper's loop over the 2n anchors."""
    z = torch.cat([z_a, z_b])
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        sim = lambda a, b: F.cosine_similarity(z[a], z[b], dim=0) / temperature  # noqa: E731
        denom = sum(torch.exp(sim(i, k)) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(sim(i, j)) / denom)
    return total / n2


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_matches_naive_loop(temperature):
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert torch.allclose(nt_xent_loss(z_a, z_b, temperature), naive_nt_xent(z_a, z_b, temperature), atol=1e-5)


def test_gradients_match_naive_loop():
    g = torch.Generator().manual_seed(1)
    a1 = torch.randn(4, 3, generator=g, requires_grad=True)
    b1 = torch.randn(4, 3, generator=g, requires_grad=True)
    a2, b2 = a1.detach().clone().requires_grad_(), b1.detach().clone().requires_grad_()
    nt_xent_loss(a1, b1, 0.3).backward()
    naive_nt_xent(a2, b2, 0.3).backward()
    assert torch.allclose(a1.grad, a2.grad, atol=1e-5) and torch.allclose(b1.grad, b2.grad, atol=1e-5)


def test_identical_views_of_orthogonal_points_give_low_loss():
    z = torch.eye(4)
    # Positives at cosine 1, negatives at cosine 0: l = -log(e^(1/t) / (e^(1/t) + 6))
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 6))
    assert nt_xent_loss(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-5)


def test_gathered_negatives_average_to_global_loss():
    """Each 'rank' keeps its anchors and takes candidates from the whole batch; the mean over ranks
    of the losses (and their gradients) equals the single-process loss of the global batch."""
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    full = nt_xent_loss(a, b, 0.5)
    world, n = 2, 4
    losses = []
    for rank in range(world):
        sl = slice(rank * n, (rank + 1) * n)
        # Stands in for gather_with_grad: returns the (normalised) rows of every rank in rank order.
        gathered = iter([F.normalize(a, dim=1), F.normalize(b, dim=1)])
        losses.append(nt_xent_loss(a[sl], b[sl], 0.5, gather=lambda x: next(gathered), rank=rank))
    assert torch.allclose(torch.stack(losses).mean(), full, atol=1e-6)


def test_shape_errors():
    with pytest.raises(ValueError):
        nt_xent_loss(torch.randn(3, 4), torch.randn(4, 4))
