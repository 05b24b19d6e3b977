"""Exports of tiny random models (open_clip, Hugging Face CLIP, a probe), the default model and its int8 version,
written once per session by `snapsight export` itself."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from snapsight.cli import main
from tests.zeroshot.conftest import (  # noqa: F401  (the tiny model fixtures, shared with the zero-shot tests)
    random_images,
    tiny_hf_dir,
    tiny_open_clip_dir,
)

OC_LABELS = "cat, dog, pizza, sunset, red car"


def export(tmp_path_factory, name: str, *args: str) -> Path:
    out = tmp_path_factory.mktemp("exports") / name
    assert main(["export", *args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("snapsight-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own label cache folder, never ~/.cache."""
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path / "snapsight-cache"))


@pytest.fixture(scope="session")
def oc_export(tiny_open_clip_dir, tmp_path_factory) -> Path:  # noqa: F811 (pytest passes the fixture)
    return export(tmp_path_factory, "oc", "--model", str(tiny_open_clip_dir), "--labels", OC_LABELS)


@pytest.fixture(scope="session")
def hf_export(tiny_hf_dir, tmp_path_factory) -> Path:  # noqa: F811 (pytest passes the fixture)
    return export(tmp_path_factory, "hf", "--model", str(tiny_hf_dir))


@pytest.fixture(scope="session")
def default_export(tmp_path_factory) -> Path:
    return export(tmp_path_factory, "default")


@pytest.fixture(scope="session")
def default_int8_export(tmp_path_factory) -> Path:
    return export(tmp_path_factory, "default-int8", "--quantize", "int8")


@pytest.fixture(scope="session")
def tiny_probe_dir(tmp_path_factory) -> Path:
    """A 3-class linear classifier on a random small_cnn, saved the way `snapsight probe` saves it."""
    import torch

    from snapsight.backbones import create_backbone
    from snapsight.preprocessing import Preprocessing
    from snapsight.probe.classifier import save_classifier
    from snapsight.probe.heads import LinearProbe

    torch.manual_seed(0)
    encoder = create_backbone("small_cnn", image_size=16, widths=(4, 8))
    head = LinearProbe(encoder.num_features, 3)
    with torch.no_grad():  # a spread-out head, so the top class is decided by more than rounding noise
        head.linear.weight.mul_(20)
    arch = {"type": "snapsight", "backbone": "small_cnn", "image_size": 16, "backbone_kwargs": {"widths": [4, 8]}}
    out = tmp_path_factory.mktemp("probe") / "clf"
    save_classifier(out, encoder, arch, head, ["shirt", "shoe", "bag"], Preprocessing(image_size=16), "linear")
    return out


@pytest.fixture(scope="session")
def probe_export(tiny_probe_dir, tmp_path_factory) -> Path:
    return export(tmp_path_factory, "probe", "--classifier", str(tiny_probe_dir))


def varied_images(n: int = 12, seed: int = 3) -> list[Image.Image]:
    """Noise images of many sizes and aspect ratios (odd sides, smaller and larger than the model's input)."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        w, h = int(rng.randint(9, 260)), int(rng.randint(9, 260))
        out.append(Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8)))
    return out + random_images(2)


def write_images(folder: Path, images: list[Image.Image]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        paths.append(folder / f"img{i:02d}.png")
        im.save(paths[-1])
    return paths


@pytest.fixture(scope="session")
def fashion_mnist_calibration(tmp_path_factory) -> Path:
    """64 Fashion-MNIST training images as PNG files: typical images for static int8 calibration."""
    from snapsight.data.fashion_mnist import load_fashion_mnist

    x, _ = load_fashion_mnist("train")
    folder = tmp_path_factory.mktemp("calibration")
    write_images(folder, [Image.fromarray(a).convert("RGB") for a in x[:64]])
    return folder


@pytest.fixture(scope="session")
def default_static_int8_export(tmp_path_factory, fashion_mnist_calibration) -> Path:
    """--int8-method auto (the default) with calibration images: static QDQ for the convolutional tower."""
    return export(tmp_path_factory, "default-int8-static", "--quantize", "int8", "--calibration",
                  str(fashion_mnist_calibration))
