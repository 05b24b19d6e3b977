"""Preprocessing that travels with the weights.

Each exported encoder/classifier stores a :class:`Preprocessing` in its JSON metadata, so inference
always resizes and normalises the way training did.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    image_size: int = 224  # square side the model sees
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel RGB mean (0-1 scale)
    std: tuple[float, float, float] = IMAGENET_STD  # per-channel RGB std
    resize: str = "shorter"  # "shorter": resize shorter side then centre-crop; "squash": resize to square

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(
            image_size=int(d.get("image_size", 224)),
            mean=tuple(float(x) for x in d.get("mean", IMAGENET_MEAN)),
            std=tuple(float(x) for x in d.get("std", IMAGENET_STD)),
            resize=str(d.get("resize", "shorter")),
        )

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """RGB PIL image -> normalised float tensor ``(3, image_size, image_size)``."""
        s = self.image_size
        if self.resize == "squash":
            img = img.resize((s, s), Image.BICUBIC)
        else:
            w, h = img.size
            scale = s / min(w, h)
            nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
            img = img.resize((nw, nh), Image.BICUBIC)
            left, top = (nw - s) // 2, (nh - s) // 2
            img = img.crop((left, top, left + s, top + s))
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(s, s, 3)
        x = x.permute(2, 0, 1).float().div_(255.0)
        return normalize(x, self.mean, self.std)

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """List of RGB PIL images -> ``(batch, 3, image_size, image_size)``."""
        return torch.stack([self(im) for im in images])


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalise ``(..., 3, H, W)`` tensors in [0, 1] by per-channel mean/std."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s
