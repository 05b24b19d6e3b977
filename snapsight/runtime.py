"""Device selection and small runtime helpers shared by training and inference."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import SnapsightError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None`` into CUDA when available, else CPU; validate explicit requests."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SnapsightError(f"device '{device}' was requested but CUDA is not available here; use --device cpu")
    return dev


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
