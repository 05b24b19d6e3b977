"""``snapsight export``: a zero-shot model or a probe classifier as a folder that runs without torch.

:func:`export_zeroshot` writes the image and text towers as ONNX graphs (dynamic batch axis, so new labels work on
the device), the tokenizer, the preprocessing as data, an optional prebuilt label index and a manifest with the
sha256 of every file, the opset, the source model's identity and the parity measured against the torch model on
a fixed set of images and prompts. :func:`export_classifier` writes a probe classifier's encoder and head as one
graph with its class names. The folder layout is :mod:`snapsight.artifacts.export`; it is read back by
:mod:`snapsight.ondevice`.
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import __version__
from ..artifacts.export import (
    EXPORT_FORMAT_VERSION,
    EXPORT_KIND,
    EXPORT_MANIFEST,
    FAMILIARITY_OUTPUT,
    IMAGE_GRAPH,
    LABEL_EMBEDDINGS,
    LABEL_NAMES,
    LABELS_SUBDIR,
    TEXT_GRAPH,
    TOKENIZER_FILE,
    file_sha256,
    is_export_dir,
)
from ..artifacts.files import atomic_folder, atomic_write_bytes, atomic_write_json
from ..data.images import iter_image_files, open_image
from ..errors import SnapsightError
from ..labels import load_label_set, resolve_templates
from ..models.clip import load_clip
from ..models.hub import LoadedClip
from ..ondevice import OnnxProbeClassifier, OnnxZeroShotClassifier
from ..ondevice.export_dir import ExportDir
from ..ondevice.familiarity import REFERENCE_FILE
from ..ondevice.preprocess import check_preprocessing, preprocess_batch
from ..ondevice.scoring import NULL_PROMPTS
from ..preprocessing import Preprocessing
from ..probe.classifier import load_classifier
from ..zeroshot.classify import ZeroShotClassifier, ZeroShotConfig
from .quantize import METHODS, choose_method, quantize_graph, quantize_text_graph
from .tokenizer import clean_mode, save_tokenizer
from .towers import DEFAULT_OPSET, ImageWithStats, export_graph

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
PARITY_LABELS = ("cat", "dog", "astronaut", "rocket", "cup of coffee", "pizza", "sunset", "T-shirt", "sneaker", "bag")
CALIBRATION_LIMIT = 256  # images used to calibrate static int8 ranges


# ------------------------------------------------------------------------------------------------ helpers


def parity_images(n_random: int = 9, seed: int = 0) -> list[Image.Image]:
    """The fixed images parity is measured on: the package's example pictures and ``n_random`` seeded noise
    images of varied sizes and aspect ratios (so every resize and crop rule is exercised)."""
    images = [open_image(p) for p in sorted(EXAMPLES_DIR.glob("*")) if p.suffix in (".jpg", ".png")]
    rng = np.random.RandomState(seed)
    for i in range(n_random):
        w, h = int(rng.randint(20, 300)), int(rng.randint(20, 300))
        images.append(Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8)))
    return images


def _check_out(out: Path) -> None:
    """``out`` may be new, empty or an older export (replaced once the new one is complete), nothing else."""
    if out.exists() and not (out.is_dir() and (is_export_dir(out) or not any(out.iterdir()))):
        raise SnapsightError(f"{out} exists and is not a snapsight export; pass an empty or new --out folder")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != EXPORT_MANIFEST}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"snapsight": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def _cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float((a * b).sum(axis=1).min())


def _quantize(folder: Path, graphs: Sequence[str], method: str, calibration: list[np.ndarray] | None) -> None:
    for name in graphs:
        src = folder / name
        fp32 = src.with_suffix(".fp32.onnx")
        os.replace(src, fp32)
        if name == TEXT_GRAPH:
            quantize_text_graph(fp32, src)
        else:
            quantize_graph(fp32, src, method, calibration)
        fp32.unlink()


def _calibration_batches(folder: str | os.PathLike | None, prep: dict[str, Any], batch: int = 16) -> list[np.ndarray]:
    if folder is None:
        return []
    files = list(iter_image_files(folder))[:CALIBRATION_LIMIT]
    if not files:
        raise SnapsightError(f"--calibration {folder}: no images found")
    images = [open_image(p) for p in files]
    return [preprocess_batch(images[i:i + batch], prep) for i in range(0, len(images), batch)]


def _load_calibration(quantize: str | None, method: str, calibration: str | os.PathLike | None,
                      prep: dict[str, Any]) -> list[np.ndarray] | None:
    """Preprocessed calibration batches when static int8 may be used; None when it will not be."""
    if not quantize or method == "dynamic" or calibration is None:
        if quantize and method == "static":
            raise SnapsightError("--int8-method static needs --calibration IMAGES (a folder of typical images)")
        return None
    return _calibration_batches(calibration, prep)


def _check_quantize(quantize: str | None, method: str) -> None:
    if quantize not in (None, "int8"):
        raise SnapsightError(f"--quantize takes int8, got {quantize!r}")
    if method not in METHODS:
        raise SnapsightError(f"--int8-method takes {' or '.join(METHODS)}, got {method!r}")


# ------------------------------------------------------------------------------------------------ zero-shot


def clip_preprocessing(bundle: LoadedClip) -> dict[str, Any]:
    """The preprocessing record (:func:`snapsight.ondevice.preprocess.check_preprocessing`) of a loaded CLIP."""
    p = bundle.info.get("preprocess") or {}
    if bundle.info.get("kind") == "hf":
        size = p.get("size") or {}
        crop = p.get("crop_size") or {}
        if "shortest_edge" not in size or crop.get("height") != crop.get("width") or not p.get("do_center_crop", True):
            raise SnapsightError(f"unsupported Hugging Face image processor settings for export: size={size}, "
                                 f"crop_size={crop}")
        resample = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
        return check_preprocessing({"flavor": "hf", "resize": "shortest", "size": size["shortest_edge"],
                                    "crop": crop["height"], "interpolation": resample.get(int(p.get("resample", 3))),
                                    "mean": p["image_mean"], "std": p["image_std"]})
    size = p.get("size", bundle.info.get("image_size"))
    size = list(size) if isinstance(size, (list, tuple)) else [size, size]
    mode = p.get("resize_mode", "shortest")
    if size[0] != size[1] or mode not in ("shortest", "squash"):
        raise SnapsightError(f"unsupported open_clip preprocessing for export: size {size}, resize_mode {mode!r} "
                             "(square shortest or squash only)")
    return check_preprocessing({"flavor": "open_clip", "resize": mode, "size": size[0], "crop": size[0],
                                "interpolation": p.get("interpolation", "bicubic"), "mean": p["mean"],
                                "std": p["std"]})


def _source(bundle: LoadedClip, model: str | None, pretrained: str | None) -> dict[str, Any]:
    info = bundle.info
    return {"model": model or "clip:default", "pretrained": pretrained, "name": info.get("name"),
            "kind": info.get("kind"), "fingerprint": info.get("fingerprint")}


def export_zeroshot(model: str | None, out: str | os.PathLike, pretrained: str | None = None,
                    labels: str | None = None, labels_file: str | None = None, templates: str = "default",
                    quantize: str | None = None, int8_method: str = "auto",
                    calibration: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET) -> Path:
    """Export CLIP model ``model`` (any spec :func:`snapsight.models.clip.load_clip` takes) to folder ``out``."""
    _check_quantize(quantize, int8_method)
    out = Path(out)
    label_set = load_label_set(labels, labels_file) if (labels or labels_file) else None
    tmpl = resolve_templates(templates)
    log.info("loading %s", model or "the default model")
    bundle = load_clip(model, pretrained, device="cpu")
    clf = ZeroShotClassifier(bundle, config=ZeroShotConfig(precision="fp32", cache_dir=""))
    prep = clip_preprocessing(bundle)
    calib = _load_calibration(quantize, int8_method, calibration, prep)
    _check_out(out)
    with atomic_folder(out) as tmp:
        size = prep["crop"]
        log.info("exporting the image tower")
        familiarity = _copy_familiarity(clf, bundle, tmp)
        if familiarity and familiarity["output"]:  # the flag's layer statistics come out of the same pass
            export_graph(ImageWithStats(bundle.model, familiarity["layers"]), torch.zeros(2, 3, size, size),
                         tmp / IMAGE_GRAPH, "pixels", ("embedding", familiarity["output"]), opset)
        else:
            export_graph(bundle.model.encode_image, torch.zeros(2, 3, size, size), tmp / IMAGE_GRAPH, "pixels",
                         "embedding", opset, owner=bundle.model)
        log.info("exporting the text tower")
        tokens = bundle.tokenizer(["a photo of a cat.", "a"])
        export_graph(bundle.model.encode_text, tokens, tmp / TEXT_GRAPH, "tokens", "embedding", opset,
                     owner=bundle.model)
        if quantize:
            int8_method = choose_method(tmp / IMAGE_GRAPH, int8_method, bool(calib))
            log.info("quantizing to int8 (image tower: %s)", int8_method)
            _quantize(tmp, (IMAGE_GRAPH, TEXT_GRAPH), int8_method, calib)
        save_tokenizer(bundle.tokenizer, tokens.shape[1], tmp / TOKENIZER_FILE)
        manifest: dict[str, Any] = {
            "kind": EXPORT_KIND, "format_version": EXPORT_FORMAT_VERSION, "task": "zeroshot",
            "precision": "int8" if quantize else "fp32", "int8_method": int8_method if quantize else None,
            "opset": opset, "source": _source(bundle, model, pretrained), "preprocessing": prep,
            "embed_dim": clf.embed_dim, "logit_scale": clf.logit_scale, "logit_bias": clf.logit_bias,
            "text": {"context_length": int(tokens.shape[1]), "clean": clean_mode(bundle.tokenizer),
                     "tokenizer": TOKENIZER_FILE},
            "labels": None, "familiarity": familiarity, "versions": _versions(),
        }
        _write_manifest(tmp, manifest)
        device_clf = OnnxZeroShotClassifier(ExportDir(tmp), config=ZeroShotConfig(cache_dir=""))
        if label_set is not None:
            log.info("building the label index for %d labels", len(label_set))
            _, emb = device_clf.label_index(label_set, tmpl)
            (tmp / LABELS_SUBDIR).mkdir()
            buf = io.BytesIO()
            np.save(buf, emb)
            atomic_write_bytes(tmp / LABEL_EMBEDDINGS, buf.getvalue())
            (tmp / LABEL_NAMES).write_text(json.dumps(label_set.names, ensure_ascii=False), encoding="utf-8")
            manifest["labels"] = {"count": len(label_set), "key": label_set.key(), "templates": list(tmpl),
                                  "embeddings": LABEL_EMBEDDINGS, "names": LABEL_NAMES}
        log.info("measuring parity with the torch model")
        manifest["parity"] = zeroshot_parity(clf, device_clf, label_set or list(PARITY_LABELS), tmpl)
        _write_manifest(tmp, manifest)
        ExportDir(tmp).verify_all()
    return out


def _copy_familiarity(clf: ZeroShotClassifier, bundle: LoadedClip, folder: Path) -> dict[str, Any] | None:
    """Copy the model's "unfamiliar image" reference into the export and say how the device computes its features:
    a second output of the image graph (layer statistics) or the embeddings themselves; None without a reference."""
    ref = clf.familiarity
    if ref is None:
        return None
    shutil.copyfile(Path(bundle.info["source"]) / REFERENCE_FILE, folder / REFERENCE_FILE)
    return {"file": REFERENCE_FILE, "layers": list(ref.layers),
            "output": FAMILIARITY_OUTPUT if ref.layers else None}


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    manifest["files"] = _hashes(folder)
    atomic_write_json(folder / EXPORT_MANIFEST, manifest)


def zeroshot_parity(torch_clf: ZeroShotClassifier, device_clf: OnnxZeroShotClassifier, labels: Any,
                    templates: Sequence[str], images: list[Image.Image] | None = None) -> dict[str, Any]:
    """The export against the torch model (fp32) on fixed inputs: minimum cosine of image embeddings (each side
    with its own preprocessing), of text embeddings (the prompts of ``labels`` and the null prompts), largest
    probability difference and top-1 agreement over ``labels``."""
    images = images if images is not None else parity_images()
    texts = list(NULL_PROMPTS) + [f"a photo of a {w}." for w in PARITY_LABELS]
    t_img = torch_clf.encode_images(images).numpy()
    d_img = device_clf.encode_images(images)
    t_txt = torch_clf.encode_text(texts).numpy()
    d_txt = device_clf.encode_text(texts)
    t_res = torch_clf.classify(images, labels, templates, top_k=10_000)
    d_res = device_clf.classify(images, labels, templates, top_k=10_000)
    diffs, agree = [], 0
    for t, d in zip(t_res, d_res):
        tp = dict(zip(t.labels, t.probs))
        diffs.append(max(abs(tp[name] - p) for name, p in zip(d.labels, d.probs)))
        agree += int(t.labels[0] == d.labels[0])
    out = {"images": len(images), "texts": len(texts), "labels": len(t_res[0].labels),
           "image_cosine_min": _cosine_min(t_img, d_img), "text_cosine_min": _cosine_min(t_txt, d_txt),
           "prob_max_abs_diff": float(max(diffs)), "top1_agreement": agree / len(images)}
    if torch_clf.familiarity is not None and device_clf.familiarity is not None:
        t_fam = np.array([r.familiarity for r in t_res], np.float64)
        d_fam = np.array([r.familiarity for r in d_res], np.float64)
        out["familiarity_max_abs_diff"] = float(np.abs(t_fam - d_fam).max())
        out["unfamiliar_agreement"] = float(np.mean([t.unfamiliar == d.unfamiliar for t, d in zip(t_res, d_res)]))
    return out


# ------------------------------------------------------------------------------------------------ classifier


class _ProbeGraph(torch.nn.Module):
    """Pixels -> class probabilities: the classifier's encoder and head as one module."""

    def __init__(self, encoder: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.probs(self.encoder(x).float())


def probe_preprocessing(p: Preprocessing) -> dict[str, Any]:
    """The preprocessing record of a probe classifier's :class:`~snapsight.preprocessing.Preprocessing`."""
    return check_preprocessing({"flavor": "snapsight", "resize": "squash" if p.resize == "squash" else "shortest",
                                "size": p.image_size, "crop": p.image_size, "interpolation": "bicubic",
                                "mean": list(p.mean), "std": list(p.std)})


def export_classifier(classifier_dir: str | os.PathLike, out: str | os.PathLike, quantize: str | None = None,
                      int8_method: str = "auto", calibration: str | os.PathLike | None = None,
                      opset: int = DEFAULT_OPSET) -> Path:
    """Export a ``snapsight probe`` classifier folder: encoder + head as one graph, with its class names."""
    _check_quantize(quantize, int8_method)
    out = Path(out)
    probe = load_classifier(classifier_dir, device="cpu")
    prep = probe_preprocessing(probe.preprocessing)
    calib = _load_calibration(quantize, int8_method, calibration, prep)
    _check_out(out)
    with atomic_folder(out) as tmp:
        size = prep["crop"]
        graph = _ProbeGraph(probe.encoder, probe.head)
        try:
            export_graph(graph, torch.zeros(2, 3, size, size), tmp / IMAGE_GRAPH, "pixels", "probs", opset)
        except Exception as e:
            raise SnapsightError(f"cannot export the {probe.mode} classifier to ONNX: {str(e).splitlines()[0][:200]}") from e
        if quantize:
            int8_method = choose_method(tmp / IMAGE_GRAPH, int8_method, bool(calib))
            _quantize(tmp, (IMAGE_GRAPH,), int8_method, calib)
        manifest: dict[str, Any] = {
            "kind": EXPORT_KIND, "format_version": EXPORT_FORMAT_VERSION, "task": "classifier",
            "precision": "int8" if quantize else "fp32", "int8_method": int8_method if quantize else None,
            "opset": opset, "source": {"model": str(classifier_dir), "mode": probe.mode,
                                       "encoder": probe.meta.get("encoder", {}).get("source")},
            "preprocessing": prep, "class_names": list(probe.class_names), "versions": _versions(),
        }
        _write_manifest(tmp, manifest)
        images = parity_images()
        t = probe.predict_proba(images).numpy()
        d = OnnxProbeClassifier(ExportDir(tmp)).predict_proba(images)
        manifest["parity"] = {"images": len(images), "prob_max_abs_diff": float(np.abs(t - d).max()),
                              "top1_agreement": float((t.argmax(1) == d.argmax(1)).mean())}
        _write_manifest(tmp, manifest)
        ExportDir(tmp).verify_all()
    return out
