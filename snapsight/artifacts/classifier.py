"""The classifier folder that ``snapsight probe`` writes::

    OUT/
      classifier.json        kind, mode, class names, preprocessing, encoder architecture, head shape, metrics
      encoder.safetensors    encoder weights (fine-tuned or frozen copy)
      head.safetensors       linear head (with feature standardisation) or the kNN memory bank
      report.json, confusion_matrix.png, config.yaml
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import SnapsightError
from .files import read_json

CLASSIFIER_KIND = "snapsight-classifier"
CLASSIFIER_JSON = "classifier.json"
ENCODER_WEIGHTS = "encoder.safetensors"
HEAD_WEIGHTS = "head.safetensors"


def is_classifier_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory written by :func:`save_classifier`."""
    p = Path(path) / CLASSIFIER_JSON
    if not p.is_file():
        return False
    try:
        return read_json(p).get("kind") == CLASSIFIER_KIND
    except SnapsightError:
        return False
