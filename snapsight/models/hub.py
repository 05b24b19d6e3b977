"""What every CLIP loader shares: the :class:`LoadedClip` bundle, offline-first access to the Hugging Face Hub,
and cheap fingerprints of weights files (label-index cache keys).

Offline: with ``HF_HUB_OFFLINE=1``, or when the Hub cannot be reached (checked once with a 2-second
connection attempt instead of the Hub client's ~20 s of retries), models in the local Hugging Face
cache load; a model that is not cached raises :class:`SnapsightError` saying what to download or pass.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import torch
import torch.nn as nn
from PIL import Image

from ..errors import SnapsightError

log = logging.getLogger(__name__)


@dataclass
class LoadedClip:
    """A CLIP model with the transforms that belong to its weights.

    ``model``: open_clip-style module; ``preprocess``: PIL -> ``(3, H, W)`` tensor;
    ``tokenizer``: ``list[str]`` -> ``(n, context_length)`` int64; ``info``: name, pretrained, source,
    kind (``open_clip`` | ``hf``), image size, context length, weights fingerprint.
    """

    model: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    preprocess_batch_fn: Callable[[list[Image.Image]], torch.Tensor] | None = None

    def preprocess_batch(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> ``(batch, 3, H, W)`` float tensor."""
        if self.preprocess_batch_fn is not None:
            return self.preprocess_batch_fn(images)
        return torch.stack([self.preprocess(im) for im in images])


def _hub_host() -> str:
    try:
        from huggingface_hub import constants

        return urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    except Exception:  # noqa: BLE001
        return "huggingface.co"


@functools.lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    try:
        with socket.create_connection((_hub_host(), 443), timeout=2.0):
            return True
    except OSError:
        return False


def hub_offline() -> bool:
    """True when the Hub must not be contacted: ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set, or no route."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    return not _hub_reachable()


@contextlib.contextmanager
def offline_hub(enabled: bool) -> Iterator[None]:
    """Make huggingface_hub answer from its cache only (its own ``HF_HUB_OFFLINE`` switch, read per call)."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def not_available(what: str, offline: bool, hint: str, err: Exception | None = None) -> SnapsightError:
    where = "is not in the local cache and the Hugging Face Hub cannot be reached" if offline else "could not be downloaded"
    detail = f" ({type(err).__name__})" if err is not None and not offline else ""
    return SnapsightError(f"{what} {where}{detail}; {hint}")


def file_fingerprint(path: str | Path) -> str:
    """Cheap identity of a weights file: size, mtime and a hash of its first and last MiB.

    Hashing a 600 MB checkpoint on every start would cost a second; this changes whenever the file
    is rewritten, which is what the label-index cache needs to know.
    """
    path = Path(path)
    st = path.stat()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > (2 << 20):
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()


def fingerprint(paths: list[str | Path], extra: Any = None) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for p in sorted(str(p) for p in paths):
        h.update(file_fingerprint(p).encode())
    return h.hexdigest()
