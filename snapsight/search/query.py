"""Searching an image index by text or by image, with the model that built it.

An index remembers its model (spec, name, pretrained, fingerprint, width). :func:`load_searcher` loads that model
by default; a model given explicitly, or the index's own whose weights have changed since, is refused in one
sentence, because vectors of two models are not comparable.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.images import open_image
from ..errors import SnapsightError
from ..labels import resolve_templates
from ..ondevice.scoring import ZeroShotConfig
from ..zeroshot.classify import ZeroShotClassifier
from ..zeroshot.index import normalize_rows
from .build import describe_model, model_identity, same_model
from .store import StoredIndex
from .vectors import search_vectors


@dataclass
class Hit:
    """One search result: the image's path and its cosine similarity to the query."""

    rank: int
    path: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImageSearcher:
    """An index folder with the model that embeds its queries.

    Example::

        searcher = load_searcher("runs/photos-index")
        hits = searcher.search_text("a red car", k=10)  # [Hit(rank=1, path=..., score=0.31), ...]
    """

    def __init__(self, index: StoredIndex, clf: ZeroShotClassifier, templates: str | Sequence[str] = "default"):
        self.index = index
        self.clf = clf
        self.templates = resolve_templates(templates)
        identity = model_identity(clf, None, None)
        if not same_model(index.model, identity):
            raise SnapsightError(f"{index.directory} was built with {describe_model(index.model)}, whose weights "
                                 "differ from the model loaded now; build the index again with `snapsight index`")

    @torch.inference_mode()
    def text_vector(self, text: str) -> np.ndarray:
        """The query ``text`` embedded: the normalised mean over the templates (``{}`` = the text), ``(1, dim)``."""
        text = text.strip()
        if not text:
            raise SnapsightError("the text query is empty")
        prompts = [t.replace("{}", text) for t in self.templates]
        emb = self.clf.encode_text(prompts).mean(dim=0, keepdim=True)
        return normalize_rows(emb.numpy())

    def image_vector(self, image: Image.Image | str | os.PathLike) -> np.ndarray:
        """The query image embedded ``(1, dim)``; a path is opened with :func:`open_image`."""
        return normalize_rows(self.clf.encode_images([open_image(image)], familiarity=False).numpy())

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Top-``k`` images for each row of ``queries`` ``(n, dim)``, best first."""
        if k < 1:
            raise SnapsightError(f"--top-k must be at least 1, got {k}")
        scores, ids = search_vectors(self.index.faiss_index, self.index.kind, queries, k)
        files = self.index.files
        return [[Hit(r + 1, files[i].path, float(s)) for r, (s, i) in enumerate(zip(srow, irow)) if i >= 0]
                for srow, irow in zip(scores, ids)]

    def search_text(self, text: str, k: int = 10) -> list[Hit]:
        return self.search_vectors(self.text_vector(text), k)[0]

    def search_image(self, image: Image.Image | str | os.PathLike, k: int = 10) -> list[Hit]:
        return self.search_vectors(self.image_vector(image), k)[0]


def load_searcher(index_dir: str | os.PathLike, model: str | None = None, pretrained: str | None = None,
                  device: str = "auto", precision: str = "auto", templates: str | Sequence[str] = "default",
                  ) -> ImageSearcher:
    """Open ``index_dir`` and load the model that built it; ``model`` given and different is refused."""
    index = StoredIndex.load(index_dir)
    own = index.model
    config = ZeroShotConfig(precision=precision, cache_dir="")
    clf = ZeroShotClassifier.load(model or own.get("spec"), pretrained if model else own.get("pretrained"),
                                  device=device, config=config)
    if model is not None and not same_model(own, model_identity(clf, model, pretrained)):
        raise SnapsightError(f"{index_dir} was built with {describe_model(own)}, and --model {model} is another model "
                             "whose vectors are not comparable with the index's; drop --model to use the index's own")
    return ImageSearcher(index, clf, templates)
