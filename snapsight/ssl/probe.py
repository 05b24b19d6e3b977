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

import copy
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import atomic_write_json, load_weights, read_json, save_weights
from ..errors import ImageError, SnapsightError
from ..preprocessing import Preprocessing
from .knn import knn_predict
from .report import ReportConfig

log = logging.getLogger(__name__)

CLASSIFIER_KIND = "snapsight-classifier"
CLASSIFIER_JSON = "classifier.json"
ENCODER_WEIGHTS = "encoder.safetensors"
HEAD_WEIGHTS = "head.safetensors"


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class LinearConfig:
    weight_decays: list[float] = field(default_factory=lambda: [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])  # L2 grid, picked on val top-1
    max_iter: int = 200  # L-BFGS iterations per grid point


@dataclass
class KnnConfig:
    ks: list[int] = field(default_factory=lambda: [20, 200])  # neighbour counts tried; the best on val is kept
    temperature: float = 0.07  # vote weight exp(cos / temperature)


@dataclass
class FinetuneConfig:
    epochs: int = 20  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # images per step
    lr: float = 1e-3  # AdamW learning rate of the head
    backbone_lr_scale: float = 0.1  # backbone learning rate = lr * this
    weight_decay: float = 1e-4  # AdamW weight decay
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    patience: int = 3  # stop after this many epochs without a better val top-1
    crop_scale_min: float = 0.6  # random-resized-crop smallest area share (1.0: no cropping)
    hflip: bool = True  # random horizontal flips (turn off for text, digits)
    init_from_linear: bool = True  # start the head from the linear probe (LP-FT)
    freeze_bn: bool = True  # keep BatchNorm statistics from pretraining (stable with few labels, matches the probe)


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


# ---------------------------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------------------------


class LinearProbe(nn.Module):
    """Standardise features with training statistics, then one linear layer: ``(B, D) -> (B, C)`` logits."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.linear = nn.Linear(in_features, num_classes)

    def set_standardisation(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).softmax(-1)


class KnnHead(nn.Module):
    """Weighted cosine kNN over a memory bank of training features; :meth:`probs` gives normalised votes."""

    def __init__(self, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int, k: int, temperature: float):
        super().__init__()
        self.register_buffer("bank", F.normalize(bank.float(), dim=1))
        self.register_buffer("bank_labels", bank_labels.long())
        self.num_classes, self.k, self.temperature = int(num_classes), int(k), float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probs(x).clamp_min(1e-12).log()

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        scores = knn_predict(self.bank, self.bank_labels, x, self.num_classes, self.k, self.temperature)
        return scores / scores.sum(1, keepdim=True).clamp_min(1e-12)


def fit_logistic_regression(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int = 200,
    init: nn.Linear | None = None,
) -> nn.Linear:
    """Multinomial logistic regression on ``x`` ``(n, d)``: full-batch L-BFGS on mean cross-entropy
    + ``weight_decay / 2 * ||W||^2`` (bias not penalised)."""
    layer = nn.Linear(x.shape[1], num_classes).to(x.device)
    with torch.no_grad():
        if init is not None:
            layer.load_state_dict(init.state_dict())
        else:
            layer.weight.zero_()
            layer.bias.zero_()
    opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(layer(x), y) + 0.5 * weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return layer


def _top1(logits_or_probs: torch.Tensor, y: torch.Tensor) -> float:
    return (logits_or_probs.argmax(1) == y).float().mean().item() if len(y) else float("nan")


def train_linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, num_classes: int,
    weight_decays: Sequence[float] = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1), max_iter: int = 200,
) -> tuple[LinearProbe, dict[str, Any]]:
    """Fit one head per weight decay (largest first, warm-started) and keep the best on val top-1
    (ties go to the stronger regularisation). Returns ``(head, info)``."""
    head = LinearProbe(train_x.shape[1], num_classes).to(train_x.device)
    head.set_standardisation(train_x)
    xs = (train_x - head.mean) / head.std
    xv = (val_x - head.mean) / head.std
    best, scores, prev = None, {}, None
    for wd in sorted(set(float(w) for w in weight_decays), reverse=True):
        layer = fit_logistic_regression(xs, train_y, num_classes, wd, max_iter, init=prev)
        prev = layer
        with torch.no_grad():
            acc = _top1(layer(xv), val_y)
            train_acc = _top1(layer(xs), train_y)
        scores[wd] = acc
        log.debug("linear probe wd=%g: train top-1 %.4f, val top-1 %.4f", wd, train_acc, acc)
        if best is None or acc > best[0] + 1e-9:
            best = (acc, wd, copy.deepcopy(layer.state_dict()), train_acc)
    head.linear.load_state_dict(best[2])
    info = {"weight_decay": best[1], "val_top1": best[0], "train_top1": best[3],
            "val_top1_by_weight_decay": {str(k): v for k, v in scores.items()}}
    return head, info


def train_knn_head(
    train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, num_classes: int,
    ks: Sequence[int] = (20, 200), temperature: float = 0.07,
) -> tuple[KnnHead, dict[str, Any]]:
    """Pick ``k`` on val top-1 among ``ks``; the memory bank is the training features."""
    scores = {}
    for k in ks:
        s = knn_predict(train_x, train_y, val_x, num_classes, k=k, temperature=temperature)
        scores[int(k)] = _top1(s, val_y)
    best_k = max(scores, key=lambda k: (scores[k], -k))
    head = KnnHead(train_x, train_y, num_classes, best_k, temperature)
    return head, {"k": best_k, "temperature": temperature, "val_top1": scores[best_k],
                  "val_top1_by_k": {str(k): v for k, v in scores.items()}}


# ---------------------------------------------------------------------------------------------------------------
# Fine-tuning
# ---------------------------------------------------------------------------------------------------------------


class _AugmentedImages(torch.utils.data.Dataset):
    """Training images: preprocess, then random-resized-crop and flip on the tensor; errors flagged."""

    def __init__(self, dataset, preprocessing: Preprocessing, crop_scale_min: float, hflip: bool):
        from torchvision.transforms import v2

        s = preprocessing.image_size
        ops = [v2.RandomResizedCrop(s, scale=(crop_scale_min, 1.0), antialias=True)] if crop_scale_min < 1 else []
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
        self.dataset, self.preprocessing = dataset, preprocessing
        self.augment = v2.Compose(ops) if ops else v2.Identity()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.augment(self.preprocessing(self.dataset.load(i))), int(self.dataset.labels[i]), i, ""
        except ImageError as e:
            s = self.preprocessing.image_size
            return torch.zeros(3, s, s), int(self.dataset.labels[i]), i, str(e) or "unreadable image"


class _EncoderWithHead(nn.Module):
    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def finetune(
    encoder: nn.Module,
    head: LinearProbe,
    preprocessing: Preprocessing,
    train,
    val,
    cfg: FinetuneConfig,
    device: torch.device,
    num_workers: int = 0,
    eval_batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> tuple[nn.Module, LinearProbe, dict[str, Any]]:
    """Train ``encoder`` + ``head`` end to end on ``train``; keep the epoch with the best val top-1.

    AdamW with two parameter groups (backbone at ``lr * backbone_lr_scale``), cosine decay per step,
    label-smoothed cross-entropy, early stopping after ``patience`` epochs without improvement.
    """
    from tqdm.auto import tqdm

    from ..runtime import autocast_dtype

    model = _EncoderWithHead(encoder, head).to(device)
    opt = torch.optim.AdamW(
        [{"params": encoder.parameters(), "lr": cfg.lr * cfg.backbone_lr_scale},
         {"params": head.parameters(), "lr": cfg.lr}],
        weight_decay=cfg.weight_decay,
    )
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        _AugmentedImages(train, preprocessing, cfg.crop_scale_min, cfg.hflip), batch_size=cfg.batch_size,
        shuffle=True, generator=gen, num_workers=num_workers, drop_last=len(train) > cfg.batch_size,
    )
    total = max(1, cfg.epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    amp = autocast_dtype(device)
    # Epoch 0 is the starting point (the linear probe under LP-FT): fine-tuning must beat it to be kept.
    probs, labels, _ = predict_dataset(encoder, head, preprocessing, val, device, eval_batch_size, num_workers, progress=False)
    best = (_top1(probs, labels), copy.deepcopy(model.state_dict()), 0)
    echo(f"  fine-tune start: val top-1 {best[0]:.4f}")
    history, skipped, stale = [{"epoch": 0, "val_top1": best[0]}], {}, 0
    for epoch in range(cfg.epochs):
        model.train()
        if cfg.freeze_bn:
            for m in encoder.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        t0, losses = time.time(), []
        for x, y, idx, errors in tqdm(loader, desc=f"fine-tune epoch {epoch + 1}", disable=not progress, leave=False):
            ok = torch.tensor([not e for e in errors], dtype=torch.bool)
            for i, e in zip(idx.tolist(), errors):
                if e:
                    skipped[train.describe(i)] = e
            if ok.sum() < 2:  # BatchNorm needs two samples
                continue
            x, y = x[ok].to(device, non_blocking=True), y[ok].to(device)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        probs, labels, _ = predict_dataset(encoder, head, preprocessing, val, device, eval_batch_size, num_workers, progress=False)
        acc = _top1(probs, labels)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                        "val_top1": acc, "seconds": round(time.time() - t0, 1)})
        echo(f"  fine-tune epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['train_loss'] or float('nan'):.4f}, "
             f"val top-1 {acc:.4f}")
        if acc > best[0]:
            best, stale = (acc, copy.deepcopy(model.state_dict()), epoch + 1), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                echo(f"  early stop: no better val top-1 for {cfg.patience} epochs (best {best[0]:.4f} at epoch {best[2]})")
                break
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    info = {"best_epoch": best[2], "val_top1": best[0], "history": history, "skipped": sorted(skipped.items())}
    return model.encoder, model.head, info


# ---------------------------------------------------------------------------------------------------------------
# Prediction on datasets and images
# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_dataset(
    encoder: nn.Module, head: nn.Module, preprocessing: Preprocessing, dataset, device: torch.device,
    batch_size: int = 256, num_workers: int = 0, progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Class probabilities ``(n, C)`` and labels ``(n,)`` of the readable items; plus skipped ``(item, reason)``."""
    from tqdm.auto import tqdm

    from .features import image_loader

    encoder.eval()
    head.eval()
    out, labels, skipped = [], [], []
    for x, idx, errors in tqdm(image_loader(dataset, preprocessing, batch_size, num_workers),
                               desc=f"predict {dataset.name}", disable=not progress, leave=False):
        ok = torch.tensor([not e for e in errors], dtype=torch.bool)
        skipped += [(dataset.describe(i), e) for i, e in zip(idx.tolist(), errors) if e]
        if ok.any():
            out.append(head.probs(encoder(x[ok].to(device)).float()).cpu())
            labels.append(torch.from_numpy(dataset.labels[idx[ok].numpy()]))
    if not out:
        return torch.zeros(0, len(dataset.class_names)), torch.zeros(0, dtype=torch.long), skipped
    return torch.cat(out), torch.cat(labels).long(), skipped


class Classifier:
    """A trained classifier: encoder + head + class names + preprocessing (contract 2).

    ``predict(images, top_k)`` returns, per image, ``[(class_name, probability), ...]`` sorted by
    probability, highest first.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, class_names: list[str], preprocessing: Preprocessing,
                 meta: dict[str, Any], device: torch.device):
        self.encoder, self.head = encoder.to(device).eval(), head.to(device).eval()
        self.class_names = list(class_names)
        self.preprocessing = preprocessing
        self.meta = meta
        self.device = device
        self.mode = meta.get("mode", "linear")

    @torch.no_grad()
    def predict_proba(self, images: Sequence[Any], batch_size: int = 64) -> torch.Tensor:
        """``(n, C)`` probabilities for images (PIL images or anything :func:`open_image` reads)."""
        from ..data.images import open_image

        out = []
        for start in range(0, len(images), batch_size):
            batch = [open_image(im) for im in images[start:start + batch_size]]
            x = self.preprocessing.batch(batch).to(self.device)
            out.append(self.head.probs(self.encoder(x).float()).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.class_names))

    def predict(self, images: Sequence[Any], top_k: int = 5) -> list[list[tuple[str, float]]]:
        probs = self.predict_proba(images)
        k = max(1, min(top_k, len(self.class_names)))
        top_p, top_i = probs.topk(k, dim=1)
        return [[(self.class_names[i], float(p)) for p, i in zip(ps.tolist(), is_.tolist())]
                for ps, is_ in zip(top_p, top_i)]

    def __repr__(self) -> str:
        return f"Classifier(mode={self.mode!r}, classes={len(self.class_names)}, encoder={self.meta.get('encoder', {}).get('source')!r})"


def save_classifier(
    out_dir: str | os.PathLike, encoder: nn.Module, encoder_arch: dict[str, Any], head: nn.Module,
    class_names: Sequence[str], preprocessing: Preprocessing, mode: str, encoder_source: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the self-contained classifier directory (see module docstring); returns it."""
    out = Path(out_dir)
    save_weights(encoder.state_dict(), out / ENCODER_WEIGHTS)
    save_weights(head.state_dict(), out / HEAD_WEIGHTS)
    if isinstance(head, KnnHead):
        head_meta = {"type": "knn", "k": head.k, "temperature": head.temperature, "bank_size": int(head.bank.shape[0]),
                     "in_features": int(head.bank.shape[1]), "num_classes": head.num_classes}
    else:
        head_meta = {"type": "linear", "in_features": head.linear.in_features, "num_classes": head.linear.out_features}
    meta = {
        "kind": CLASSIFIER_KIND,
        "format_version": 1,
        "mode": mode,
        "class_names": list(class_names),
        "preprocessing": preprocessing.to_dict(),
        "encoder": {"arch": encoder_arch, "source": encoder_source},
        "head": head_meta,
        **(extra or {}),
    }
    atomic_write_json(out / CLASSIFIER_JSON, meta)  # written last: its presence marks a complete directory
    return out


def is_classifier_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory written by :func:`save_classifier`."""
    p = Path(path) / CLASSIFIER_JSON
    if not p.is_file():
        return False
    try:
        return read_json(p).get("kind") == CLASSIFIER_KIND
    except SnapsightError:
        return False


def load_classifier(path: str | os.PathLike, device: str | torch.device = "auto") -> Classifier:
    """Load a classifier directory written by ``snapsight probe`` (contract 2)."""
    from ..runtime import resolve_device
    from .features import build_encoder_module

    path = Path(path)
    if not is_classifier_dir(path):
        raise SnapsightError(
            f"{path} is not a snapsight classifier (no {CLASSIFIER_JSON} of kind '{CLASSIFIER_KIND}'); "
            "make one with `snapsight probe --out DIR`"
        )
    dev = resolve_device(device)
    meta = read_json(path / CLASSIFIER_JSON)
    prep = Preprocessing.from_dict(meta["preprocessing"])
    encoder = build_encoder_module(meta["encoder"]["arch"])
    _load_strict(encoder, load_weights(path / ENCODER_WEIGHTS), path / ENCODER_WEIGHTS)
    hm = meta["head"]
    state = load_weights(path / HEAD_WEIGHTS)
    if hm["type"] == "knn":
        head: nn.Module = KnnHead(state["bank"], state["bank_labels"], hm["num_classes"], hm["k"], hm["temperature"])
    elif hm["type"] == "linear":
        head = LinearProbe(hm["in_features"], hm["num_classes"])
        _load_strict(head, state, path / HEAD_WEIGHTS)
    else:
        raise SnapsightError(f"{path}: unknown head type '{hm['type']}'")
    if len(meta["class_names"]) != hm["num_classes"]:
        raise SnapsightError(f"{path}: {len(meta['class_names'])} class names but the head has {hm['num_classes']} outputs")
    return Classifier(encoder, head, meta["class_names"], prep, meta, dev)


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SnapsightError(f"{where} does not fit the architecture in {CLASSIFIER_JSON}: {str(e).splitlines()[0]}") from e


# ---------------------------------------------------------------------------------------------------------------
# The whole recipe (what `snapsight probe` runs)
# ---------------------------------------------------------------------------------------------------------------


def _check_settings(cfg: ProbeConfig) -> None:
    """Values that would otherwise fail deep inside (or, for k=0, train a classifier that always says class 0)."""
    if not cfg.knn.ks or min(cfg.knn.ks) < 1:
        raise SnapsightError(f"knn.ks must list neighbour counts of at least 1, got {cfg.knn.ks}")
    if not cfg.linear.weight_decays:
        raise SnapsightError("linear.weight_decays must list at least one value")
    for key, value in (("batch_size", cfg.batch_size), ("finetune.batch_size", cfg.finetune.batch_size)):
        if value < 1:
            raise SnapsightError(f"{key} must be at least 1, got {value}")
    if not 0 < cfg.val_split < 1:
        raise SnapsightError(f"val_split must be between 0 and 1, got {cfg.val_split}")


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
    from ..config import save_config, to_dict
    from ..data.labeled import align_classes, check_classes, load_labeled, stratified_fraction, stratified_split
    from ..runtime import resolve_device, seed_everything
    from .features import default_cache_dir, extract_features, load_feature_encoder
    from .report import classification_report, format_summary, plot_confusion_matrix

    for key in ("encoder", "train"):
        if not getattr(cfg, key):
            raise SnapsightError(f"--{key} is required (or set '{key}:' in the config)")
    _check_settings(cfg)
    t_start = time.time()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    notes: list[str] = []

    # --- data -----------------------------------------------------------------------------------------------
    train_full = load_labeled(cfg.train)
    check_classes(train_full, "train")
    if not 0 < cfg.labels_fraction <= 1:
        raise SnapsightError(f"labels fraction must be in (0, 1], got {cfg.labels_fraction}")
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
