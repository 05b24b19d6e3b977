"""Batches as the training loop sees them: nested tensors moved to the device, and counted."""
from __future__ import annotations

from typing import Any

import torch


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not isinstance(obj, str):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def batch_len(obj: Any) -> int:
    """Number of samples in a batch: the first dimension of its first tensor (0 when there is none)."""
    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0]) if obj.dim() else 1
    if isinstance(obj, dict):
        for v in obj.values():
            n = batch_len(v)
            if n:
                return n
    if isinstance(obj, (list, tuple)) and obj:
        return batch_len(obj[0]) if isinstance(obj[0], (torch.Tensor, dict)) else len(obj)
    return 0
