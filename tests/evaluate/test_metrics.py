"""The report's numbers against values worked out by hand on small constructed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from snapsight.evaluate import metrics


def test_ece_equals_hand_computed_value():
    # 4 items, 15 bins (bin b holds (b/15, (b+1)/15]): confidences 0.9, 0.9 (bin 13), 0.6 (bin 8), 0.42 (bin 6)
    probs = np.array([[0.9, 0.1, 0.0], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2], [0.3, 0.28, 0.42]])
    labels = np.array([0, 1, 1, 0])
    # bin 13: conf 0.9, accuracy 1/2 -> 2/4 * |0.5 - 0.9| = 0.2
    # bin 8:  conf 0.6, accuracy 1   -> 1/4 * |1 - 0.6|   = 0.1
    # bin 6:  conf 0.42, accuracy 0  -> 1/4 * |0 - 0.42|  = 0.105
    assert metrics.expected_calibration_error(probs, labels, 15) == pytest.approx(0.2 + 0.1 + 0.105)
    bins = metrics.reliability_bins(probs.max(1), probs.argmax(1) == labels, 15)
    assert sum(bins["count"]) == 4 and bins["count"][13] == 2 and bins["accuracy"][13] == 0.5


def test_ece_bin_edges_include_the_upper_edge():
    # confidence exactly 1/15 * 9 = 0.6 belongs to bin 8 ((0.5333, 0.6]); a perfectly calibrated pair gives 0
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 0, 0, 1, 1])
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_group_gaps_equal_hand_computed_values():
    classes = ["cat", "dog"]
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1, 1])
    preds = np.array([0, 0, 1, 0, 0, 1, 1, 0, 0])
    groups = ["a", "a", "a", "a", "b", "b", "b", "b", "b"]
    out = metrics.group_stats(labels, preds, groups, classes)
    a, b = out["groups"]["a"], out["groups"]["b"]
    assert a["accuracy"]["value"] == pytest.approx(3 / 4) and b["accuracy"]["value"] == pytest.approx(2 / 5)
    assert out["gaps"]["accuracy"]["gap"] == pytest.approx(3 / 4 - 2 / 5)
    assert out["worst_group"] == "b" and out["gaps"]["accuracy"]["lowest"] == "b"
    # recall of dog: a 1/2, b 1/3 ; of cat: a 2/2, b 1/2
    assert a["recall"]["dog"]["value"] == pytest.approx(1 / 2) and b["recall"]["dog"]["value"] == pytest.approx(1 / 3)
    assert out["gaps"]["recall"]["dog"]["gap"] == pytest.approx(1 / 2 - 1 / 3)
    assert out["gaps"]["recall"]["cat"]["gap"] == pytest.approx(1 / 2)
    assert out["largest_recall_gap"]["class"] == "cat"
    # selection rate of cat: a 3/4 predicted cat, b 3/5
    assert a["selection_rate"]["cat"]["value"] == pytest.approx(3 / 4)
    assert out["gaps"]["selection_rate"]["cat"]["gap"] == pytest.approx(3 / 4 - 3 / 5)
    lo, hi = a["accuracy"]["ci95"]
    assert lo < 3 / 4 < hi


def test_small_groups_are_left_out_of_the_gaps():
    labels = np.array([0, 0, 0, 0, 1])
    preds = np.array([0, 0, 0, 0, 0])
    out = metrics.group_stats(labels, preds, ["big"] * 4 + ["tiny"], ["x", "y"], min_group_size=2)
    assert out["gaps"]["accuracy"] is None  # only one eligible group
    assert out["groups"]["tiny"]["accuracy"]["value"] == 0.0
    # a class with one item in a group says nothing about that group's recall of it
    labels = np.array([0, 0, 1, 1, 0, 0, 0, 1])
    preds = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    out = metrics.group_stats(labels, preds, ["a"] * 4 + ["b"] * 4, ["x", "y"], min_group_size=2)
    assert out["groups"]["b"]["recall"]["y"]["n"] == 1 and out["groups"]["b"]["recall"]["y"]["value"] == 0.0
    assert out["gaps"]["recall"]["y"] is None and out["gaps"]["recall"]["x"]["gap"] == 0.0


def test_wilson_interval_matches_the_formula():
    lo, hi = metrics.wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook values for 8/10
    assert all(math.isnan(v) for v in metrics.wilson_interval(0, 0))


def test_temperature_fit_minimises_nll_and_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 5)) * 3
    true_t = 2.5  # labels drawn from softmax(z / 2.5): the NLL minimum is near T = 2.5
    p = metrics.softmax(z, true_t)
    labels = np.array([rng.choice(5, p=row) for row in p])
    t = metrics.fit_temperature(z, labels)
    assert t == pytest.approx(true_t, rel=0.1)
    assert metrics.nll(z, labels, t) <= min(metrics.nll(z, labels, s) for s in (1.0, 2.0, 3.0, 5.0))


def test_risk_coverage_and_threshold():
    scores = np.array([0.9, 0.8, 0.8, 0.5, 0.2])
    correct = np.array([1, 1, 0, 1, 0])
    curve = metrics.risk_coverage(scores, correct)
    assert curve["threshold"] == [0.9, 0.8, 0.5, 0.2]
    assert curve["coverage"] == pytest.approx([0.2, 0.6, 0.8, 1.0])
    assert curve["risk"] == pytest.approx([0.0, 1 / 3, 1 / 4, 2 / 5])
    assert curve["accepted"] == [1, 3, 4, 5]
    assert metrics.threshold_for_precision(curve, 0.75, min_accepted=1)["threshold"] == 0.5
    assert metrics.threshold_for_precision(curve, 1.0, min_accepted=1)["threshold"] == 0.9
    # one right answer above 0.9 is not enough evidence for a 100%-precision threshold
    assert metrics.threshold_for_precision(curve, 1.0, min_accepted=2) is None
    assert metrics.threshold_for_precision(metrics.risk_coverage(np.array([0.5]), np.array([0])), 0.5,
                                           min_accepted=1) is None


def test_topk_and_confusion():
    logits = np.array([[3, 2, 1], [1, 3, 2], [1, 2, 3]])
    labels = np.array([1, 1, 0])
    assert metrics.topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert metrics.topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)
    assert metrics.confusion_matrix(labels, logits.argmax(1), 3).tolist() == [[0, 0, 1], [1, 1, 0], [0, 0, 0]]
