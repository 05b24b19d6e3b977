"""Training monitors: the metrics file, the loss-curve PNG and the online kNN accuracy.

``metrics.jsonl`` holds one JSON object per line: ``{"step", "epoch", "loss", "lr", "images_per_s", ...}``
for training steps and ``{"step", "epoch", "knn_acc"}`` after each epoch's kNN evaluation. On resume the
lines written after the checkpoint are dropped so the file always matches the model state.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch

from ..artifacts.files import atomic_write_bytes
from .knn import knn_accuracy

log = logging.getLogger(__name__)


class MetricsLog:
    """Append-only ``metrics.jsonl`` writer (flushed every line, so a killed run keeps its history)."""

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            keep = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        elif resume_step is None:
            self.path.write_text("")
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, default=float) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (a torn last line from a killed process is ignored)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Loss per step (raw and smoothed) plus kNN accuracy per epoch when present; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    records = read_metrics(metrics_path)
    steps = [r["step"] for r in records if "loss" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    knn = [(r["step"], r["knn_acc"]) for r in records if "knn_acc" in r]
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, losses, color="tab:blue", alpha=0.3, lw=0.8, label="loss")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = torch.tensor(losses).unfold(0, window, 1).mean(1).tolist()
        ax.plot(steps[window - 1:], smooth, color="tab:blue", lw=1.5, label=f"loss (mean of {window})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if knn:
        ax2 = ax.twinx()
        ax2.plot([s for s, _ in knn], [100 * a for _, a in knn], "o-", color="tab:orange", label="kNN acc (%)")
        ax2.set_ylabel("online kNN accuracy (%)")
        ax2.legend(loc="lower left")
    ax.legend(loc="upper right")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(png_path, buf.getvalue())
    return Path(png_path)


class KNNMonitor:
    """Online weighted-kNN accuracy (Wu et al. 2018) of the current features on a labeled validation set.

    ``bank_images``/``query_images`` are ``uint8`` ``(n, C, H, W)`` tensors with integer labels ``(n,)``;
    the task's ``features(images_uint8) -> (n, dim)`` turns them into features (eval mode, no augmentation).
    Labels are used only here, never by the training loss.
    """

    def __init__(self, bank_images: torch.Tensor, bank_labels: torch.Tensor, query_images: torch.Tensor,
                 query_labels: torch.Tensor, num_classes: int | None = None, k: int = 200,
                 temperature: float = 0.1, batch_size: int = 512):
        self.bank_images, self.bank_labels = bank_images, bank_labels.long()
        self.query_images, self.query_labels = query_images, query_labels.long()
        self.num_classes = num_classes or int(max(self.bank_labels.max(), self.query_labels.max()) + 1)
        self.k, self.temperature, self.batch_size = k, temperature, batch_size

    @torch.no_grad()
    def _embed(self, features: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        return torch.cat([features(images[i:i + self.batch_size]).float().cpu()
                          for i in range(0, len(images), self.batch_size)])

    @torch.no_grad()
    def evaluate(self, features: Callable[[torch.Tensor], torch.Tensor]) -> float:
        bank = self._embed(features, self.bank_images)
        query = self._embed(features, self.query_images)
        return knn_accuracy(bank, self.bank_labels, query, self.query_labels, self.num_classes,
                            k=self.k, temperature=self.temperature)
