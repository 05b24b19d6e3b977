"""The on-device label-embedding cache: ``--cache-dir`` keeps its meaning without torch or faiss.

Entries live under ``label-index-onnx/<key>/`` in the cache folder (``embeddings.npy``, ``labels.json``,
``meta.json``), keyed by the exported text tower's and tokenizer's sha256, the precision, the labels and the
templates, and are written to a temporary folder and renamed into place. The torch path's cache
(:mod:`snapsight.zeroshot.index`) stores a faiss index beside the embeddings and imports torch; on the device the
label "index" is the embedding matrix itself, because the softmax needs every label's score, which is one matrix
product (and faiss stays imported in one module only).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts.files import atomic_folder
from ..runtime import cache_root

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"v": CACHE_FORMAT_VERSION, **parts}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def load_or_build_label_embeddings(parts: dict[str, Any], label_names: list[str],
                                   build: Callable[[], tuple[np.ndarray, list[str]]],
                                   cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, list[str]]:
    """``(embeddings (num_labels, dim), notes)`` from the cache, or ``build()`` and stored.

    ``cache_dir``: None = the default folder, ``""`` = no disk cache.
    """
    use_cache = cache_dir != ""
    root = Path(cache_dir) if cache_dir else cache_root() / "label-index-onnx"
    entry = root / cache_key(parts)
    if use_cache and (entry / "meta.json").is_file():
        try:
            meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
            names = json.loads((entry / "labels.json").read_text(encoding="utf-8"))
            emb = np.load(entry / "embeddings.npy")
            if names == label_names and emb.shape[0] == len(label_names):
                return emb, list(meta.get("notes", []))
        except (OSError, ValueError) as e:  # a damaged entry is rebuilt, not fatal
            log.warning("ignoring damaged label cache entry %s (%s)", entry, e)
    emb, notes = build()
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if use_cache:
        try:
            with atomic_folder(entry) as tmp:
                buf = io.BytesIO()
                np.save(buf, emb)
                (tmp / "embeddings.npy").write_bytes(buf.getvalue())
                (tmp / "labels.json").write_text(json.dumps(label_names, ensure_ascii=False), encoding="utf-8")
                meta = {"num_labels": len(label_names), "dim": int(emb.shape[1]), "notes": notes,
                        "key_parts": {k: v for k, v in parts.items() if k != "labels"}}
                (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, default=str), encoding="utf-8")
        except OSError as e:
            log.warning("could not write the label cache under %s (%s); continuing without it", root, e)
    return emb, notes
