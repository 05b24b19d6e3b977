import csv
import io
import json

import pytest

from snapsight.artifacts.classifier import CLASSIFIER_JSON, CLASSIFIER_KIND
from snapsight.cli import main

from .conftest import random_images


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    ims = random_images(3)
    ims[0].save(folder / "a.png")
    ims[1].save(folder / "sub" / "b.jpg")
    ims[2].save(tmp_path / "c.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def _classifier_folder(path):
    """A folder that says it holds a probe classifier (what detect() reads); the classifier itself is faked."""
    path.mkdir()
    (path / CLASSIFIER_JSON).write_text(json.dumps({"kind": CLASSIFIER_KIND}))
    return path


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_table_output_folder_glob_and_corrupt_image(capsys, image_folder, tiny_open_clip_dir):
    code, out, err = _run(capsys, ["classify", str(image_folder), str(image_folder.parent / "*.png"),
                                   "--labels", "cat, sunset, pizza, cat", "--model", str(tiny_open_clip_dir),
                                   "--top-k", "2", "--precision", "fp32", "--no-progress"])
    assert code == 0
    assert "a.png" in out and "b.jpg" in out and "c.png" in out
    assert out.count("  1. ") == 3 and "cos" in out
    assert "broken.jpg" in err and "1 of 4 images skipped" in err
    assert "duplicate" in err  # the cleaning note


def test_json_and_csv_formats(capsys, image_folder, tiny_open_clip_dir):
    common = [str(image_folder / "a.png"), "--labels", "cat, dog, pizza", "--model", str(tiny_open_clip_dir),
              "--precision", "fp32", "--no-progress", "--templates", "none"]
    code, out, _ = _run(capsys, ["classify", *common, "--format", "json", "--threshold", "0.99"])
    assert code == 0
    [item] = json.loads(out)
    assert item["image"].endswith("a.png") and len(item["labels"]) == 3
    assert abs(sum(item["probs"]) - 1) < 1e-4 and item["none_of_these"] is True
    code, out, _ = _run(capsys, ["classify", *common, "--format", "csv", "--multi-label", "--top-k", "2"])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["rank"] for r in rows] == ["1", "2"]
    assert rows[0]["present"] in ("0", "1") and float(rows[0]["cosine"]) <= 1


def test_labels_file_and_builtin(capsys, image_folder, tiny_open_clip_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat: kitty | kitten\ndog\n")
    code, out, _ = _run(capsys, ["classify", str(image_folder / "a.png"), "--labels-file", str(labels),
                                 "--model", str(tiny_open_clip_dir), "--no-progress", "--format", "json"])
    assert code == 0 and sorted(json.loads(out)[0]["labels"]) == ["cat", "dog"]
    code, out, _ = _run(capsys, ["classify", str(image_folder / "a.png"), "--labels", "builtin:cifar-10",
                                 "--model", str(tiny_open_clip_dir), "--no-progress", "--templates", "none"])
    assert code == 0 and out.count("%") == 5


@pytest.mark.parametrize("argv,message", [
    (["--labels", " , "], "no labels"),
    ([], "needs labels"),
    (["--labels", "cat", "--top-k", "0"], "top-k"),
    (["--labels", "cat", "--set", "index.kindd=flat"], "kindd"),
    (["--labels", "cat", "--templates", "fancy"], "unknown template set"),
    (["--labels", "cat", "--set", "index.kind=foo"], "index.kind"),  # was a ValueError traceback
    (["--labels", "cat", "--set", "text_batch_size=0"], "text_batch_size"),  # was a ValueError traceback
    (["--labels", "cat", "--device", "gpu0"], "unknown device"),  # was torch's RuntimeError traceback
])
def test_user_errors_exit_2_with_one_line(capsys, image_folder, tiny_open_clip_dir, argv, message):
    code, out, err = _run(capsys, ["classify", str(image_folder / "a.png"), "--model", str(tiny_open_clip_dir),
                                   "--no-progress", *argv])
    assert code == 2 and message in err
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1


def test_only_unreadable_images(capsys, image_folder, tiny_open_clip_dir, tmp_path):
    code, _, err = _run(capsys, ["classify", str(image_folder / "broken.jpg"), "--labels", "cat",
                                 "--model", str(tiny_open_clip_dir), "--no-progress"])
    assert code == 2 and "could be read" in err
    code, _, err = _run(capsys, ["classify", str(tmp_path / "nothing*.png"), "--labels", "cat",
                                 "--model", str(tiny_open_clip_dir), "--no-progress"])
    assert code == 2 and "no file matches" in err
    code, _, err = _run(capsys, ["classify", str(tmp_path / "missing.png"), "--labels", "cat",
                                 "--model", str(tiny_open_clip_dir), "--no-progress"])
    assert code == 2 and "file not found" in err
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error:")  # one line, no warning before it


def test_probe_classifier_folder(capsys, image_folder, tmp_path, monkeypatch):
    """Contract 2: a probe classifier folder is used directly; no --labels needed."""
    clf_dir = _classifier_folder(tmp_path / "probe-run")

    class FakeClassifier:
        class_names = ["shirt", "shoe"]

        def predict(self, images, top_k=5):
            return [[("shoe", 0.75), ("shirt", 0.25)][:top_k] for _ in images]

    monkeypatch.setattr("snapsight.probe.classifier.load_classifier", lambda path, device="auto": FakeClassifier())
    code, out, _ = _run(capsys, ["classify", str(image_folder / "a.png"), "--model", str(clf_dir),
                                 "--format", "json", "--no-progress"])
    assert code == 0
    [item] = json.loads(out)
    assert item["labels"] == ["shoe", "shirt"] and item["probs"] == [0.75, 0.25] and item["scores"] == []


@pytest.mark.parametrize("argv,named", [
    (["--threshold", "0.3"], "--threshold"),
    (["--multi-label"], "--multi-label"),
    (["--labels", "cat, dog"], "--labels"),
    (["--labels-file", "labels.txt"], "--labels-file"),
    (["--templates", "clip80"], "--templates"),
    (["--pretrained", "openai"], "--pretrained"),
    (["--set", "multi_label_min_prob=0.2"], "multi_label_min_prob"),
    (["--set", "threshold=0.25", "--multi-label"], "--threshold, --multi-label"),
])
def test_probe_classifier_refuses_zero_shot_options(capsys, image_folder, tmp_path, monkeypatch, argv, named):
    """--threshold, --multi-label, --labels, --templates were silently ignored with a trained classifier."""
    clf_dir = _classifier_folder(tmp_path / "probe-run")

    def load_classifier(path, device="auto"):
        raise AssertionError("the classifier was loaded before the options were checked")

    monkeypatch.setattr("snapsight.probe.classifier.load_classifier", load_classifier)
    code, out, err = _run(capsys, ["classify", str(image_folder / "a.png"), "--model", str(clf_dir),
                                   "--no-progress", *argv])
    assert code == 2 and out == ""
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert "is a trained classifier" in err and f"so {named} do" in err


def test_real_probe_classifier_folder(capsys, image_folder, tmp_path):
    """A classifier written by the probe's own save_classifier (not a stand-in) classifies; the ordinary
    options (--top-k, --format, --batch-size) still apply."""
    from snapsight.backbones import create_backbone
    from snapsight.preprocessing import Preprocessing
    from snapsight.probe.classifier import save_classifier
    from snapsight.probe.heads import LinearProbe

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    encoder = create_backbone("small_cnn", image_size=12, widths=[4, 8])
    arch = {"type": "snapsight", "backbone": "small_cnn", "backbone_kwargs": {"widths": [4, 8]},
            "num_features": encoder.num_features, "image_size": 12}
    save_classifier(tmp_path / "clf", encoder, arch, LinearProbe(encoder.num_features, 3), ["ant", "bee", "cow"],
                    Preprocessing(image_size=12, mean=(0.5,) * 3, std=(0.5,) * 3), "linear")
    code, out, err = _run(capsys, ["classify", str(image_folder), "--model", str(tmp_path / "clf"), "--top-k", "2",
                                 "--format", "json", "--batch-size", "1", "--no-progress", "--device", "cpu"])
    assert code == 0, err
    items = json.loads(out)
    assert len(items) == 2 and all(len(i["labels"]) == 2 and set(i["labels"]) <= {"ant", "bee", "cow"}
                                   for i in items)
    assert all(i["probs"][0] >= i["probs"][1] and i["none_of_these"] is False for i in items)
