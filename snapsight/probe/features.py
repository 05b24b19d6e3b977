"""Frozen features of a labeled source, embedded once and cached on disk.

The cache key is ``sha256(weights + architecture + preprocessing + data identity)``: any change to the
encoder's tensors (a new checkpoint, another random init) or to the data makes a new key, so stale
features are never reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ..artifacts.files import atomic_write_json, save_weights
from ..data.labeled import LabeledDataset
from ..errors import ImageError, SnapsightError
from ..models.encoders import FeatureEncoder
from ..preprocessing import Preprocessing
from ..runtime import cache_root

log = logging.getLogger(__name__)

CACHE_VERSION = 1


# ---------------------------------------------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """Features of the readable items of a dataset.

    ``features`` ``(n, dim)`` float32, ``labels`` ``(n,)`` int64, ``indices`` ``(n,)`` positions in the
    dataset; ``skipped`` lists ``(item, reason)`` for images that could not be read.
    """

    features: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: list[tuple[str, str]]
    from_cache: bool = False

    def subset(self, positions: torch.Tensor | Any) -> "FeatureSet":
        pos = torch.as_tensor(positions, dtype=torch.long)
        return FeatureSet(self.features[pos], self.labels[pos], self.indices[pos], list(self.skipped), self.from_cache)


def default_cache_dir() -> Path:
    """``features`` under :func:`snapsight.runtime.cache_root` (default ``~/.cache/snapsight/features``)."""

    return cache_root() / "features"


def feature_cache_key(encoder: FeatureEncoder, dataset: LabeledDataset) -> str:
    """Key of (encoder weights, architecture, preprocessing, data identity)."""
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "weights": encoder.weights_hash,
            "arch": encoder.arch,
            "preprocessing": encoder.preprocessing.to_dict(),
            "data": dataset.identity,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class ImageItems(torch.utils.data.Dataset):
    """``(image (3, S, S), index, error)`` items of a LabeledDataset: preprocessed, then ``transform`` (e.g. the
    fine-tuning augmentation) when given. An unreadable image comes back flagged (zeros and the reason), not
    raised, so one bad file does not end a pass over thousands."""

    def __init__(self, dataset: LabeledDataset, preprocessing: Preprocessing,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.dataset, self.preprocessing, self.transform = dataset, preprocessing, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            x = self.preprocessing(self.dataset.load(i))
        except ImageError as e:
            s = self.preprocessing.image_size
            return torch.zeros(3, s, s), i, str(e) or "unreadable image"
        return (self.transform(x) if self.transform is not None else x), i, ""


def image_loader(dataset: LabeledDataset, preprocessing: Preprocessing, batch_size: int,
                 num_workers: int = 0, shuffle: bool = False) -> torch.utils.data.DataLoader:
    """Batches ``(images (B,3,S,S), indices (B,), errors list[str])`` over ``dataset``."""
    return torch.utils.data.DataLoader(
        ImageItems(dataset, preprocessing), batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
        persistent_workers=False,
    )


@torch.no_grad()
def extract_features(
    encoder: FeatureEncoder,
    dataset: LabeledDataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> FeatureSet:
    """Embed every readable image of ``dataset`` with the frozen ``encoder`` (cached when ``cache_dir``)."""


    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{feature_cache_key(encoder, dataset)}.safetensors"
        if path.is_file():
            try:
                t = load_file(str(path))
                skipped = json.loads((path.with_suffix(".skipped.json")).read_text())
                log.info("features for %s loaded from cache %s", dataset.name, path)
                return FeatureSet(t["features"], t["labels"], t["indices"], [tuple(s) for s in skipped], True)
            except Exception as e:  # noqa: BLE001 - a broken cache entry is recomputed, never fatal
                log.warning("ignoring unreadable feature cache %s (%s)", path, e)
    model = encoder.model.to(device).eval()
    feats, idxs, skipped = [], [], []
    loader = image_loader(dataset, encoder.preprocessing, batch_size, num_workers)

    for x, idx, errors in tqdm(loader, desc=f"features {dataset.name}", disable=not progress, leave=False):
        ok = torch.tensor([not e for e in errors], dtype=torch.bool)
        for i, e in zip(idx.tolist(), errors):
            if e:
                skipped.append((dataset.describe(i), e))
        if ok.any():
            f = model(x[ok].to(device, non_blocking=True))
            feats.append(f.float().cpu())
            idxs.append(idx[ok])
    if not feats:
        raise SnapsightError(f"no readable images in {dataset.name} ({len(skipped)} failed, e.g. {skipped[0][1] if skipped else ''})")
    indices = torch.cat(idxs).long()
    out = FeatureSet(
        torch.cat(feats).contiguous(), torch.from_numpy(dataset.labels[indices.numpy()]).long(), indices, skipped
    )
    if path is not None:
        save_weights({"features": out.features, "labels": out.labels, "indices": out.indices}, path)

        atomic_write_json(path.with_suffix(".skipped.json"), [list(s) for s in skipped])
    return out
