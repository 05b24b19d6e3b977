"""Weighted cosine k-nearest-neighbour classification (Wu et al. 2018, "Unsupervised Feature Learning
via Non-Parametric Instance Discrimination", eq. 7) — the standard online/offline SSL evaluation.

Each of the ``k`` nearest training features (cosine similarity ``s``) votes for its label with weight
``exp(s / temperature)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class scores ``(num_queries, num_classes)`` for ``query_features`` ``(num_queries, dim)`` given
    ``train_features`` ``(num_train, dim)`` and integer ``train_labels`` ``(num_train,)``.
    Features need not be normalised; they are L2-normalised here."""
    train = F.normalize(train_features.float(), dim=1)
    labels = train_labels.long().to(train.device)
    k = min(k, train.shape[0])
    out = []
    for start in range(0, query_features.shape[0], chunk_size):
        q = F.normalize(query_features[start:start + chunk_size].float().to(train.device), dim=1)
        sim = q @ train.T  # (q, n)
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        one_hot = F.one_hot(labels[top_idx], num_classes).float()  # (q, k, C)
        out.append((one_hot * weights.unsqueeze(-1)).sum(dim=1))
    return torch.cat(out) if out else torch.zeros(0, num_classes)


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor,
                 query_labels: torch.Tensor, num_classes: int, k: int = 200, temperature: float = 0.1) -> float:
    """Top-1 accuracy of :func:`knn_predict` on ``query_labels`` ``(num_queries,)``."""
    scores = knn_predict(train_features, train_labels, query_features, num_classes, k, temperature)
    return (scores.argmax(1).cpu() == query_labels.long().cpu()).float().mean().item()
