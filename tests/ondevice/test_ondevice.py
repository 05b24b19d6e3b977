"""The torch-free path: no torch/open_clip/transformers in the process, bad folders refused in one sentence, the
label cache, preprocessing and token ids equal to the torch path's."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snapsight.cli import main
from snapsight.errors import SnapsightError
from snapsight.ondevice import OnnxZeroShotClassifier, load_export
from snapsight.ondevice.preprocess import check_preprocessing, preprocess_batch
from tests.ondevice.conftest import OC_LABELS, varied_images, write_images

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "open_clip", "transformers")


def _run_cli_in_subprocess(args: list[str], tmp_path: Path) -> dict:
    code = ("import json, sys\nfrom snapsight.cli import main\n"
            f"rc = main({args!r})\n"
            f"print('MODULES=' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]) + ' RC=' + str(rc))\n")
    env = dict(os.environ, SNAPSIGHT_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=False,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    tail = proc.stdout.strip().splitlines()[-1]
    modules, rc = tail.split("MODULES=")[1].split(" RC=")
    return {"modules": json.loads(modules), "rc": int(rc), "stdout": proc.stdout, "stderr": proc.stderr}


def test_classify_export_runs_without_torch(oc_export, probe_export, tmp_path):
    images = write_images(tmp_path / "imgs", varied_images(4))
    for args in (["classify", str(tmp_path / "imgs"), "--model", str(oc_export), "--labels", OC_LABELS,
                  "--format", "json", "--no-progress", "--multi-label", "--top-k", "2"],
                 ["classify", str(tmp_path / "imgs"), "--model", str(probe_export), "--format", "json",
                  "--no-progress"]):
        out = _run_cli_in_subprocess(args, tmp_path)
        assert out["rc"] == 0 and out["modules"] == [], out["stderr"]
        rows = json.loads(out["stdout"].split("MODULES=")[0])
        assert sorted(r["image"] for r in rows) == sorted(str(p) for p in images)


def test_cli_answers_equal_library(oc_export, tmp_path, capsys):
    paths = write_images(tmp_path / "imgs", varied_images(3))
    assert main(["classify", *map(str, paths), "--model", str(oc_export), "--labels", OC_LABELS, "--format",
                 "json", "--no-progress", "--threshold", "0.2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    want = OnnxZeroShotClassifier.load(oc_export).classify(paths, OC_LABELS, threshold=0.2)
    assert [r["labels"] for r in rows] == [w.labels for w in want]
    assert [r["none_of_these"] for r in rows] == [w.none_of_these for w in want]


def test_export_refuses_torch_only_options(oc_export, tmp_path, capsys):
    paths = write_images(tmp_path / "imgs", varied_images(1))
    assert main(["classify", str(paths[0]), "--model", str(oc_export), "--labels", "a, b", "--precision",
                 "bf16"]) == 2
    assert "runs at the precision it was exported with" in capsys.readouterr().err


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_changed_file_is_refused(oc_export, tmp_path, capsys):
    bad = _copy(oc_export, tmp_path / "changed")
    with open(bad / "image.onnx", "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\x00" * 8)
    clf = load_export(bad)
    with pytest.raises(SnapsightError, match="does not match the sha256"):
        clf.encode_images(varied_images(1))
    paths = write_images(tmp_path / "imgs", varied_images(1))
    assert main(["classify", str(paths[0]), "--model", str(bad), "--labels", "a, b", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "sha256" in err[-1] and len(err[-1]) < 300


def test_not_an_export_and_missing_manifest_entries(tmp_path, oc_export):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapsightError, match="not a snapsight export"):
        load_export(tmp_path / "empty")
    bad = _copy(oc_export, tmp_path / "other-kind")
    manifest = json.loads((bad / "snapsight_export.json").read_text())
    manifest["kind"] = "something-else"
    (bad / "snapsight_export.json").write_text(json.dumps(manifest))
    with pytest.raises(SnapsightError, match="not a snapsight export manifest"):
        load_export(bad)


def test_unsupported_opset_is_refused(oc_export, tmp_path):
    import onnx

    from snapsight.artifacts.export import file_sha256

    bad = _copy(oc_export, tmp_path / "future")
    model = onnx.load(str(bad / "image.onnx"))
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = 99
    onnx.save(model, str(bad / "image.onnx"))
    manifest = json.loads((bad / "snapsight_export.json").read_text())
    manifest["files"]["image.onnx"] = file_sha256(bad / "image.onnx")
    manifest["opset"] = 99
    (bad / "snapsight_export.json").write_text(json.dumps(manifest))
    with pytest.raises(SnapsightError, match="opset 99, which the installed onnxruntime"):
        load_export(bad).encode_images(varied_images(1))


def test_torch_model_loaders_name_an_export(oc_export):
    from snapsight.artifacts import detect, parse_model_spec

    assert detect(oc_export) == "export"
    with pytest.raises(SnapsightError, match="is an ONNX export"):
        parse_model_spec(str(oc_export))


def test_prebuilt_index_and_label_cache(oc_export, tmp_path, monkeypatch):
    """The export's own index answers its labels without the text tower; other labels are embedded once and then
    come from the disk cache (a new process would not run the text tower either)."""
    calls = []
    real = OnnxZeroShotClassifier._embed_labels

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(OnnxZeroShotClassifier, "_embed_labels", counting)
    cache = tmp_path / "cache"
    from snapsight.ondevice.scoring import ZeroShotConfig

    def fresh():
        return OnnxZeroShotClassifier.load(oc_export, config=ZeroShotConfig(cache_dir=str(cache)))

    fresh().label_index(OC_LABELS)
    assert calls == []
    _, first = fresh().label_index("lamp, chair")
    _, second = fresh().label_index("lamp, chair")
    assert len(calls) == 1 and np.array_equal(first, second)
    fresh().label_index("lamp, chair", templates="none")
    assert len(calls) == 2
    off = OnnxZeroShotClassifier.load(oc_export, config=ZeroShotConfig(cache_dir=""))
    off.label_index("lamp, chair")
    assert len(calls) == 3


def test_preprocessing_equals_torch_paths():
    """open_clip's transform and snapsight's Preprocessing are reproduced exactly; transformers' CLIP processor
    (torchvision bicubic on tensors) closely, its measured difference bounded."""
    import open_clip
    from transformers import CLIPImageProcessor

    from snapsight.export.run import probe_preprocessing
    from snapsight.preprocessing import Preprocessing

    images = varied_images(20)
    for mode in ("shortest", "squash"):
        tf = open_clip.image_transform(32, is_train=False, mean=(0.1, 0.2, 0.3), std=(0.5, 0.4, 0.3),
                                       resize_mode=mode)
        p = check_preprocessing({"flavor": "open_clip", "resize": mode, "size": 32, "crop": 32,
                                 "interpolation": "bicubic", "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.4, 0.3]})
        ref = torch.stack([tf(im) for im in images]).numpy()
        assert np.abs(preprocess_batch(images, p) - ref).max() <= 1e-6
    for resize in ("shorter", "squash"):
        prep = Preprocessing(image_size=24, resize=resize)
        assert np.abs(preprocess_batch(images, probe_preprocessing(prep)) - prep.batch(images).numpy()).max() <= 1e-6
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    ref = proc(images=images, return_tensors="pt")["pixel_values"].numpy()
    p = check_preprocessing({"flavor": "hf", "resize": "shortest", "size": 32, "crop": 32, "interpolation": "bicubic",
                             "mean": list(proc.image_mean), "std": list(proc.image_std)})
    diff = np.abs(preprocess_batch(images, p) - ref)
    assert diff.mean() <= 0.02 and diff.max() <= 0.5  # PIL vs torchvision antialiased bicubic, in std units


def test_tokenizer_ids_equal_open_clip_and_hf():
    """Token ids of the exported tokenizer (with open_clip's clean-up) equal the torch path's, for CLIP BPE
    (lower-cased, ftfy, HTML entities) and for a BERT tokenizer (the default model's MiniLM)."""
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    from snapsight.artifacts.clip_dir import resolve_text_encoder
    from snapsight.export.tokenizer import build_tokenizer, clean_mode
    from snapsight.ondevice.text import clean_text

    texts = ["a photo of a cat.", "A PHOTO of  the   Dog!!", "café crème brûlée", "naïve — “quotes” ‘single’",
             "emoji 🐱🍕", "tab\tand\nnewline", "  spaces  ", "don't it's", "x" * 500, "word " * 100,
             "中文字符 日本語 한국어", "&amp; &lt;tag&gt; 3.14 $5 #hash @at", "ﬁ ligature", "", "Ωmega straße"]
    for tok, ctx in ((SimpleTokenizer(), 77), (HFTokenizer(str(resolve_text_encoder("minilm")), context_length=32), 32)):
        tk, mode = build_tokenizer(tok, ctx), clean_mode(tok)
        got = np.array([e.ids for e in tk.encode_batch([clean_text(t, mode) for t in texts])])
        want = tok(texts, context_length=ctx).numpy() if isinstance(tok, SimpleTokenizer) else tok(texts).numpy()
        assert got.shape == want.shape and (got == want).all()


def test_numpy_scoring_equals_torch_reference():
    from snapsight.ondevice.scoring import mean_prompt_embeddings, multi_label_probs, softmax_probs
    from snapsight.zeroshot.prompts import mean_prompt_embeddings as torch_mean

    rng = np.random.RandomState(0)
    s = rng.uniform(-1, 1, (4, 7)).astype(np.float32)
    null = rng.uniform(-1, 1, 4).astype(np.float32)
    t = torch.from_numpy(s)
    assert np.allclose(softmax_probs(s, 50.0), torch.softmax(t * 50.0, -1).numpy(), atol=1e-6)
    assert np.allclose(multi_label_probs(s, null, 50.0), torch.sigmoid(50.0 * (t - torch.from_numpy(null)[:, None])),
                       atol=1e-6)
    assert np.allclose(multi_label_probs(s, null, 10.0, -3.0), torch.sigmoid(t * 10.0 - 3.0), atol=1e-6)
    emb = rng.randn(9, 5).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    owners = [0, 0, 1, 2, 2, 2, 1, 0, 3]
    assert np.allclose(mean_prompt_embeddings(emb, owners, 4),
                       torch_mean(torch.from_numpy(emb), owners, 4).numpy(), atol=1e-6)


def test_demo_serves_an_export(oc_export):
    """The demo's model cache loads an export through onnxruntime; its request path (label index, image batch,
    results) works on it, and the heatmap, which needs gradients, is refused in one sentence."""
    from snapsight.demo.models import ModelChoice, zeroshot_cache
    from snapsight.labels import load_label_set

    clf = zeroshot_cache("auto").get(ModelChoice(str(oc_export)))
    assert isinstance(clf, OnnxZeroShotClassifier) and clf.model_info["image_size"] == 32
    label_set, index = clf.label_index(load_label_set(OC_LABELS), ("a photo of a {}.",))
    results = clf.classify_embeddings(clf.encode_images(varied_images(2)), label_set, index, top_k=3, threshold=None,
                                      multi_label=False)
    assert [len(r.labels) for r in results] == [3] * 4
    with pytest.raises(SnapsightError, match="cannot draw the why-this-label heatmap"):
        clf.model  # noqa: B018


def test_export_label_index_takes_the_demos_chunked_encoder(oc_export, tmp_path):
    """The demo builds a new label set in chunks that take turns with image batches: an export's label index
    accepts that encoder, uses it for every prompt, and gives the same embeddings as its own text tower."""
    from snapsight.labels import load_label_set
    from snapsight.ondevice import ZeroShotConfig

    plain = load_export(oc_export, config=ZeroShotConfig(cache_dir=""))
    chunked = load_export(oc_export, config=ZeroShotConfig(cache_dir=""))
    rows_seen: list[int] = []

    def in_chunks(ids):
        rows_seen.append(len(ids))
        return np.concatenate([chunked.encode_tokens(ids[i:i + 2]) for i in range(0, len(ids), 2)])

    templates = ("a photo of a {}.", "a drawing of a {}.")
    label_set = load_label_set(OC_LABELS)
    _, expected = plain.label_index(label_set, templates)
    _, got = chunked.label_index(label_set, templates, encode_tokens=in_chunks)
    assert rows_seen == [len(label_set) * len(templates)]
    np.testing.assert_allclose(got, expected, atol=1e-5)
