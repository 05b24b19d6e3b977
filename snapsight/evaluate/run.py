"""The trust report in one call: :func:`evaluate` decodes the images once and runs the chosen checks on them.

Checks (``EvaluateConfig.checks``): ``accuracy`` (top-1/top-5, per class, confusion matrix, per group),
``calibration`` (ECE, reliability, temperature, risk-coverage), ``corruptions``, ``adversarial``, ``typographic``,
``cost`` and ``saliency``; each is a function of the decoded pixels and the :class:`~.model.ModelUnderTest`, and
writes one section of the report dictionary (:mod:`.report` renders it).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..data.labeled import LabeledDataset
from ..errors import ImageError, SnapsightError
from ..runtime import describe_cpu
from . import metrics
from .attacks import DEFAULT_EPS, PGD_STEPS, robust_accuracy
from .checks import CHECKS, IMAGE_GROUPS, MIN_IMAGES
from .corrupt import CORRUPTIONS, SEVERITIES, corrupt
from .cost import cost_check
from .model import ModelUnderTest, as_unit
from .saliency import saliency_check
from .typographic import overlay_text, wrong_labels

log = logging.getLogger(__name__)



@dataclass
class EvaluateConfig:
    checks: Sequence[str] = CHECKS  # which checks to run (CHECKS)
    limit: int | None = None  # evaluate a seeded random subset of this many images (None: all)
    group: str | None = None  # a data column, or image:brightness, to audit accuracy per group
    group_bins: int = 3  # image:brightness is cut into this many equal-count bins
    min_group_size: int = 30  # groups smaller than this are shown but left out of the gaps
    target_precision: float = 0.9  # the "none of these" threshold is chosen for this precision
    min_accepted: int = 30  # ... among thresholds that accept at least this many images
    calibration_holdout: float = 0.5  # share of images the temperature is fitted on (the rest measure it)
    eps: Sequence[float] = DEFAULT_EPS  # L-infinity radii of the attacks, in [0, 1] pixel units
    pgd_steps: int = PGD_STEPS  # PGD iterations
    attack_limit: int | None = None  # attack only the first this many evaluated images (None: all)
    saliency_limit: int = 100  # deletion/insertion curves for the first this many images
    saliency_samples: int = 8  # SmoothGrad samples per heatmap (the demo's default)
    batch_size: int = 64  # images per forward pass
    seed: int = 0  # the subset, noise, typographic labels, random maps, calibration split

    def __post_init__(self) -> None:
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise SnapsightError(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
        if not self.checks:
            raise SnapsightError(f"no checks chosen; choose from {', '.join(CHECKS)}")
        if self.limit is not None and self.limit < 1:
            raise SnapsightError(f"--limit must be at least 1, got {self.limit}")
        if not 0 < self.target_precision <= 1:
            raise SnapsightError(f"target precision must be in (0, 1], got {self.target_precision}")
        if any(not (0 <= e <= 1) for e in self.eps):
            raise SnapsightError(f"attack radii must be in [0, 1] (pixel units, e.g. 0.0039 for 1/255), got {self.eps}")
        if self.group_bins < 2:
            raise SnapsightError(f"group bins must be at least 2, got {self.group_bins}")


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)


def class_mapping(data_classes: Sequence[str], model_classes: Sequence[str], present: np.ndarray) -> np.ndarray:
    """Index of each data class among the model's classes (case-insensitive); -1 for classes without images.
    Raises one sentence naming the data's classes that the model does not have."""
    exact = {c: j for j, c in enumerate(model_classes)}
    folded = {c.casefold(): j for j, c in enumerate(model_classes)}
    out = np.full(len(data_classes), -1, dtype=np.int64)
    missing = []
    for i, c in enumerate(data_classes):
        j = exact.get(c, folded.get(c.casefold()))
        if j is not None:
            out[i] = j
        elif present[i]:
            missing.append(c)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise SnapsightError(f"the data has label(s) {shown} that the model does not have (its classes: "
                             f"{', '.join(list(model_classes)[:20])}{' ...' if len(model_classes) > 20 else ''})")
    return out


def check_group(data: LabeledDataset, group: str | None) -> None:
    """One sentence when ``group`` is neither a column of ``data`` nor a built-in image property."""
    if group is None or group in data.columns or group in IMAGE_GROUPS:
        return
    cols = ", ".join(data.columns) if data.columns else "none"
    raise SnapsightError(f"group column {group!r} does not exist in {data.name}; its columns are: {cols}; "
                         f"built-in: {', '.join(IMAGE_GROUPS)}")


def check_sizes(checks: Sequence[str], n: int) -> None:
    """One sentence when a chosen check needs more images than there are."""
    for c in checks:
        if n < MIN_IMAGES[c]:
            raise SnapsightError(f"the {c} check needs at least {MIN_IMAGES[c]} images, got {n}; pass more data or "
                                 f"leave {c} out of --checks")


def decode_images(model: ModelUnderTest, data: LabeledDataset, indices: np.ndarray, progress: bool
                  ) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Open and decode each image once: ``(n, 3, H, W)`` uint8 in the model's view, the kept indices, and one line
    per unreadable image (left out)."""
    pixels, kept, skipped = [], [], []
    bar = _bar(len(indices), "decode", progress)
    for i in indices:
        try:
            pixels.append(model.decode(data.load(int(i))))
            kept.append(int(i))
        except ImageError as e:
            skipped.append(str(e))
        bar.update(1)
    bar.close()
    if not pixels:
        raise SnapsightError(f"none of the {len(indices)} images of {data.name} could be read")
    return torch.stack(pixels), np.asarray(kept, dtype=np.int64), skipped


def brightness_groups(pixels: torch.Tensor, bins: int) -> tuple[list[str], list[float]]:
    """Cut images into ``bins`` equal-count groups by mean pixel value; group names carry their value range."""
    values = as_unit(pixels).mean(dim=(1, 2, 3)).numpy()
    edges = np.quantile(values, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, bins - 1)
    names = [f"{b + 1}: {edges[b]:.2f}-{edges[b + 1]:.2f}" for b in range(bins)]
    return [names[b] for b in idx], edges.tolist()


def accuracy_check(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                   groups: list[str] | None, min_group_size: int) -> dict[str, Any]:
    """Top-1/top-5, per-class precision/recall, the confusion matrix and, with ``groups``, the bias audit."""
    preds = logits.argmax(axis=1)
    cm = metrics.confusion_matrix(labels, preds, len(class_names))
    per_class = []
    for j, c in enumerate(class_names):
        n = int(cm[j].sum())
        predicted = int(cm[:, j].sum())
        per_class.append({"class": c, "n": n, "recall": cm[j, j] / n if n else None,
                          "precision": cm[j, j] / predicted if predicted else None,
                          "recall_ci95": list(metrics.wilson_interval(int(cm[j, j]), n))})
    out = {"n": len(labels), "top1": metrics.topk_accuracy(logits, labels, 1),
           "top5": metrics.topk_accuracy(logits, labels, 5),
           "top1_ci95": list(metrics.wilson_interval(int((preds == labels).sum()), len(labels))),
           "per_class": per_class, "confusion": cm.tolist()}
    if groups is not None:
        out["groups"] = metrics.group_stats(labels, preds, groups, class_names, min_group_size)
    return out


def calibration_check(logits: np.ndarray, labels: np.ndarray, model: ModelUnderTest, holdout: float,
                      target_precision: float, seed: int, min_accepted: int = 30) -> dict[str, Any]:
    """ECE and reliability (15 bins); a temperature fitted on ``holdout`` of the images and the ECE it gives on the
    rest; the risk-coverage curve of the "none of these" threshold (zero-shot: top cosine; probe: top probability)
    and the threshold that reaches ``target_precision`` on at least ``min_accepted`` images."""
    probs = metrics.softmax(logits)
    correct = probs.argmax(axis=1) == labels
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    n_fit = round(holdout * len(labels))
    fit, rest = perm[:n_fit], perm[n_fit:]
    temperature = metrics.fit_temperature(logits[fit], labels[fit])
    zero_shot = model.kind == "zeroshot" and model.logit_scale
    score = logits.max(axis=1) / model.logit_scale if zero_shot else probs.max(axis=1)
    curve = metrics.risk_coverage(score, correct)
    chosen = metrics.threshold_for_precision(curve, target_precision, min_accepted)
    return {
        "n": len(labels), "bins": 15,
        "ece": metrics.expected_calibration_error(probs, labels),
        "reliability": metrics.reliability_bins(probs.max(axis=1), correct),
        "nll": metrics.nll(logits, labels),
        "temperature": {"value": temperature, "fitted_on": len(fit), "measured_on": len(rest),
                        "ece_before": metrics.expected_calibration_error(probs[rest], labels[rest]),
                        "ece_after": metrics.expected_calibration_error(
                            metrics.softmax(logits[rest], temperature), labels[rest])},
        "risk_coverage": {"score": "cosine of the top label" if zero_shot else "probability of the top class",
                          **_thin(curve), "aurc": metrics.auc(curve["coverage"], curve["risk"])},
        "threshold": None if chosen is None else {**chosen, "target_precision": target_precision,
                                                  "kind": "cosine" if zero_shot else "probability"},
        "target_precision": target_precision, "min_accepted": min_accepted,
        "temperature_at_search_bound": not (1.01 * metrics.TEMPERATURE_RANGE[0] < temperature
                                            < 0.99 * metrics.TEMPERATURE_RANGE[1]),
    }


def _thin(curve: dict[str, list[float]], points: int = 200) -> dict[str, list[float]]:
    """At most ``points`` points of a curve (report.json stays small; the plot looks the same)."""
    n = len(curve["coverage"])
    if n <= points:
        return curve
    idx = np.unique(np.linspace(0, n - 1, points).round().astype(int))
    return {k: [v[i] for i in idx] for k, v in curve.items()}


def corruption_check(model: ModelUnderTest, pixels: torch.Tensor, labels: np.ndarray, batch_size: int, seed: int,
                     progress: bool) -> dict[str, Any]:
    """Accuracy under each corruption at each severity."""
    out: dict[str, Any] = {"severities": list(SEVERITIES), "accuracy": {}}
    bar = _bar(len(CORRUPTIONS) * len(SEVERITIES) * len(pixels), "corruptions", progress)
    for name in CORRUPTIONS:
        accs = []
        for sev in SEVERITIES:
            right = 0
            for start in range(0, len(pixels), batch_size):
                x = corrupt(as_unit(pixels[start:start + batch_size]), name, sev, seed + start)
                with torch.no_grad():
                    pred = model.logits(x).argmax(dim=1).cpu().numpy()
                right += int((pred == labels[start:start + len(x)]).sum())
                bar.update(len(x))
            accs.append(right / len(pixels))
        out["accuracy"][name] = accs
    bar.close()
    out["mean"] = float(np.mean([a for v in out["accuracy"].values() for a in v]))
    return out


def typographic_check(model: ModelUnderTest, pixels: torch.Tensor, labels: np.ndarray, batch_size: int, seed: int,
                      progress: bool) -> dict[str, Any]:
    """Accuracy with a wrong label's name written on each image, and how often the prediction becomes that label."""
    written = wrong_labels(labels, model.num_classes, seed)
    right = fooled = clean_right = 0
    bar = _bar(len(pixels), "typographic", progress)
    for start in range(0, len(pixels), batch_size):
        x = as_unit(pixels[start:start + batch_size])
        w = written[start:start + len(x)]
        attacked = torch.stack([overlay_text(img, model.class_names[j]) for img, j in zip(x, w)])
        with torch.no_grad():
            pred = model.logits(attacked).argmax(dim=1).cpu().numpy()
            clean = model.logits(x).argmax(dim=1).cpu().numpy()
        y = labels[start:start + len(x)]
        right += int((pred == y).sum())
        fooled += int((pred == w).sum())
        clean_right += int((clean == y).sum())
        bar.update(len(x))
    bar.close()
    n = len(pixels)
    return {"n": n, "clean": clean_right / n, "accuracy": right / n, "drop": (clean_right - right) / n,
            "written_label_rate": fooled / n, "chance_rate": 1.0 / model.num_classes,
            "written_label_rate_ci95": list(metrics.wilson_interval(fooled, n)), "font": "DejaVu Sans Bold"}


def evaluate(model: ModelUnderTest, data: LabeledDataset, config: EvaluateConfig | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Run the checks of ``config`` on ``data`` and return the report (a JSON-ready dictionary; see
    :func:`snapsight.evaluate.report.write_report`). Raises :class:`SnapsightError` with one sentence on bad input:
    a group column that does not exist, data labels the model lacks, too few images for a check."""
    cfg = config or EvaluateConfig()
    t_start = time.perf_counter()
    check_group(data, cfg.group)
    mapping = class_mapping(data.class_names, model.class_names, data.class_counts() > 0)
    n_all = len(data)
    if cfg.limit is not None and cfg.limit < n_all:
        indices = np.sort(np.random.default_rng(cfg.seed).permutation(n_all)[:cfg.limit])
    else:
        indices = np.arange(n_all)
    check_sizes(cfg.checks, len(indices))
    timings: dict[str, float] = {}
    t = time.perf_counter()
    pixels, kept, skipped = decode_images(model, data, indices, progress)
    check_sizes(cfg.checks, len(kept))
    timings["decode"] = time.perf_counter() - t
    labels = mapping[data.labels[kept]]
    groups = None
    group_info: dict[str, Any] | None = None
    if cfg.group is not None:
        if cfg.group in data.columns:
            groups = [data.columns[cfg.group][int(i)] or "(empty)" for i in kept]
            group_info = {"column": cfg.group, "source": "data column"}
        else:
            groups, edges = brightness_groups(pixels, cfg.group_bins)
            group_info = {"column": cfg.group, "source": IMAGE_GROUPS[cfg.group], "bins": cfg.group_bins,
                          "edges": edges}
    report: dict[str, Any] = {
        "model": {"name": model.name, "kind": model.kind, "classes": list(model.class_names),
                  "device": str(model.device), "precision": str(model.dtype).replace("torch.", ""),
                  "input_size": list(pixels.shape[-2:])},
        "data": {"name": data.name, "images": len(kept), "of": int(n_all), "skipped": skipped[:20],
                 "skipped_count": len(skipped), "classes": list(data.class_names)},
        "group": group_info, "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "cpu": describe_cpu(), "threads": torch.get_num_threads(), "checks": {},
    }
    t = time.perf_counter()
    bar = _bar(len(pixels), "predict", progress)
    logits = model.predict_logits(pixels, cfg.batch_size, bar)
    bar.close()
    timings["predict"] = time.perf_counter() - t
    for name in CHECKS:
        if name not in cfg.checks:
            continue
        log.info("evaluate: %s", name)
        t = time.perf_counter()
        if name == "accuracy":
            section = accuracy_check(logits, labels, model.class_names, groups, cfg.min_group_size)
        elif name == "calibration":
            section = calibration_check(logits, labels, model, cfg.calibration_holdout, cfg.target_precision, cfg.seed,
                                        cfg.min_accepted)
        elif name == "corruptions":
            section = corruption_check(model, pixels, labels, cfg.batch_size, cfg.seed, progress)
        elif name == "adversarial":
            n = len(pixels) if cfg.attack_limit is None else min(cfg.attack_limit, len(pixels))
            bar = _bar(n, "adversarial", progress)
            section = robust_accuracy(model, pixels[:n], labels[:n], [0.0, *cfg.eps], cfg.pgd_steps,
                                      cfg.batch_size, bar)
            bar.close()
        elif name == "typographic":
            section = typographic_check(model, pixels, labels, cfg.batch_size, cfg.seed, progress)
        elif name == "cost":
            section = cost_check(model, tuple(pixels.shape[-2:]))
        else:
            n = min(cfg.saliency_limit, len(pixels))
            bar = _bar(n, "saliency", progress)
            section = saliency_check(model, pixels[:n], cfg.saliency_samples, seed=cfg.seed, progress=bar)
            bar.close()
        timings[name] = time.perf_counter() - t
        report["checks"][name] = section
    timings["total"] = time.perf_counter() - t_start
    report["seconds"] = timings
    return report


__all__ = ["CHECKS", "EvaluateConfig", "evaluate"]
