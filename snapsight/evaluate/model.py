"""The model under test: one differentiable ``logits(pixels)`` for zero-shot CLIP models and probe classifiers alike.

Every check of the trust report works on images as the model sees them: resized and cropped by the model's own
preprocessing, but not yet normalised, as ``(batch, 3, H, W)`` floats in ``[0, 1]``. :meth:`ModelUnderTest.decode`
runs the model's preprocessing on a PIL image and undoes its final ``Normalize`` (exact for the usual
resize -> crop -> to-tensor -> normalise pipelines), so images are decoded once and every corruption, attack and
text overlay happens in pixel space; :meth:`ModelUnderTest.logits` normalises inside the differentiable forward,
so an attack's gradient passes through the preprocessing's normalisation as well as the network.

- zero-shot: ``logits = logit_scale * cos(encode_image(x), w_c)`` with ``w_c`` the label embeddings of the label
  index (prompt ensemble), exactly the scores :class:`~snapsight.zeroshot.classify.ZeroShotClassifier` ranks;
- probe: the head's logits on the encoder's features (a kNN head's log-probabilities).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import SnapsightError
from ..preprocessing import Preprocessing, normalize
from ..probe.classifier import Classifier
from ..zeroshot.classify import ZeroShotClassifier
from ..zeroshot.explain import gradient_saliency, label_text_embedding

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")


def normalisation_of(preprocess: Any, info: dict[str, Any] | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ``(mean, std)`` of a preprocessing: a torchvision ``Normalize`` step, a snapsight
    :class:`~snapsight.preprocessing.Preprocessing`, or a Hugging Face processor's ``image_mean``/``image_std``."""
    for step in getattr(preprocess, "transforms", []) or []:
        if hasattr(step, "mean") and hasattr(step, "std"):
            return tuple(float(v) for v in step.mean), tuple(float(v) for v in step.std)
    if hasattr(preprocess, "mean") and hasattr(preprocess, "std"):
        return tuple(float(v) for v in preprocess.mean), tuple(float(v) for v in preprocess.std)
    cfg = (info or {}).get("preprocess") or {}
    for mk, sk in (("image_mean", "image_std"), ("mean", "std")):
        if cfg.get(mk) is not None and cfg.get(sk) is not None:
            return tuple(float(v) for v in cfg[mk]), tuple(float(v) for v in cfg[sk])
    raise SnapsightError("cannot find the mean/std normalisation in this model's preprocessing")


@dataclass
class ModelUnderTest:
    """A classifier as the checks see it.

    ``logits_fn``: ``(B, 3, H, W)`` normalised pixels -> ``(B, C)`` float32 logits (differentiable);
    ``class_names``: the model's classes, in logit order; ``kind``: ``zeroshot`` or ``probe``;
    ``logit_scale``: for zero-shot, the temperature that turns cosines into logits (the "none of these"
    threshold is a cosine); ``module``: the weights (parameters, FLOPs); ``weight_files``: what it takes on disk.
    """

    name: str
    kind: str
    class_names: list[str]
    preprocess: Callable[[Image.Image], torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    logits_fn: Callable[[torch.Tensor], torch.Tensor]
    module: torch.nn.Module
    device: torch.device
    dtype: torch.dtype = torch.float32
    logit_scale: float | None = None
    weight_files: list[Path] = field(default_factory=list)
    # (normalised (3, H, W) pixels, class index, SmoothGrad samples) -> (H, W) heatmap in [0, 1]; None: the
    # SmoothGrad of the class's logit (evaluate.saliency)
    saliency_fn: Callable[[torch.Tensor, int, int], np.ndarray] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def decode(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> ``(3, H, W)`` uint8: the model's resize and crop, before normalisation."""
        x = self.preprocess(image.convert("RGB")).float()
        m = torch.as_tensor(self.mean).view(-1, 1, 1)
        s = torch.as_tensor(self.std).view(-1, 1, 1)
        return (x * s + m).clamp(0, 1).mul(255).round().to(torch.uint8)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` pixels in ``[0, 1]`` -> ``(B, C)`` float32 logits; differentiable in ``pixels``."""
        x = normalize(pixels.to(self.device).float(), self.mean, self.std).to(self.dtype)
        return self.logits_fn(x).float()

    @torch.no_grad()
    def predict_logits(self, pixels: torch.Tensor, batch_size: int = 64, progress: Any = None) -> np.ndarray:
        """Logits ``(n, C)`` for uint8 or float pixels ``(n, 3, H, W)``, in batches (``progress``: a tqdm bar)."""
        out = []
        for start in range(0, len(pixels), batch_size):
            out.append(self.logits(as_unit(pixels[start:start + batch_size])).cpu().numpy())
            if progress is not None:
                progress.update(min(batch_size, len(pixels) - start))
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def parameters(self) -> int:
        return int(sum(p.numel() for p in self.module.parameters()))


def as_unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in ``[0, 1]``; float pixels pass through."""
    return pixels.float().div(255.0) if pixels.dtype == torch.uint8 else pixels.float()


def _weight_files(source: str | os.PathLike | None) -> list[Path]:
    if not source:
        return []
    p = Path(source)
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in WEIGHT_SUFFIXES)
    return []


def from_zero_shot(clf: ZeroShotClassifier, labels: str | Sequence[str], templates: str | Sequence[str] | None = None,
                   name: str | None = None) -> ModelUnderTest:
    """A zero-shot classifier over ``labels`` (prompt-ensembled with ``templates``) as a :class:`ModelUnderTest`."""
    label_set, index = clf.label_index(labels, templates)
    weights = torch.from_numpy(np.ascontiguousarray(index.embeddings, dtype=np.float32)).to(clf.device)
    scale = clf.logit_scale
    model = clf.model

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        emb = F.normalize(model.encode_image(x).float(), dim=-1)
        return scale * emb @ weights.T

    mean, std = normalisation_of(clf.preprocess, clf.bundle.info)
    info = clf.bundle.info
    names = [lbl.name for lbl in label_set.labels]

    texts: dict[int, torch.Tensor] = {}

    def saliency_fn(x: torch.Tensor, target: int, samples: int) -> np.ndarray:
        # the demo's heatmap: SmoothGrad of the cosine with the label's text embedding (zeroshot.explain)
        if target not in texts:
            texts[target] = label_text_embedding(model, clf.tokenizer, names[target])
        return gradient_saliency(model, x, texts[target], samples=samples)

    return ModelUnderTest(
        name=name or str(info.get("name")), kind="zeroshot", class_names=names,
        preprocess=clf.preprocess, mean=mean, std=std, logits_fn=logits_fn, module=_image_tower(model),
        device=clf.device, dtype=clf.dtype, logit_scale=scale, weight_files=_weight_files(info.get("source")),
        saliency_fn=saliency_fn)


def _image_tower(model: torch.nn.Module) -> torch.nn.Module:
    """The image side of a CLIP model (what classifying an image runs once the label index exists)."""
    visual = getattr(model, "visual", None)
    if isinstance(visual, torch.nn.Module):
        return visual
    hf = getattr(model, "hf", None)  # the Hugging Face adapter (models.hf_clip.HFCLIPAdapter)
    if hf is not None and hasattr(hf, "vision_model"):
        mods = torch.nn.ModuleList([hf.vision_model] + ([hf.visual_projection] if hasattr(hf, "visual_projection")
                                                         else []))
        return mods
    return model


def from_probe(clf: Classifier, source: str | os.PathLike | None = None) -> ModelUnderTest:
    """A probe classifier (:func:`snapsight.probe.load_classifier`) as a :class:`ModelUnderTest`."""
    encoder, head = clf.encoder, clf.head

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        return head(encoder(x).float())

    prep = clf.preprocessing
    return ModelUnderTest(
        name=str(source or "classifier"), kind="probe", class_names=list(clf.class_names), preprocess=prep,
        mean=tuple(prep.mean), std=tuple(prep.std), logits_fn=logits_fn,
        module=torch.nn.ModuleList([encoder, head]), device=clf.device, weight_files=_weight_files(source))


def from_function(logits_fn: Callable[[torch.Tensor], torch.Tensor], class_names: Sequence[str], image_size: int,
                  module: torch.nn.Module | None = None, kind: str = "probe", name: str = "function",
                  logit_scale: float | None = None) -> ModelUnderTest:
    """Any ``(B, 3, H, W) -> (B, C)`` function on ``[0, 1]`` pixels as a model under test (tests, custom models):
    images are squashed to ``image_size`` and not normalised."""
    prep = Preprocessing(image_size=image_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize="squash")
    return ModelUnderTest(name=name, kind=kind, class_names=list(class_names), preprocess=prep, mean=prep.mean,
                          std=prep.std, logits_fn=logits_fn, module=module or torch.nn.Identity(),
                          device=torch.device("cpu"), logit_scale=logit_scale)
