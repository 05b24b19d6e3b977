"""Projection heads built from ``(in_dim, out_dim, norm, act)`` blocks (the lightly way).

SimCLR (Chen et al. 2020, sec. 2.1) puts a small MLP ``g`` between the encoder and the loss and throws it
away after pretraining: the representation *before* the head transfers better than the one after it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

Block = tuple[int, int, "nn.Module | None", "nn.Module | None"]


class ProjectionHead(nn.Module):
    """A stack of ``Linear(in, out) -> norm -> act`` blocks. ``(batch, in_dim) -> (batch, out_dim)``.

    Example::

        ProjectionHead([(512, 512, nn.BatchNorm1d(512), nn.ReLU()), (512, 128, None, None)])
    """

    def __init__(self, blocks: Sequence[Block]):
        super().__init__()
        layers: list[nn.Module] = []
        for in_dim, out_dim, norm, act in blocks:
            # The norm already centres the output, so the linear layer's bias would be redundant.
            layers.append(nn.Linear(in_dim, out_dim, bias=norm is None))
            if norm is not None:
                layers.append(norm)
            if act is not None:
                layers.append(act)
        self.layers = nn.Sequential(*layers)
        self.in_dim = blocks[0][0]
        self.out_dim = blocks[-1][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR's MLP head: ``num_layers - 1`` hidden ``Linear-BN-ReLU`` blocks and a plain output ``Linear``.

    ``num_layers=2`` is SimCLR v1 (Chen et al. 2020); v2 uses 3. ``(batch, in_dim) -> (batch, out_dim)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 2,
                 batch_norm: bool = True):
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        blocks: list[Block] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            blocks.append((dim, hidden_dim, nn.BatchNorm1d(hidden_dim) if batch_norm else None, nn.ReLU(inplace=True)))
            dim = hidden_dim
        blocks.append((dim, out_dim, None, None))
        super().__init__(blocks)
