"""SimCLR's two-view augmentation (Chen et al. 2020, appendix A), applied to whole batches as tensors.

The recipe: random resized crop (+ resize), horizontal flip, colour jitter with probability 0.8
(brightness, contrast, saturation ``0.8 s``, hue ``0.2 s`` for strength ``s``), grayscale with probability 0.2,
and a Gaussian blur (probability 0.5, sigma in [0.1, 2], kernel 10% of the image side) where the image is
large enough to blur -- SimCLR leaves it out for 32 px CIFAR, so it is on only when ``image_size >= 64``.
:meth:`AugmentConfig.recommended` scales the recipe down for small and grayscale images.

:class:`SimCLRViewTransform` runs on a ``uint8`` batch ``(batch, C, H, W)`` (``C`` = 1 or 3) on whatever
device it lives on: crops and flips become one ``affine_grid``/``grid_sample`` per view, jitter and blur
are per-image factors broadcast over the batch. On a CPU this is ~13x faster than per-image PIL
transforms in loader workers, and on a GPU the model is never starved by the loader. Single-channel
batches stay single-channel until the end (saturation, hue and grayscale are identities on gray images),
which keeps Fashion-MNIST cheap. Differences from torchvision's per-image pipeline: a random resized
crop whose sampled box does not fit after 10 tries is clamped instead of centre-cropped, and the order of
the four jitter operations is drawn once per batch instead of once per image.

:func:`simclr_pil_transform` is the same recipe as a per-image torchvision pipeline (reference, and the
baseline for ``benchmarks/ssl_throughput.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import require
from ..preprocessing import Preprocessing

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL and torchvision use


@dataclass
class AugmentConfig:
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # crop area as a fraction of the image
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # crop aspect-ratio range
    hflip_p: float = 0.5  # probability of a horizontal flip
    jitter_p: float = 0.8  # probability of colour jitter
    jitter_strength: float = 1.0  # s: brightness/contrast/saturation 0.8*s, hue 0.2*s (SimCLR: 1.0 on ImageNet)
    gray_p: float = 0.2  # probability of converting to grayscale
    blur: bool | Literal["auto", "on", "off"] = "auto"  # auto: on when image_size >= 64 (YAML on/off: true/false)
    blur_p: float = 0.5  # probability of blurring a view when blur is on
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])  # Gaussian sigma range (pixels)

    def __post_init__(self) -> None:
        require(self.blur in (True, False, "auto", "on", "off"), "augment.blur", "be auto, on or off", self.blur)
        _check_range("augment.crop_scale", self.crop_scale, at_most=1.0)
        _check_range("augment.crop_ratio", self.crop_ratio)
        _check_range("augment.blur_sigma", self.blur_sigma)
        for key in ("hflip_p", "jitter_p", "gray_p", "blur_p"):
            value = getattr(self, key)
            require(0 <= value <= 1, f"augment.{key}", "be a probability between 0 and 1", value)
        require(self.jitter_strength >= 0, "augment.jitter_strength", "be at least 0", self.jitter_strength)

    @classmethod
    def recommended(cls, image_size: int, grayscale: bool = False) -> "AugmentConfig":
        """The recipe scaled to the data: small images get milder crops (min area 0.2 instead of 0.08, so a
        28-32 px object stays recognisable) and jitter strength 0.5 as in SimCLR's CIFAR set-up; no blur
        below 64 px. Grayscale data keeps brightness/contrast jitter (the rest is a no-op on gray)."""
        if image_size < 64:
            return cls(crop_scale=[0.2, 1.0], jitter_strength=0.5, blur="off")
        return cls()

    def blur_enabled(self, image_size: int) -> bool:
        if isinstance(self.blur, bool):
            return self.blur
        return self.blur == "on" or (self.blur == "auto" and image_size >= 64)


def _check_range(key: str, values: list[float], at_most: float | None = None) -> None:
    """``values`` must be ``[low, high]`` with ``0 < low <= high`` (and ``high <= at_most`` when given)."""
    bound = f" <= {at_most:g}" if at_most is not None else ""
    require(len(values) == 2 and 0 < values[0] <= values[1] and (at_most is None or values[1] <= at_most), key,
            f"be [low, high] with 0 < low <= high{bound}", values)


def _uniform(n: int, lo: float, hi: float, device, generator=None) -> torch.Tensor:
    return torch.rand(n, device=device, generator=generator) * (hi - lo) + lo


def _gray(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` luma."""
    w = torch.tensor(_GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    v = maxc
    delta = maxc - minc
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = torch.stack([v, q, p, p, t, v], 1).gather(1, i.unsqueeze(1))
    g = torch.stack([t, v, v, q, p, p], 1).gather(1, i.unsqueeze(1))
    b = torch.stack([p, p, t, v, v, q], 1).gather(1, i.unsqueeze(1))
    return torch.cat([r, g, b], 1)


class SimCLRViewTransform(nn.Module):
    """``uint8`` ``(batch, C, H, W)`` (or ``(batch, H, W)``) -> two normalised views ``(batch, 3, S, S)``.

    ``S``, mean and std come from ``preprocessing`` -- the same :class:`~snapsight.preprocessing.Preprocessing`
    that is exported with the encoder, so inference normalises exactly as training did.
    """

    def __init__(self, cfg: AugmentConfig, preprocessing: Preprocessing):
        super().__init__()
        self.cfg = cfg
        self.size = preprocessing.image_size
        self.blur = cfg.blur_enabled(self.size)
        self.register_buffer("mean", torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    @staticmethod
    def to_float(images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images (batch, 1|3, H, W), got {tuple(images.shape)}")
        return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.to_float(images.to(self.mean.device))
        return self.view(x), self.view(x)

    @torch.no_grad()
    def view(self, x: torch.Tensor) -> torch.Tensor:
        """One augmented, normalised view of a float batch in [0, 1]."""
        x = self._crop_flip(x)
        x = self._color(x)
        if self.blur:
            x = self._gaussian_blur(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    # -- geometry
    def _crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        dev = x.device
        lo, hi = self.cfg.crop_scale
        log_r = (math.log(self.cfg.crop_ratio[0]), math.log(self.cfg.crop_ratio[1]))
        cw = torch.ones(b, device=dev)  # crop width / image width
        ch = torch.ones(b, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        for _ in range(10):  # torchvision's rejection sampling, vectorised
            area = _uniform(b, lo, hi, dev)
            ratio = torch.exp(_uniform(b, *log_r, dev))
            tw = torch.sqrt(area * ratio * h / w)  # fraction of the width
            th = torch.sqrt(area / ratio * w / h)
            ok = (tw <= 1) & (th <= 1) & ~done
            cw, ch = torch.where(ok, tw, cw), torch.where(ok, th, ch)
            done |= ok
            if bool(done.all()):
                break
        cw, ch = cw.clamp(max=1.0), ch.clamp(max=1.0)
        cx = (torch.rand(b, device=dev) * (1 - cw) + cw / 2) * 2 - 1  # centre in [-1, 1] coordinates
        cy = (torch.rand(b, device=dev) * (1 - ch) + ch / 2) * 2 - 1
        flip = torch.where(torch.rand(b, device=dev) < self.cfg.hflip_p, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0] = cw * flip
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = ch
        theta[:, 1, 2] = cy
        grid = F.affine_grid(theta, [b, c, self.size, self.size], align_corners=False)
        # Antialias strong downscales first (only when stored images are much larger than the output).
        scale = min(h, w) / self.size
        if scale > 2:
            x = F.interpolate(x, scale_factor=1 / (scale / 2), mode="area")
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # -- colour
    def _color(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        dev = x.device
        s = self.cfg.jitter_strength
        apply = torch.rand(b, device=dev) < self.cfg.jitter_p

        def factor(spread: float, centre: float) -> torch.Tensor:
            f = _uniform(b, max(0.0, centre - spread), centre + spread, dev)
            return torch.where(apply, f, torch.full_like(f, centre)).view(b, 1, 1, 1)

        bright, contrast = factor(0.8 * s, 1.0), factor(0.8 * s, 1.0)
        ops = ["brightness", "contrast"]
        if c == 3:
            sat, hue = factor(0.8 * s, 1.0), factor(0.2 * s, 0.0)
            ops += ["saturation", "hue"]
        for i in torch.randperm(len(ops)).tolist():  # torchvision draws a random order; here per batch
            op = ops[i]
            if op == "brightness":
                x = (x * bright).clamp_(0, 1)
            elif op == "contrast":
                m = (x if c == 1 else _gray(x)).mean(dim=(1, 2, 3), keepdim=True)
                x = (contrast * x + (1 - contrast) * m).clamp_(0, 1)
            elif op == "saturation":
                x = (sat * x + (1 - sat) * _gray(x)).clamp_(0, 1)
            elif op == "hue" and bool((hue != 0).any()):
                hsv = _rgb_to_hsv(x)
                hsv = torch.cat([(hsv[:, :1] + hue) % 1.0, hsv[:, 1:]], 1)
                x = _hsv_to_rgb(hsv).clamp_(0, 1)
        if c == 3 and self.cfg.gray_p > 0:
            to_gray = (torch.rand(b, device=dev) < self.cfg.gray_p).view(b, 1, 1, 1)
            x = torch.where(to_gray, _gray(x).expand(-1, 3, -1, -1), x)
        return x

    def _gaussian_blur(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        dev = x.device
        k = max(3, int(0.1 * self.size) // 2 * 2 + 1)  # odd kernel, ~10% of the side (SimCLR appendix A)
        sigma = _uniform(b, *self.cfg.blur_sigma, dev)
        apply = torch.rand(b, device=dev) < self.cfg.blur_p
        r = torch.arange(k, device=dev, dtype=x.dtype) - k // 2
        kern = torch.exp(-(r.view(1, k) ** 2) / (2 * sigma.view(b, 1) ** 2))
        kern = kern / kern.sum(1, keepdim=True)
        delta = (r == 0).to(x.dtype).expand(b, k)
        kern = torch.where(apply.view(b, 1), kern, delta)  # unblurred images get an identity kernel
        kern = kern.repeat_interleave(c, 0)  # (b*c, k)
        y = x.reshape(1, b * c, h, w)
        pad = k // 2
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), kern.view(b * c, 1, 1, k), groups=b * c)
        y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), kern.view(b * c, 1, k, 1), groups=b * c)
        return y.view(b, c, h, w)


def simclr_pil_transform(cfg: AugmentConfig, preprocessing: Preprocessing):
    """The same recipe as a per-image torchvision transform: RGB PIL image -> normalised ``(3, S, S)``.

    Call it twice for two views. Slower than :class:`SimCLRViewTransform`; kept as the reference pipeline.
    """
    from torchvision import transforms as T

    s = cfg.jitter_strength
    size = preprocessing.image_size
    steps = [
        T.RandomResizedCrop(size, scale=tuple(cfg.crop_scale), ratio=tuple(cfg.crop_ratio), antialias=True),
        T.RandomHorizontalFlip(cfg.hflip_p),
        T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=cfg.jitter_p),
        T.RandomGrayscale(cfg.gray_p),
    ]
    if cfg.blur_enabled(size):
        k = max(3, int(0.1 * size) // 2 * 2 + 1)
        steps.append(T.RandomApply([T.GaussianBlur(k, sigma=tuple(cfg.blur_sigma))], p=cfg.blur_p))
    steps += [T.ToTensor(), T.Normalize(preprocessing.mean, preprocessing.std)]
    return T.Compose(steps)
