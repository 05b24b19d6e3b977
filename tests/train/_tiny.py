"""Tiny SimCLR pieces shared by the SSL tests (a few thousand parameters, 8-16 px images)."""
import torch

from snapsight.data.sources import TensorSource
from snapsight.ssl.augment import AugmentConfig
from snapsight.ssl.simclr import ModelConfig, SimCLRTask


def tiny_model_config(size: int = 8) -> ModelConfig:
    return ModelConfig(backbone="small_cnn", backbone_kwargs={"widths": [4, 8]}, image_size=size,
                       proj_hidden_dim=16, proj_out_dim=8, mean=[0.5] * 3, std=[0.25] * 3)


def tiny_task(size: int = 8, seed: int = 0) -> SimCLRTask:
    torch.manual_seed(seed)
    return SimCLRTask.from_config(tiny_model_config(size), AugmentConfig.recommended(size))


def tiny_source(n: int = 32, size: int = 10, seed: int = 0) -> TensorSource:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 2
    images[labels == 1, 0] //= 3  # class 1 is less red: something for kNN to find
    return TensorSource(images, labels, ["a", "b"], name="tiny")
