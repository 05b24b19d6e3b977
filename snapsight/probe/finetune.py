"""End-to-end fine-tuning of encoder + linear head (LP-FT, Kumar et al. 2022) with early stopping on validation."""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ImageError
from ..preprocessing import Preprocessing
from ..runtime import autocast_dtype
from .features import image_loader
from .heads import LinearProbe, top1_accuracy

log = logging.getLogger(__name__)


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
    best = (top1_accuracy(probs, labels), copy.deepcopy(model.state_dict()), 0)
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
        acc = top1_accuracy(probs, labels)
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


@torch.no_grad()
def predict_dataset(
    encoder: nn.Module, head: nn.Module, preprocessing: Preprocessing, dataset, device: torch.device,
    batch_size: int = 256, num_workers: int = 0, progress: bool = False,
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
