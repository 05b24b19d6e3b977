"""Zero-shot image classification: load a CLIP model once, index label embeddings, classify images in batches.

Scores (CLIP, Radford et al. 2021, eq. in Fig. 3): with L2-normalised image embedding ``x`` and label
embeddings ``w_c`` (each the normalised mean of the label's prompt embeddings),

- ``scores[c] = x · w_c`` is the raw cosine similarity, in ``[-1, 1]``;
- ``probs = softmax(logit_scale.exp() * scores)`` over all labels (the model's own temperature),
  which is exactly what open_clip's zero-shot evaluation and ``CLIPModel.logits_per_image`` give.

Softmax always picks something; ``threshold`` (a cosine value) flags ``none_of_these`` when the best
label's cosine is below it. ``multi_label=True`` scores each label on its own (see
:func:`multi_label_probs`), for images with several things in them.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..data.images import open_image
from ..errors import SnapsightError
from ..models.clip import load_clip
from ..models.hub import LoadedClip
from ..models.text import encode_text_trimmed, token_lengths
from ..runtime import bf16_supported, resolve_device
from .index import IndexConfig, LabelIndex, cache_key, load_or_build_index
from .prompts import LabelSet, load_label_set, mean_prompt_embeddings, resolve_templates

log = logging.getLogger(__name__)

# Neutral prompts: the "null" class of multi-label mode (a label must beat a generic photo to count as present).
NULL_PROMPTS = ("a photo.", "a picture.", "an image.", "a photo of something.", "a blurry photo.")


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
        return d


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bf16 where the hardware has native bf16 (bf16 weights ran ViT-B/32 images 2-4x faster than
    fp32 on this project's AVX512-BF16 CPU, and faster than ``torch.autocast``, so weights are cast)."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if bf16_supported(device) else torch.float32
    raise SnapsightError(f"precision must be auto, fp32 or bf16, got {precision!r}")


def softmax_probs(scores: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """CLIP's zero-shot probabilities: ``softmax(logit_scale * cosine)`` over the last dim. ``(B, C)``."""
    return torch.softmax(scores.float() * logit_scale, dim=-1)


def multi_label_probs(scores: torch.Tensor, null_scores: torch.Tensor, logit_scale: float,
                      logit_bias: float | None = None) -> torch.Tensor:
    """Independent per-label probabilities ``(B, C)``.

    SigLIP-style models (trained with a sigmoid loss, they carry ``logit_bias``) give
    ``sigmoid(logit_scale * cos + logit_bias)`` directly. CLIP models were trained with a softmax,
    so each label is compared with a neutral "null" text (``a photo.``, ...): the probability is
    CLIP's own two-way softmax between the label and the null class,
    ``sigmoid(logit_scale * (cos(x, label) - cos(x, null)))``. It does not depend on which other
    labels were asked, so several labels can be present at once, and none when the image is closer
    to "a generic photo" than to every label.
    """
    s = scores.float()
    if logit_bias is not None:
        return torch.sigmoid(s * logit_scale + logit_bias)
    return torch.sigmoid(logit_scale * (s - null_scores.float().reshape(-1, 1)))


def label_embeddings_from_prompts(prompt_emb: torch.Tensor, owners: Sequence[int], num_labels: int) -> np.ndarray:
    """``(num_labels, dim)`` float32 numpy: :func:`~snapsight.zeroshot.prompts.mean_prompt_embeddings`, the
    array the label index is built from."""
    return mean_prompt_embeddings(prompt_emb.cpu(), owners, num_labels).numpy()


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


class ZeroShotClassifier:
    """Zero-shot classifier over any CLIP model (see :func:`snapsight.models.clip.load_clip`).

    Example::

        clf = ZeroShotClassifier.load("ViT-B-32", pretrained="laion2b_s34b_b79k")
        [result] = clf.classify(["cat.jpg"], "cat, sunset, pizza")
        result.labels, result.probs, result.scores
    """

    def __init__(self, bundle: LoadedClip, device: torch.device | str = "cpu",
                 config: ZeroShotConfig | None = None):
        self.config = config or ZeroShotConfig()
        self.device = torch.device(device)
        self.bundle = bundle
        self.dtype = resolve_precision(self.config.precision, self.device)
        # read the temperature before any bf16 cast: bf16 rounds ln(100) to 4.59, i.e. a scale of 98.9
        self._logit_scale = float(bundle.model.logit_scale.detach().float().exp().reshape(-1)[0])
        bias = getattr(bundle.model, "logit_bias", None)
        self._logit_bias = None if bias is None else float(bias.detach().float().reshape(-1)[0])
        bundle.model.to(self.device)
        if self.dtype != torch.float32:
            bundle.model.to(self.dtype)
        bundle.model.eval()
        self._indexes: OrderedDict[str, tuple[LabelSet, LabelIndex, dict]] = OrderedDict()
        self._null_embedding: torch.Tensor | None = None
        self._last_request: tuple | None = None
        self.notes: list[str] = []  # notes from the last classify/label_index call (cleaning, truncation)
        with torch.inference_mode():
            probe = self._encode_text_batch(self.tokenizer(["a"]))
        self.embed_dim = int(probe.shape[-1])

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, model: str | os.PathLike | None = None, pretrained: str | None = None, device: str = "auto",
             precision: str | None = None, config: ZeroShotConfig | None = None,
             cache_dir: str | None = None) -> "ZeroShotClassifier":
        """Load ``model`` (None = the project's default model) with its own preprocessing and tokenizer."""
        config = dataclasses.replace(config or ZeroShotConfig())
        if precision is not None:
            config.precision = precision
        if cache_dir is not None:
            config.cache_dir = cache_dir
        dev = resolve_device(device)
        bundle = load_clip(model, pretrained, device="cpu")
        return cls(bundle, device=dev, config=config)

    # ------------------------------------------------------------------ open_clip-style attributes
    @property
    def model(self) -> nn.Module:
        return self.bundle.model

    @property
    def preprocess(self):
        return self.bundle.preprocess

    @property
    def tokenizer(self):
        return self.bundle.tokenizer

    @property
    def logit_scale(self) -> float:
        """The model's temperature ``logit_scale.exp()`` (read in fp32 at load time)."""
        return self._logit_scale

    @property
    def logit_bias(self) -> float | None:
        return self._logit_bias

    @property
    def model_info(self) -> dict[str, Any]:
        info = dict(self.bundle.info)
        info.update(embed_dim=self.embed_dim, precision=str(self.dtype).replace("torch.", ""),
                    device=str(self.device), logit_scale=self.logit_scale)
        return info

    # ------------------------------------------------------------------ encoders
    def _encode_text_batch(self, tokens: torch.Tensor) -> torch.Tensor:
        emb = encode_text_trimmed(self.bundle, tokens.to(self.device))
        return torch.nn.functional.normalize(emb.float(), dim=-1).cpu()

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """Normalised text embeddings ``(n, dim)`` float32."""
        if not texts:
            return torch.zeros(0, self.embed_dim)
        return self.encode_tokens(self.tokenizer(list(texts)), batch_size)

    @torch.inference_mode()
    def encode_tokens(self, tokens: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Normalised embeddings ``(n, dim)`` of token rows ``(n, context_length)``.

        Rows are sorted by length and batched, so each batch runs at its own longest prompt's length
        (see :func:`~snapsight.models.text.encode_text_trimmed`), not at the full context.
        """
        bs = batch_size or self.config.text_batch_size
        order = torch.argsort(token_lengths(self.bundle, tokens), stable=True)
        out = torch.empty(len(tokens), self.embed_dim, dtype=torch.float32)
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            out[idx] = self._encode_text_batch(tokens[idx])
        return out

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image | str | os.PathLike], batch_size: int | None = None,
                      ) -> torch.Tensor:
        """Normalised image embeddings ``(n, dim)`` float32; paths are opened with :func:`open_image`."""
        bs = batch_size or self.config.batch_size
        outs = []
        for start in range(0, len(images), bs):
            chunk = [open_image(im) for im in images[start:start + bs]]
            pixels = self.bundle.preprocess_batch(chunk).to(self.device, self.dtype)
            emb = self.model.encode_image(pixels)
            outs.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        if not outs:
            return torch.zeros(0, self.embed_dim)
        return torch.cat(outs)

    # ------------------------------------------------------------------ label index
    def _key_parts(self, label_set: LabelSet, templates: Sequence[str]) -> dict[str, Any]:
        info = self.bundle.info
        return {
            "model": info.get("name"), "pretrained": info.get("pretrained"), "fingerprint": info.get("fingerprint"),
            "precision": str(self.dtype), "labels": label_set.key(), "templates": list(templates),
        }

    def label_index(self, labels: str | Sequence[str] | LabelSet, templates: str | Sequence[str] | None = None,
                    labels_file: str | os.PathLike | None = None) -> tuple[LabelSet, LabelIndex]:
        """Parse ``labels`` and return ``(label_set, index)``, from memory, the disk cache, or built now."""
        request = (_freeze(labels), _freeze(templates), labels_file)
        last = self._last_request
        if last is not None and _same_request(last[0], request):
            return last[1], last[2]  # repeated call (e.g. one image at a time): skip parsing and hashing
        label_set = load_label_set(labels, labels_file)
        tmpl = resolve_templates(templates if templates is not None else self.config.templates)
        parts = self._key_parts(label_set, tmpl)
        mem_key = cache_key(parts)
        if mem_key in self._indexes:
            self._indexes.move_to_end(mem_key)
            _, index, extra = self._indexes[mem_key]
        else:
            index, from_cache, extra = load_or_build_index(
                parts, label_set.names, lambda: self._embed_labels(label_set, tmpl),
                cfg=self.config.index, cache_dir=self.config.cache_dir)
            if from_cache:
                log.debug("label index for %d labels loaded from cache", len(label_set))
            self._indexes[mem_key] = (label_set, index, extra)
            while len(self._indexes) > 4:
                self._indexes.popitem(last=False)
        self.notes = list(label_set.notes) + list(extra.get("notes", []))
        self._last_request = (request, label_set, index)
        return label_set, index

    def clear_memory_cache(self) -> None:
        """Forget in-memory label indexes (the disk cache is kept)."""
        self._indexes.clear()
        self._last_request = None

    def _embed_labels(self, label_set: LabelSet, templates: Sequence[str]) -> tuple[np.ndarray, dict]:
        texts, owners = label_set.prompts(templates)
        tokens = self.tokenizer(texts)
        ctx = tokens.shape[1]
        truncated = sorted({owners[i] for i in torch.nonzero(token_lengths(self.bundle, tokens) >= ctx).flatten().tolist()})
        emb = self.encode_tokens(tokens)
        notes = []
        if truncated:
            shown = ", ".join(repr(_short(label_set.labels[i].name)) for i in truncated[:3])
            more = f" and {len(truncated) - 3} more" if len(truncated) > 3 else ""
            notes.append(f"{len(truncated)} label(s) had prompts longer than the model's {ctx}-token context; "
                         f"they were truncated: {shown}{more}")
        return label_embeddings_from_prompts(emb, owners, len(label_set)), {"notes": notes}

    # ------------------------------------------------------------------ classify
    def classify(
        self,
        images: Sequence[Image.Image | str | os.PathLike] | Image.Image | str,
        labels: str | Sequence[str] | LabelSet,
        templates: str | Sequence[str] | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        multi_label: bool | None = None,
        batch_size: int | None = None,
    ) -> list[ZeroShotResult]:
        """Classify images (PIL or paths) against ``labels``; one :class:`ZeroShotResult` per image."""
        if isinstance(images, (Image.Image, str, os.PathLike)):
            images = [images]
        label_set, index = self.label_index(labels, templates)
        names = [str(im) if isinstance(im, (str, os.PathLike)) else None for im in images]
        image_emb = self.encode_images(list(images), batch_size=batch_size)
        results = self.classify_embeddings(
            image_emb, label_set, index, top_k=top_k, threshold=threshold, multi_label=multi_label)
        for r, n in zip(results, names):
            r.image = n
        return results

    @torch.inference_mode()
    def null_embedding(self) -> torch.Tensor:
        """Normalised mean embedding of :data:`NULL_PROMPTS` ``(dim,)`` (multi-label reference)."""
        if self._null_embedding is None:
            emb = self.encode_text(NULL_PROMPTS).mean(dim=0)
            self._null_embedding = torch.nn.functional.normalize(emb, dim=-1)
        return self._null_embedding

    def classify_embeddings(
        self,
        image_emb: torch.Tensor,
        label_set: LabelSet,
        index: LabelIndex,
        top_k: int | None = None,
        threshold: float | None = None,
        multi_label: bool | None = None,
    ) -> list[ZeroShotResult]:
        """Results from normalised image embeddings ``(n, dim)`` and a label index."""
        cfg = self.config
        top_k = cfg.top_k if top_k is None else top_k
        threshold = cfg.threshold if threshold is None else threshold
        multi_label = cfg.multi_label if multi_label is None else multi_label
        if top_k < 1:
            raise SnapsightError(f"top_k must be at least 1, got {top_k}")
        k = min(top_k, index.num_labels)
        labels = label_set.labels
        if len(image_emb) == 0:
            return []
        if index.kind == "hnsw":
            # Softmax over the nearest candidates only: labels far outside them carry ~0 probability
            # at CLIP's temperature (logit_scale 100 turns a 0.1 cosine gap into e^-10).
            n_cand = min(max(cfg.index.hnsw_candidates, k), index.num_labels)
            cand_scores, cand_ids = index.search(image_emb.numpy(), n_cand)
            scores = torch.from_numpy(cand_scores)
            ids = torch.from_numpy(cand_ids)
        else:
            scores = index.similarities(image_emb)
            ids = None
        if multi_label:
            probs = multi_label_probs(scores, image_emb @ self.null_embedding(), self.logit_scale, self.logit_bias)
        else:
            probs = softmax_probs(scores, self.logit_scale)
        top_p, top_i = probs.topk(k, dim=-1)
        top_s = scores.gather(1, top_i)
        if ids is not None:
            top_i = ids.gather(1, top_i)
        results = []
        for b in range(len(image_emb)):
            label_ids = top_i[b].tolist()
            p = top_p[b].tolist()
            s = top_s[b].tolist()
            present = None
            if multi_label:
                present = [pi >= cfg.multi_label_min_prob and (threshold is None or si >= threshold)
                           for pi, si in zip(p, s)]
                none = not any(present)
            else:
                none = threshold is not None and s[0] < threshold
            results.append(ZeroShotResult(labels=[labels[i].name for i in label_ids], probs=p, scores=s,
                                          none_of_these=none, multi_label=bool(multi_label), present=present))
        return results


def _freeze(x: Any) -> Any:
    """Lists become tuples, so a list the caller mutates later cannot change a remembered request."""
    return ("list", tuple(x)) if isinstance(x, list) else x


def _same_request(a: tuple, b: tuple) -> bool:
    """Whether two frozen ``(labels, templates, labels_file)`` requests are the same.

    Cheap next to parsing and hashing every label. Strings, tuples and lists compare by value; a
    :class:`LabelSet` by identity; a labels file never matches (its content may have changed).
    """
    (labels_a, tmpl_a, file_a), (labels_b, tmpl_b, file_b) = a, b
    if file_a is not None or file_b is not None:
        return False
    for x, y in ((labels_a, labels_b), (tmpl_a, tmpl_b)):
        if isinstance(x, LabelSet) or isinstance(y, LabelSet):
            if x is not y:
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True
