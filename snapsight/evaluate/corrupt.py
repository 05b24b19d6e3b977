"""Common corruptions at three severities, in the manner of ImageNet-C (Hendrycks & Dietterich 2019).

Each corruption maps ``(B, 3, H, W)`` pixels in ``[0, 1]`` (the model's view, see :mod:`.model`) to corrupted
pixels in ``[0, 1]``. The three severities are ImageNet-C's severities 1, 3 and 5 of the same corruption:

=============  ===========================================  =====================================
corruption     what                                         severity 1 / 2 / 3
=============  ===========================================  =====================================
``noise``      add Gaussian noise, std in pixel units        0.08 / 0.18 / 0.38
``blur``       Gaussian blur, sigma as a share of the side   1/224 / 3/224 / 6/224 of the side, at
                                                             least 0.5 / 1 / 1.5 px
``jpeg``       JPEG re-encoding at a quality                 25 / 15 / 7
``brightness`` add to every pixel                           +0.1 / +0.3 / +0.5
``contrast``   scale around the image mean                  x0.4 / x0.2 / x0.05
=============  ===========================================  =====================================

Blur is given relative to the image side, so a 224 px model sees ImageNet-C's pixel sigmas and a larger input the
same share of its side; on small inputs (32 px: 0.14 px at severity 1, which changes nothing) a floor keeps every
severity visible. Noise is seeded per image batch: a report is reproducible.
"""
from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SEVERITIES = (1, 2, 3)
NOISE_STD = (0.08, 0.18, 0.38)
BLUR_SIGMA_224 = (1.0, 3.0, 6.0)
BLUR_MIN_PX = (0.5, 1.0, 1.5)
JPEG_QUALITY = (25, 15, 7)
BRIGHTNESS_SHIFT = (0.1, 0.3, 0.5)
CONTRAST_FACTOR = (0.4, 0.2, 0.05)


def gaussian_noise(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """Additive Gaussian noise (ImageNet-C ``gaussian_noise``)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=gen) * NOISE_STD[severity - 1]
    return (x + noise.to(x.device)).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """Separable Gaussian blur (ImageNet-C ``gaussian_blur``)."""
    return blur(x, max(BLUR_SIGMA_224[severity - 1] * x.shape[-1] / 224.0, BLUR_MIN_PX[severity - 1]))


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with ``sigma`` in pixels, reflect-padded."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad > 0 else x
    if pad < radius:  # tiny images: pad the rest by replication
        y = F.pad(y, (radius - pad,) * 4, mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return y.clamp(0, 1)


def jpeg(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """Re-encode each image as JPEG at a low quality (ImageNet-C ``jpeg_compression``)."""
    out = []
    for img in x:
        arr = (img.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, mode="RGB").save(buf, format="JPEG", quality=JPEG_QUALITY[severity - 1])
        buf.seek(0)
        back = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(back).permute(2, 0, 1))
    return torch.stack(out).to(x.device)


def brightness(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """Brighten every pixel (ImageNet-C adds to the HSV value; adding to RGB is the same for grey images)."""
    return (x + BRIGHTNESS_SHIFT[severity - 1]).clamp(0, 1)


def contrast(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """Pull every pixel towards the image's mean (ImageNet-C ``contrast``)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * CONTRAST_FACTOR[severity - 1] + mean).clamp(0, 1)


CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = {
    "noise": gaussian_noise,
    "blur": gaussian_blur,
    "jpeg": jpeg,
    "brightness": brightness,
    "contrast": contrast,
}


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """``CORRUPTIONS[name]`` at ``severity`` (1-3) on ``(B, 3, H, W)`` pixels in ``[0, 1]``."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    return CORRUPTIONS[name](x, severity, seed)
