"""L-infinity adversarial examples through the whole differentiable pipeline: FGSM and PGD.

The perturbation lives in pixel space (``[0, 1]``, the model's resized and cropped view of the image, see
:mod:`.model`); normalisation and the network run inside the differentiable forward, and for a zero-shot model the
loss is the cross-entropy of the image-label logits (``logit_scale * cosine``) with the true label.

- FGSM (Goodfellow et al. 2015): one step ``x + eps * sign(grad)``;
- PGD (Madry et al. 2018): ``steps`` steps of size ``2.5 * eps / steps`` from the clean image (no random start, so
  a report is reproducible), each projected back onto the ``eps`` ball and onto ``[0, 1]``.

Robust accuracy at ``eps`` counts an image as correct only if no attack at any radius up to ``eps`` fooled it:
a perturbation found within a smaller ball is also within the larger one, so robust accuracy cannot rise with
``eps``. Pixels are held in float32 whatever the model's precision: a 1/255 step would vanish in bf16.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .model import ModelUnderTest, as_unit

DEFAULT_EPS = (1 / 255, 2 / 255, 4 / 255)
PGD_STEPS = 10


def _loss_grad(model: ModelUnderTest, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of the summed cross-entropy at ``x``, and whether ``x`` is already misclassified."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model.logits(x)
        loss = F.cross_entropy(logits, y.to(logits.device), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad, (logits.argmax(dim=1) != y.to(logits.device)).to(x.device)


def fgsm(model: ModelUnderTest, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size ``eps``; ``x`` ``(B, 3, H, W)`` in ``[0, 1]``, ``y`` ``(B,)``."""
    if eps <= 0:
        return x.clone()
    return (x + eps * _loss_grad(model, x, y)[0].sign()).clamp(0, 1).detach()


def pgd(model: ModelUnderTest, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = PGD_STEPS,
        step_size: float | None = None) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy within the L-infinity ball of radius ``eps`` around ``x``.

    An image stops moving once it is misclassified (its adversarial example is found), so later steps are spent
    only on the images still resisting."""
    if eps <= 0:
        return x.clone()
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    adv = x.clone()
    active = torch.arange(len(x), device=x.device)
    for _ in range(steps):
        if len(active) == 0:
            break
        grad, fooled = _loss_grad(model, adv[active], y[active.cpu()])
        moving = active[~fooled]
        step = adv[moving] + alpha * grad[~fooled].sign()
        adv[moving] = torch.min(torch.max(step, x[moving] - eps), x[moving] + eps).clamp(0, 1).detach()
        active = moving
    return adv


@torch.no_grad()
def _predict(model: ModelUnderTest, x: torch.Tensor) -> np.ndarray:
    return model.logits(x).argmax(dim=1).cpu().numpy()


def robust_accuracy(model: ModelUnderTest, pixels: torch.Tensor, labels: np.ndarray,
                    eps_values: Sequence[float] = DEFAULT_EPS, steps: int = PGD_STEPS, batch_size: int = 64,
                    progress: Any = None) -> dict[str, Any]:
    """Clean and robust accuracy per ``eps`` for FGSM, PGD and both together (the worst case per image).

    ``pixels``: ``(n, 3, H, W)`` uint8 or float in ``[0, 1]``; ``labels``: ``(n,)`` indices into the model's classes.
    Returns ``{"eps": [...], "clean": acc, "fgsm": [...], "pgd": [...], "worst": [...], "n": n}``; entry ``i``
    of each list is the accuracy at ``eps[i]`` (an image fooled at a smaller ``eps`` stays fooled).
    """
    eps_values = sorted(float(e) for e in eps_values)
    n = len(labels)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    clean_ok = np.zeros(n, dtype=bool)
    ok = {a: np.zeros((len(eps_values), n), dtype=bool) for a in ("fgsm", "pgd")}
    for start in range(0, n, batch_size):
        x = as_unit(pixels[start:start + batch_size]).to(model.device)
        y = labels_t[start:start + batch_size]
        yn = y.numpy()
        clean_ok[start:start + len(y)] = _predict(model, x) == yn
        for attack in ("fgsm", "pgd"):
            still = clean_ok[start:start + len(y)].copy()
            for i, eps in enumerate(eps_values):
                if eps > 0 and still.any():
                    sel = torch.from_numpy(np.flatnonzero(still))
                    xs, ys = x[sel.to(x.device)], y[sel]
                    adv = fgsm(model, xs, ys, eps) if attack == "fgsm" else pgd(model, xs, ys, eps, steps)
                    still[sel.numpy()] = _predict(model, adv) == ys.numpy()
                ok[attack][i, start:start + len(y)] = still
        if progress is not None:
            progress.update(len(y))
    worst = ok["fgsm"] & ok["pgd"]
    return {"eps": eps_values, "n": n, "steps": steps, "clean": float(clean_ok.mean()) if n else float("nan"),
            "fgsm": ok["fgsm"].mean(axis=1).tolist(), "pgd": ok["pgd"].mean(axis=1).tolist(),
            "worst": worst.mean(axis=1).tolist()}
