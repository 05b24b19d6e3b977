"""Turn a pretrained encoder into a classifier with a few labels: linear probe, kNN, or fine-tuning.

Three modes, the standard SSL evaluation protocols:

- ``linear``: features are extracted once with the frozen encoder (cached, see :mod:`.features`) and a
  multinomial logistic regression is fitted full-batch with L-BFGS; the L2 weight decay is chosen on the
  validation split from a small grid (the protocol of Kornblith et al. 2019 and SimCLR, Chen et al. 2020).
- ``knn``: weighted cosine kNN (Wu et al. 2018) on the same features; ``k`` chosen on validation.
- ``finetune``: end-to-end training with a lower backbone learning rate, random-resized-crop/flip
  augmentation, label smoothing and early stopping on validation top-1; the head starts from the linear
  probe (LP-FT, Kumar et al. 2022), which keeps the pretrained features from being distorted early on.

The result is a self-contained classifier directory::

    OUT/
      classifier.json        kind, mode, class names, preprocessing, encoder architecture, head shape, metrics
      encoder.safetensors    encoder weights (fine-tuned or frozen copy)
      head.safetensors       linear head (with feature standardisation) or the kNN memory bank
      report.json, confusion_matrix.png, config.yaml

read back with :func:`load_classifier` (contract 2: ``Classifier.class_names``, ``Classifier.predict``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from torch import nn

from ..artifacts.files import atomic_write_json
from ..config import require, save_config, to_dict
from ..data.labeled import align_classes, check_classes, load_labeled, stratified_fraction, stratified_split
from ..errors import SnapsightError
from ..models.encoders import load_feature_encoder
from ..runtime import resolve_device, seed_everything
from .classifier import save_classifier
from .features import default_cache_dir, extract_features
from .finetune import FinetuneConfig, finetune, predict_dataset
from .heads import KnnConfig, LinearConfig, LinearProbe, train_knn_head, train_linear_probe
from .report import ReportConfig, classification_report, format_summary, plot_confusion_matrix

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ProbeConfig:
    encoder: str | None = None  # run dir, encoder dir, random:<backbone>@<size>, openclip:<model>[:<pretrained>]
    train: str | None = None  # labeled source: class folders, .csv/.jsonl, HF save_to_disk dir, fashion-mnist:train
    val: str | None = None  # labeled source for model selection; none: hold out val_split of train
    test: str | None = None  # optional held-out source reported separately
    mode: Literal["linear", "knn", "finetune"] = "linear"  # how labels are used
    labels_fraction: float = 1.0  # share of training labels used (stratified per class, fixed seed)
    val_split: float = 0.1  # share of the labeled subset held out as val when val is not given
    seed: int = 0  # subset, split and training seed
    out: str = "runs/probe"  # output classifier directory
    device: str = "auto"  # auto, cpu, cuda, cuda:1
    batch_size: int = 256  # feature-extraction / evaluation batch
    num_workers: int = 0  # data-loader worker processes
    cache_dir: str | None = None  # feature cache; null: $SNAPSIGHT_CACHE/features or ~/.cache/snapsight/features
    use_cache: bool = True  # reuse cached features
    linear: LinearConfig = field(default_factory=LinearConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        # Values that would otherwise fail deep inside (a batch size of 0 in the data loader)
        require(self.batch_size >= 1, "batch_size", "be at least 1", self.batch_size)
        require(0 < self.val_split < 1, "val_split", "be between 0 and 1", self.val_split)
        require(0 < self.labels_fraction <= 1, "labels_fraction", "be in (0, 1]", self.labels_fraction)


# ---------------------------------------------------------------------------------------------------------------
# The whole recipe (what `snapsight probe` runs)
# ---------------------------------------------------------------------------------------------------------------


def _report_skipped(role: str, skipped: Sequence[tuple[str, str]], echo: Callable[[str], None]) -> None:
    if skipped:
        echo(f"warning: skipped {len(skipped)} unreadable {role} image(s):")
        for item, reason in list(skipped)[:5]:
            echo(f"  - {reason if item in reason else f'{item}: {reason}'}")
        if len(skipped) > 5:
            echo(f"  ... and {len(skipped) - 5} more (listed in report.json)")


def _require_readable_classes(labels: torch.Tensor, class_names: Sequence[str], role: str, name: str) -> None:
    counts = np.bincount(labels.numpy(), minlength=len(class_names))
    empty = [c for c, n in zip(class_names, counts) if n == 0]
    if empty:
        raise SnapsightError(f"{role} data {name}: class(es) {', '.join(map(repr, empty))} have no readable images")


def run_probe(cfg: ProbeConfig, progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Load data and encoder, train the head (or fine-tune), evaluate, and write the classifier directory.

    Returns the combined report (also written to ``OUT/report.json``)."""

    for key in ("encoder", "train"):
        if not getattr(cfg, key):
            raise SnapsightError(f"--{key} is required (or set '{key}:' in the config)")
    t_start = time.time()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    notes: list[str] = []

    # --- data -----------------------------------------------------------------------------------------------
    train_full = load_labeled(cfg.train)
    check_classes(train_full, "train")
    # The labels fraction is the whole labeled budget: without --val, the validation images are held out
    # from the chosen subset, so "1% of labels" never hides a large labeled validation set.
    labeled = train_full
    if cfg.labels_fraction < 1:
        labeled = train_full.subset(stratified_fraction(train_full.labels, cfg.labels_fraction, cfg.seed),
                                    f"labels{cfg.labels_fraction:g}-seed{cfg.seed}")
    if cfg.val:
        val, more = align_classes(train_full, load_labeled(cfg.val), "val")
        notes += more
        train = labeled
    else:
        keep, held = stratified_split(labeled.labels, cfg.val_split, cfg.seed)
        if len(held) == 0:
            raise SnapsightError("no --val given and the training data is too small to hold out a validation split")
        train, val = labeled.subset(keep, "train-split"), labeled.subset(held, "val-split")
        notes.append(f"no --val given: held out {len(held)} of the {len(labeled)} labeled images "
                     f"({cfg.val_split:.0%} per class) for validation")
    if len(val) == 0:
        raise SnapsightError(f"val data {val.name} holds no images")
    test = None
    if cfg.test:
        test, more = align_classes(train_full, load_labeled(cfg.test), "test")
        notes += more
    check_classes(train, "train")
    class_names = train.class_names
    num_classes = len(class_names)
    echo(f"data: {len(train)} training images ({100 * cfg.labels_fraction:.3g}% of {len(train_full)} labels), "
         f"{len(val)} val" + (f", {len(test)} test" if test is not None else "") + f"; {num_classes} classes")
    for n in notes:
        echo(f"note: {n}")

    # --- encoder and features -------------------------------------------------------------------------------
    encoder = load_feature_encoder(cfg.encoder, device)
    echo(f"encoder: {cfg.encoder} ({encoder.arch.get('backbone') or encoder.arch.get('name')}, "
         f"{encoder.num_features}-d features, {encoder.preprocessing.image_size}px)")
    cache = None
    if cfg.use_cache:
        cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()

    def features(ds):
        return extract_features(encoder, ds, cfg.batch_size, device, cache, cfg.num_workers, progress)

    skipped: dict[str, list[tuple[str, str]]] = {}
    feats: dict[str, Any] = {}
    if cfg.mode in ("linear", "knn") or cfg.finetune.init_from_linear:
        for role, ds in (("train", train), ("val", val), ("test", test)):
            if ds is None or (cfg.mode == "finetune" and role == "test"):
                continue
            feats[role] = features(ds)
            skipped[role] = feats[role].skipped
            _report_skipped(role, feats[role].skipped, echo)
        _require_readable_classes(feats["train"].labels, class_names, "train", train.name)
        train_counts = np.bincount(feats["train"].labels.numpy(), minlength=num_classes)
    else:
        train_counts = train.class_counts()

    # --- training -------------------------------------------------------------------------------------------
    model_encoder: nn.Module = encoder.model
    if cfg.mode == "knn":
        head, info = train_knn_head(feats["train"].features, feats["train"].labels, feats["val"].features,
                                    feats["val"].labels, num_classes, cfg.knn.ks, cfg.knn.temperature)
        echo(f"kNN: k={info['k']} chosen on val (val top-1 by k: {info['val_top1_by_k']})")
    elif cfg.mode == "linear" or cfg.finetune.init_from_linear:
        head, info = train_linear_probe(feats["train"].features.to(device), feats["train"].labels.to(device),
                                        feats["val"].features.to(device), feats["val"].labels.to(device),
                                        num_classes, cfg.linear.weight_decays, cfg.linear.max_iter)
        head = head.cpu()
        echo(f"linear probe: weight decay {info['weight_decay']:g} chosen on val "
             f"(train top-1 {info['train_top1']:.3f}, val top-1 {info['val_top1']:.3f})")
    else:
        head, info = LinearProbe(encoder.num_features, num_classes), {}
    if cfg.mode == "finetune":
        lin_info = info
        seed_everything(cfg.seed)
        model_encoder, head, info = finetune(encoder.model, head, encoder.preprocessing, train, val, cfg.finetune,
                                             device, cfg.num_workers, cfg.batch_size, cfg.seed, progress, echo)
        info["linear_init"] = lin_info
        if info["skipped"]:
            skipped.setdefault("train", [])
            skipped["train"] = sorted(set(map(tuple, skipped["train"])) | set(info["skipped"]))
            if "train" not in feats:
                _report_skipped("train", info["skipped"], echo)
    head = head.to(device)

    # --- evaluation -----------------------------------------------------------------------------------------
    evaluations = {}
    for role, ds in (("val", val), ("test", test)):
        if ds is None:
            continue
        if cfg.mode == "finetune":
            probs, labels, sk = predict_dataset(model_encoder, head, encoder.preprocessing, ds, device,
                                                cfg.batch_size, cfg.num_workers, progress)
            if role not in skipped:
                _report_skipped(role, sk, echo)
            skipped[role] = sk
        else:
            with torch.no_grad():
                probs = head.probs(feats[role].features.to(device)).cpu()
            labels = feats[role].labels
        rep = classification_report(probs.numpy(), labels.numpy(), class_names, train_counts, cfg.report)
        rep["split"] = role
        rep["data"] = ds.name
        rep["skipped_images"] = [{"item": i, "reason": r} for i, r in skipped.get(role, [])]
        evaluations[role] = rep

    # --- output ---------------------------------------------------------------------------------------------
    out = Path(cfg.out)
    primary = "test" if "test" in evaluations else "val"
    summary = {
        "mode": cfg.mode,
        "encoder": cfg.encoder,
        "class_names": class_names,
        "labels_fraction": cfg.labels_fraction,
        "train": {"data": train.name, "images": int(train_counts.sum()), "class_counts": train_counts.tolist(),
                  "skipped_images": [{"item": i, "reason": r} for i, r in skipped.get("train", [])]},
        "training": {k: v for k, v in info.items() if k != "skipped"},
        "primary_split": primary,
        "evaluations": evaluations,
        "notes": notes,
        "seconds": round(time.time() - t_start, 1),
    }
    metrics = {f"{role}_top1": rep["top1"] for role, rep in evaluations.items()}
    metrics.update({f"{role}_top5": rep["top5"] for role, rep in evaluations.items() if rep["top5"] is not None})
    save_classifier(out, model_encoder.cpu(), encoder.arch, head.cpu(), class_names, encoder.preprocessing, cfg.mode,
                    encoder_source=cfg.encoder,
                    extra={"metrics": metrics, "labels_fraction": cfg.labels_fraction,
                           "train_class_counts": train_counts.tolist(), "config": to_dict(cfg)})
    save_config(cfg, out / "config.yaml")
    atomic_write_json(out / "report.json", summary)
    for role, rep in evaluations.items():
        name = "confusion_matrix.png" if role == primary else f"{role}_confusion_matrix.png"
        plot_confusion_matrix(np.array(rep["confusion_matrix"]), class_names, out / name,
                              title=f"{role} ({rep['data']}): top-1 {rep['top1']:.1%}")
    for role in ("val", "test"):
        if role in evaluations:
            echo(format_summary(evaluations[role]))
    echo(f"classifier written to {out} (report.json, confusion_matrix.png); "
         f"use it with `snapsight classify --model {out} IMAGE...`")
    return summary
