"""The one training loop of snapsight, shared by SimCLR pretraining and image-text alignment.

A *task* is an ``nn.Module`` that knows how to turn a batch into a loss; the loop owns everything else
(optimizer, learning-rate schedule, mixed precision, DDP, progress bar, ``metrics.jsonl``, loss-curve PNG,
atomic checkpoints, exact ``--resume``, SIGINT/SIGTERM handling, final export).

Plugging a task in
------------------
Write an ``nn.Module`` with:

``training_step(batch) -> dict``
    ``batch`` is whatever the data iterable yields, already moved to the device (tensors inside dicts,
    lists and tuples are moved). Return ``{"loss": scalar tensor, ...}``; any other scalar entries
    (floats or 0-d tensors) are logged to ``metrics.jsonl`` beside the loss. The loop runs this under
    autocast and, with several processes, through DDP (so gradients are averaged over processes). A
    contrastive task that wants negatives from every process uses
    :func:`snapsight.train.distributed.gather_with_grad` together with ``get_rank()``.
``export(out_dir) -> Path``
    Write the usable artefact into ``out_dir`` (SimCLR writes ``out_dir/encoder`` with
    :func:`snapsight.artifacts.encoder.save_encoder`; alignment writes its open_clip folder). Called once on the
    main process when training ends or is interrupted, and for each ``snapshot_minutes`` entry with
    ``out_dir = RUN_DIR/snapshots/<minutes>min``.

and optionally:

``features(images) -> (n, dim)``
    Features for the online kNN monitor (called under ``torch.no_grad`` in eval mode on the images
    the :class:`~snapsight.train.monitor.KNNMonitor` holds).
``param_groups() -> list[dict]``
    Custom optimizer parameter groups (e.g. a frozen text tower left out, a lower lr for a pretrained
    part). Default: every trainable parameter, biases and norm weights without weight decay and
    excluded from LARS adaptation (SimCLR, appendix B.1).

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
    result = fit(task, loader, TrainConfig(epochs=10), "runs/x", knn=monitor)
    # runs/x/{metrics.jsonl, loss_curve.png, checkpoints/, encoder/}
"""
from __future__ import annotations

import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from ..artifacts.files import (
    atomic_torch_save,
    atomic_write_json,
    load_training_state,
    load_weights,
    read_json,
    save_weights,
)
from ..config import to_dict
from ..errors import SnapsightError
from ..runtime import autocast_dtype, resolve_device
from . import distributed as dist_utils
from .monitor import KNNMonitor, MetricsLog, plot_loss_curve

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LATEST_NAME = "latest.json"


@dataclass
class TrainConfig:
    epochs: int = 100  # passes over the data
    max_steps: int = 0  # stop after this many optimizer steps in total (0: only epochs decide)
    steps_per_epoch: int = 0  # steps per epoch for iterables without len() (0: use len(data))
    batch_size: int = 256  # global batch size (all processes together); used for lr scaling
    optimizer: str = "lars"  # lars | sgd | adamw
    lr: float = 0.3  # peak learning rate for a batch of 256 (see lr_scaling)
    lr_scaling: str = "linear"  # peak lr = lr * f(batch_size / 256): linear | sqrt | none
    weight_decay: float = 1e-6  # L2 penalty (biases and norm layers excluded)
    momentum: float = 0.9  # SGD/LARS momentum
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    warmup_epochs: float = 10.0  # linear warm-up length in epochs (SimCLR: 10)
    warmup_steps: int = 0  # warm-up length in steps; overrides warmup_epochs when > 0
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    precision: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    grad_clip: float = 0.0  # clip gradient norm to this value (0: off)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # CPU threads for torch ops (0: torch's default; 1 is fastest on a busy shared CPU)
    seed: int = 0  # seeds weights, augmentation and data order
    log_every: int = 10  # write a metrics line every N steps
    checkpoint_every: int = 0  # save a resumable checkpoint every N steps (0: at each epoch's end)
    checkpoint_minutes: float = 10.0  # also save when this many minutes passed since the last save (0: off)
    keep_checkpoints: int = 2  # how many checkpoints to keep on disk
    knn_every: int = 1  # online kNN accuracy every N epochs when a labeled validation set is given (0: off)
    max_minutes: float = 0.0  # stop cleanly (checkpoint + export) after this much wall time (0: no limit)
    snapshot_minutes: list[float] = field(default_factory=list)  # export copies at these wall times (benchmarks)
    progress: bool = True  # show a progress bar on an interactive terminal
    find_unused_parameters: bool = False  # DDP flag for tasks with parameters unused in some steps
    sync_batchnorm: bool = True  # convert BatchNorm to SyncBatchNorm under multi-GPU DDP


@dataclass
class FitResult:
    step: int
    epoch: int
    interrupted: bool
    out_dir: Path
    loss: float | None = None
    knn_acc: float | None = None
    train_seconds: float = 0.0
    images_per_s: float | None = None
    export_path: Path | None = None


# ---------------------------------------------------------------------------------------------------------
# Optimizers and schedule


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017), as used by SimCLR (Chen et al. 2020, sec. B.1).

    Each weight's update ``g + wd * w`` is rescaled by the trust ratio ``eta * ||w|| / ||g + wd * w||``
    before SGD-with-momentum. Groups with ``lars_exclude=True`` (biases, norm layers) take a plain SGD step.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"]:
                        dp = dp.add(p, alpha=group["weight_decay"])
                    p_norm, d_norm = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(p_norm)
                    trust = torch.where(p_norm > 0, torch.where(d_norm > 0, group["eta"] * p_norm / d_norm, one), one)
                    dp = dp.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(dp).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(dp)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def default_param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weights get weight decay; biases and norm parameters (``ndim <= 1``) get none and no LARS scaling."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lars_exclude": False}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True})
    return [g for g in groups if g["params"]]


def peak_lr(cfg: TrainConfig) -> float:
    ratio = cfg.batch_size / 256
    if cfg.lr_scaling == "linear":
        return cfg.lr * ratio
    if cfg.lr_scaling == "sqrt":
        return cfg.lr * math.sqrt(ratio)
    if cfg.lr_scaling == "none":
        return cfg.lr
    raise SnapsightError(f"train.lr_scaling must be linear, sqrt or none, got '{cfg.lr_scaling}'")


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    lr = peak_lr(cfg)
    name = cfg.optimizer.lower()
    if name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    clean = [{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups]
    if name == "sgd":
        return torch.optim.SGD(clean, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(clean, lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise SnapsightError(f"train.optimizer must be lars, sgd or adamw, got '{cfg.optimizer}'")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then half-cosine decay to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, progress))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------------------------
# Helpers


def setup_device(cfg: TrainConfig) -> torch.device:
    """Resolve ``cfg.device`` and start the process group under ``torchrun``; call before building loaders."""
    return dist_utils.init_distributed(resolve_device(cfg.device))


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
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


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not isinstance(obj, str):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _batch_len(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0]) if obj.dim() else 1
    if isinstance(obj, dict):
        for v in obj.values():
            n = _batch_len(v)
            if n:
                return n
    if isinstance(obj, (list, tuple)) and obj:
        return _batch_len(obj[0]) if isinstance(obj[0], (torch.Tensor, dict)) else len(obj)
    return 0


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": _py_state_to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state_to_lists(state):
    return [list(x) if isinstance(x, tuple) else x for x in state]


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in py))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _StepModule(nn.Module):
    """Lets DDP wrap a task: DDP only intercepts ``forward``, so forward is the task's training step."""

    def __init__(self, task: nn.Module):
        super().__init__()
        self.task = task

    def forward(self, batch: Any) -> dict[str, Any]:
        return self.task.training_step(batch)


class _StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks after each step; a second SIGINT aborts at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("received %s: saving a checkpoint and stopping after this step (Ctrl-C again to abort)",
                    signal.Signals(signum).name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run directory, or None."""
    ckpt_root = Path(out_dir) / CHECKPOINT_DIR
    pointer = ckpt_root / LATEST_NAME
    if pointer.is_file():
        path = ckpt_root / read_json(pointer)["dir"]
        if (path / "state.pt").is_file():
            return path
    return None


def _save_checkpoint(out_dir: Path, task: nn.Module, opt, sched, scaler, meta: dict[str, Any],
                     rng_states: list[dict[str, Any]], keep: int) -> Path:
    """Write ``checkpoints/step-N/{model.safetensors, meta.json, state.pt}`` into a temporary folder and rename
    it into place, then point ``latest.json`` at it: a kill at any moment leaves the previous one intact."""
    root = out_dir / CHECKPOINT_DIR
    name = f"step-{meta['step']:09d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_weights(task.state_dict(), tmp / "model.safetensors")
    atomic_write_json(tmp / "meta.json", meta)
    atomic_torch_save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                       "scaler": scaler.state_dict() if scaler is not None else {},
                       "rng": rng_states}, tmp / "state.pt")
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_json(root / LATEST_NAME, {"dir": name, "step": meta["step"]})
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and p != final)
    for p in old[:max(0, len(old) - max(0, keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def _skip(iterator, n: int) -> None:
    for _ in range(n):
        try:
            next(iterator)
        except StopIteration:
            return


# ---------------------------------------------------------------------------------------------------------
# The loop


def fit(
    task: nn.Module,
    data: Iterable[Any],
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    knn: KNNMonitor | None = None,
    resume: bool | str | Path = False,
    run_meta: dict[str, Any] | None = None,
    max_steps_this_call: int = 0,
) -> FitResult:
    """Train ``task`` on batches from ``data``; write everything into ``out_dir``; return a :class:`FitResult`.

    Args:
        task: module with ``training_step(batch) -> {"loss": ...}`` and ``export(out_dir)`` (see module doc).
        data: iterable of batches (this process's shard under DDP).
        cfg: loop settings (optimizer, schedule, precision, checkpoints, ...).
        out_dir: the run directory.
        knn: optional online kNN monitor on a labeled validation set (needs ``task.features``).
        resume: ``True`` to continue from ``out_dir``'s latest checkpoint, or a run/checkpoint path.
        run_meta: extra JSON-serialisable metadata stored in every checkpoint (e.g. the full config).
        max_steps_this_call: stop (checkpoint, no export) after this many steps in this call — for tests.
    """
    out_dir = Path(out_dir)
    if cfg.batch_size < 1:  # a loader of batch size 0 fails later with a ZeroDivisionError
        raise SnapsightError(f"train.batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = setup_device(cfg)
    rank, world = dist_utils.get_rank(), dist_utils.get_world_size()
    main = rank == 0
    amp_dtype = _amp_dtype(cfg.precision, device)

    steps_per_epoch = cfg.steps_per_epoch or (len(data) if hasattr(data, "__len__") else 0)
    if steps_per_epoch <= 0 and cfg.max_steps <= 0:
        raise SnapsightError("the data has no length: set train.steps_per_epoch or train.max_steps")
    total_steps = cfg.epochs * steps_per_epoch if steps_per_epoch else cfg.max_steps
    if cfg.max_steps > 0:
        total_steps = min(total_steps, cfg.max_steps) if steps_per_epoch else cfg.max_steps
    if total_steps <= 0:
        raise SnapsightError("nothing to train: the data yields no full batch (lower the batch size or add images)")
    warmup = cfg.warmup_steps or int(round(cfg.warmup_epochs * (steps_per_epoch or 0)))
    warmup = min(warmup, max(0, total_steps - 1))

    task.to(device)
    if world > 1 and device.type == "cuda" and cfg.sync_batchnorm:
        task = nn.SyncBatchNorm.convert_sync_batchnorm(task)
    groups = task.param_groups() if hasattr(task, "param_groups") else default_param_groups(task, cfg.weight_decay)
    opt = build_optimizer(groups, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, warmup, total_steps, cfg.min_lr_ratio))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    # ---- resume
    step, epoch, batch_in_epoch, elapsed_before = 0, 0, 0, 0.0
    ckpt_state = None
    if resume:
        src = out_dir if resume is True else Path(resume)
        ckpt = src if (src / "state.pt").is_file() else latest_checkpoint(src)
        if ckpt is None:
            raise SnapsightError(f"nothing to resume: no checkpoint in {src / CHECKPOINT_DIR}")
        missing, unexpected = task.load_state_dict(load_weights(ckpt / "model.safetensors", device=device), strict=False)
        if missing or unexpected:
            raise SnapsightError(f"checkpoint {ckpt} does not fit this model ({len(missing)} missing, "
                                 f"{len(unexpected)} unexpected tensors): was it made with another config?")
        meta = read_json(ckpt / "meta.json")
        ckpt_state = load_training_state(ckpt / "state.pt", map_location="cpu")
        opt.load_state_dict(ckpt_state["optimizer"])
        sched.load_state_dict(ckpt_state["scheduler"])
        if scaler is not None and ckpt_state.get("scaler"):
            scaler.load_state_dict(ckpt_state["scaler"])
        step, epoch, batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        elapsed_before = float(meta.get("train_seconds", 0.0))
        if main:
            log.info("resuming from %s (step %d, epoch %d)", ckpt, step, epoch)
    elif main and latest_checkpoint(out_dir) is not None:
        raise SnapsightError(f"{out_dir} already holds a training run: pass --resume to continue it "
                             "or choose another --out")

    model: nn.Module = _StepModule(task)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.find_unused_parameters)

    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(out_dir / "metrics.jsonl", resume_step=step if resume else None) if main else None
    cfg_dict = to_dict(cfg)
    meta_base = {"config": cfg_dict, "world_size": world, **({"run": run_meta} if run_meta else {})}

    pbar = None
    if main and cfg.progress:
        from tqdm.auto import tqdm

        pbar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
                    disable=None, mininterval=1.0)

    start = time.perf_counter()
    last_save = start
    last_log_t, last_log_images = start, 0
    images_seen = 0
    last_loss: float | None = None
    last_knn: float | None = None
    snapshots = sorted(m for m in cfg.snapshot_minutes if not resume or m * 60 > elapsed_before)
    interrupted = False
    steps_this_call = 0
    ips: float | None = None

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - start

    def gathered_rng() -> list[dict[str, Any]]:
        state = _rng_state()
        if world > 1:
            out: list[Any] = [None] * world
            torch.distributed.all_gather_object(out, state)
            return out
        return [state]

    saved_step = -1

    def save() -> None:
        nonlocal last_save, saved_step
        if saved_step == step:
            return
        saved_step = step
        rngs = gathered_rng()
        if main:
            meta = {**meta_base, "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                    "train_seconds": elapsed(), "loss": last_loss}
            _save_checkpoint(out_dir, task, opt, sched, scaler, meta, rngs, cfg.keep_checkpoints)
        dist_utils.barrier()
        last_save = time.perf_counter()

    knn_step = -1

    def run_knn() -> None:
        nonlocal last_knn, knn_step
        knn_step = step
        if main and knn is not None and hasattr(task, "features"):
            was_training = task.training
            task.eval()
            try:
                with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                                     enabled=amp_dtype is not None):
                    last_knn = knn.evaluate(lambda x: task.features(x.to(device)))
            finally:
                task.train(was_training)
            metrics.write({"step": step, "epoch": epoch, "knn_acc": last_knn})
            log.info("epoch %d: online kNN accuracy %.2f%%", epoch, 100 * last_knn)
        dist_utils.barrier()

    def export(path: Path) -> Path | None:
        p = None
        if main:
            p = task.export(path)
        dist_utils.barrier()
        return p

    task.train()
    first_rng_restore = ckpt_state is not None
    with _StopFlag() as stop:
        while step < total_steps and not interrupted:
            if hasattr(data, "set_epoch"):
                data.set_epoch(epoch)
            elif hasattr(getattr(data, "sampler", None), "set_epoch"):
                data.sampler.set_epoch(epoch)
            if batch_in_epoch and hasattr(data, "skip_batches"):
                data.skip_batches(batch_in_epoch)
                iterator = iter(data)
            else:
                iterator = iter(data)
                _skip(iterator, batch_in_epoch)
            if first_rng_restore:
                # Restored after the data iterator exists, so augmentation draws continue exactly.
                states = ckpt_state["rng"]
                _set_rng_state(states[rank % len(states)])
                first_rng_restore = False
            got_batch = False
            for batch in iterator:
                got_batch = True
                batch = _to_device(batch, device)
                n_images = _batch_len(batch) * world
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    out = model(batch)
                loss = out["loss"]
                if not torch.isfinite(loss.detach()).all():
                    raise SnapsightError(f"loss became {loss.item()} at step {step}: lower train.lr or use "
                                         "precision=fp32")
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
                if cfg.grad_clip > 0:
                    if scaler is not None:
                        scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(task.parameters(), cfg.grad_clip)
                lr_now = opt.param_groups[0]["lr"]
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                steps_this_call += 1
                batch_in_epoch += 1
                images_seen += n_images

                if step % cfg.log_every == 0 or step == total_steps:
                    last_loss = float(dist_utils.all_reduce_mean(loss.detach().float()))
                    now = time.perf_counter()
                    ips = (images_seen - last_log_images) / max(1e-9, now - last_log_t)
                    last_log_t, last_log_images = now, images_seen
                    if main:
                        rec = {"step": step, "epoch": epoch, "loss": last_loss, "lr": lr_now,
                               "images_per_s": round(ips, 2), "elapsed_s": round(elapsed(), 2)}
                        for k, v in out.items():
                            if k != "loss" and (isinstance(v, (int, float)) or
                                                (isinstance(v, torch.Tensor) and v.numel() == 1)):
                                rec[k] = float(v)
                        metrics.write(rec)
                        if pbar is not None:
                            pbar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr_now:.3g}", img_s=f"{ips:.0f}")
                if pbar is not None:
                    pbar.update(1)

                # Decide together whether to stop, so every process saves the same step.
                flags = torch.tensor([float(stop.signum is not None),
                                      float(cfg.max_minutes > 0 and elapsed() >= cfg.max_minutes * 60),
                                      float(bool(snapshots) and elapsed() >= snapshots[0] * 60)])
                if world > 1:
                    flags = flags.to(device)
                    torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
                    flags = flags.cpu()
                want_stop = bool(flags[0]) or bool(flags[1])
                if bool(flags[2]):
                    m = snapshots.pop(0)
                    export(out_dir / "snapshots" / f"{m:g}min")
                    if main:
                        atomic_write_json(out_dir / "snapshots" / f"{m:g}min" / "snapshot.json",
                                          {"minutes": m, "step": step, "epoch": epoch, "elapsed_s": elapsed(),
                                           "loss": last_loss})
                if want_stop or step >= total_steps or (max_steps_this_call and steps_this_call >= max_steps_this_call):
                    interrupted = step < total_steps
                    if flags[1] and main:
                        log.info("time budget of %.1f min reached at step %d", cfg.max_minutes, step)
                    break
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    save()
                elif cfg.checkpoint_minutes and time.perf_counter() - last_save >= cfg.checkpoint_minutes * 60:
                    save()
            else:
                if not got_batch and batch_in_epoch:
                    # Resumed exactly at the end of an epoch (older checkpoints): nothing left to skip into.
                    epoch += 1
                    batch_in_epoch = 0
                    continue
                if not got_batch:
                    raise SnapsightError("the data yielded no batches in an epoch (empty source, or fewer images "
                                         "than one batch with drop_last)")
                # A full pass ended normally.
                epoch += 1
                batch_in_epoch = 0
                if steps_per_epoch and cfg.knn_every and epoch % cfg.knn_every == 0:
                    run_knn()
                if not cfg.checkpoint_every:
                    save()
                continue
            # Left the batch loop early (done, budget, signal): a mid-epoch stop keeps batch_in_epoch; a stop
            # on an epoch's last batch starts the next epoch on resume instead of skipping into an empty one.
            if hasattr(data, "__len__") and batch_in_epoch >= len(data) > 0:
                epoch += 1
                batch_in_epoch = 0

    if pbar is not None:
        pbar.close()
    signalled = stop.signum is not None
    if knn is not None and knn_step != step and not signalled:
        run_knn()
    save()
    export_path = None
    partial = max_steps_this_call and steps_this_call >= max_steps_this_call and step < total_steps
    if not partial:
        export_path = export(out_dir)
    if main:
        if metrics is not None:
            metrics.close()
        try:
            plot_loss_curve(out_dir / "metrics.jsonl", out_dir / "loss_curve.png")
        except Exception as e:  # noqa: BLE001 - a plotting problem must not lose a finished run
            log.warning("could not draw the loss curve: %s", e)
        status = "completed" if step >= total_steps else ("interrupted" if signalled else "stopped")
        atomic_write_json(out_dir / "train_state.json", {
            "status": status, "step": step, "total_steps": total_steps, "epoch": epoch,
            "train_seconds": elapsed(), "loss": last_loss, "knn_acc": last_knn})
        if signalled:
            log.warning("stopped by %s at step %d; continue with --resume", signal.Signals(stop.signum).name, step)
    return FitResult(step=step, epoch=epoch, interrupted=signalled or bool(partial), out_dir=out_dir, loss=last_loss,
                     knn_acc=last_knn, train_seconds=elapsed(),
                     images_per_s=images_seen / max(1e-9, time.perf_counter() - start) if images_seen else None,
                     export_path=export_path)
