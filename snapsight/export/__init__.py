"""Export a zero-shot model or a probe classifier to ONNX (fp32 or int8) for :mod:`snapsight.ondevice`.

Public API::

    from snapsight.export import export_zeroshot, export_classifier

    export_zeroshot("ViT-B-32", "runs/export/vit-b-32", pretrained="laion2b_s34b_b79k", quantize="int8")
    export_classifier("runs/probe/clf", "runs/export/clf")
"""
from .run import export_classifier, export_zeroshot, zeroshot_parity

__all__ = ["export_classifier", "export_zeroshot", "zeroshot_parity"]
