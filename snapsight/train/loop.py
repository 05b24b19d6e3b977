"""The one training loop of snapsight, shared by SimCLR pretraining, image-text alignment and fine-tuning.

A *task* is an ``nn.Module`` that knows how to turn a batch into a loss; the loop owns everything else
(optimizer, learning-rate schedule, mixed precision, DDP, progress bar, ``metrics.jsonl``, loss-curve PNG,
atomic checkpoints, exact ``--resume``, SIGINT/SIGTERM handling, final export). Optional parts (online kNN,
snapshots, early stopping, a step limit) are callbacks (:mod:`snapsight.train.callbacks`).

Plugging a task in
------------------
Write an ``nn.Module`` with:

``training_step(batch) -> dict``
    ``batch`` is whatever the data iterable yields, already moved to the device (tensors inside dicts,
    lists and tuples are moved). Return ``{"loss": scalar tensor, ...}``; any other scalar entries
    (floats or 0-d tensors) are logged to ``metrics.jsonl`` beside the loss. The loop runs this under
    autocast and, with several processes, through DDP (so gradients are averaged over processes). A
    contrastive task that wants negatives from every process uses
    :func:`snapsight.train.distributed.gather_with_grad` together with ``get_rank()``. A single-process
    task may return ``"update": False`` for a batch with nothing to learn from (every image unreadable):
    the step counts, the weights do not change.

and optionally:

``export(out_dir) -> Path``
    Write the usable artefact into ``out_dir`` (SimCLR writes ``out_dir/encoder`` with
    :func:`snapsight.artifacts.encoder.save_encoder`; alignment writes its open_clip folder). Called once on the
    main process when training ends or is interrupted, and by :class:`~snapsight.train.callbacks.Snapshots`.
``features(images) -> (n, dim)``
    Features for the online kNN monitor (called under ``torch.no_grad`` in eval mode on the images
    the :class:`~snapsight.train.monitor.KNNMonitor` holds).
``param_groups() -> list[dict]``
    Custom optimizer parameter groups (e.g. a frozen text tower left out, a lower ``lr`` for a pretrained
    part; a group's own ``lr``/``weight_decay`` wins over the config's). Default: every trainable parameter,
    biases and norm weights without weight decay and excluded from LARS adaptation (SimCLR, appendix B.1).

The trainable state is ``task.state_dict()`` (saved as safetensors), so anything that should survive a
resume must be a parameter or buffer of the task.

Data
----
``data`` is any iterable of batches. For an exact resume, iteration order must depend only on the epoch:
the loop calls ``data.set_epoch(epoch)`` (or ``data.sampler.set_epoch``) when present, and on resume skips
the batches already consumed in the current epoch with ``data.skip_batches(n)`` when present, otherwise by
drawing and discarding them. ``len(data)`` gives the steps per epoch; for iterables without a length set
``TrainConfig.steps_per_epoch`` or ``max_steps``. Under DDP each process's iterable yields its own shard of
the global batch (``snapsight.data.sources`` loaders do this from ``rank``/``world_size``).

Example::

    task = SimCLRTask(backbone, head, transform)            # snapsight.ssl.simclr
    result = fit(task, loader, TrainConfig(epochs=10), "runs/x", knn=monitor, callbacks=[Snapshots([5, 10])])
    # runs/x/{metrics.jsonl, loss_curve.png, train_state.json, checkpoints/, encoder/, snapshots/}
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..config import to_dict
from ..errors import SnapsightError
from ..runtime import autocast_dtype, resolve_device
from . import distributed as dist_utils
from .callbacks import Callback, KnnEvaluation
from .checkpoints import latest_checkpoint
from .config import TrainConfig
from .monitor import KNNMonitor
from .optim import LARS, build_optimizer, build_schedule, default_param_groups, peak_lr, warmup_cosine
from .run import Run, StopFlag, TrainState

__all__ = ["FitResult", "LARS", "TrainConfig", "build_optimizer", "default_param_groups", "fit",
           "latest_checkpoint", "peak_lr", "setup_device", "warmup_cosine"]


@dataclass
class FitResult:
    step: int
    epoch: int
    interrupted: bool  # stopped by a signal or paused by StepLimit: --resume continues it
    out_dir: Path
    loss: float | None = None
    knn_acc: float | None = None
    train_seconds: float = 0.0
    images_per_s: float | None = None
    export_path: Path | None = None


def fit(
    task: nn.Module,
    data: Iterable[Any],
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    knn: KNNMonitor | None = None,
    resume: bool | str | Path = False,
    run_meta: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoints: bool = True,
) -> FitResult:
    """Train ``task`` on batches from ``data``; write everything into ``out_dir``; return a :class:`FitResult`.

    Args:
        task: module with ``training_step(batch) -> {"loss": ...}`` (and ``export(out_dir)``; see module doc).
        data: iterable of batches (this process's shard under DDP).
        cfg: loop settings (optimizer, schedule, precision, checkpoints, ...).
        out_dir: the run directory.
        knn: optional online kNN monitor on a labeled validation set (needs ``task.features``).
        resume: ``True`` to continue from ``out_dir``'s latest checkpoint, or a run/checkpoint path.
        run_meta: extra JSON-serialisable metadata stored in every checkpoint (e.g. the full config).
        callbacks: optional parts of the run (:mod:`snapsight.train.callbacks`), called in this order.
        checkpoints: False writes no resumable checkpoint (a short run cheaper to redo than to save).
    """
    out_dir = Path(out_dir)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = setup_device(cfg)
    amp_dtype = _amp_dtype(cfg.precision, device)
    steps_per_epoch, total_steps = _run_length(cfg, data)

    task.to(device)
    if dist_utils.get_world_size() > 1 and device.type == "cuda" and cfg.sync_batchnorm:
        task = nn.SyncBatchNorm.convert_sync_batchnorm(task)
    groups = task.param_groups() if hasattr(task, "param_groups") else default_param_groups(task, cfg.weight_decay)
    opt = build_optimizer(groups, cfg)
    sched = build_schedule(opt, cfg, steps_per_epoch, total_steps)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    meta = {"config": to_dict(cfg), "world_size": dist_utils.get_world_size(),
            **({"run": run_meta} if run_meta else {})}
    parts = ([KnnEvaluation(knn, cfg.knn_every)] if knn is not None else []) + list(callbacks)
    run = Run(task, data, cfg, out_dir, device, amp_dtype, opt, sched, scaler, TrainState(total_steps, steps_per_epoch),
              parts, meta, checkpoints)

    run.restore(resume)
    with StopFlag() as stop:
        run.begin()
        while run.state.step < total_steps and run.state.stop_reason is None:
            run.run_epoch(stop)
    export_path = run.finish()

    s = run.state
    seconds = s.elapsed() - s.elapsed_before
    return FitResult(step=s.step, epoch=s.epoch, interrupted=s.signalled or not s.export_at_end, out_dir=out_dir,
                     loss=s.loss, knn_acc=s.knn_acc, train_seconds=s.elapsed(),
                     images_per_s=s.images_seen / max(1e-9, seconds) if s.images_seen else None,
                     export_path=export_path)


def setup_device(cfg: TrainConfig) -> torch.device:
    """Resolve ``cfg.device`` and start the process group under ``torchrun``; call before building loaders."""
    return dist_utils.init_distributed(resolve_device(cfg.device))


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``train.precision`` (None: fp32); ``auto`` asks :func:`snapsight.runtime.autocast_dtype`."""
    p = precision.lower()
    if p == "auto":
        return autocast_dtype(device)
    if p == "fp32":
        return None
    if p == "bf16":
        return torch.bfloat16
    if p == "fp16":
        if device.type != "cuda":
            raise SnapsightError("train.precision=fp16 needs CUDA; use bf16 or fp32 on CPU")
        return torch.float16
    raise SnapsightError(f"train.precision must be auto, fp32, bf16 or fp16, got '{precision}'")


def _run_length(cfg: TrainConfig, data: Iterable[Any]) -> tuple[int, int]:
    """``(steps_per_epoch, total_steps)``: epochs times the data's length, capped by ``max_steps``."""
    steps_per_epoch = cfg.steps_per_epoch or (len(data) if hasattr(data, "__len__") else 0)
    if steps_per_epoch <= 0 and cfg.max_steps <= 0:
        raise SnapsightError("the data has no length: set train.steps_per_epoch or train.max_steps")
    total_steps = cfg.epochs * steps_per_epoch if steps_per_epoch else cfg.max_steps
    if cfg.max_steps > 0:
        total_steps = min(total_steps, cfg.max_steps) if steps_per_epoch else cfg.max_steps
    if total_steps <= 0:
        raise SnapsightError("nothing to train: the data yields no full batch (lower the batch size or add images)")
    return steps_per_epoch, total_steps
