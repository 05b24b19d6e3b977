"""An export carries its source model's "unfamiliar image" reference: the device flags the same images as torch,
from the image graph's second output (layer statistics) or from the embeddings, without torch in the process."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from snapsight.artifacts.export import FAMILIARITY_OUTPUT, IMAGE_GRAPH
from snapsight.cli import main
from snapsight.ondevice import OnnxZeroShotClassifier
from snapsight.ondevice.familiarity import REFERENCE_FILE
from tests.ondevice.conftest import export, write_images
from tests.zeroshot.conftest import random_images
from tests.zeroshot.test_familiarity import _model_with_reference

LABELS = "cat, dog"


def _images():
    flat = Image.new("RGB", (48, 40), (255, 255, 255))  # nothing like the random-noise training images
    return random_images(1, seed=3) + [flat]


@pytest.fixture(scope="module")
def stats_model(tiny_open_clip_dir, tmp_path_factory):  # noqa: F811
    return _model_with_reference(tiny_open_clip_dir, tmp_path_factory.mktemp("m") / "with-ref")


@pytest.mark.parametrize("layers", [("visual.conv1",), ()], ids=["layer-stats", "embeddings"])
def test_export_flags_the_images_torch_flags(layers, tiny_open_clip_dir, tmp_path_factory):
    clf = _model_with_reference(tiny_open_clip_dir, tmp_path_factory.mktemp("m") / "with-ref", layers=layers)
    out = export(tmp_path_factory, "fam", "--model", str(clf.bundle.info["source"]))
    manifest = json.loads((out / "snapsight_export.json").read_text())
    assert manifest["familiarity"]["layers"] == list(layers)
    assert (out / REFERENCE_FILE).read_bytes() == (Path(clf.bundle.info["source"]) / REFERENCE_FILE).read_bytes()
    outputs = [o.name for o in onnx.load(str(out / IMAGE_GRAPH)).graph.output]
    assert outputs == (["embedding", FAMILIARITY_OUTPUT] if layers else ["embedding"])
    assert manifest["parity"]["unfamiliar_agreement"] == 1.0

    dev = OnnxZeroShotClassifier.load(out)
    want = clf.classify(_images(), LABELS)
    got = dev.classify(_images(), LABELS)
    assert [r.unfamiliar for r in got] == [r.unfamiliar for r in want] == [False, True]
    assert np.allclose([r.familiarity for r in got], [r.familiarity for r in want], atol=1e-4)
    # the CLI's and the demo's order of calls: embeddings, then results, then the flag (no second pass)
    imgs = _images()
    label_set, emb = dev.label_index(LABELS)
    calls = []
    run = dev._image.run
    dev._image.run = lambda *a, **k: calls.append(1) or run(*a, **k)
    results = dev.annotate_familiarity(dev.classify_embeddings(dev.encode_images(imgs), label_set, emb), imgs)
    assert [r.familiarity for r in results] == pytest.approx([r.familiarity for r in got], abs=1e-6)
    assert len(calls) == 1
    # other images than the last encoded ones are measured anew, not taken from the last pass
    [again] = dev.annotate_familiarity(dev.classify_embeddings(dev.encode_images(imgs[:1]), label_set, emb),
                                       [_images()[1]])
    assert again.unfamiliar is (True if layers else False)


def test_cli_on_an_export_shows_the_flag(stats_model, tmp_path_factory, tmp_path, capsys):
    out = export(tmp_path_factory, "fam-cli", "--model", str(stats_model.bundle.info["source"]))
    files = write_images(tmp_path / "imgs", _images())
    capsys.readouterr()
    assert main(["classify", *map(str, files), "--model", str(out), "--labels", LABELS, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["unfamiliar"] for r in rows] == [False, True]
    want = stats_model.classify([str(f) for f in files], LABELS)
    assert [r["familiarity"] for r in rows] == pytest.approx([r.familiarity for r in want], abs=1e-3)


def test_export_without_reference_says_nothing(oc_export):
    manifest = json.loads((oc_export / "snapsight_export.json").read_text())
    assert manifest["familiarity"] is None and not (oc_export / REFERENCE_FILE).exists()
    [r] = OnnxZeroShotClassifier.load(oc_export).classify(random_images(1), LABELS)
    assert r.familiarity is None and r.unfamiliar is None
