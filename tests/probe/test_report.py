"""Classification report: metrics against hand counts, plain-word confusions, bias warnings, files."""
import json

import numpy as np

from snapsight.probe.report import (
    ReportConfig,
    bias_warnings,
    classification_report,
    confusion_matrix,
    format_summary,
    write_report,
)

NAMES = ["T-shirt/top", "Shirt", "Bag"]


def _probs(preds, num_classes=3):
    p = np.full((len(preds), num_classes), 0.1)
    p[np.arange(len(preds)), preds] = 0.8
    return p


def test_metrics_match_hand_counts():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2])
    preds = np.array([0, 0, 0, 1, 1, 1, 0, 0, 1, 2])
    rep = classification_report(_probs(preds), labels, NAMES)
    cm = np.array(rep["confusion_matrix"])
    assert cm.tolist() == confusion_matrix(labels, preds, 3).tolist() == [[3, 1, 0], [2, 3, 0], [0, 0, 1]]
    assert rep["top1"] == 0.7 and rep["top5"] is None  # only 3 classes: top-5 is meaningless
    shirt = rep["per_class"][1]
    assert shirt["precision"] == 0.75 and shirt["recall"] == 0.6 and abs(shirt["f1"] - 2 * 0.75 * 0.6 / 1.35) < 1e-4
    assert rep["worst_confusions"][0]["text"] == "Shirt is mistaken for T-shirt/top 40% of the time (2 of 5)"
    assert rep["worst_confusions"][1]["true"] == "T-shirt/top"


def test_top5_and_absent_classes():
    rng = np.random.default_rng(0)
    probs = rng.random((20, 8))
    labels = rng.integers(0, 6, 20)  # classes 6 and 7 never occur
    rep = classification_report(probs, labels, [f"c{i}" for i in range(8)])
    top5 = np.argsort(-probs, 1)[:, :5]
    assert abs(rep["top5"] - (top5 == labels[:, None]).any(1).mean()) < 1e-4
    assert rep["per_class"][7]["recall"] is None and rep["per_class"][7]["support"] == 0
    json.dumps(rep)  # NaN-free and serialisable


def test_bias_warnings():
    cfg = ReportConfig(recall_spread_warning=0.3, imbalance_warning=3.0)
    w = bias_warnings(np.array([0.95, 0.5, 0.9]), NAMES, np.array([100, 100, 10]), cfg)
    assert len(w) == 2
    assert "'T-shirt/top' is recognised 95%" in w[0] and "'Shirt' only 50%" in w[0]
    assert "imbalanced" in w[1] and "'Bag' only 10" in w[1]
    assert bias_warnings(np.array([0.9, 0.8, np.nan]), NAMES, np.array([10, 12, 11]), cfg) == []


def test_write_report_and_summary(tmp_path):
    labels = np.array([0, 1, 1, 2])
    rep = classification_report(_probs(np.array([0, 0, 1, 2])), labels, NAMES, train_counts=np.array([5, 5, 5]))
    rep["split"] = "val"
    paths = write_report(rep, tmp_path)
    assert json.loads(paths["json"].read_text())["top1"] == 0.75
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    text = format_summary(rep)
    assert "top-1 75.0%" in text and "Shirt is mistaken for T-shirt/top 50%" in text
