"""The ONNX export folder that ``snapsight export`` writes and the on-device path reads (no torch needed)::

    OUT/
      snapsight_export.json   kind, task (zeroshot | classifier), precision, opset, source model, preprocessing,
                              sha256 of every other file, measured parity with the torch model
      image.onnx              image tower (zero-shot) or encoder + head (classifier), dynamic batch axis
      text.onnx               text tower, dynamic batch axis (zero-shot only)
      tokenizer.json          the text tower's tokenizer for the `tokenizers` library, padding and truncation set
      labels/                 optional prebuilt label index: embeddings.npy + labels.json (+ the templates)
      reference_features.safetensors
                              the source model's "unfamiliar image" reference, when it has one; with layer
                              statistics, image.onnx has a second output (FAMILIARITY_OUTPUT) from the same pass

The manifest is written last, so its presence marks a complete folder.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import SnapsightError
from .files import read_json

EXPORT_KIND = "snapsight-onnx-export"
EXPORT_MANIFEST = "snapsight_export.json"
EXPORT_FORMAT_VERSION = 1
IMAGE_GRAPH = "image.onnx"
TEXT_GRAPH = "text.onnx"
TOKENIZER_FILE = "tokenizer.json"
LABELS_SUBDIR = "labels"
LABEL_EMBEDDINGS = "labels/embeddings.npy"
LABEL_NAMES = "labels/labels.json"
# Second output of the image graph when the model's familiarity reference compares layer statistics
FAMILIARITY_OUTPUT = "familiarity_features"


def is_export_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by ``snapsight export`` (a manifest of the export kind)."""
    p = Path(path).expanduser() / EXPORT_MANIFEST
    if not p.is_file():
        return False
    try:
        return read_json(p).get("kind") == EXPORT_KIND
    except (SnapsightError, AttributeError):
        return False


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
