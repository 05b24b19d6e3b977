"""End-to-end fine-tuning of encoder + linear head (LP-FT, Kumar et al. 2022) with early stopping on validation.

Fine-tuning runs on the shared training loop (:func:`snapsight.train.loop.fit`): :class:`FinetuneTask` is the
task (label-smoothed cross-entropy on augmented images, AdamW with the backbone at a lower learning rate,
cosine decay per step), and :class:`~snapsight.train.callbacks.EarlyStopping` on validation top-1 keeps the
best epoch, the starting linear probe (epoch 0) included.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import require
from ..data.labeled import LabeledDataset
from ..preprocessing import Preprocessing
from ..train.callbacks import EarlyStopping
from ..train.loop import TrainConfig, fit
from .features import ImageItems, image_loader
from .heads import LinearProbe, top1_accuracy


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

    def __post_init__(self) -> None:
        for key, low in (("epochs", 1), ("batch_size", 1), ("patience", 1), ("lr", 0), ("backbone_lr_scale", 0),
                         ("weight_decay", 0)):
            require(getattr(self, key) >= low, f"finetune.{key}", f"be at least {low}", getattr(self, key))
        require(0 <= self.label_smoothing < 1, "finetune.label_smoothing", "be in [0, 1)", self.label_smoothing)
        require(0 < self.crop_scale_min <= 1, "finetune.crop_scale_min", "be in (0, 1]", self.crop_scale_min)


def finetune_augmentation(image_size: int, crop_scale_min: float,
                          hflip: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random-resized crop (area share ``crop_scale_min``..1; none at 1.0) and horizontal flip, on a
    preprocessed ``(3, S, S)`` tensor."""
    from torchvision.transforms import v2

    ops = [v2.RandomResizedCrop(image_size, scale=(crop_scale_min, 1.0), antialias=True)] if crop_scale_min < 1 else []
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    return v2.Compose(ops) if ops else v2.Identity()


class FinetuneTask(nn.Module):
    """Encoder + linear head as a training-loop task: ``(B, 3, S, S) -> (B, C)`` logits.

    The batch is ``(images, indices, errors)`` from :class:`~snapsight.probe.features.ImageItems`; labels are
    looked up by index. Unreadable images are left out and recorded in ``skipped`` (item -> reason).
    """

    def __init__(self, encoder: nn.Module, head: LinearProbe, dataset: LabeledDataset, cfg: FinetuneConfig):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.cfg = cfg
        self.dataset = dataset
        self.labels = torch.as_tensor(dataset.labels).long()
        self.skipped: dict[str, str] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def train(self, mode: bool = True) -> FinetuneTask:
        super().train(mode)
        if mode and self.cfg.freeze_bn:  # BatchNorm keeps its pretraining statistics (as the frozen probe saw)
            for m in self.encoder.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.encoder.parameters()), "lr": self.cfg.lr * self.cfg.backbone_lr_scale},
                {"params": list(self.head.parameters()), "lr": self.cfg.lr}]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, list[str]]) -> dict[str, Any]:
        x, idx, errors = batch
        for i, e in zip(idx.tolist(), errors):
            if e:
                self.skipped[self.dataset.describe(i)] = e
        ok = torch.tensor([not e for e in errors], dtype=torch.bool, device=x.device)
        if ok.sum() < 2:  # BatchNorm in training mode needs two samples
            return {"loss": x.new_zeros(()), "update": False}
        y = self.labels[idx[ok].cpu()].to(x.device)
        return {"loss": F.cross_entropy(self(x[ok]), y, label_smoothing=self.cfg.label_smoothing)}


def finetune(
    encoder: nn.Module,
    head: LinearProbe,
    preprocessing: Preprocessing,
    train: LabeledDataset,
    val: LabeledDataset,
    cfg: FinetuneConfig,
    device: torch.device,
    num_workers: int = 0,
    eval_batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> tuple[nn.Module, LinearProbe, dict[str, Any]]:
    """Train ``encoder`` + ``head`` end to end on ``train``; keep the epoch with the best val top-1.

    Returns ``(encoder, head, info)`` with the best weights loaded and ``info``: ``best_epoch``, ``val_top1``,
    ``history`` (per epoch: train_loss, val_top1, seconds) and ``skipped`` ``[(item, reason)]``.
    """
    task = FinetuneTask(encoder, head, train, cfg)
    items = ImageItems(train, preprocessing, finetune_augmentation(preprocessing.image_size, cfg.crop_scale_min,
                                                                   cfg.hflip))
    loader = torch.utils.data.DataLoader(items, batch_size=cfg.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed), num_workers=num_workers,
                                         drop_last=len(train) > cfg.batch_size)

    def val_top1(t: FinetuneTask) -> float:
        probs, labels, _ = predict_dataset(t.encoder, t.head, preprocessing, val, device, eval_batch_size,
                                           num_workers)
        return top1_accuracy(probs, labels)

    def report(r: dict[str, Any]) -> None:
        if r["epoch"] == 0:
            echo(f"  fine-tune start: val top-1 {r['score']:.4f}")
            return
        loss = r["train_loss"] if r["train_loss"] is not None else float("nan")
        echo(f"  fine-tune epoch {r['epoch']}/{cfg.epochs}: loss {loss:.4f}, val top-1 {r['score']:.4f}")
        if r["stale"] >= cfg.patience:
            echo(f"  early stop: no better val top-1 for {cfg.patience} epochs "
                 f"(best {r['best_score']:.4f} at epoch {r['best_epoch']})")

    stopper = EarlyStopping(val_top1, cfg.patience, report)
    # On a CPU fine-tuning stays in fp32, the precision its accuracy figures were measured in.
    loop_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer="adamw", lr=cfg.lr,
                           lr_scaling="none", weight_decay=cfg.weight_decay, warmup_epochs=0,
                           precision="auto" if device.type == "cuda" else "fp32", device=str(device),
                           progress=progress, knn_every=0, checkpoint_minutes=0)
    with tempfile.TemporaryDirectory(prefix="snapsight-finetune-") as run_dir:
        result = fit(task, loader, loop_cfg, run_dir, callbacks=[stopper], checkpoints=False)
    if result.interrupted:
        echo(f"  fine-tune stopped by a signal: keeping epoch {stopper.best_epoch}")
    task.eval()
    history = [{"epoch": 0, "val_top1": r["score"]} if r["epoch"] == 0 else
               {"epoch": r["epoch"], "train_loss": r["train_loss"], "val_top1": r["score"], "seconds": r["seconds"]}
               for r in stopper.history]
    info = {"best_epoch": stopper.best_epoch, "val_top1": stopper.best_score, "history": history,
            "skipped": sorted(task.skipped.items())}
    return task.encoder, task.head, info


@torch.no_grad()
def predict_dataset(
    encoder: nn.Module, head: nn.Module, preprocessing: Preprocessing, dataset: LabeledDataset,
    device: torch.device, batch_size: int = 256, num_workers: int = 0, progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Class probabilities ``(n, C)`` and labels ``(n,)`` of the readable items; plus skipped ``(item, reason)``."""
    from tqdm.auto import tqdm

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
