"""Classification without torch: an ONNX export run by onnxruntime, numpy/PIL preprocessing and `tokenizers`.

Public API::

    from snapsight.ondevice import load_export

    clf = load_export("runs/export/vit-b-32")          # OnnxZeroShotClassifier or OnnxProbeClassifier
    [r] = clf.classify(["cat.jpg"], "cat, sunset, pizza")

This floor imports only torch-free parts of snapsight (labels, errors, artifacts, the image opener); the
settings, result type and probability maths of zero-shot classification live here (:mod:`.scoring`) and the
torch path (:mod:`snapsight.zeroshot`) uses them too. The folder is written by :mod:`snapsight.export`.
"""
from .classifier import OnnxProbeClassifier, OnnxZeroShotClassifier, load_export
from .export_dir import ExportDir
from .scoring import ZeroShotConfig, ZeroShotResult, multi_label_explanation

__all__ = ["ExportDir", "OnnxProbeClassifier", "OnnxZeroShotClassifier", "ZeroShotConfig", "ZeroShotResult", "multi_label_explanation",
           "load_export"]
