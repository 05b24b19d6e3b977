"""SimCLR (Chen et al. 2020) as a task for the shared training loop: view transform -> backbone -> projection
head -> NT-Xent. Each part is swappable in one line; :class:`PretrainConfig` is the recipe behind
``snapsight pretrain`` and the ``simclr-*`` recipes (see :mod:`snapsight.ssl.pretrain`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..artifacts.encoder import ENCODER_SUBDIR, save_encoder
from ..backbones import create_backbone
from ..config import require
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from ..train.config import TrainConfig
from ..train.distributed import gather_with_grad, get_rank, is_distributed
from .augment import AugmentConfig, SimCLRViewTransform
from .heads import SimCLRProjectionHead
from .loss import nt_xent_loss

FASHION_MNIST_MEAN = (0.2860, 0.2860, 0.2860)
FASHION_MNIST_STD = (0.3530, 0.3530, 0.3530)


@dataclass
class DataConfig:
    source: str = ""  # image folder, HF dataset (save_to_disk) folder, Fashion-MNIST folder, or "fashion-mnist"
    kind: Literal["auto", "folder", "hf", "fashion-mnist"] = "auto"  # what source holds (auto: detected)
    split: str = "train"  # split of a HF DatasetDict or of Fashion-MNIST
    streaming: Literal["auto", "on", "off"] = "auto"  # auto: stream when decoded images exceed cache_gb
    cache_gb: float = 4.0  # largest decoded dataset kept in memory
    load_size: int = 0  # side images are stored at before augmentation (0: model.image_size)
    num_workers: int = -1  # image-decoding processes (-1: one per spare CPU core)
    image_column: str = ""  # HF datasets: image column ("": the first Image feature)
    label_column: str = ""  # HF datasets: label column ("": the first ClassLabel feature); monitoring only
    max_images: int = 0  # use at most this many images (0: all)
    knn: bool | Literal["auto", "on", "off"] = "auto"  # online kNN monitor: auto/on (when labels exist) | off
    knn_bank_size: int = 5000  # labeled images whose features vote in kNN
    knn_query_size: int = 1000  # labeled images classified by kNN (Fashion-MNIST: from the test split)

    def __post_init__(self) -> None:
        require(self.cache_gb >= 0, "data.cache_gb", "be at least 0", self.cache_gb)
        require(self.load_size >= 0, "data.load_size", "be at least 0 (0: model.image_size)", self.load_size)
        require(self.num_workers >= -1, "data.num_workers", "be at least -1 (-1: one per spare core)",
                self.num_workers)
        require(self.max_images >= 0, "data.max_images", "be at least 0 (0: all)", self.max_images)
        for key in ("knn_bank_size", "knn_query_size"):
            value = getattr(self, key)
            require(value >= 1, f"data.{key}", "be at least 1 (data.knn=off turns the monitor off)", value)

    @property
    def knn_enabled(self) -> bool:
        """Whether the online kNN monitor runs where labels exist (``knn`` is auto, on or true)."""
        return self.knn not in (False, "off")


@dataclass
class ModelConfig:
    backbone: str = "small_cnn"  # see snapsight.backbones (small_cnn, cifar_resnet18, resnet50, vit_small, timm:...)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # extra arguments for the backbone factory
    image_size: int = 32  # side of the square views the encoder sees
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # normalisation mean (RGB, 0-1)
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))  # normalisation std (RGB, 0-1)
    proj_hidden_dim: int = 512  # projection head hidden width
    proj_out_dim: int = 128  # projection head output width (SimCLR: 128)
    proj_layers: int = 2  # projection head depth (SimCLR v1: 2)
    temperature: float = 0.5  # NT-Xent temperature

    def __post_init__(self) -> None:
        require(self.image_size >= 1, "model.image_size", "be at least 1", self.image_size)
        require(len(self.mean) == 3, "model.mean", "list 3 values (R, G, B)", self.mean)
        require(len(self.std) == 3 and all(v > 0 for v in self.std), "model.std", "list 3 positive values (R, G, B)",
                self.std)
        for key in ("proj_hidden_dim", "proj_out_dim", "proj_layers"):
            require(getattr(self, key) >= 1, f"model.{key}", "be at least 1", getattr(self, key))
        require(self.temperature > 0, "model.temperature", "be positive", self.temperature)


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/pretrain"  # run directory

    def __post_init__(self) -> None:
        require(bool(self.out), "out", "name a run directory", self.out)


class SimCLRTask(nn.Module):
    """Backbone + projection head + two-view transform + NT-Xent, as a :mod:`snapsight.train.loop` task.

    ``training_step({"images": uint8 (batch, C, H, W), ...}) -> {"loss"}``; ``export(run_dir)`` writes
    ``run_dir/encoder`` (backbone weights + preprocessing), which ``load_encoder(run_dir)`` reads.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, transform: SimCLRViewTransform,
                 preprocessing: Preprocessing, temperature: float = 0.5, backbone_name: str = "",
                 backbone_kwargs: dict[str, Any] | None = None, export_meta: dict[str, Any] | None = None):
        super().__init__()
        self.backbone, self.head, self.transform = backbone, head, transform
        self.preprocessing = preprocessing
        self.temperature = temperature
        self.backbone_name = backbone_name
        self.backbone_kwargs = backbone_kwargs or {}
        self.export_meta = export_meta or {}

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, augment_cfg: AugmentConfig,
                    export_meta: dict[str, Any] | None = None) -> "SimCLRTask":
        prep = Preprocessing(image_size=model_cfg.image_size, mean=tuple(model_cfg.mean), std=tuple(model_cfg.std))
        backbone = create_backbone(model_cfg.backbone, image_size=model_cfg.image_size, **model_cfg.backbone_kwargs)
        head = SimCLRProjectionHead(backbone.num_features, model_cfg.proj_hidden_dim, model_cfg.proj_out_dim,
                                    model_cfg.proj_layers)
        return cls(backbone, head, SimCLRViewTransform(augment_cfg, prep), prep, model_cfg.temperature,
                   model_cfg.backbone, model_cfg.backbone_kwargs, export_meta)

    @staticmethod
    def _images(batch: Any) -> torch.Tensor:
        return batch["images"] if isinstance(batch, dict) else batch

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
        images = self._images(batch)
        with torch.autocast(images.device.type, enabled=False):  # augment in fp32 whatever the loop's precision
            view_a, view_b = self.transform(images)
        # Both views in one pass: one BN statistic over 2n images, as in SimCLR's implementation.
        z = self.head(self.backbone(torch.cat([view_a, view_b])))
        z_a, z_b = z.chunk(2)
        gather = gather_with_grad if is_distributed() else None
        loss = nt_xent_loss(z_a, z_b, self.temperature, gather=gather, rank=get_rank())
        return {"loss": loss}

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(n, num_features)`` of un-augmented ``uint8`` images (resized, normalised)."""
        x = SimCLRViewTransform.to_float(images.to(self.transform.mean.device))
        if x.shape[-1] != self.preprocessing.image_size or x.shape[-2] != self.preprocessing.image_size:
            x = F.interpolate(x, size=(self.preprocessing.image_size,) * 2, mode="bilinear", antialias=True,
                              align_corners=False)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.transform.mean) / self.transform.std
        return self.backbone(x)

    def export(self, out_dir: str | Path) -> Path:
        return save_encoder(
            Path(out_dir) / ENCODER_SUBDIR, self.backbone_name, self.backbone.state_dict(),
            self.preprocessing.to_dict(), self.backbone_kwargs, getattr(self.backbone, "num_features", None),
            extra={"method": "simclr", **self.export_meta},
        )
