"""End to end on a tiny random CLIP and a CSV with a group column: the report, its files, and one-sentence errors."""
from __future__ import annotations

import json

import pytest

from snapsight.cli import main
from snapsight.data.labeled import load_labeled
from snapsight.errors import SnapsightError
from snapsight.evaluate.model import from_zero_shot
from snapsight.evaluate.report import read_threshold, summary_lines, write_report
from snapsight.evaluate.run import CHECKS, EvaluateConfig, evaluate
from snapsight.zeroshot.classify import ZeroShotClassifier

from .conftest import write_labeled_csv


@pytest.fixture(scope="module")
def tiny_clf(tiny_clip_dir):
    return ZeroShotClassifier.load(str(tiny_clip_dir), device="cpu", precision="fp32", cache_dir="")


@pytest.fixture(scope="module")
def tiny_model(tiny_clf):
    return from_zero_shot(tiny_clf, ["cat", "dog", "bird"], "none")


def test_csv_and_jsonl_extra_columns_are_kept_and_follow_subsets(tmp_path):
    ds = load_labeled(write_labeled_csv(tmp_path))
    assert ds.columns["site"][:4] == ["a", "b", "a", "b"]
    sub = ds.subset([1, 3, 4])
    assert sub.columns["site"] == ["b", "b", "a"]
    (tmp_path / "d.jsonl").write_text('{"path": "img/0.png", "label": "cat", "age": 3}\n'
                                      '{"path": "img/1.png", "label": "dog"}\n')
    js = load_labeled(tmp_path / "d.jsonl")
    assert js.columns == {"age": ["3", ""]}


def test_hugging_face_dataset_columns_are_kept(tmp_path):
    import datasets
    from PIL import Image

    imgs = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"]),
                               "region": datasets.ClassLabel(names=["north", "south"]), "age": datasets.Value("int32")})
    datasets.Dataset.from_dict({"image": imgs, "label": [0, 1, 0], "region": [1, 0, 1], "age": [3, 4, 5]},
                               features=feats).save_to_disk(str(tmp_path / "hf"))
    ds = load_labeled(tmp_path / "hf")
    assert ds.columns == {"region": ["south", "north", "south"], "age": ["3", "4", "5"]}


def test_full_report_on_a_tiny_clip(tmp_path, tiny_model):
    data = load_labeled(write_labeled_csv(tmp_path))
    cfg = EvaluateConfig(group="site", min_group_size=1, attack_limit=6, saliency_limit=2, saliency_samples=2,
                         pgd_steps=2)
    report = evaluate(tiny_model, data, cfg, progress=False)
    assert set(report["checks"]) == set(CHECKS)
    acc = report["checks"]["accuracy"]
    assert acc["n"] == 24 and 0 <= acc["top1"] <= 1
    assert set(acc["groups"]["groups"]) == {"a", "b"} and acc["groups"]["groups"]["a"]["n"] == 12
    adv = report["checks"]["adversarial"]
    assert adv["n"] == 6 and adv["eps"][0] == 0.0
    assert all(b <= a for a, b in zip(adv["worst"], adv["worst"][1:]))
    assert len(report["checks"]["corruptions"]["accuracy"]) == 5
    cost = report["checks"]["cost"]
    assert cost["parameters"] > 0 and cost["ms_per_image_batch1"] > 0
    out = write_report(report, tmp_path / "report")
    saved = json.loads((out / "report.json").read_text())
    assert saved["checks"]["accuracy"]["top1"] == acc["top1"]
    html = (out / "report.html").read_text()
    assert html.count('<img class="plot"') >= 6 and "data:image/png;base64," in html
    assert len(summary_lines(report)) >= 7


def test_brightness_groups_need_no_column(tmp_path, tiny_model):
    data = load_labeled(write_labeled_csv(tmp_path))
    report = evaluate(tiny_model, data, EvaluateConfig(checks=("accuracy",), group="image:brightness", group_bins=3),
                      progress=False)
    groups = report["checks"]["accuracy"]["groups"]["groups"]
    assert len(groups) == 3 and sum(g["n"] for g in groups.values()) == 24


def test_bad_input_gets_one_sentence(tmp_path, tiny_clf, tiny_model):
    data = load_labeled(write_labeled_csv(tmp_path))
    with pytest.raises(SnapsightError, match="group column 'country' does not exist.*site"):
        evaluate(tiny_model, data, EvaluateConfig(group="country"), progress=False)
    clf_labels = from_zero_shot(tiny_clf, ["cat", "bird"], "none")
    with pytest.raises(SnapsightError, match="label\\(s\\) 'dog' that the model does not have"):
        evaluate(clf_labels, data, EvaluateConfig(checks=("accuracy",)), progress=False)
    with pytest.raises(SnapsightError, match="calibration check needs at least 20 images, got 5"):
        evaluate(tiny_model, data, EvaluateConfig(checks=("calibration",), limit=5), progress=False)
    with pytest.raises(SnapsightError, match="unknown check"):
        EvaluateConfig(checks=("accuracy", "vibes"))


def test_cli_writes_the_report_and_classify_reads_its_threshold(tmp_path, tiny_clip_dir, capsys):
    csv = write_labeled_csv(tmp_path, n_per_class=20)  # a threshold must accept at least 30 images
    out = tmp_path / "rep"
    rc = main(["evaluate", "--model", str(tiny_clip_dir), "--data", str(csv), "--labels", "cat, dog, bird",
               "--templates", "none", "--checks", "accuracy,calibration", "--target-precision", "0.01",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "accuracy: top-1" in printed and "calibration: ECE" in printed
    th = read_threshold(out)
    assert -1 <= th["threshold"] <= 1 and th["labels"] == ["cat", "dog", "bird"]
    rc = main(["classify", str(tmp_path / "img" / "0.png"), "--model", str(tiny_clip_dir), "--labels",
               "cat, dog, bird", "--templates", "none", "--threshold", "auto", "--report", str(out), "--format", "json"])
    assert rc == 0
    assert f"{th['threshold']:.4f}" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, tiny_clip_dir, capsys):
    csv = write_labeled_csv(tmp_path)
    assert main(["evaluate", "--model", str(tiny_clip_dir), "--data", str(csv), "--group", "nope",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: group column 'nope' does not exist") and "\n" not in err
    assert main(["classify", str(tmp_path / "img" / "0.png"), "--labels", "a, b", "--threshold", "auto"]) == 2
    assert "--report" in capsys.readouterr().err
