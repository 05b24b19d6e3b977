"""Folders of small distinct images, a deterministic pixel embedder that counts its calls, and the tiny CLIP models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.zeroshot.conftest import (  # noqa: F401  (the tiny model fixtures, shared with the zero-shot tests)
    _isolated_cache,
    random_images,
    tiny_hf_dir,
    tiny_open_clip_dir,
)

IDENTITY = {"spec": "pixels", "pretrained": None, "name": "pixels", "fingerprint": "p1", "dim": 48}


class PixelEmbedder:
    """A stand-in model: an image's 4x4 thumbnail, centred (48 numbers). Batch-independent, so two builds that embed
    an image in different batches give bit-identical vectors; records every image it embeds."""

    def __init__(self):
        self.seen = 0
        self.calls = 0

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        self.calls += 1
        self.seen += len(images)
        return np.stack([np.asarray(im.resize((4, 4)), np.float32).ravel() - 127.5 for im in images])


def write_images(folder: Path, n: int, seed: int = 0, start: int = 0) -> list[Path]:
    """``n`` random 24x20 PNGs named img-NNN.png (distinct: random pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(random_images(n, seed=seed, size=(24, 20))):
        p = folder / f"img-{start + i:03d}.png"
        im.save(p)
        paths.append(p)
    return paths


@pytest.fixture
def photos(tmp_path) -> Path:
    """10 images in two folders levels, one corrupt .jpg, one text file with an image name, a hidden image."""
    root = tmp_path / "photos"
    write_images(root, 6, seed=1)
    write_images(root / "trip", 4, seed=2, start=6)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.png").write_text("hello")
    write_images(root / ".thumbs", 1, seed=3)
    return root
