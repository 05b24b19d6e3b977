"""The numbers of a trust report, as pure numpy functions on labels, predictions and probabilities.

- :func:`expected_calibration_error` and :func:`reliability_bins`: ECE with equal-width confidence bins
  (Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. 3; 15 bins as in that paper);
- :func:`fit_temperature`: the one-parameter temperature scaling of the same paper (sec. 4.2), fitted by
  minimising the negative log-likelihood on held-out items;
- :func:`risk_coverage`: selective classification (Geifman & El-Yaniv 2017): accept an answer only when its
  score clears a threshold; coverage is the share accepted, risk the error among them;
- :func:`wilson_interval` and :func:`group_stats`: per-group accuracy, recall and selection rate with Wilson
  score intervals (Wilson 1927), so that a gap between two small groups is not over-read.

Shapes: ``labels`` and ``preds`` are ``(n,)`` int class indices; ``probs`` is ``(n, C)`` rows summing to 1.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..probe.report import confusion_matrix  # noqa: F401  (the probe report's: one definition)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)`` of ``(n, C)``, computed stably."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` highest scores (``k`` capped at the number of classes)."""
    logits = np.asarray(logits)
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(labels)[:, None]).any(axis=1).mean())


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict[str, list]:
    """Equal-width bins over ``(0, 1]`` of the top-1 confidence: per bin its count, mean confidence and accuracy
    (``None`` for empty bins). Bin ``b`` holds ``b/n < conf <= (b+1)/n``."""
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts, confs, accs = [], [], []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        counts.append(n)
        confs.append(float(conf[sel].mean()) if n else None)
        accs.append(float(corr[sel].mean()) if n else None)
    return {"edges": edges.tolist(), "count": counts, "confidence": confs, "accuracy": accs}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE = sum over bins of ``(n_b / n) * |accuracy_b - confidence_b|`` on the top-1 probability."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = reliability_bins(conf, correct, n_bins)
    n = len(labels)
    return float(sum(c / n * abs(a - f) for c, a, f in zip(bins["count"], bins["accuracy"], bins["confidence"]) if c))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


TEMPERATURE_RANGE = (0.05, 20.0)  # where fit_temperature searches; a fit at either end found no minimum inside


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = TEMPERATURE_RANGE[0],
                    hi: float = TEMPERATURE_RANGE[1], iters: int = 80) -> float:
    """The temperature ``T`` minimising :func:`nll` of ``logits / T``: golden-section search on ``log T`` (the NLL
    of temperature scaling has a single minimum in ``T``)."""
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return float(math.exp((a + b) / 2))


def risk_coverage(scores: np.ndarray, correct: np.ndarray) -> dict[str, list[float]]:
    """Selective-classification curve: accept an answer when its ``score >= t``. For every distinct ``t`` (highest
    first) the share accepted (coverage) and the error among the accepted (risk). ``(n,)`` inputs."""
    s = np.asarray(scores, dtype=np.float64)
    c = np.asarray(correct, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, c = s[order], c[order]
    n = len(s)
    if n == 0:
        return {"threshold": [], "coverage": [], "risk": [], "accepted": []}
    errors = np.cumsum(1.0 - c)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), n - 1]  # the last item of each run of equal scores
    accepted = last + 1
    return {"threshold": s[last].tolist(), "coverage": (accepted / n).tolist(),
            "risk": (errors[last] / accepted).tolist(), "accepted": accepted.tolist()}


def threshold_for_precision(curve: dict[str, list[float]], target_precision: float,
                            min_accepted: int = 30) -> dict[str, Any] | None:
    """The lowest threshold (largest coverage) whose accepted answers are right at least ``target_precision``
    of the time, or ``None`` when no threshold reaches it. Thresholds that accept fewer than ``min_accepted``
    answers are not considered: a precision measured on a handful of images is not one to act on."""
    best = None
    for t, cov, risk, k in zip(curve["threshold"], curve["coverage"], curve["risk"], curve["accepted"]):
        if k >= min_accepted and 1.0 - risk >= target_precision - 1e-12:
            best = {"threshold": t, "coverage": cov, "precision": 1.0 - risk, "accepted": int(k)}
    return best


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% for ``z = 1.96``); ``(nan, nan)`` when ``n = 0``."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(successes: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(successes, n)
    return {"value": successes / n if n else None, "k": int(successes), "n": int(n), "ci95": [lo, hi]}


def group_stats(labels: np.ndarray, preds: np.ndarray, groups: Sequence[str], class_names: Sequence[str],
                min_group_size: int = 1) -> dict[str, Any]:
    """A bias audit over ``groups`` (one group name per item).

    Per group: accuracy, each class's recall (share of that class's items predicted as it) and selection rate
    (share of the group's items predicted as the class), each with its count and 95% Wilson interval. Then the
    largest gap of each across groups (max - min over groups with at least ``min_group_size`` items and, for a
    class's recall, at least ``min_group_size`` items of that class) and the worst group by accuracy.
    """
    labels = np.asarray(labels)
    preds = np.asarray(preds)
    groups = np.asarray([str(g) for g in groups])
    names = sorted(set(groups.tolist()))
    per_group: dict[str, Any] = {}
    for g in names:
        sel = groups == g
        n = int(sel.sum())
        yl, yp = labels[sel], preds[sel]
        recall = {c: _rate(int(((yl == j) & (yp == j)).sum()), int((yl == j).sum())) for j, c in enumerate(class_names)}
        selection = {c: _rate(int((yp == j).sum()), n) for j, c in enumerate(class_names)}
        per_group[g] = {"n": n, "accuracy": _rate(int((yl == yp).sum()), n), "recall": recall,
                        "selection_rate": selection}
    eligible = [g for g in names if per_group[g]["n"] >= min_group_size]

    def gap(values: dict[str, float]) -> dict[str, Any] | None:
        if len(values) < 2:
            return None
        hi_g = max(values, key=values.get)
        lo_g = min(values, key=values.get)
        return {"gap": values[hi_g] - values[lo_g], "highest": hi_g, "lowest": lo_g}

    acc = {g: per_group[g]["accuracy"]["value"] for g in eligible}
    gaps: dict[str, Any] = {"accuracy": gap(acc), "recall": {}, "selection_rate": {}}
    for c in class_names:
        rec = {g: per_group[g]["recall"][c]["value"] for g in eligible
               if per_group[g]["recall"][c]["n"] >= max(1, min_group_size)}
        gaps["recall"][c] = gap(rec)
        gaps["selection_rate"][c] = gap({g: per_group[g]["selection_rate"][c]["value"] for g in eligible})
    worst = min(acc, key=acc.get) if acc else None
    largest_recall = max((v for v in gaps["recall"].values() if v), key=lambda v: v["gap"], default=None)
    largest_recall_class = next((c for c, v in gaps["recall"].items() if v is largest_recall), None)
    return {"groups": per_group, "gaps": gaps, "worst_group": worst, "min_group_size": min_group_size,
            "largest_recall_gap": None if largest_recall is None else {"class": largest_recall_class, **largest_recall}}


def auc(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Area under a curve by the trapezoid rule."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2)) if len(x) > 1 else 0.0
