import torch
from torch import nn

from snapsight.ssl.heads import ProjectionHead, SimCLRProjectionHead


def test_projection_head_blocks():
    head = ProjectionHead([(8, 16, nn.BatchNorm1d(16), nn.ReLU()), (16, 4, None, None)])
    out = head(torch.randn(5, 8))
    assert out.shape == (5, 4) and head.in_dim == 8 and head.out_dim == 4
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert linears[0].bias is None and linears[1].bias is not None  # bias dropped before BN


def test_simclr_head_depth():
    for layers in (1, 2, 3):
        head = SimCLRProjectionHead(10, 12, 6, num_layers=layers)
        assert sum(isinstance(m, nn.Linear) for m in head.modules()) == layers
        assert head(torch.randn(3, 10)).shape == (3, 6)
