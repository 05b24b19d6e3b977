"""Typographic attacks: the name of a wrong label written onto the image (Goh et al. 2021, "Multimodal Neurons in
Artificial Neural Networks"; the CLIP paper's "apple" / "iPod" example).

The text is drawn on the model's view of the image (``[0, 1]`` pixels, see :mod:`.model`) in DejaVu Sans Bold,
white with a black outline so it reads on any background, as large as fits 90% of the width, centred near the
bottom. The font is Debian's ``fonts-dejavu-core`` (``scripts/install-system-deps.sh``); matplotlib ships the
same font file, which is the fallback where the Debian package is missing.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..errors import SnapsightError

DEBIAN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@functools.lru_cache(maxsize=1)
def font_path() -> Path:
    """DejaVu Sans Bold: Debian's copy, else matplotlib's bundled one."""
    if DEBIAN_FONT.is_file():
        return DEBIAN_FONT
    import matplotlib

    bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    if bundled.is_file():
        return bundled
    raise SnapsightError("the typographic check needs the DejaVu font: apt-get install fonts-dejavu-core")


@functools.lru_cache(maxsize=256)
def _fitted_font(text: str, width: int, height: int) -> tuple[Any, int]:
    """The largest font size (and its outline width) whose rendering of ``text`` fits 90% of the width and 40%
    of the height."""
    size = max(6, height // 3)
    while True:
        font = ImageFont.truetype(str(font_path()), size)
        stroke = max(1, size // 10)
        left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
        if (right - left <= 0.9 * width and bottom - top <= 0.4 * height) or size <= 6:
            return font, stroke
        size -= 1


def text_mask(text: str, width: int, height: int) -> np.ndarray:
    """``(height, width)`` float32: 1 where the glyphs of ``text`` are drawn (without outline), 0 elsewhere."""
    canvas = Image.new("L", (width, height), 0)
    font, _ = _fitted_font(text, width, height)
    ImageDraw.Draw(canvas).text(_anchor(width, height), text, font=font, fill=255, anchor="ms")
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _anchor(width: int, height: int) -> tuple[int, int]:
    return width // 2, height - max(1, height // 12)


def overlay_text(pixels: torch.Tensor, text: str) -> torch.Tensor:
    """Write ``text`` onto one image ``(3, H, W)`` in ``[0, 1]``; returns the new image (same shape)."""
    h, w = pixels.shape[-2:]
    arr = (pixels.detach().cpu().permute(1, 2, 0).float().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(arr, mode="RGB")
    font, stroke = _fitted_font(text, w, h)
    ImageDraw.Draw(img).text(_anchor(w, h), text, font=font, fill=(255, 255, 255), anchor="ms",
                             stroke_width=stroke, stroke_fill=(0, 0, 0))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).to(pixels.device)


def wrong_labels(labels: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    """For each true label, a different class drawn uniformly at random (seeded)."""
    rng = np.random.default_rng(seed)
    offset = rng.integers(1, num_classes, size=len(labels))
    return (np.asarray(labels) + offset) % num_classes
