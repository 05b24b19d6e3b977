"""What a zero-shot answer is, in numpy: the settings, the result type and the probability maths that the torch
path (:mod:`snapsight.zeroshot.classify`) and the ONNX path (:mod:`snapsight.ondevice.classifier`) share.

Scores (CLIP, Radford et al. 2021, Fig. 3): with L2-normalised image embedding ``x`` and label embeddings ``w_c``
(each the normalised mean of the label's prompt embeddings),

- ``scores[c] = x · w_c`` is the raw cosine similarity, in ``[-1, 1]``;
- ``probs = softmax(logit_scale * scores)`` over all labels (the model's own temperature, ``logit_scale`` being
  ``exp`` of the stored log-scale), exactly what open_clip's zero-shot evaluation and ``CLIPModel.logits_per_image``
  give.

No torch here: this module is what lets ``snapsight classify --model EXPORT_DIR`` run without it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import SnapsightError

# Neutral prompts: the "null" class of multi-label mode (a label must beat a generic photo to count as present).
NULL_PROMPTS = ("a photo.", "a picture.", "an image.", "a photo of something.", "a blurry photo.")


@dataclass
class IndexConfig:
    kind: Literal["auto", "flat", "hnsw"] = "auto"  # auto = flat below hnsw_min_labels, hnsw from there on
    hnsw_min_labels: int = 500_000  # label count from which "auto" switches to HNSW
    hnsw_m: int = 32  # HNSW graph degree M (faiss default is 32; higher = better recall, more memory)
    hnsw_ef_construction: int = 200  # efConstruction: candidate list size while building (faiss default 40)
    hnsw_ef_search: int = 128  # efSearch: candidate list size per query (faiss default 16, too low for recall)
    hnsw_candidates: int = 256  # neighbours fetched per image in HNSW mode; softmax runs over these


@dataclass
class ZeroShotConfig:
    templates: str = "default"  # none | default | clip80 (prompt templates per label)
    top_k: int = 5  # labels returned per image
    threshold: float | None = None  # cosine below which the answer is "none of these" (null = off)
    multi_label: bool = False  # independent per-label scores instead of one softmax
    multi_label_min_prob: float = 0.5  # multi-label: a label is present from this probability on
    batch_size: int = 32  # images per forward pass
    text_batch_size: int = 256  # prompts per forward pass when building a label index
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 weights on CPUs/GPUs with native bf16, else fp32
    cache_dir: str | None = None  # label-index cache; null = $SNAPSIGHT_CACHE or ~/.cache/snapsight; "" = off
    index: IndexConfig = field(default_factory=IndexConfig)

    def request(self, top_k: int | None, threshold: float | None, multi_label: bool | None,
                ) -> tuple[int, float | None, bool]:
        """A request's ``(top_k, threshold, multi_label)``: each value given, else this config's."""
        top_k = self.top_k if top_k is None else top_k
        if top_k < 1:
            raise SnapsightError(f"top_k must be at least 1, got {top_k}")
        return (top_k, self.threshold if threshold is None else threshold,
                self.multi_label if multi_label is None else multi_label)


@dataclass
class ZeroShotResult:
    """Top-k answer for one image; lists are aligned and sorted by ``probs`` descending."""

    labels: list[str]
    probs: list[float]
    scores: list[float]  # cosine similarities
    none_of_these: bool = False
    multi_label: bool = False
    present: list[bool] | None = None  # multi-label: which of ``labels`` pass the probability/threshold
    image: str | None = None  # file name when classified from a path
    # Models that carry a familiarity reference (snapsight.ondevice.familiarity): the cosine to the nearest
    # training-image reference, and whether it is below the model's threshold. None: the model has no reference.
    familiarity: float | None = None
    unfamiliar: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "labels": list(self.labels),
            "probs": [float(p) for p in self.probs],
            "scores": [float(s) for s in self.scores],
            "none_of_these": bool(self.none_of_these),
            "multi_label": bool(self.multi_label),
        }
        if self.present is not None:
            d["present"] = list(self.present)
        if self.image is not None:
            d["image"] = self.image
        if self.familiarity is not None:
            d["familiarity"] = round(float(self.familiarity), 4)
            d["unfamiliar"] = bool(self.unfamiliar)
        return d


def softmax_probs(scores: np.ndarray, logit_scale: float) -> np.ndarray:
    """CLIP's zero-shot probabilities ``softmax(logit_scale * cosine)`` over the last axis: ``(B, C)`` float32."""
    z = np.asarray(scores, dtype=np.float32) * np.float32(logit_scale)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)  # overflow-free form of 1 / (1 + e^-x)


def multi_label_probs(scores: np.ndarray, null_scores: np.ndarray, logit_scale: float,
                      logit_bias: float | None = None) -> np.ndarray:
    """Independent per-label probabilities ``(B, C)``.

    SigLIP-style models (trained with a sigmoid loss, they carry ``logit_bias``) give
    ``sigmoid(logit_scale * cos + logit_bias)`` directly. CLIP models were trained with a softmax, so each label
    is compared with a neutral "null" text (:data:`NULL_PROMPTS`): the probability is CLIP's own two-way softmax
    between the label and the null class, ``sigmoid(logit_scale * (cos(x, label) - cos(x, null)))``. It does not
    depend on which other labels were asked, so several labels can be present at once, and none when the image
    is closer to "a generic photo" than to every label. ``null_scores``: ``(B,)``.
    """
    s = np.asarray(scores, dtype=np.float32)
    if logit_bias is not None:
        return _sigmoid(s * np.float32(logit_scale) + np.float32(logit_bias))
    null = np.asarray(null_scores, dtype=np.float32).reshape(-1, 1)
    return _sigmoid(np.float32(logit_scale) * (s - null))


def multi_label_explanation(logit_scale: float, logit_bias: float | None, min_prob: float,
                            threshold: float | None) -> str:
    """One line saying what a multi-label percentage is and when a label counts as present."""
    if logit_bias is not None:
        what = f"sigmoid({logit_scale:.1f} x cos(image, label) {logit_bias:+.2f}), the model's own sigmoid"
    else:
        what = (f"sigmoid({logit_scale:.1f} x (cos(image, label) - cos(image, a generic photo))): how much closer the "
                "image is to the label than to 'a photo.', each label on its own, so they need not add up to 100%")
    rule = f"present = {100 * min_prob:.0f}% or more" + (f" and cosine >= {threshold}" if threshold is not None else "")
    return f"multi-label scores are {what}; {rule}"


def top_k_results(probs: np.ndarray, scores: np.ndarray, label_names: Sequence[str], top_k: int,
                  threshold: float | None, multi_label: bool, multi_label_min_prob: float,
                  label_ids: np.ndarray | None = None) -> list[ZeroShotResult]:
    """One :class:`ZeroShotResult` per row of ``probs``/``scores`` ``(B, C)``: the ``top_k`` labels by probability.

    ``label_ids`` ``(B, C)`` maps columns to labels when the columns are per-image candidates (HNSW search);
    ``None`` when column ``c`` is label ``c``. Ties keep the lower label id first, as a stable sort does.
    """
    probs = np.asarray(probs, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    k = min(int(top_k), probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    results = []
    for b in range(probs.shape[0]):
        cols = order[b]
        p = [float(x) for x in probs[b, cols]]
        s = [float(x) for x in scores[b, cols]]
        ids = cols if label_ids is None else label_ids[b, cols]
        present = None
        if multi_label:
            present = [pi >= multi_label_min_prob and (threshold is None or si >= threshold) for pi, si in zip(p, s)]
            none = not any(present)
        else:
            none = threshold is not None and s[0] < threshold
        results.append(ZeroShotResult(labels=[label_names[int(i)] for i in ids], probs=p, scores=s,
                                      none_of_these=bool(none), multi_label=bool(multi_label), present=present))
    return results


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """float32, C-contiguous, unit-norm rows (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def mean_prompt_embeddings(prompt_emb: np.ndarray, owners: Sequence[int], num_labels: int) -> np.ndarray:
    """``(num_labels, dim)``: each label's normalised mean over its prompts' normalised embeddings ``(P, dim)``
    (prompt ensembling, Radford et al. 2021 sec. 3.1.4); the numpy twin of
    :func:`snapsight.zeroshot.prompts.mean_prompt_embeddings`."""
    sums = np.zeros((num_labels, prompt_emb.shape[1]), dtype=np.float32)
    np.add.at(sums, np.asarray(list(owners), dtype=np.int64), np.asarray(prompt_emb, dtype=np.float32))
    return normalize_rows(sums)
