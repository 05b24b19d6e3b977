"""The "unfamiliar image" flag: how close an image is to what the model was trained on.

A model folder may carry :data:`REFERENCE_FILE`: normalised image embeddings that summarise its training images
(k-means centroids per training source) and a cosine threshold per source. An image's closeness to a source is the cosine between
its normalised embedding and that source's nearest reference vector (the nearest-neighbour out-of-distribution
score of Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors", with k = 1); its
*familiarity* is the largest margin of that cosine above the source's threshold. Below zero the image is flagged
*unfamiliar*: the model saw nothing like it, so its answer deserves little trust whatever its probability. The
thresholds are chosen on held-out images of the training sources (a calibration half; the other half measures
the flag), never on the unfamiliar photos the flag is meant to catch.

Pure numpy (no torch), so the on-device path (:mod:`snapsight.ondevice.classifier`) flags images from an export
that carries the reference as the torch path does. Works on ``(n, dim)`` float32 features, either the image embeddings every model path
computes or the channel statistics of named early layers (:mod:`snapsight.zeroshot.layer_stats`; the default
model uses these). Models without the file have no flag: :func:`load_reference` returns ``None`` and results say
nothing.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SnapsightError

REFERENCE_FILE = "reference_features.safetensors"
CALIBRATION_QUANTILE = 0.025  # per source: the threshold leaves ~97.5% of its calibration images familiar


@dataclass
class FamiliarityReference:
    """Reference embeddings ``features`` ``(n, dim)`` (L2-normalised) of training images, ``source`` ``(n,)`` the
    index of the training source each row summarises, and one cosine threshold per source (``thresholds``
    ``(sources,)``, named by ``source_names``); ``info`` says how they were made.

    An image is familiar when, for some source, its cosine to that source's nearest reference reaches the
    source's threshold. One threshold per source, because the sources differ in how tightly they cluster: the
    28-px garments of Fashion-MNIST sit at cosine ~0.96 from their nearest reference, drawings at ~0.5; a single
    threshold low enough for drawings would let any dark photo pass as a garment.
    """

    features: np.ndarray
    source: np.ndarray
    thresholds: np.ndarray
    source_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    # What is compared: () = the model's image embeddings; layer names = their channel statistics
    # (snapsight.zeroshot.layer_stats), which tell a photo from a drawing far better than the embedding does.
    layers: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def source_cosines(self, embeddings: np.ndarray, batch: int = 4096) -> np.ndarray:
        """``(n, sources)``: each feature row's cosine to the nearest reference of each source (rows are
        normalised here: layer statistics are unit per layer, not overall)."""
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SnapsightError(f"familiarity needs features of shape (n, {self.dim}), got {tuple(x.shape)}")
        x = normalise(x)
        ref = self.features.astype(np.float32, copy=False)
        out = np.full((len(x), len(self.thresholds)), -1.0, np.float32)
        for i in range(0, len(x), batch):
            sims = x[i:i + batch] @ ref.T
            for s in range(len(self.thresholds)):
                cols = self.source == s
                if cols.any():
                    out[i:i + batch, s] = sims[:, cols].max(axis=1)
        return out

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Familiarity ``(n,)``: the largest margin, over sources, of the cosine to that source's nearest reference
        above the source's threshold. Negative: unfamiliar."""
        return (self.source_cosines(embeddings) - self.thresholds[None, :].astype(np.float32)).max(axis=1)

    def unfamiliar(self, scores: np.ndarray) -> np.ndarray:
        """Boolean ``(n,)``: familiarity below zero (no source's threshold reached)."""
        return np.asarray(scores) < 0


class RecentFeatures:
    """The familiarity features of the images an encoder embedded last. The CLI and the demo embed images first
    and flag them afterwards; the features come out of the embedding pass, and this hands them back for the very
    same image objects, in the same order, and for nothing else (anything else is measured anew)."""

    def __init__(self) -> None:
        self._last: tuple[list[Any], np.ndarray] | None = None

    def remember(self, images: Sequence[Any], features: np.ndarray) -> None:
        self._last = (list(images), features)

    def get(self, images: Sequence[Any]) -> np.ndarray | None:
        last = self._last  # one read: another thread may replace it meanwhile
        if last is None or len(last[0]) != len(images) or any(a is not b for a, b in zip(last[0], images)):
            return None
        return last[1]


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def spherical_kmeans(x: np.ndarray, k: int, iters: int = 20, seed: int = 0) -> np.ndarray:
    """``k`` unit-norm centroids of the unit-norm rows of ``x`` ``(n, dim)`` (Lloyd's iterations on cosine from
    ``k`` random rows; empty clusters restart on random rows); ``k >= n`` returns the rows themselves."""
    x = normalise(x)
    if k >= len(x):
        return x.copy()
    rng = np.random.default_rng(seed)
    c = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        assign = np.concatenate([(x[i:i + 8192] @ c.T).argmax(1) for i in range(0, len(x), 8192)])
        sums = np.zeros_like(c)
        np.add.at(sums, assign, x)
        empty = np.bincount(assign, minlength=k) == 0
        sums[empty] = x[rng.choice(len(x), int(empty.sum()), replace=False)]
        c = normalise(sums)
    return c


def build_reference(train: Mapping[str, np.ndarray], calibration: Mapping[str, np.ndarray],
                    centroids: Mapping[str, int], quantile: float = CALIBRATION_QUANTILE,
                    seed: int = 0, layers: Sequence[str] = ()) -> FamiliarityReference:
    """A reference from features of training images per source (``train[name]`` ``(n, dim)``: image embeddings, or
    the statistics of ``layers``), summarised by ``centroids[name]`` k-means centroids each; each source's
    threshold is the ``quantile``-th quantile of the cosine of that source's held-out ``calibration`` images to the
    source's nearest reference."""
    if not train:
        raise SnapsightError("a familiarity reference needs training-image embeddings of at least one source")
    missing = [n for n in train if not len(calibration.get(n, ()))]
    if missing:
        raise SnapsightError(f"a familiarity reference needs held-out calibration images of every source; "
                             f"none for {missing}")
    names = list(train)
    parts = [spherical_kmeans(train[n], centroids.get(n, 512), seed=seed) for n in names]
    ref = FamiliarityReference(np.concatenate(parts).astype(np.float32),
                               np.concatenate([np.full(len(p), i, np.int32) for i, p in enumerate(parts)]),
                               np.zeros(len(names), np.float32), names, layers=tuple(layers))
    for i, n in enumerate(names):
        ref.thresholds[i] = np.quantile(ref.source_cosines(normalise(calibration[n]))[:, i], quantile)
    what = f"channel statistics of {', '.join(layers)}" if layers else "embeddings"
    ref.info = {"method": f"cosine to the nearest k-means centroid of each source's training-image {what}",
                "sources": {n: {"train_images": len(train[n]), "centroids": len(p),
                                "calibration_images": len(calibration[n]),
                                "threshold": round(float(t), 4)}
                            for n, p, t in zip(names, parts, ref.thresholds)},
                "threshold_rule": f"per source, the {quantile:g} quantile of its calibration images' cosine"}
    return ref


def save_reference(ref: FamiliarityReference, path: str | os.PathLike) -> Path:
    """Write ``ref`` as safetensors (fp16 features, int32 sources, fp32 thresholds; names and info in the header),
    atomically."""
    from safetensors.numpy import save_file

    path = Path(path)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    save_file({"features": ref.features.astype(np.float16), "source": ref.source.astype(np.int32),
               "thresholds": ref.thresholds.astype(np.float32)}, str(tmp),
              metadata={"source_names": json.dumps(ref.source_names), "info": json.dumps(ref.info),
                        "layers": json.dumps(list(ref.layers))})
    os.replace(tmp, path)
    return path


def load_reference(model_dir: str | os.PathLike | None) -> FamiliarityReference | None:
    """The reference carried by a model folder, or ``None`` when it has none (or is not a folder)."""
    if model_dir is None:
        return None
    path = Path(model_dir) / REFERENCE_FILE
    if not path.is_file():
        return None
    return read_reference(path)


def read_reference(path: str | os.PathLike) -> FamiliarityReference:
    """The reference in safetensors file ``path`` (as :func:`save_reference` writes it); one sentence when it is
    unreadable or inconsistent."""
    from safetensors import safe_open

    path = Path(path)

    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            features = f.get_tensor("features").astype(np.float32)
            source = f.get_tensor("source").astype(np.int64)
            thresholds = f.get_tensor("thresholds").astype(np.float32)
        names = json.loads(meta["source_names"])
        info = json.loads(meta.get("info", "{}"))
        layers = tuple(json.loads(meta.get("layers", "[]")))
    except Exception as e:
        raise SnapsightError(f"{path} is not a readable familiarity reference ({type(e).__name__}: {e})") from e
    if features.ndim != 2 or not len(features) or source.shape != (len(features),) or len(names) != len(
            thresholds) or source.min() < 0 or source.max() >= len(thresholds):
        raise SnapsightError(f"{path} is not a consistent familiarity reference (features, sources, thresholds)")
    return FamiliarityReference(normalise(features), source, thresholds, names, info, layers)


def auroc(familiar: np.ndarray, unfamiliar: np.ndarray) -> float:
    """Area under the ROC curve of telling ``unfamiliar`` scores (expected low) from ``familiar`` ones: the
    probability that a random familiar image scores above a random unfamiliar one (ties count half)."""
    a, b = np.asarray(familiar, np.float64), np.asarray(unfamiliar, np.float64)
    if not len(a) or not len(b):
        raise SnapsightError("AUROC needs scores of both familiar and unfamiliar images")
    allv = np.concatenate([a, b])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):  # average ranks of ties
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[: len(a)].sum() - len(a) * (len(a) + 1) / 2) / (len(a) * len(b)))
