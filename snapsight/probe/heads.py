"""Classifier heads on frozen features: a standardised linear probe fitted with L-BFGS, and weighted kNN."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import require
from ..train.knn import knn_predict

log = logging.getLogger(__name__)


class LinearProbe(nn.Module):
    """Standardise features with training statistics, then one linear layer: ``(B, D) -> (B, C)`` logits."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.linear = nn.Linear(in_features, num_classes)

    def set_standardisation(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).softmax(-1)


class KnnHead(nn.Module):
    """Weighted cosine kNN over a memory bank of training features; :meth:`probs` gives normalised votes."""

    def __init__(self, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int, k: int, temperature: float):
        super().__init__()
        self.register_buffer("bank", F.normalize(bank.float(), dim=1))
        self.register_buffer("bank_labels", bank_labels.long())
        self.num_classes, self.k, self.temperature = int(num_classes), int(k), float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probs(x).clamp_min(1e-12).log()

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        scores = knn_predict(self.bank, self.bank_labels, x, self.num_classes, self.k, self.temperature)
        return scores / scores.sum(1, keepdim=True).clamp_min(1e-12)


def fit_logistic_regression(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int = 200,
    init: nn.Linear | None = None,
) -> nn.Linear:
    """Multinomial logistic regression on ``x`` ``(n, d)``: full-batch L-BFGS on mean cross-entropy
    + ``weight_decay / 2 * ||W||^2`` (bias not penalised)."""
    layer = nn.Linear(x.shape[1], num_classes).to(x.device)
    with torch.no_grad():
        if init is not None:
            layer.load_state_dict(init.state_dict())
        else:
            layer.weight.zero_()
            layer.bias.zero_()
    opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(layer(x), y) + 0.5 * weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return layer


def top1_accuracy(logits_or_probs: torch.Tensor, y: torch.Tensor) -> float:
    return (logits_or_probs.argmax(1) == y).float().mean().item() if len(y) else float("nan")


def train_linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, num_classes: int,
    weight_decays: Sequence[float] = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1), max_iter: int = 200,
) -> tuple[LinearProbe, dict[str, Any]]:
    """Fit one head per weight decay (largest first, warm-started) and keep the best on val top-1
    (ties go to the stronger regularisation). Returns ``(head, info)``."""
    head = LinearProbe(train_x.shape[1], num_classes).to(train_x.device)
    head.set_standardisation(train_x)
    xs = (train_x - head.mean) / head.std
    xv = (val_x - head.mean) / head.std
    best, scores, prev = None, {}, None
    for wd in sorted(set(float(w) for w in weight_decays), reverse=True):
        layer = fit_logistic_regression(xs, train_y, num_classes, wd, max_iter, init=prev)
        prev = layer
        with torch.no_grad():
            acc = top1_accuracy(layer(xv), val_y)
            train_acc = top1_accuracy(layer(xs), train_y)
        scores[wd] = acc
        log.debug("linear probe wd=%g: train top-1 %.4f, val top-1 %.4f", wd, train_acc, acc)
        if best is None or acc > best[0] + 1e-9:
            best = (acc, wd, copy.deepcopy(layer.state_dict()), train_acc)
    head.linear.load_state_dict(best[2])
    info = {"weight_decay": best[1], "val_top1": best[0], "train_top1": best[3],
            "val_top1_by_weight_decay": {str(k): v for k, v in scores.items()}}
    return head, info


def train_knn_head(
    train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, num_classes: int,
    ks: Sequence[int] = (20, 200), temperature: float = 0.07,
) -> tuple[KnnHead, dict[str, Any]]:
    """Pick ``k`` on val top-1 among ``ks``; the memory bank is the training features."""
    scores = {}
    for k in ks:
        s = knn_predict(train_x, train_y, val_x, num_classes, k=k, temperature=temperature)
        scores[int(k)] = top1_accuracy(s, val_y)
    best_k = max(scores, key=lambda k: (scores[k], -k))
    head = KnnHead(train_x, train_y, num_classes, best_k, temperature)
    return head, {"k": best_k, "temperature": temperature, "val_top1": scores[best_k],
                  "val_top1_by_k": {str(k): v for k, v in scores.items()}}


@dataclass
class LinearConfig:
    weight_decays: list[float] = field(default_factory=lambda: [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])  # L2 grid (val)
    max_iter: int = 200  # L-BFGS iterations per grid point

    def __post_init__(self) -> None:
        require(bool(self.weight_decays) and min(self.weight_decays) >= 0, "linear.weight_decays",
                "list at least one value, none negative", self.weight_decays)
        require(self.max_iter >= 1, "linear.max_iter", "be at least 1", self.max_iter)


@dataclass
class KnnConfig:
    ks: list[int] = field(default_factory=lambda: [20, 200])  # neighbour counts tried; the best on val is kept
    temperature: float = 0.07  # vote weight exp(cos / temperature)

    def __post_init__(self) -> None:
        # k=0 would train a classifier that always answers class 0
        require(bool(self.ks) and min(self.ks) >= 1, "knn.ks", "list neighbour counts of at least 1", self.ks)
        require(self.temperature > 0, "knn.temperature", "be above 0", self.temperature)
