"""snapsight: self-supervised pretraining, label-efficient probes and CLIP zero-shot image classification.

Public API (what the demo and users import)::

    from snapsight import load_encoder, create_backbone, open_image
"""
from __future__ import annotations

__version__ = "0.1.0"

from .backbones import create_backbone, list_backbones, load_encoder, register_backbone
from .data.images import open_image
from .errors import ConfigError, ImageError, SnapsightError
from .preprocessing import Preprocessing

__all__ = [
    "ConfigError",
    "ImageError",
    "Preprocessing",
    "SnapsightError",
    "__version__",
    "create_backbone",
    "list_backbones",
    "load_encoder",
    "open_image",
    "register_backbone",
]
