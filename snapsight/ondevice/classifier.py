"""Classifiers over an export folder, run by onnxruntime with numpy/PIL preprocessing and the `tokenizers` library:
no torch, open_clip or transformers is imported on this path.

:class:`OnnxZeroShotClassifier` answers like :class:`snapsight.zeroshot.ZeroShotClassifier` (same templates, top-k,
threshold, multi-label and results, from the shared :mod:`snapsight.ondevice.scoring`); label embeddings come from
the export's prebuilt index when the labels and templates match, else from the disk cache
(:mod:`snapsight.ondevice.label_cache`), else from the exported text tower. :class:`OnnxProbeClassifier` runs an
exported probe (encoder + head in one graph) like :class:`snapsight.probe.Classifier`.
"""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..artifacts.export import IMAGE_GRAPH, LABEL_EMBEDDINGS, LABEL_NAMES, TEXT_GRAPH, TOKENIZER_FILE
from ..data.images import open_image
from ..errors import SnapsightError
from ..labels import LabelSet, load_label_set, resolve_templates
from .export_dir import ExportDir
from .familiarity import FamiliarityReference, RecentFeatures, read_reference
from .label_cache import load_or_build_label_embeddings
from .preprocess import check_preprocessing, preprocess_batch
from .scoring import (
    NULL_PROMPTS,
    ZeroShotConfig,
    ZeroShotResult,
    mean_prompt_embeddings,
    multi_label_probs,
    normalize_rows,
    softmax_probs,
    top_k_results,
)
from .text import clean_text

log = logging.getLogger(__name__)


def load_export(path: str | os.PathLike, config: ZeroShotConfig | None = None, threads: int | None = None,
                ) -> OnnxZeroShotClassifier | OnnxProbeClassifier:
    """Open an export folder as the classifier its manifest names (zero-shot or probe)."""
    export = ExportDir(path)
    if export.task == "zeroshot":
        return OnnxZeroShotClassifier(export, config=config, threads=threads)
    if export.task == "classifier":
        return OnnxProbeClassifier(export, threads=threads)
    raise SnapsightError(f"{export.path}: unknown export task {export.task!r}")


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


class _ImageTower:
    """The image graph with its preprocessing: PIL images or paths -> graph output, in batches."""

    def __init__(self, export: ExportDir, threads: int | None):
        self.export = export
        self.preprocessing = check_preprocessing(export.manifest["preprocessing"])
        self._threads = threads
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = self.export.session(IMAGE_GRAPH, self._threads)
        return self._session

    def run(self, images: Sequence[Image.Image | str | os.PathLike], batch_size: int,
            outputs: Sequence[str] | None = None) -> list[list[np.ndarray]]:
        """Per batch, the graph's ``outputs`` (default: its first output only), in that order."""
        if batch_size < 1:
            raise SnapsightError(f"batch_size must be at least 1, got {batch_size}")
        name = self.session.get_inputs()[0].name
        wanted = list(outputs) if outputs else [self.session.get_outputs()[0].name]
        outs = []
        for start in range(0, len(images), batch_size):
            chunk = [open_image(im) for im in images[start:start + batch_size]]
            outs.append(self.session.run(wanted, {name: preprocess_batch(chunk, self.preprocessing)}))
        return outs


class OnnxZeroShotClassifier:
    """Zero-shot classification over an exported CLIP model.

    Example::

        clf = OnnxZeroShotClassifier.load("runs/export/vit-b-32")
        [result] = clf.classify(["cat.jpg"], "cat, sunset, pizza")
    """

    def __init__(self, export: ExportDir, config: ZeroShotConfig | None = None, threads: int | None = None):
        if export.task != "zeroshot":
            raise SnapsightError(f"{export.path} is an exported {export.task}, not a zero-shot model")
        self.export = export
        self.config = config or ZeroShotConfig()
        m = export.manifest
        self.logit_scale = float(m["logit_scale"])
        self.logit_bias = None if m.get("logit_bias") is None else float(m["logit_bias"])
        self.embed_dim = int(m["embed_dim"])
        self.context_length = int(m["text"]["context_length"])
        self._threads = threads
        self._image = _ImageTower(export, threads)
        self._text_session: Any = None
        self._tokenizer: Any = None
        self._null: np.ndarray | None = None
        self._indexes: OrderedDict[str, tuple[LabelSet, np.ndarray, list[str]]] = OrderedDict()
        self.notes: list[str] = []
        # The source model's "unfamiliar image" reference, when it carried one; with layer statistics, the image
        # graph has a second output computed in the same pass as the embedding.
        fam = m.get("familiarity")
        self.familiarity: FamiliarityReference | None = None
        self._stats_output: str | None = None
        if fam:
            self.familiarity = read_reference(export.file(fam["file"]))
            self._stats_output = fam.get("output")
        self._recent = RecentFeatures()

    @classmethod
    def load(cls, path: str | os.PathLike, config: ZeroShotConfig | None = None,
             threads: int | None = None) -> OnnxZeroShotClassifier:
        return cls(ExportDir(path), config=config, threads=threads)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self._image.preprocessing

    @property
    def model_info(self) -> dict[str, Any]:
        m = self.export.manifest
        return {"name": m.get("source", {}).get("name"), "kind": "onnx-export", "source": str(self.export.path),
                "pretrained": m.get("source", {}).get("pretrained"), "precision": m.get("precision"),
                "opset": m.get("opset"), "embed_dim": self.embed_dim, "image_size": self.preprocessing["crop"],
                "logit_scale": self.logit_scale}

    @property
    def model(self) -> Any:
        """There is no torch module in an export; what needs one (the demo's saliency heatmap) says so."""
        raise SnapsightError("an ONNX export has no gradients, so it cannot draw the why-this-label heatmap; "
                             "run the torch model for that")

    # ------------------------------------------------------------------ text
    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.export.file(TOKENIZER_FILE)))
        return self._tokenizer

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (n, context_length) int64, truncated (n,) bool)``, as the model's own tokenizer gives them."""
        clean = self.export.manifest["text"].get("clean", "none")
        enc = self.tokenizer.encode_batch([clean_text(t, clean) for t in texts])
        ids = np.asarray([e.ids for e in enc], dtype=np.int64).reshape(len(enc), -1)
        if ids.shape[1] != self.context_length:
            raise SnapsightError(f"{self.export.path}: the tokenizer gives {ids.shape[1]} tokens, the text tower "
                                 f"takes {self.context_length}; re-export the model")
        return ids, np.asarray([bool(e.overflowing) for e in enc])

    def encode_tokens(self, ids: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Normalised text embeddings ``(n, dim)`` float32 of token rows ``(n, context_length)``."""
        if self._text_session is None:
            self._text_session = self.export.session(TEXT_GRAPH, self._threads)
        bs = batch_size or self.config.text_batch_size
        name = self._text_session.get_inputs()[0].name
        out = [self._text_session.run(None, {name: ids[i:i + bs]})[0] for i in range(0, len(ids), bs)]
        return normalize_rows(np.concatenate(out)) if out else np.zeros((0, self.embed_dim), np.float32)

    def encode_text(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Normalised text embeddings ``(n, dim)`` float32."""
        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        return self.encode_tokens(self.tokenize(texts)[0], batch_size)

    def null_embedding(self) -> np.ndarray:
        """Normalised mean embedding of :data:`NULL_PROMPTS` ``(dim,)`` (the multi-label reference)."""
        if self._null is None:
            self._null = normalize_rows(self.encode_text(NULL_PROMPTS).mean(axis=0, keepdims=True))[0]
        return self._null

    # ------------------------------------------------------------------ images
    def encode_images(self, images: Sequence[Image.Image | str | os.PathLike], batch_size: int | None = None,
                      ) -> np.ndarray:
        """Normalised image embeddings ``(n, dim)`` float32; paths are opened with :func:`open_image`."""
        images = list(images)
        bs = batch_size or self.config.batch_size
        if self._stats_output is None:
            outs = self._image.run(images, bs)
        else:
            outs = self._image.run(images, bs, [self._image.session.get_outputs()[0].name, self._stats_output])
            if outs:
                # kept for annotate_familiarity on these same images (the CLI's and the demo's order of calls)
                self._recent.remember(images, np.concatenate([o[1] for o in outs]))
        if not outs:
            return np.zeros((0, self.embed_dim), np.float32)
        return normalize_rows(np.concatenate([o[0] for o in outs]))

    def familiarity_scores(self, images: Sequence[Image.Image | str | os.PathLike],
                           batch_size: int | None = None) -> np.ndarray:
        """Familiarity ``(n,)`` of each image under the source model's reference (negative: unfamiliar), as
        :meth:`snapsight.zeroshot.ZeroShotClassifier.familiarity_scores`. One sentence when the export has none."""
        if self.familiarity is None:
            raise SnapsightError("this export carries no familiarity reference (its source model had none)")
        images = list(images)
        if self._stats_output is None:  # a reference of embeddings
            return self.familiarity.scores(self.encode_images(images, batch_size))
        feats = self._recent.get(images)
        if feats is None:
            self.encode_images(images, batch_size)
            feats = self._recent.get(images)
        return self.familiarity.scores(feats)

    # ------------------------------------------------------------------ labels
    def _embed_labels(self, label_set: LabelSet, templates: Sequence[str],
                      encode_tokens: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, list[str]]:
        texts, owners = label_set.prompts(templates)
        ids, truncated_rows = self.tokenize(texts)
        notes = []
        truncated = sorted({owners[i] for i in np.flatnonzero(truncated_rows)})
        if truncated:
            shown = ", ".join(repr(_short(label_set.labels[i].name)) for i in truncated[:3])
            more = f" and {len(truncated) - 3} more" if len(truncated) > 3 else ""
            notes.append(f"{len(truncated)} label(s) had prompts longer than the model's {self.context_length}-token "
                         f"context; they were truncated: {shown}{more}")
        return mean_prompt_embeddings((encode_tokens or self.encode_tokens)(ids), owners, len(label_set)), notes

    def _prebuilt(self, label_set: LabelSet, templates: Sequence[str]) -> np.ndarray | None:
        """The export's own label index, when it was built for exactly these labels and templates."""
        built = self.export.manifest.get("labels")
        if not built or built.get("key") != label_set.key() or list(built.get("templates", [])) != list(templates):
            return None
        names = json.loads(self.export.file(LABEL_NAMES).read_text(encoding="utf-8"))
        if names != label_set.names:
            return None
        return np.load(self.export.file(LABEL_EMBEDDINGS))

    def label_index(self, labels: str | Sequence[str] | LabelSet, templates: str | Sequence[str] | None = None,
                    labels_file: str | os.PathLike | None = None,
                    encode_tokens: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[LabelSet, np.ndarray]:
        """Parse ``labels`` and return ``(label_set, embeddings (num_labels, dim))``: from memory, the export's
        prebuilt index, the disk cache, or the text tower now.

        ``encode_tokens`` replaces :meth:`encode_tokens` when prompts must be embedded, as in
        :meth:`snapsight.zeroshot.ZeroShotClassifier.label_index` (the demo's chunked, turn-taking encoder)."""
        label_set = labels if isinstance(labels, LabelSet) else load_label_set(labels, labels_file)
        tmpl = resolve_templates(templates if templates is not None else self.config.templates)
        m = self.export.manifest
        parts = {"model": [m["files"][TEXT_GRAPH], m["files"][TOKENIZER_FILE]], "precision": m.get("precision"),
                 "labels": label_set.key(), "templates": list(tmpl)}
        mem_key = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
        if mem_key in self._indexes:
            self._indexes.move_to_end(mem_key)
            _, emb, notes = self._indexes[mem_key]
        else:
            emb = self._prebuilt(label_set, tmpl)
            notes = []
            if emb is None:
                emb, notes = load_or_build_label_embeddings(parts, label_set.names,
                                                            lambda: self._embed_labels(label_set, tmpl, encode_tokens),
                                                            cache_dir=self.config.cache_dir)
            emb = normalize_rows(emb)
            self._indexes[mem_key] = (label_set, emb, notes)
            while len(self._indexes) > 4:
                self._indexes.popitem(last=False)
        self.notes = list(label_set.notes) + list(notes)
        return label_set, emb

    def annotate_familiarity(self, results: list[ZeroShotResult], images: Sequence[Any],
                             batch_size: int | None = None) -> list[ZeroShotResult]:
        """Set ``familiarity``/``unfamiliar`` of ``results`` (one per image) when the export carries a
        layer-statistics reference, from the features :meth:`encode_images` computed for these same images (or a
        new pass); embedding references are scored by :meth:`classify_embeddings`, and exports without a reference
        leave both ``None``. Returns ``results``."""
        if self.familiarity is None or self._stats_output is None or not results:
            return results
        fam = self.familiarity_scores(images, batch_size)
        for r, f, u in zip(results, fam.tolist(), self.familiarity.unfamiliar(fam).tolist()):
            r.familiarity, r.unfamiliar = f, u
        return results

    # ------------------------------------------------------------------ classify
    def classify(self, images: Sequence[Image.Image | str | os.PathLike] | Image.Image | str,
                 labels: str | Sequence[str] | LabelSet, templates: str | Sequence[str] | None = None,
                 top_k: int | None = None, threshold: float | None = None, multi_label: bool | None = None,
                 batch_size: int | None = None) -> list[ZeroShotResult]:
        """Classify images (PIL or paths) against ``labels``; one :class:`ZeroShotResult` per image."""
        if isinstance(images, (Image.Image, str, os.PathLike)):
            images = [images]
        label_set, emb = self.label_index(labels, templates)
        names = [str(im) if isinstance(im, (str, os.PathLike)) else None for im in images]
        images = list(images)
        results = self.classify_embeddings(self.encode_images(images, batch_size), label_set, emb,
                                           top_k=top_k, threshold=threshold, multi_label=multi_label)
        self.annotate_familiarity(results, images, batch_size)
        for r, n in zip(results, names):
            r.image = n
        return results

    def classify_embeddings(self, image_emb: np.ndarray, label_set: LabelSet, label_emb: np.ndarray,
                            top_k: int | None = None, threshold: float | None = None,
                            multi_label: bool | None = None) -> list[ZeroShotResult]:
        """Results from normalised image embeddings ``(n, dim)`` and label embeddings ``(num_labels, dim)``.

        Exact scores for every label (one matrix product): the softmax needs them all, and the on-device path
        has no approximate (HNSW) index.
        """
        cfg = self.config
        top_k, threshold, multi_label = cfg.request(top_k, threshold, multi_label)
        if len(image_emb) == 0:
            return []
        scores = image_emb @ label_emb.T
        if multi_label:
            probs = multi_label_probs(scores, image_emb @ self.null_embedding(), self.logit_scale, self.logit_bias)
        else:
            probs = softmax_probs(scores, self.logit_scale)
        results = top_k_results(probs, scores, label_set.names, top_k, threshold, bool(multi_label),
                                cfg.multi_label_min_prob)
        fam = self.familiarity
        if fam is not None and self._stats_output is None and fam.dim == image_emb.shape[1]:
            scored = fam.scores(image_emb)
            for r, f, u in zip(results, scored.tolist(), fam.unfamiliar(scored).tolist()):
                r.familiarity, r.unfamiliar = f, u
        return results


class OnnxProbeClassifier:
    """An exported probe classifier: one graph from pixels to class probabilities, with its class names."""

    def __init__(self, export: ExportDir, threads: int | None = None):
        if export.task != "classifier":
            raise SnapsightError(f"{export.path} is an exported {export.task}, not a probe classifier")
        self.export = export
        self.class_names = list(export.manifest["class_names"])
        self._image = _ImageTower(export, threads)

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int | None = None) -> OnnxProbeClassifier:
        return cls(ExportDir(path), threads=threads)

    def predict_proba(self, images: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """``(n, C)`` probabilities for images (PIL images or anything :func:`open_image` reads)."""
        outs = self._image.run(list(images), batch_size)
        return np.concatenate([o[0] for o in outs]) if outs else np.zeros((0, len(self.class_names)), np.float32)

    def predict(self, images: Sequence[Any], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Per image, ``[(class_name, probability), ...]`` sorted by probability, highest first."""
        probs = self.predict_proba(images)
        k = max(1, min(top_k, len(self.class_names)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.class_names[int(i)], float(row[i])) for i in idx] for row, idx in zip(probs, order)]
