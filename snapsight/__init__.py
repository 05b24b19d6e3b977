"""snapsight: self-supervised pretraining, label-efficient probes and CLIP zero-shot image classification.

Public API (what the demo and users import)::

    from snapsight import load_encoder, create_backbone, open_image
    from snapsight import ZeroShotClassifier, parse_labels      # zero-shot (imports open_clip on first use)
    from snapsight import load_classifier, is_classifier_dir    # classifiers saved by `snapsight probe`
    from snapsight import parse_model_spec, detect               # what a model name or a folder is
    from snapsight import load_export                            # an ONNX export folder, run without torch
"""
from __future__ import annotations

__version__ = "0.1.0"

from .artifacts import detect, parse_model_spec
from .errors import ConfigError, ImageError, SnapsightError

# Everything that needs torch loads on first use, so `import snapsight` (and the on-device path below it) stays
# free of torch, open_clip and transformers.
_LAZY = {
    "create_backbone": "snapsight.backbones",
    "list_backbones": "snapsight.backbones",
    "load_encoder": "snapsight.backbones",
    "register_backbone": "snapsight.backbones",
    "open_image": "snapsight.data.images",
    "Preprocessing": "snapsight.preprocessing",
    "ZeroShotClassifier": "snapsight.zeroshot",
    "parse_labels": "snapsight.zeroshot",
    "load_classifier": "snapsight.probe",
    "is_classifier_dir": "snapsight.artifacts.classifier",
    "OnnxZeroShotClassifier": "snapsight.ondevice",
    "OnnxProbeClassifier": "snapsight.ondevice",
    "load_export": "snapsight.ondevice",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'snapsight' has no attribute {name!r}")


__all__ = [
    "OnnxProbeClassifier",
    "OnnxZeroShotClassifier",
    "ZeroShotClassifier",
    "is_classifier_dir",
    "load_classifier",
    "load_export",
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
