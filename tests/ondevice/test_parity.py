"""Exported fp32 equals torch fp32: a tiny open_clip ViT, a tiny Hugging Face CLIP, the default model (BERT-style
text tower) and a probe classifier; int8 agrees with fp32 on top-1 for most of a fixed set."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from snapsight.export.run import parity_images
from snapsight.ondevice import OnnxProbeClassifier, OnnxZeroShotClassifier, load_export
from snapsight.zeroshot.classify import ZeroShotClassifier, ZeroShotConfig
from tests.ondevice.conftest import OC_LABELS, varied_images

PROMPTS = ["a photo of a cat.", "A PHOTO of  the   Dog!!", "café crème brûlée “quoted”", "emoji 🐱🍕",
           "&amp; ﬁ ligature", "中文 日本語", "word " * 120]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def _torch_clf(model) -> ZeroShotClassifier:
    return ZeroShotClassifier.load(model, device="cpu", config=ZeroShotConfig(precision="fp32", cache_dir=""))


def _check_end_to_end(torch_clf, onnx_clf, labels, images, prob_tol=1e-4):
    t = torch_clf.classify(images, labels, top_k=100)
    o = onnx_clf.classify(images, labels, top_k=100)
    for a, b in zip(t, o):
        assert a.labels[0] == b.labels[0]
        tp = dict(zip(a.labels, a.probs))
        assert max(abs(tp[name] - p) for name, p in zip(b.labels, b.probs)) <= prob_tol


@pytest.mark.parametrize("which", ["oc", "default"])
def test_fp32_export_equals_torch(which, request):
    """Same preprocessing rules, same token ids, same graphs: embeddings at cosine >= 0.9999, probabilities to
    1e-4, same top-1, from image files to answers."""
    if which == "oc":
        model, export, labels = str(request.getfixturevalue("tiny_open_clip_dir")), request.getfixturevalue("oc_export"), \
            OC_LABELS
    else:
        model, export, labels = None, request.getfixturevalue("default_export"), "builtin:fashion-mnist"
    torch_clf, onnx_clf = _torch_clf(model), OnnxZeroShotClassifier.load(export)
    images = varied_images() + parity_images()
    assert _cos(torch_clf.encode_images(images).numpy(), onnx_clf.encode_images(images)).min() >= 0.9999
    assert _cos(torch_clf.encode_text(PROMPTS).numpy(), onnx_clf.encode_text(PROMPTS)).min() >= 0.9999
    _check_end_to_end(torch_clf, onnx_clf, labels, images)
    parity = json.loads((export / "snapsight_export.json").read_text())["parity"]
    assert parity["image_cosine_min"] >= 0.9999 and parity["text_cosine_min"] >= 0.9999
    assert parity["prob_max_abs_diff"] <= 1e-4 and parity["top1_agreement"] == 1.0


def test_hf_clip_export_equals_torch(tiny_hf_dir, hf_export):
    """The graphs equal the torch towers on the same pixels and tokens; the numpy preprocessing follows
    transformers' rules with PIL's bicubic where transformers 5 uses torchvision's, so end to end is measured
    (and recorded in the manifest) with a looser bound."""
    torch_clf, onnx_clf = _torch_clf(str(tiny_hf_dir)), OnnxZeroShotClassifier.load(hf_export)
    images = varied_images()
    pixels = torch_clf.bundle.preprocess_batch(images)
    with torch.no_grad():
        t_img = torch_clf.model.encode_image(pixels).numpy()
    o_img = onnx_clf._image.session.run(None, {"pixels": pixels.numpy()})[0]
    assert _cos(t_img, o_img).min() >= 0.9999
    tokens = torch_clf.tokenizer(PROMPTS)
    assert (onnx_clf.tokenize(PROMPTS)[0] == tokens.numpy()).all()
    assert _cos(torch_clf.encode_tokens(tokens).numpy(), onnx_clf.encode_text(PROMPTS)).min() >= 0.9999
    parity = json.loads((hf_export / "snapsight_export.json").read_text())["parity"]
    assert parity["text_cosine_min"] >= 0.9999
    assert parity["image_cosine_min"] >= 0.999  # PIL vs torchvision bicubic; measured 0.99996 on a tiny ViT


def test_probe_export_equals_torch(tiny_probe_dir, probe_export):
    from snapsight.probe.classifier import load_classifier

    images = varied_images() + parity_images()
    t = load_classifier(tiny_probe_dir, device="cpu").predict_proba(images).numpy()
    clf = load_export(probe_export)
    assert isinstance(clf, OnnxProbeClassifier) and clf.class_names == ["shirt", "shoe", "bag"]
    o = clf.predict_proba(images)
    assert np.abs(t - o).max() <= 1e-4
    assert (t.argmax(1) == o.argmax(1)).all()
    assert [p[0][0] for p in clf.predict(images, top_k=2)] == [clf.class_names[i] for i in t.argmax(1)]


@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_int8_agrees_with_fp32_on_fashion_mnist(method, default_export, request):
    """int8 (dynamic, or static QDQ calibrated on 64 training images; weight-only text tower) against fp32 on 300
    Fashion-MNIST test images with the class names: the measured agreement is printed (300 of 300 for both
    when written); it must be most of the set."""
    default_int8_export = request.getfixturevalue(
        "default_int8_export" if method == "dynamic" else "default_static_int8_export")
    from PIL import Image

    from snapsight.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

    x, y = load_fashion_mnist("test")
    images = [Image.fromarray(a).convert("RGB") for a in x[:300]]
    fp32, int8 = OnnxZeroShotClassifier.load(default_export), OnnxZeroShotClassifier.load(default_int8_export)
    labels = ", ".join(FASHION_MNIST_CLASSES)
    a = [r.labels[0] for r in fp32.classify(images, labels, top_k=1)]
    b = [r.labels[0] for r in int8.classify(images, labels, top_k=1)]
    agreement = float(np.mean([i == j for i, j in zip(a, b)]))
    truth = [FASHION_MNIST_CLASSES[i] for i in y[:300]]
    acc32, acc8 = np.mean([i == t for i, t in zip(a, truth)]), np.mean([i == t for i, t in zip(b, truth)])
    print(f"int8 vs fp32 top-1 agreement {agreement:.3f}; accuracy fp32 {acc32:.3f}, int8 {acc8:.3f}")
    assert agreement >= 0.9
    sizes = [sum(f.stat().st_size for f in d.rglob("*.onnx")) for d in (default_export, default_int8_export)]
    assert sizes[1] <= (0.5 if method == "dynamic" else 0.3) * sizes[0]  # static also shrinks the convolutions
    assert json.loads((default_int8_export / "snapsight_export.json").read_text())["int8_method"] == method


def test_auto_int8_picks_dynamic_for_a_vit(tiny_open_clip_dir, fashion_mnist_calibration, tmp_path):
    """auto keeps dynamic int8 for a transformer image tower even with calibration images (static was slower)."""
    from snapsight.export import export_zeroshot

    out = export_zeroshot(str(tiny_open_clip_dir), tmp_path / "oc-int8", quantize="int8", calibration=fashion_mnist_calibration)
    manifest = json.loads((out / "snapsight_export.json").read_text())
    assert manifest["precision"] == "int8" and manifest["int8_method"] == "dynamic"
    assert manifest["parity"]["top1_agreement"] >= 0.75


def test_knn_probe_export_equals_torch(tmp_path):
    """A kNN head (memory bank, top-k votes) exports as one graph too, with the same probabilities."""
    from snapsight.backbones import create_backbone
    from snapsight.export import export_classifier
    from snapsight.preprocessing import Preprocessing
    from snapsight.probe.classifier import load_classifier, save_classifier
    from snapsight.probe.heads import KnnHead

    torch.manual_seed(0)
    encoder = create_backbone("small_cnn", image_size=16, widths=(4, 8))
    bank = torch.nn.functional.normalize(torch.randn(30, encoder.num_features), dim=1)
    head = KnnHead(bank, torch.randint(0, 3, (30,)), 3, 5, 0.07)
    arch = {"type": "snapsight", "backbone": "small_cnn", "image_size": 16, "backbone_kwargs": {"widths": [4, 8]}}
    src = save_classifier(tmp_path / "knn", encoder, arch, head, ["a", "b", "c"], Preprocessing(image_size=16), "knn")
    out = export_classifier(src, tmp_path / "knn-export")
    images = varied_images() + parity_images()
    t = load_classifier(src, device="cpu").predict_proba(images).numpy()
    o = load_export(out).predict_proba(images)
    assert np.abs(t - o).max() <= 1e-4 and (t.argmax(1) == o.argmax(1)).all()
