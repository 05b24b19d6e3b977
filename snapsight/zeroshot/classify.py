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

import contextlib
import copy
import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..data.images import open_image
from ..errors import SnapsightError
from ..models.clip import load_clip
from ..models.hub import LoadedClip
from ..models.text import encode_text_trimmed, token_lengths
from ..ondevice.familiarity import FamiliarityReference, RecentFeatures, load_reference
from ..ondevice.scoring import NULL_PROMPTS, IndexConfig, ZeroShotConfig, ZeroShotResult  # noqa: F401 (re-exported)
from ..ondevice.scoring import mean_prompt_embeddings as np_mean_prompt_embeddings
from ..ondevice.scoring import multi_label_probs as np_multi_label_probs
from ..ondevice.scoring import softmax_probs as np_softmax_probs
from ..runtime import bf16_supported, resolve_device
from .adapter import CacheAdapter, build_example_cache, examples_dataset, select_shots
from .index import LabelIndex, cache_key, load_or_build_index
from .layer_stats import find_layers, joined_statistics, layer_statistics, recording_statistics
from .prompts import LabelSet, load_label_set, resolve_templates

log = logging.getLogger(__name__)

# The settings, the result type (ZeroShotResult: add result fields there) and the probability maths live in
# snapsight.ondevice.scoring, torch-free, so the ONNX path shares them; they are re-exported here.


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
    """:func:`snapsight.ondevice.scoring.softmax_probs` on a tensor: ``softmax(logit_scale * cosine)``. ``(B, C)``."""
    return torch.from_numpy(np_softmax_probs(scores.detach().float().cpu().numpy(), logit_scale))


def multi_label_probs(scores: torch.Tensor, null_scores: torch.Tensor, logit_scale: float,
                      logit_bias: float | None = None) -> torch.Tensor:
    """:func:`snapsight.ondevice.scoring.multi_label_probs` on tensors: independent per-label probabilities
    ``(B, C)``, against the null prompts (CLIP) or with the model's own sigmoid (SigLIP, ``logit_bias``)."""
    return torch.from_numpy(np_multi_label_probs(scores.detach().float().cpu().numpy(),
                                                 null_scores.detach().float().cpu().numpy(), logit_scale, logit_bias))


def label_embeddings_from_prompts(prompt_emb: torch.Tensor, owners: Sequence[int], num_labels: int) -> np.ndarray:
    """``(num_labels, dim)`` float32 numpy: :func:`~snapsight.ondevice.scoring.mean_prompt_embeddings` (prompt
    ensembling, shared with the ONNX path), the array the label index is built from."""
    return np_mean_prompt_embeddings(prompt_emb.cpu().float().numpy(), owners, num_labels)


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
        self._indexes_lock = threading.Lock()  # the demo builds label indexes from several request threads
        self._null_embedding: torch.Tensor | None = None
        self._last_request: tuple | None = None
        self._recent = RecentFeatures()  # familiarity features of the images encoded last
        self.cache_adapter: CacheAdapter | None = None  # few-shot examples (with_examples); None = zero-shot
        self.notes: list[str] = []  # notes from the last classify/label_index call (cleaning, truncation)
        source = bundle.info.get("source")  # a model folder may carry an "unfamiliar image" reference
        self.familiarity: FamiliarityReference | None = load_reference(source) if source and os.path.isdir(
            source) else None
        if self.familiarity is not None and self.familiarity.layers:
            find_layers(bundle.model, self.familiarity.layers)  # one sentence now rather than at the first image
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
                      familiarity: bool = True) -> torch.Tensor:
        """Normalised image embeddings ``(n, dim)`` float32; paths are opened with :func:`open_image`.

        With a layer-statistics familiarity reference the same pass also records the statistics that
        :meth:`annotate_familiarity` reads for these images; ``familiarity=False`` skips that where no flag will be
        asked for (search indexes, few-shot examples); a flag asked for later is then measured in a pass of its own."""
        bs = batch_size or self.config.batch_size
        layers = self.familiarity.layers if self.familiarity is not None and familiarity else ()
        outs, stats = [], []
        with contextlib.ExitStack() as stack:
            # the familiarity reference's layer statistics come out of the same pass (see annotate_familiarity)
            captured = stack.enter_context(recording_statistics(self.model, layers)) if layers else None
            for start in range(0, len(images), bs):
                chunk = [open_image(im) for im in images[start:start + bs]]
                pixels = self.bundle.preprocess_batch(chunk).to(self.device, self.dtype)
                emb = self.model.encode_image(pixels)
                outs.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
                if captured is not None:
                    stats.append(joined_statistics(captured, layers).cpu())
                    captured.clear()
        if not outs:
            return torch.zeros(0, self.embed_dim)
        if stats:
            self._recent.remember(images, torch.cat(stats).numpy())
        return torch.cat(outs)

    # ------------------------------------------------------------------ label index
    def _key_parts(self, label_set: LabelSet, templates: Sequence[str]) -> dict[str, Any]:
        info = self.bundle.info
        return {
            "model": info.get("name"), "pretrained": info.get("pretrained"), "fingerprint": info.get("fingerprint"),
            "precision": str(self.dtype), "labels": label_set.key(), "templates": list(templates),
        }

    def label_index(self, labels: str | Sequence[str] | LabelSet, templates: str | Sequence[str] | None = None,
                    labels_file: str | os.PathLike | None = None,
                    encode_tokens: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[LabelSet, LabelIndex]:
        """Parse ``labels`` and return ``(label_set, index)``, from memory, the disk cache, or built now.

        ``encode_tokens`` replaces :meth:`encode_tokens` when prompts must be embedded (the demo passes one that
        works in short chunks between other requests' image batches and stops when the client has gone).
        """
        request = (_freeze(labels), _freeze(templates), labels_file)
        last = self._last_request
        if last is not None and _same_request(last[0], request):
            return last[1], last[2]  # repeated call (e.g. one image at a time): skip parsing and hashing
        label_set = load_label_set(labels, labels_file)
        tmpl = resolve_templates(templates if templates is not None else self.config.templates)
        parts = self._key_parts(label_set, tmpl)
        mem_key = cache_key(parts)
        with self._indexes_lock:
            hit = self._indexes.get(mem_key)
            if hit is not None:
                self._indexes.move_to_end(mem_key)
        if hit is not None:
            _, index, extra = hit
        else:
            index, from_cache, extra = load_or_build_index(
                parts, label_set.names, lambda: self._embed_labels(label_set, tmpl, encode_tokens),
                cfg=self.config.index, cache_dir=self.config.cache_dir)
            if from_cache:
                log.debug("label index for %d labels loaded from cache", len(label_set))
            with self._indexes_lock:
                self._indexes[mem_key] = (label_set, index, extra)
                while len(self._indexes) > 4:
                    self._indexes.popitem(last=False)
        self.notes = list(label_set.notes) + list(extra.get("notes", []))
        self._last_request = (request, label_set, index)
        return label_set, index

    def with_examples(self, examples: str | os.PathLike | Any, shots: int | None = None, seed: int = 0,
                      alpha: float | None = None, beta: float | None = None, finetune_steps: int = 0,
                      progress: bool = False, cache_dir: str | None = None) -> "ZeroShotClassifier":
        """A classifier that adds a cache of labeled example images to the zero-shot scores (Tip-Adapter, see
        :mod:`.adapter`); it shares this one's model and label indexes.

        ``examples``: a labeled source (class folders, CSV/JSONL, saved Hugging Face dataset, ``fashion-mnist:train``),
        a :class:`~snapsight.data.labeled.LabeledDataset` or ``{label: [images]}``; ``shots`` keeps at most that many
        per class (drawn with ``seed``). ``alpha``/``beta`` default to a leave-one-out choice on the examples;
        ``finetune_steps`` > 0 also fine-tunes the cache keys (Tip-F). Without examples it classifies exactly as
        zero-shot. Example labels must be among the labels classified against. The examples' features are cached
        beside the label indexes (``cache_dir``, default the config's; ``""`` keeps them in memory only).
        """
        dataset = examples_dataset(examples)
        if shots is not None:
            dataset = dataset.subset(select_shots(dataset.labels, shots, seed), tag=f"shots{shots}-seed{seed}")
        info = self.bundle.info
        model_key = {"model": info.get("name"), "pretrained": info.get("pretrained"),
                     "fingerprint": info.get("fingerprint"), "precision": str(self.dtype)}
        cache = build_example_cache(dataset, lambda images: self.encode_images(images, familiarity=False), model_key,
                                    cache_dir=self.config.cache_dir if cache_dir is None else cache_dir,
                                    batch_size=self.config.batch_size,
                                    progress=progress)
        clone = copy.copy(self)
        clone.cache_adapter = CacheAdapter(cache, alpha, beta, finetune_steps)
        clone.notes = list(cache.notes)
        return clone

    def clear_memory_cache(self) -> None:
        """Forget in-memory label indexes (the disk cache is kept)."""
        self._indexes.clear()
        self._last_request = None

    def _embed_labels(self, label_set: LabelSet, templates: Sequence[str],
                      encode_tokens: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[np.ndarray, dict]:
        texts, owners = label_set.prompts(templates)
        tokens = self.tokenizer(texts)
        ctx = tokens.shape[1]
        truncated = sorted({owners[i] for i in torch.nonzero(token_lengths(self.bundle, tokens) >= ctx).flatten().tolist()})
        emb = (encode_tokens or self.encode_tokens)(tokens)
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
        images = list(images)
        image_emb = self.encode_images(images, batch_size=batch_size)
        results = self.classify_embeddings(
            image_emb, label_set, index, top_k=top_k, threshold=threshold, multi_label=multi_label)
        self.annotate_familiarity(results, images, batch_size)  # from the same pass's statistics
        for r, n in zip(results, names):
            r.image = n
        return results

    @torch.inference_mode()
    def image_features(self, images: Sequence[Image.Image | str | os.PathLike], layers: Sequence[str] = (),
                       batch_size: int | None = None) -> np.ndarray:
        """``(n, features)`` float32: the channel statistics of ``layers`` (:mod:`.layer_stats`), or the normalised
        image embeddings when ``layers`` is empty: what a familiarity reference compares."""
        if not layers:
            return self.encode_images(images, batch_size=batch_size).numpy()
        bs = batch_size or self.config.batch_size
        outs = []
        for start in range(0, len(images), bs):
            chunk = [open_image(im) for im in images[start:start + bs]]
            pixels = self.bundle.preprocess_batch(chunk).to(self.device, self.dtype)
            outs.append(layer_statistics(self.model, pixels, layers))
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def annotate_familiarity(self, results: list[ZeroShotResult], images: Sequence[Image.Image | str | os.PathLike],
                             batch_size: int | None = None) -> list[ZeroShotResult]:
        """Set ``familiarity``/``unfamiliar`` of ``results`` (one per image) when the model carries a
        layer-statistics reference; embedding references are already scored by :meth:`classify_embeddings`, and
        models without a reference leave both ``None``. Returns ``results``."""
        if self.familiarity is None or not self.familiarity.layers or not results:
            return results
        fam = self.familiarity_scores(images, batch_size=batch_size)
        for r, f, u in zip(results, fam.tolist(), self.familiarity.unfamiliar(fam).tolist()):
            r.familiarity, r.unfamiliar = f, u
        return results

    def familiarity_scores(self, images: Sequence[Image.Image | str | os.PathLike],
                           batch_size: int | None = None) -> np.ndarray:
        """Familiarity ``(n,)`` of each image under the model's reference (negative: unfamiliar; see
        :mod:`.familiarity`). Raises :class:`SnapsightError` when the model carries no reference."""
        if self.familiarity is None:
            raise SnapsightError("this model carries no familiarity reference (reference_features.safetensors)")
        feats = self._recent.get(images)  # computed by encode_images when it embedded these same images
        if feats is None:
            feats = self.image_features(images, self.familiarity.layers, batch_size)
        return self.familiarity.scores(feats)

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
        top_k, threshold, multi_label = cfg.request(top_k, threshold, multi_label)
        k = min(top_k, index.num_labels)
        labels = label_set.labels
        if len(image_emb) == 0:
            return []
        extra = None if self.cache_adapter is None else self.cache_adapter.scores(
            image_emb, label_set, index, self.logit_scale, bool(multi_label))
        if index.kind == "hnsw" and extra is None:  # the cache needs every label's score
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
            # with examples: softmax(s * (cosine + cache term)), the cache term in cosine units (see .adapter)
            probs = softmax_probs(scores if extra is None else scores + extra, self.logit_scale)
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
        if self.familiarity is not None and not self.familiarity.layers and self.familiarity.dim == image_emb.shape[1]:
            fam = self.familiarity.scores(image_emb.numpy())
            for r, f, u in zip(results, fam.tolist(), self.familiarity.unfamiliar(fam).tolist()):
                r.familiarity, r.unfamiliar = f, u
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
