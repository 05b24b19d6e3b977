"""The default model's "unfamiliar image" reference (:mod:`snapsight.ondevice.familiarity`): what it was trained on,
summarised, and thresholds chosen on held-out images of the same sources.

Sources and splits (all deterministic):

- Fashion-MNIST: reference from 20,000 train images (k-means to 256 centroids); the test set's even indices
  calibrate the thresholds, its odd indices measure the flag (``benchmarks/familiarity_eval.py``);
- emoji: the training emoji (512 centroids); the held-out emoji, alternately calibration / evaluation;
- Tux Paint stamps: the training stamps (512 centroids); the held-out stamps, alternately calibration /
  evaluation.

Images are rendered exactly as for training (emoji and stamps at 64 px, then the model's own preprocessing); the
features compared are the channel statistics of the image tower's early layers (:data:`REFERENCE_LAYERS`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.emoji import render_all_emoji
from ..data.fashion_mnist import load_fashion_mnist
from ..data.stamps import render_stamp
from ..models.default import assemble_default_model
from ..ondevice.familiarity import REFERENCE_FILE, FamiliarityReference, build_reference, save_reference
from ..zeroshot.classify import ZeroShotClassifier
from .wordings import training_emoji, training_stamps

log = logging.getLogger(__name__)

REFERENCE_CENTROIDS = {"fashion-mnist": 256, "emoji": 512, "stamps": 512}
# Channel statistics of the ResNet-10-T trunk's first three stages (snapsight.zeroshot.layer_stats): on the
# previous default model they flagged 18 of 19 scikit-image photos where its embeddings flagged 7 (see
# docs/default-model.md).
REFERENCE_LAYERS = ("visual.trunk.layer1", "visual.trunk.layer2", "visual.trunk.layer3")
FMNIST_REFERENCE_IMAGES = 20_000
RENDER_SIZE = 64  # emoji and stamps are resized to this before the model's preprocessing, as in training


def _fmnist(split: str, idx: np.ndarray) -> list[Image.Image]:
    images, _ = load_fashion_mnist(split)
    return [Image.fromarray(images[i], mode="L").convert("RGB") for i in idx]


def _small(img: Image.Image) -> Image.Image:
    return img.resize((RENDER_SIZE, RENDER_SIZE), Image.BICUBIC)


def familiarity_images(seed: int = 0) -> dict[str, dict[str, list[Image.Image]]]:
    """``{source: {"train": [...], "calibration": [...], "evaluation": [...]}}`` (see the module docstring)."""
    _, labels = load_fashion_mnist("train")
    rng = np.random.default_rng(seed)
    fm_train = np.sort(rng.choice(len(labels), min(FMNIST_REFERENCE_IMAGES, len(labels)), replace=False))
    _, test_labels = load_fashion_mnist("test")
    test_idx = np.arange(len(test_labels))
    out: dict[str, dict[str, list[Image.Image]]] = {"fashion-mnist": {
        "train": _fmnist("train", fm_train), "calibration": _fmnist("test", test_idx[0::2]),
        "evaluation": _fmnist("test", test_idx[1::2])}}
    emoji_train, emoji_held = training_emoji()
    train_imgs, _ = render_all_emoji(emoji_train, size=RENDER_SIZE)
    held_imgs, _ = render_all_emoji(emoji_held, size=RENDER_SIZE)
    out["emoji"] = {"train": train_imgs, "calibration": held_imgs[0::2], "evaluation": held_imgs[1::2]}
    stamps_train, stamps_held = training_stamps()
    held = [_small(render_stamp(s)) for s in stamps_held]
    out["stamps"] = {"train": [_small(render_stamp(s)) for s in stamps_train], "calibration": held[0::2],
                     "evaluation": held[1::2]}
    return out


def embed_sources(clf: ZeroShotClassifier, images: dict[str, dict[str, list[Image.Image]]],
                  layers: Sequence[str] = REFERENCE_LAYERS,
                  parts: tuple[str, ...] = ("train", "calibration", "evaluation")) -> dict[str, dict[str, np.ndarray]]:
    """Features (:meth:`ZeroShotClassifier.image_features` of ``layers``) of each source's image lists."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for src, split in images.items():
        out[src] = {}
        for part in parts:
            out[src][part] = clf.image_features(split[part], layers, batch_size=256)
            log.info("familiarity: %d %s %s images", len(split[part]), src, part)
    return out


def default_reference(clf: ZeroShotClassifier, seed: int = 0, layers: Sequence[str] = REFERENCE_LAYERS,
                      ) -> tuple[FamiliarityReference, dict[str, Any]]:
    """Build the reference of the loaded default-model classifier; also returns the features per source/part
    (for measuring the flag without computing them twice)."""
    feats = embed_sources(clf, familiarity_images(seed), layers)
    ref = build_reference({s: e["train"] for s, e in feats.items()}, {s: e["calibration"] for s, e in feats.items()},
                          REFERENCE_CENTROIDS, seed=seed, layers=layers)
    return ref, feats


def write_default_reference(model_dir: str | Path, out_dir: str | Path, seed: int = 0) -> FamiliarityReference:
    """Compute the reference of the open_clip folder ``model_dir`` (fp32) and write it to ``out_dir``."""
    clf = ZeroShotClassifier.load(str(model_dir), device="cpu", precision="fp32", cache_dir="")
    ref, _ = default_reference(clf, seed)
    save_reference(ref, Path(out_dir) / REFERENCE_FILE)
    log.info("familiarity reference: %d vectors, thresholds %s", len(ref.features), ref.thresholds.round(4).tolist())
    return ref


def write_asset_reference(asset_dir: str | Path, work_dir: str | Path, seed: int = 0) -> FamiliarityReference:
    """The reference of the compact asset in ``asset_dir`` (assembled, as users get it, into ``work_dir``), written
    beside its weights."""
    target = Path(work_dir) / "assembled"
    assemble_default_model(Path(asset_dir), target)
    return write_default_reference(target, asset_dir, seed)
