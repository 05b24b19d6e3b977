"""snapsight: self-supervised pretraining, label-efficient probes and CLIP zero-shot image classification.

Public API (what the demo and users import)::

    from snapsight import load_encoder, create_backbone, open_image
    from snapsight import ZeroShotClassifier, parse_labels      # zero-shot (imports open_clip on first use)
    from snapsight import load_classifier, is_classifier_dir    # classifiers saved by `snapsight probe`
    from snapsight import parse_model_spec, detect               # what a model name or a folder is
"""
from __future__ import annotations

__version__ = "0.1.0"

from .artifacts import detect, parse_model_spec
from .backbones import create_backbone, list_backbones, load_encoder, register_backbone
from .data.images import open_image
from .errors import ConfigError, ImageError, SnapsightError
from .preprocessing import Preprocessing

_LAZY = {
    "ZeroShotClassifier": "snapsight.zeroshot",
    "parse_labels": "snapsight.zeroshot",
    "load_classifier": "snapsight.probe",
    "is_classifier_dir": "snapsight.artifacts.classifier",
}


def __getattr__(name: str):
    # Heavy parts (open_clip, transformers) load only when asked for, so `import snapsight` stays fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'snapsight' has no attribute {name!r}")


__all__ = [
    "ZeroShotClassifier",
    "is_classifier_dir",
    "load_classifier",
    "parse_labels",
    "ConfigError",
    "ImageError",
    "Preprocessing",
    "SnapsightError",
    "__version__",
    "create_backbone",
    "detect",
    "list_backbones",
    "load_encoder",
    "open_image",
    "parse_model_spec",
    "register_backbone",
]
