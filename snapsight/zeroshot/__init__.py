"""Zero-shot classification with CLIP models and a FAISS label index.

Public API::

    from snapsight.zeroshot import ZeroShotClassifier, parse_labels

    clf = ZeroShotClassifier.load()                      # the project's default model
    clf = ZeroShotClassifier.load("ViT-B-32", pretrained="laion2b_s34b_b79k")
    results = clf.classify(["a.jpg", pil_image], "cat, sunset, pizza", templates="default", top_k=5)
    results[0].labels, results[0].probs, results[0].scores, results[0].none_of_these
    few = clf.with_examples("my_examples/", shots=16)      # a few labeled images per label (Tip-Adapter cache)
    results = few.classify(["a.jpg"], "cat, sunset, pizza")

faiss is imported only by :mod:`snapsight.zeroshot.index`, and only when a label index is built.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..labels import (
    TEMPLATE_SETS,
    Label,
    LabelSet,
    builtin_label_set,
    list_builtin_label_sets,
    load_label_set,
    parse_labels,
    resolve_templates,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..models.clip import load_clip
    from ..models.hub import LoadedClip
    from .classify import ZeroShotClassifier, ZeroShotConfig, ZeroShotResult
    from .explain import explain_label

_LAZY = {
    "ZeroShotClassifier": "snapsight.zeroshot.classify",
    "ZeroShotConfig": "snapsight.zeroshot.classify",
    "ZeroShotResult": "snapsight.zeroshot.classify",
    "LoadedClip": "snapsight.models.hub",
    "load_clip": "snapsight.models.clip",
    "explain_label": "snapsight.zeroshot.explain",
}


def __getattr__(name: str) -> Any:
    # classify and models.clip pull in torch, open_clip and (on first index) faiss; label parsing should not.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TEMPLATE_SETS",
    "Label",
    "LabelSet",
    "LoadedClip",
    "ZeroShotClassifier",
    "ZeroShotConfig",
    "ZeroShotResult",
    "builtin_label_set",
    "explain_label",
    "list_builtin_label_sets",
    "load_clip",
    "load_label_set",
    "parse_labels",
    "resolve_templates",
]
