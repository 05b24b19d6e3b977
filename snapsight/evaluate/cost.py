"""What classifying an image costs: parameters, size on disk, latency at batch 1, throughput at batch 32 and GFLOPs.

Timings are medians of repeated forward passes on the device the report ran on (after warm-up), of the image
side only: a zero-shot model's label embeddings are computed once per label set and cached. FLOPs are counted
by ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications and convolutions, the bulk of the work;
a multiply-add counts as two FLOPs) and left out where it cannot count the model.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from .model import ModelUnderTest


def _time(model: ModelUnderTest, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        model.logits(x)  # warm-up: first-call allocations and kernel selection
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.logits(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gflops_per_image(model: ModelUnderTest, x: torch.Tensor) -> float | None:
    """GFLOPs of one forward pass of one image ``(1, 3, H, W)``; ``None`` when they cannot be counted."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model.logits(x)
        total = counter.get_total_flops()
    except Exception:  # noqa: BLE001 - an operator the counter does not know: report no figure rather than fail
        return None
    return float(total) / 1e9 if total else None


def cost_check(model: ModelUnderTest, image_size: tuple[int, int], repeats: int = 20, batch: int = 32) -> dict[str, Any]:
    """The cost figures of ``model`` at its input size ``(H, W)``, on its device."""
    h, w = image_size
    one = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    many = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(1))
    t1 = _time(model, one, repeats)
    tb = _time(model, many, max(3, repeats // 4))
    files = [p for p in model.weight_files if p.is_file()]
    return {
        "parameters": model.parameters(),
        "size_on_disk_mb": round(sum(p.stat().st_size for p in files) / 2**20, 3) if files else None,
        "weight_files": [p.name for p in files],
        "ms_per_image_batch1": 1000.0 * t1,
        "images_per_s_batch": batch / tb if tb > 0 else None,
        "batch": batch,
        "gflops_per_image": gflops_per_image(model, one),
        "device": str(model.device),
        "precision": str(model.dtype).replace("torch.", ""),
        "input_size": [h, w],
        "threads": torch.get_num_threads(),
    }
