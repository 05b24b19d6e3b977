"""Device selection and small runtime helpers shared by training and inference.

torch is imported inside the functions that need it, so the torch-free on-device path can use the cache folder
and the CPU description.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .artifacts.files import cache_root  # noqa: F401  (re-exported: the cache folder lives below every floor)
from .errors import SnapsightError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None`` into CUDA when available, else CPU; validate explicit requests."""
    import torch

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


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def default_num_workers() -> int:
    """Data-loader workers: leave one core for the main process, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, bool]:
    """The CPU instruction sets that decide bf16 speed, from the ``flags`` line of ``cpuinfo`` (all False where
    unreadable, e.g. off Linux).

    ``{"avx2", "avx512f", "avx512_bf16", "amx_bf16"} -> bool``, for benchmark tables: an AVX2-only CPU runs
    bf16 autocast emulated (about 9x slower than fp32), AVX512-BF16/AMX run it natively.
    """
    flags: set[str] = set()
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {name: name in flags for name in CPU_FLAGS}


def describe_cpu() -> str:
    """One line naming the machine's cores and bf16-relevant features, printed beside every benchmark table
    (figures from an AVX2-only CPU and from one with native bf16 are not comparable)."""
    feats = cpu_features()
    names = {"avx2": "AVX2", "avx512f": "AVX-512F", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}
    have = [names[k] for k in CPU_FLAGS if feats[k]] or ["none of AVX2/AVX-512/AMX"]
    bf16 = "native" if cpu_has_native_bf16() else "emulated"
    import torch

    return f"{os.cpu_count()} cores, {', '.join(have)}; bf16 {bf16}; torch {torch.__version__}"


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 kernels on this CPU (AVX512 or AMX); False on AVX2-only CPUs, which emulate it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # builds without oneDNN
        return False


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (CUDA: Ampere or newer; CPU: :func:`cpu_has_native_bf16`)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The ``precision: auto`` choice for training on ``device``: bf16 where it is native, else fp16 on CUDA and
    None (fp32) on a CPU, where emulated bf16 is several times slower than fp32."""
    import torch

    if bf16_supported(device):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None
