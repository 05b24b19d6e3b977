"""Is the heatmap faithful? Deletion and insertion curves (Petsiuk et al. 2018, "RISE", sec. 4.1) of the demo's
heatmap against a random map.

- deletion: remove pixels (set them to black) in the order the map ranks them, most salient first, and follow the
  probability of the explained class; a faithful map makes it fall fast (small area under the curve);
- insertion: start from a heavily blurred image and put the original pixels back in the same order; a faithful map
  makes the probability rise fast (large area).

A random map (uniform noise, seeded) gives the floor: a heatmap whose deletion area is not below the random one's
and whose insertion area is not above it explains nothing about this model's decision.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..zeroshot.explain import gradient_saliency
from .corrupt import blur
from .metrics import auc
from .model import ModelUnderTest, as_unit

DEFAULT_STEPS = 16


class _LogitsAsEmbedding(torch.nn.Module):
    """Lets :func:`~snapsight.zeroshot.explain.gradient_saliency` (which needs ``encode_image``) explain any model:
    the "embedding" is the logit vector, the "text embedding" a one-hot class."""

    def __init__(self, model: ModelUnderTest):
        super().__init__()
        self.mut = model

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.mut.logits_fn(x.to(self.mut.dtype)).float()


def heatmap(model: ModelUnderTest, pixels: torch.Tensor, target: int, samples: int = 8) -> np.ndarray:
    """The demo's SmoothGrad heatmap ``(H, W)`` of class ``target`` for one image ``(3, H, W)`` in ``[0, 1]``: for a
    zero-shot model the cosine with the label's text embedding (:mod:`snapsight.zeroshot.explain`), for other models
    the class's share of the normalised logit vector."""
    x = ((pixels.float() - torch.as_tensor(model.mean).view(-1, 1, 1)) / torch.as_tensor(model.std).view(-1, 1, 1))
    if model.saliency_fn is not None:
        return model.saliency_fn(x, target, samples)
    onehot = F.one_hot(torch.tensor(target), model.num_classes).float()
    return gradient_saliency(_LogitsAsEmbedding(model), x, onehot, samples=samples)


@torch.no_grad()
def deletion_insertion(prob_fn: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, saliency: np.ndarray,
                       target: int, steps: int = DEFAULT_STEPS) -> dict[str, Any]:
    """Deletion and insertion curves of one image ``(3, H, W)`` in ``[0, 1]`` under a saliency map ``(H, W)``.

    ``prob_fn``: ``(B, 3, H, W)`` pixels -> ``(B, C)`` probabilities. Returns the fractions of pixels changed
    (``steps + 1`` points from 0 to 1), the probability of ``target`` at each, and the area under each curve.
    """
    h, w = pixels.shape[-2:]
    order = torch.from_numpy(np.argsort(-np.asarray(saliency, dtype=np.float64).reshape(-1), kind="stable").copy())
    fractions = np.linspace(0.0, 1.0, steps + 1)
    blurred = blur(pixels.unsqueeze(0), max(h, w) / 8)[0] if h > 1 and w > 1 else pixels
    deleted, inserted = [], []
    for f in fractions:
        k = round(f * h * w)
        mask = torch.zeros(h * w, dtype=torch.bool)
        mask[order[:k]] = True
        mask = mask.view(1, h, w)
        deleted.append(torch.where(mask, torch.zeros_like(pixels), pixels))
        inserted.append(torch.where(mask, pixels, blurred))
    probs = prob_fn(torch.stack(deleted + inserted))[:, target].float().cpu().numpy()
    dele, ins = probs[:len(fractions)], probs[len(fractions):]
    return {"fraction": fractions.tolist(), "deletion": dele.tolist(), "insertion": ins.tolist(),
            "deletion_auc": auc(fractions, dele), "insertion_auc": auc(fractions, ins)}


def saliency_check(model: ModelUnderTest, pixels: torch.Tensor, samples: int = 8, steps: int = DEFAULT_STEPS,
                   seed: int = 0, progress: Any = None) -> dict[str, Any]:
    """Mean deletion/insertion curves of the heatmap of each image's predicted class, and of a random map, over
    ``pixels`` ``(n, 3, H, W)``; how often the heatmap beats the random map on each image."""
    rng = np.random.default_rng(seed)

    def prob_fn(x: torch.Tensor) -> torch.Tensor:
        return model.logits(x).softmax(dim=-1)

    curves: dict[str, list] = {"heatmap": [], "random": []}
    for i in range(len(pixels)):
        x = as_unit(pixels[i])
        with torch.no_grad():
            target = int(model.logits(x.unsqueeze(0)).argmax())
        sal = heatmap(model, x, target, samples)
        curves["heatmap"].append(deletion_insertion(prob_fn, x, sal, target, steps))
        curves["random"].append(deletion_insertion(prob_fn, x, rng.random(sal.shape), target, steps))
        if progress is not None:
            progress.update(1)
    out: dict[str, Any] = {"n": len(pixels), "steps": steps, "samples": samples}
    if not len(pixels):
        return out
    out["fraction"] = curves["heatmap"][0]["fraction"]
    for name, rows in curves.items():
        out[name] = {key: np.mean([r[key] for r in rows], axis=0).tolist()
                     for key in ("deletion", "insertion", "deletion_auc", "insertion_auc")}
    out["heatmap_beats_random"] = {
        "deletion": float(np.mean([h["deletion_auc"] < r["deletion_auc"] for h, r in zip(*curves.values())])),
        "insertion": float(np.mean([h["insertion_auc"] > r["insertion_auc"] for h, r in zip(*curves.values())])),
    }
    return out
