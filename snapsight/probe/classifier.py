"""A trained classifier (encoder + head + class names + preprocessing): predict, save, load.

The folder format is :mod:`snapsight.artifacts.classifier`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..artifacts.classifier import CLASSIFIER_JSON, CLASSIFIER_KIND, ENCODER_WEIGHTS, HEAD_WEIGHTS, is_classifier_dir
from ..artifacts.files import atomic_write_json, load_weights, read_json, save_weights
from ..data.images import open_image
from ..errors import SnapsightError
from ..models.encoders import build_encoder_module
from ..preprocessing import Preprocessing
from ..runtime import resolve_device
from .heads import KnnHead, LinearProbe

log = logging.getLogger(__name__)


class Classifier:
    """A trained classifier: encoder + head + class names + preprocessing (contract 2).

    ``predict(images, top_k)`` returns, per image, ``[(class_name, probability), ...]`` sorted by
    probability, highest first.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, class_names: list[str], preprocessing: Preprocessing,
                 meta: dict[str, Any], device: torch.device):
        self.encoder, self.head = encoder.to(device).eval(), head.to(device).eval()
        self.class_names = list(class_names)
        self.preprocessing = preprocessing
        self.meta = meta
        self.device = device
        self.mode = meta.get("mode", "linear")

    @torch.no_grad()
    def predict_proba(self, images: Sequence[Any], batch_size: int = 64) -> torch.Tensor:
        """``(n, C)`` probabilities for images (PIL images or anything :func:`open_image` reads)."""

        out = []
        for start in range(0, len(images), batch_size):
            batch = [open_image(im) for im in images[start:start + batch_size]]
            x = self.preprocessing.batch(batch).to(self.device)
            out.append(self.head.probs(self.encoder(x).float()).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.class_names))

    def predict(self, images: Sequence[Any], top_k: int = 5) -> list[list[tuple[str, float]]]:
        probs = self.predict_proba(images)
        k = max(1, min(top_k, len(self.class_names)))
        top_p, top_i = probs.topk(k, dim=1)
        return [[(self.class_names[i], float(p)) for p, i in zip(ps.tolist(), is_.tolist())]
                for ps, is_ in zip(top_p, top_i)]

    def __repr__(self) -> str:
        return f"Classifier(mode={self.mode!r}, classes={len(self.class_names)}, encoder={self.meta.get('encoder', {}).get('source')!r})"


def save_classifier(
    out_dir: str | os.PathLike, encoder: nn.Module, encoder_arch: dict[str, Any], head: nn.Module,
    class_names: Sequence[str], preprocessing: Preprocessing, mode: str, encoder_source: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the self-contained classifier directory (see module docstring); returns it."""
    out = Path(out_dir)
    save_weights(encoder.state_dict(), out / ENCODER_WEIGHTS)
    save_weights(head.state_dict(), out / HEAD_WEIGHTS)
    if isinstance(head, KnnHead):
        head_meta = {"type": "knn", "k": head.k, "temperature": head.temperature, "bank_size": int(head.bank.shape[0]),
                     "in_features": int(head.bank.shape[1]), "num_classes": head.num_classes}
    else:
        head_meta = {"type": "linear", "in_features": head.linear.in_features, "num_classes": head.linear.out_features}
    meta = {
        "kind": CLASSIFIER_KIND,
        "format_version": 1,
        "mode": mode,
        "class_names": list(class_names),
        "preprocessing": preprocessing.to_dict(),
        "encoder": {"arch": encoder_arch, "source": encoder_source},
        "head": head_meta,
        **(extra or {}),
    }
    atomic_write_json(out / CLASSIFIER_JSON, meta)  # written last: its presence marks a complete directory
    return out


def load_classifier(path: str | os.PathLike, device: str | torch.device = "auto") -> Classifier:
    """Load a classifier directory written by ``snapsight probe`` (contract 2)."""

    path = Path(path)
    if not is_classifier_dir(path):
        raise SnapsightError(
            f"{path} is not a snapsight classifier (no {CLASSIFIER_JSON} of kind '{CLASSIFIER_KIND}'); "
            "make one with `snapsight probe --out DIR`"
        )
    dev = resolve_device(device)
    meta = read_json(path / CLASSIFIER_JSON)
    prep = Preprocessing.from_dict(meta["preprocessing"])
    encoder = build_encoder_module(meta["encoder"]["arch"])
    _load_strict(encoder, load_weights(path / ENCODER_WEIGHTS), path / ENCODER_WEIGHTS)
    hm = meta["head"]
    state = load_weights(path / HEAD_WEIGHTS)
    if hm["type"] == "knn":
        head: nn.Module = KnnHead(state["bank"], state["bank_labels"], hm["num_classes"], hm["k"], hm["temperature"])
    elif hm["type"] == "linear":
        head = LinearProbe(hm["in_features"], hm["num_classes"])
        _load_strict(head, state, path / HEAD_WEIGHTS)
    else:
        raise SnapsightError(f"{path}: unknown head type '{hm['type']}'")
    if len(meta["class_names"]) != hm["num_classes"]:
        raise SnapsightError(f"{path}: {len(meta['class_names'])} class names but the head has {hm['num_classes']} outputs")
    return Classifier(encoder, head, meta["class_names"], prep, meta, dev)


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SnapsightError(f"{where} does not fit the architecture in {CLASSIFIER_JSON}: {str(e).splitlines()[0]}") from e
