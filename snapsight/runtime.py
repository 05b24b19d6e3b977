"""Device selection and small runtime helpers shared by training and inference."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .errors import SnapsightError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None`` into CUDA when available, else CPU; validate explicit requests."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as e:
        raise SnapsightError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SnapsightError(f"device '{device}' was requested but CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SnapsightError(f"device '{device}' does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def cache_root() -> Path:
    """snapsight's cache folder: ``$SNAPSIGHT_CACHE``, else ``$XDG_CACHE_HOME/snapsight``, else ``~/.cache/snapsight``.

    The label-index, feature and default-model caches live below it (one place to move or clear).
    """
    env = os.environ.get("SNAPSIGHT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snapsight"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def default_num_workers() -> int:
    """Data-loader workers: leave one core for the main process, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype for ``device``: fp16 on CUDA (bf16 where supported), None on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None
