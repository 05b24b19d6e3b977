"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR (Chen et al. 2020, eq. 1).

For a batch of ``n`` images seen as two views, each of the ``2n`` embeddings has one positive (the
other view of the same image) and ``2n - 2`` negatives (every view of every other image):

    l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )

with ``sim`` the cosine similarity; the loss is the mean of ``l`` over all ``2n`` anchors. Under DDP the
candidates are gathered from every process (:func:`snapsight.train.distributed.gather_with_grad`), so the
negatives come from the whole global batch while each process keeps its own anchors.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def nt_xent_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    temperature: float = 0.5,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    rank: int = 0,
) -> torch.Tensor:
    """NT-Xent loss of two views.

    Args:
        z_a: ``(n, dim)`` embeddings of the first views (need not be normalised).
        z_b: ``(n, dim)`` embeddings of the second views; row ``i`` is the positive of ``z_a[i]``.
        temperature: softmax temperature ``t``.
        gather: optional ``(n, dim) -> (world_size * n, dim)`` all-gather keeping gradients (e.g.
            ``gather_with_grad``); candidates then come from every process.
        rank: this process's index in the gathered tensor (its rows are ``rank * n ... rank * n + n - 1``).

    Returns:
        Scalar mean loss over this process's ``2n`` anchors. Averaged over processes (as DDP does with
        gradients) it equals the single-process loss of the whole global batch.
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"z_a and z_b must both be (n, dim); got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    n = z_a.shape[0]
    z_a = F.normalize(z_a.float(), dim=1)
    z_b = F.normalize(z_b.float(), dim=1)
    if gather is not None:
        all_a, all_b = gather(z_a), gather(z_b)  # (N, dim) each, N = world_size * n
    else:
        all_a, all_b = z_a, z_b
        rank = 0
    big_n = all_a.shape[0]
    candidates = torch.cat([all_a, all_b], dim=0)  # (2N, dim)
    anchors = torch.cat([z_a, z_b], dim=0)  # (2n, dim)
    logits = anchors @ candidates.T / temperature  # (2n, 2N)

    local = torch.arange(n, device=z_a.device) + rank * n  # global row index of this process's images
    self_idx = torch.cat([local, local + big_n])  # each anchor's own column
    pos_idx = torch.cat([local + big_n, local])  # the other view of the same image
    # An anchor is never its own negative: mask the self-similarity before the softmax.
    logits = logits.masked_fill(
        F.one_hot(self_idx, num_classes=2 * big_n).bool(), torch.finfo(logits.dtype).min
    )
    return F.cross_entropy(logits, pos_idx)
