"""A small registry of image encoders ("backbones").

Every backbone maps ``(batch, 3, H, W)`` images to ``(batch, num_features)`` features and exposes
``num_features``. Add one with ``@register_backbone("name")``; any timm model is also available as
``timm:<model_name>``. Pick by name anywhere a config says ``backbone:``.

==================  ===========================================================  ===============
name                what                                                         suited to
==================  ===========================================================  ===============
small_cnn           4-stage ConvNet (3x3 convs, BN, ReLU), 256-d; trains on CPU  <= 64 px
cifar_resnet18/50   ResNet with a 3x3 stride-1 stem and no max-pool (SimCLR       <= 64 px
                    paper's CIFAR variant; torchvision blocks)
resnet18/50         torchvision ResNets (standard 7x7 stem)                      >= 96 px
vit_tiny/vit_small  timm ViT-Ti/16 and ViT-S/16 at the configured image size     >= 96 px
timm:<name>         any timm model, classifier removed                           as the model
==================  ===========================================================  ===============
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .artifacts.encoder import CONFIG_NAME, WEIGHTS_NAME, find_encoder_dir
from .artifacts.files import load_weights, read_json
from .artifacts.spec import RANDOM_PREFIX, parse_model_spec
from .errors import SnapsightError
from .preprocessing import Preprocessing

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    return sorted(_REGISTRY) + ["timm:<model_name>"]


def check_backbone_name(name: str) -> None:
    """Raise one :class:`SnapsightError` sentence when ``name`` is neither registered nor a known ``timm:`` model."""
    if name.startswith("timm:"):
        import timm

        if name[len("timm:"):] not in timm.list_models():
            raise SnapsightError(f"unknown timm model '{name[len('timm:'):]}' (see timm.list_models())")
    elif name not in _REGISTRY:
        raise SnapsightError(f"unknown backbone '{name}'; known: {', '.join(list_backbones())}")


def create_backbone(name: str, image_size: int = 224, **kwargs: Any) -> nn.Module:
    """Build backbone ``name`` (randomly initialised). ``image_size`` matters only for ViTs."""
    check_backbone_name(name)
    if name.startswith("timm:"):
        return _timm_backbone(name[len("timm:"):], image_size=image_size, **kwargs)
    return _REGISTRY[name](image_size=image_size, **kwargs)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Four stages of two 3x3 conv-BN-ReLU layers; stages 2-4 halve the resolution. ``(B,3,H,W) -> (B,D)``.

    The representation is average-pooled over a ``pool`` x ``pool`` grid of the last ``stages`` stages' maps,
    concatenated. The defaults (``pool=1, stages=1``) are global average pooling of the last stage (``C``
    features). ``pool=2`` keeps the four quadrants apart and ``stages=2`` adds the stage before the last, the
    multi-level readout DINO uses for its linear evaluation (concatenated last blocks): a narrow network gets a
    richer representation at no extra convolution cost. For widths 16-32-64-128, ``pool=2, stages=2`` gives
    ``4 * (64 + 128) = 768`` features.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), pool: int = 1, stages: int = 1):
        super().__init__()
        if pool < 1 or not 1 <= stages <= len(widths):
            raise ValueError(f"small_cnn needs pool >= 1 and 1 <= stages <= {len(widths)}, got pool={pool}, "
                             f"stages={stages}")
        layers: list[nn.Module] = []
        cin = 3
        for i, w in enumerate(widths):
            layers += [_conv_bn_relu(cin, w, stride=1 if i == 0 else 2), _conv_bn_relu(w, w)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.stages = stages
        self.num_features = sum(widths[-stages:]) * pool * pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stages == 1:
            return self.pool(self.features(x)).flatten(1)
        taps = {len(self.features) - 1 - 2 * k for k in range(self.stages)}  # last layer of each read stage
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                out.append(self.pool(x).flatten(1))
        return torch.cat(out, dim=1)


@register_backbone("small_cnn")
def small_cnn(image_size: int = 32, widths: tuple[int, ...] | list[int] = (32, 64, 128, 256), pool: int = 1,
              stages: int = 1) -> nn.Module:
    return SmallCNN(tuple(widths), pool=pool, stages=stages)


def _torchvision_resnet(arch: str, cifar_stem: bool) -> nn.Module:
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    if cifar_stem:
        # SimCLR (Chen et al. 2020, appendix B.9): 3x3 stride-1 first conv, no max-pool, for 32 px images.
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    model.num_features = model.fc.in_features
    model.fc = nn.Identity()
    return model


@register_backbone("cifar_resnet18")
def cifar_resnet18(image_size: int = 32) -> nn.Module:
    return _torchvision_resnet("resnet18", cifar_stem=True)


@register_backbone("cifar_resnet50")
def cifar_resnet50(image_size: int = 32) -> nn.Module:
    return _torchvision_resnet("resnet50", cifar_stem=True)


@register_backbone("resnet18")
def resnet18(image_size: int = 224) -> nn.Module:
    return _torchvision_resnet("resnet18", cifar_stem=False)


@register_backbone("resnet50")
def resnet50(image_size: int = 224) -> nn.Module:
    return _torchvision_resnet("resnet50", cifar_stem=False)


def _timm_backbone(model_name: str, image_size: int = 224, **kwargs: Any) -> nn.Module:
    import timm

    if "vit" in model_name or "deit" in model_name:
        kwargs.setdefault("img_size", image_size)
    model = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
    return model  # timm models already expose num_features


@register_backbone("vit_tiny")
def vit_tiny(image_size: int = 224) -> nn.Module:
    return _timm_backbone("vit_tiny_patch16_224", image_size=image_size)


@register_backbone("vit_small")
def vit_small(image_size: int = 224) -> nn.Module:
    return _timm_backbone("vit_small_patch16_224", image_size=image_size)


def load_encoder(path: str | Path, device: str | torch.device = "cpu"):
    """Load the encoder exported by ``snapsight pretrain`` (run directory or ``encoder/`` folder).

    Returns ``(backbone, preprocessing, metadata)``; the backbone is in eval mode. Also accepts
    ``random:<backbone>[@<image_size>]`` for a randomly initialised encoder (a baseline).
    """

    if str(path).startswith(RANDOM_PREFIX):
        spec = parse_model_spec(str(path), role="encoder")
        model = create_backbone(spec.name, image_size=spec.image_size)
        prep = Preprocessing(image_size=spec.image_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        meta = {"backbone": spec.name, "backbone_kwargs": {}, "num_features": model.num_features,
                "preprocessing": prep.to_dict(), "random_init": True}
        return model.to(device).eval(), prep, meta
    enc_dir = find_encoder_dir(path)
    meta = read_json(enc_dir / CONFIG_NAME)
    prep = Preprocessing.from_dict(meta.get("preprocessing", {}))
    model = create_backbone(meta["backbone"], image_size=prep.image_size, **meta.get("backbone_kwargs", {}))
    state = load_weights(enc_dir / WEIGHTS_NAME)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SnapsightError(
            f"encoder weights in {enc_dir} do not fit backbone '{meta['backbone']}' "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    return model.to(device).eval(), prep, meta
