"""An honest classification report: per class, not just one accuracy figure.

:func:`classification_report` turns predicted probabilities ``(n, num_classes)`` and true labels ``(n,)``
into a JSON-able dict with top-1/top-5 accuracy, per-class precision/recall/F1/support, the confusion
matrix, the worst-confused pairs in plain words ("Shirt is mistaken for T-shirt/top 14% of the time")
and bias warnings (recall spread across classes, imbalanced training labels).
:func:`write_report` saves ``report.json`` and ``confusion_matrix.png``; :func:`format_summary` gives the
lines the CLI prints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts.files import atomic_write_json


@dataclass
class ReportConfig:
    top_confusions: int = 5  # how many worst-confused class pairs to spell out
    min_confusion_rate: float = 0.02  # pairs below this share of the true class are not listed
    recall_spread_warning: float = 0.3  # warn when best minus worst per-class recall exceeds this
    imbalance_warning: float = 3.0  # warn when the largest training class outnumbers the smallest by this factor


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of items of true class ``i`` predicted as ``j``; ``(C, C)`` int64."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return cm


def per_class_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (NaN where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.where(support > 0, 0.0, np.nan))
        f1 = np.where((precision + recall) > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(np.isnan(recall), np.nan, f1)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def confused_pairs(cm: np.ndarray, class_names: Sequence[str], top: int = 5, min_rate: float = 0.02) -> list[dict[str, Any]]:
    """The ``top`` off-diagonal cells with the highest share of their true class, in plain words."""
    support = cm.sum(1)
    pairs = []
    for i in range(cm.shape[0]):
        if support[i] == 0:
            continue
        for j in range(cm.shape[1]):
            if i != j and cm[i, j] > 0:
                rate = cm[i, j] / support[i]
                if rate >= min_rate:
                    pairs.append((rate, int(cm[i, j]), i, j))
    pairs.sort(key=lambda p: (-p[0], -p[1]))
    out = []
    for rate, count, i, j in pairs[:top]:
        pct = rate * 100
        pct_text = f"{pct:.0f}%" if pct >= 1 else f"{pct:.1f}%"
        out.append({
            "true": class_names[i], "predicted": class_names[j], "rate": round(float(rate), 4), "count": count,
            "text": f"{class_names[i]} is mistaken for {class_names[j]} {pct_text} of the time "
                    f"({count} of {int(support[i])})",
        })
    return out


def bias_warnings(
    recall: np.ndarray,
    class_names: Sequence[str],
    train_counts: np.ndarray | None,
    cfg: ReportConfig = ReportConfig(),
) -> list[str]:
    """Warnings when per-class recall spreads widely or the training labels are very imbalanced."""
    warnings = []
    valid = ~np.isnan(recall)
    if valid.sum() >= 2:
        r = np.where(valid, recall, np.nan)
        lo, hi = int(np.nanargmin(r)), int(np.nanargmax(r))
        spread = float(r[hi] - r[lo])
        if spread > cfg.recall_spread_warning:
            warnings.append(
                f"per-class recall spreads widely ({spread:.0%}): '{class_names[hi]}' is recognised {r[hi]:.0%} "
                f"of the time but '{class_names[lo]}' only {r[lo]:.0%}; the classifier serves some classes much "
                "worse than others"
            )
    if train_counts is not None and len(train_counts):
        counts = np.asarray(train_counts, dtype=np.float64)
        nz = counts[counts > 0]
        if len(nz) >= 2 and nz.max() / nz.min() > cfg.imbalance_warning:
            big, small = int(np.argmax(counts)), int(np.argmin(np.where(counts > 0, counts, np.inf)))
            warnings.append(
                f"training labels are imbalanced: '{class_names[big]}' has {int(counts[big])} images but "
                f"'{class_names[small]}' only {int(counts[small])} ({nz.max() / nz.min():.1f}x); rare classes "
                "tend to be under-predicted"
            )
    return warnings


def _clean(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def classification_report(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    train_counts: np.ndarray | None = None,
    cfg: ReportConfig = ReportConfig(),
) -> dict[str, Any]:
    """Full report for predicted ``probs`` ``(n, C)`` (or scores) against ``labels`` ``(n,)``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, num_classes = probs.shape
    preds = probs.argmax(1) if n else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(labels, preds, num_classes)
    m = per_class_metrics(cm)
    k5 = min(5, num_classes)
    top5 = np.argsort(-probs, axis=1)[:, :k5] if n else np.zeros((0, k5), dtype=np.int64)
    evaluated = ~np.isnan(m["recall"])
    report = {
        "num_items": int(n),
        "num_classes": int(num_classes),
        "top1": _clean(float((preds == labels).mean()) if n else float("nan")),
        "top5": _clean(float((top5 == labels[:, None]).any(1).mean()) if n else float("nan")) if num_classes > 5 else None,
        "macro_f1": _clean(float(np.nanmean(m["f1"][evaluated])) if evaluated.any() else float("nan")),
        "balanced_accuracy": _clean(float(np.nanmean(m["recall"][evaluated])) if evaluated.any() else float("nan")),
        "per_class": [
            {
                "class": class_names[c],
                "precision": _clean(m["precision"][c]),
                "recall": _clean(m["recall"][c]),
                "f1": _clean(m["f1"][c]),
                "support": int(m["support"][c]),
                **({"train_count": int(train_counts[c])} if train_counts is not None else {}),
            }
            for c in range(num_classes)
        ],
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
        "worst_confusions": confused_pairs(cm, class_names, cfg.top_confusions, cfg.min_confusion_rate),
        "warnings": bias_warnings(m["recall"], class_names, train_counts, cfg),
    }
    return report


def confusion_figure(cm: np.ndarray, class_names: Sequence[str], title: str = "") -> Any:
    """A matplotlib figure of the row-normalised confusion matrix (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    c = len(class_names)
    size = max(4.0, 0.55 * c + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(c), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if c <= 30:
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.0%}" if norm[i, j] >= 0.005 else "<1%", ha="center", va="center",
                            fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """:func:`confusion_figure` saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = confusion_figure(cm, class_names, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_report(report: dict[str, Any], out_dir: str | Path, stem: str = "") -> dict[str, Path]:
    """Write ``{stem}report.json`` and ``{stem}confusion_matrix.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path = out_dir / f"{stem}report.json"
    png_path = out_dir / f"{stem}confusion_matrix.png"
    atomic_write_json(json_path, report)
    plot_confusion_matrix(np.array(report["confusion_matrix"]), report["class_names"], png_path,
                          title=f"{report.get('split', 'evaluation')}: top-1 {report['top1']:.1%}" if report.get("top1") is not None else "")
    return {"json": json_path, "png": png_path}


def format_summary(report: dict[str, Any], max_classes: int = 30) -> str:
    """Plain-text summary: headline figures, a per-class table, confusions and warnings."""
    lines = []
    head = f"{report.get('split', 'evaluation')}: {report['num_items']} images, {report['num_classes']} classes — "
    head += f"top-1 {report['top1']:.1%}" if report["top1"] is not None else "top-1 n/a"
    if report.get("top5") is not None:
        head += f", top-5 {report['top5']:.1%}"
    if report.get("macro_f1") is not None:
        head += f", macro-F1 {report['macro_f1']:.3f}"
    lines.append(head)
    rows = report["per_class"]
    width = max(5, *(len(r["class"]) for r in rows[:max_classes]))
    lines.append(f"  {'class':<{width}}  precision  recall     F1  support")

    def fmt(v):
        return "   n/a" if v is None else f"{v:6.3f}"

    for r in rows[:max_classes]:
        lines.append(f"  {r['class']:<{width}}     {fmt(r['precision'])}  {fmt(r['recall'])} {fmt(r['f1'])}  {r['support']:7d}")
    if len(rows) > max_classes:
        lines.append(f"  ... {len(rows) - max_classes} more classes in report.json")
    if report["worst_confusions"]:
        lines.append("  most confused:")
        lines += [f"    - {p['text']}" for p in report["worst_confusions"]]
    for w in report["warnings"]:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)
