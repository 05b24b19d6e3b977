"""The state of one training run and its phases: restore, one epoch, the stop decision, finish.

:func:`snapsight.train.loop.fit` drives a :class:`Run` through these phases; callbacks
(:mod:`snapsight.train.callbacks`) read ``run.state`` and may ask it to stop.
"""
from __future__ import annotations

import logging
import re
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from ..artifacts.files import atomic_write_json
from ..errors import SnapsightError
from . import distributed as dist_utils
from .batches import batch_len, to_device
from .checkpoints import latest_checkpoint, restore_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .monitor import MetricsLog, plot_loss_curve

log = logging.getLogger(__name__)

MAX_BAD_GRAD_STEPS = 5  # consecutive skipped bf16 updates before the run stops with a message


@dataclass
class TrainState:
    """Where a run stands. ``step``/``epoch``/``batch_in_epoch`` are what a checkpoint records to resume."""

    total_steps: int
    steps_per_epoch: int  # 0 for iterables without a length (max_steps decides)
    step: int = 0  # optimizer steps taken, over all calls
    epoch: int = 0  # completed passes over the data
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    elapsed_before: float = 0.0  # training seconds of earlier calls (a resumed run)
    started: float = field(default_factory=time.perf_counter)
    loss: float | None = None  # last logged loss, mean over processes
    knn_acc: float | None = None  # last online kNN accuracy
    images_seen: int = 0  # in this call, all processes together
    epoch_loss_sum: torch.Tensor | float = 0.0  # this process's losses of the current epoch (float64, no sync)
    epoch_batches: int = 0  # batches that contributed to epoch_loss_sum
    stop_reason: str | None = None  # set once the run should stop: "signal", "time budget", or a callback's
    signalled: bool = False  # a SIGINT/SIGTERM reached a process
    export_at_end: bool = True  # a pause (StepLimit) checkpoints without exporting

    def elapsed(self) -> float:
        """Training seconds over all calls."""
        return self.elapsed_before + time.perf_counter() - self.started

    def epoch_mean_loss(self) -> float | None:
        """Mean training loss of the current (or just finished) epoch on this process."""
        return float(self.epoch_loss_sum) / self.epoch_batches if self.epoch_batches else None


class StepModule(nn.Module):
    """Lets DDP wrap a task: DDP only intercepts ``forward``, so forward is the task's training step."""

    def __init__(self, task: nn.Module):
        super().__init__()
        self.task = task

    def forward(self, batch: Any) -> dict[str, Any]:
        return self.task.training_step(batch)


class StopFlag:
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


class Run:
    """One call of :func:`~snapsight.train.loop.fit`: the task, its optimizer and the files of ``out_dir``."""

    def __init__(self, task: nn.Module, data: Iterable[Any], cfg: TrainConfig, out_dir: Path,
                 device: torch.device, amp_dtype: torch.dtype | None, opt: torch.optim.Optimizer, sched: Any,
                 scaler: Any, state: TrainState, callbacks: Sequence[Any], meta: dict[str, Any], checkpoints: bool):
        self.task, self.data, self.cfg, self.out_dir = task, data, cfg, out_dir
        self.model: nn.Module = StepModule(task)  # wrapped in DDP by begin(), after a resume loaded the weights
        self.device, self.amp_dtype = device, amp_dtype
        self.opt, self.sched, self.scaler = opt, sched, scaler
        self.state, self.callbacks, self.meta, self.checkpoints = state, list(callbacks), meta, checkpoints
        self.rank, self.world = dist_utils.get_rank(), dist_utils.get_world_size()
        self.main = self.rank == 0
        self.resumed = False
        self.metrics: MetricsLog | None = None
        self.pbar = None
        self._pending_rng: list[dict[str, Any]] | None = None
        self.signal_name = ""
        self._saved_step = -1
        self._checkpoint_due = False
        self._last_save = time.perf_counter()
        self._last_log = (time.perf_counter(), 0)
        self._bad_grad_steps = 0  # consecutive steps whose bf16 gradients were not finite

    # ---- phases ------------------------------------------------------------------------------------------

    def restore(self, resume: bool | str | Path) -> None:
        """Continue from a checkpoint (``resume``), or refuse to write over another run's checkpoints."""
        if not resume:
            if self.main and latest_checkpoint(self.out_dir) is not None:
                raise SnapsightError(f"{self.out_dir} already holds a training run: pass --resume to continue it "
                                     "or choose another --out")
            return
        source = self.out_dir if resume is True else Path(resume)
        restored = restore_checkpoint(source, self.task, self.opt, self.sched, self.scaler, self.device)
        s, meta = self.state, restored.meta
        s.step, s.epoch, s.batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        s.elapsed_before = float(meta.get("train_seconds", 0.0))
        self.resumed = True
        self._pending_rng = restored.rng_states  # set once the first data iterator exists
        if self.main:
            log.info("resuming from %s (step %d, epoch %d)", restored.path, s.step, s.epoch)

    def begin(self) -> None:
        """Wrap the task for DDP, open the metrics file and progress bar, run the callbacks' start, start the clock."""
        if self.world > 1:  # DDP broadcasts rank 0's weights here, so after a resume restored them
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.cfg.find_unused_parameters)
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.metrics = MetricsLog(self.out_dir / "metrics.jsonl",
                                      resume_step=self.state.step if self.resumed else None)
            if self.cfg.progress:
                from tqdm.auto import tqdm

                self.pbar = tqdm(total=self.state.total_steps, initial=self.state.step, desc="train", unit="step",
                                 dynamic_ncols=True, disable=None, mininterval=1.0)
        self.task.train()
        for cb in self.callbacks:
            cb.on_fit_start(self)
        self.state.started = time.perf_counter()
        self._last_save, self._last_log = self.state.started, (self.state.started, 0)

    def run_epoch(self, stop: StopFlag) -> None:
        """Train on the rest of the current epoch; stop early when :meth:`decide_stop` says so."""
        s = self.state
        got_batch = False
        for batch in self._epoch_iterator():
            got_batch = True
            self.train_step(batch)
            for cb in self.callbacks:
                cb.on_step_end(self)
            if self.decide_stop(stop):
                # A stop on an epoch's last batch starts the next epoch on resume (nothing is left to skip into).
                if hasattr(self.data, "__len__") and s.batch_in_epoch >= len(self.data) > 0:
                    s.epoch, s.batch_in_epoch = s.epoch + 1, 0
                return
            if (self.cfg.checkpoint_every and s.step % self.cfg.checkpoint_every == 0) or self._checkpoint_due:
                self.save()
        if not got_batch and s.batch_in_epoch:  # resumed exactly at an epoch's end
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0
            return
        if not got_batch:
            raise SnapsightError("the data yielded no batches in an epoch (empty source, or fewer images "
                                 "than one batch with drop_last)")
        s.epoch, s.batch_in_epoch = s.epoch + 1, 0
        for cb in self.callbacks:
            cb.on_epoch_end(self)
        if not self.cfg.checkpoint_every:
            self.save()

    def train_step(self, batch: Any) -> None:
        """Forward under autocast (through DDP), backward, optimizer and schedule step, logging."""
        s = self.state
        batch = to_device(batch, self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = self.model(batch)
        loss = out["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise SnapsightError(f"loss became {loss.item()} at step {s.step}: lower train.lr or use precision=fp32")
        lr_now = self.opt.param_groups[0]["lr"]
        stepped = False
        if out.get("update", True):  # False: nothing to learn from this batch; the step still counts
            stepped = self._backward_and_step(loss)
            s.epoch_loss_sum = s.epoch_loss_sum + loss.detach().double()
            s.epoch_batches += 1
        if stepped:
            self.sched.step()
        else:
            with warnings.catch_warnings():
                # a skipped update still advances the schedule (the lr stays a function of the step, for resume);
                # torch warns about that order, which would only confuse a user
                warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
                self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        s.step += 1
        s.batch_in_epoch += 1
        s.images_seen += batch_len(batch) * self.world
        if s.step % self.cfg.log_every == 0 or s.step == s.total_steps:
            self._log_step(loss, out, lr_now)
        if self.pbar is not None:
            self.pbar.update(1)

    def decide_stop(self, stop: StopFlag) -> bool:
        """Whether to stop after this step, decided together so that every process saves the same step."""
        s, cfg = self.state, self.cfg
        flags = torch.tensor([float(stop.signum is not None),
                              float(cfg.max_minutes > 0 and s.elapsed() >= cfg.max_minutes * 60),
                              float(cfg.checkpoint_minutes > 0 and
                                    time.perf_counter() - self._last_save >= cfg.checkpoint_minutes * 60)])
        if self.world > 1:
            flags = flags.to(self.device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            flags = flags.cpu()
        self._checkpoint_due = bool(flags[2])
        if flags[0]:
            s.signalled = True
            self.signal_name = signal.Signals(stop.signum).name if stop.signum else "a signal to another process"
            self.request_stop("signal")
        if flags[1] and s.stop_reason is None:
            self.request_stop("time budget")
            if self.main:
                log.info("time budget of %.1f min reached at step %d", cfg.max_minutes, s.step)
        return s.stop_reason is not None or s.step >= s.total_steps

    def request_stop(self, reason: str, export: bool = True) -> None:
        """Stop after the current step (callbacks: every process must ask at the same step)."""
        if self.state.stop_reason is None:
            self.state.stop_reason = reason
        self.state.export_at_end = self.state.export_at_end and export

    def finish(self) -> Path | None:
        """Final callbacks, checkpoint and export; close the metrics, draw the loss curve, write train_state.json."""
        s = self.state
        if self.pbar is not None:
            self.pbar.close()
        for cb in self.callbacks:
            cb.on_fit_end(self)
        self.save()
        export_path = self.export(self.out_dir) if s.export_at_end else None
        if self.main:
            self.metrics.close()
            try:
                plot_loss_curve(self.out_dir / "metrics.jsonl", self.out_dir / "loss_curve.png")
            except Exception as e:  # noqa: BLE001 - a plotting problem must not lose a finished run
                log.warning("could not draw the loss curve: %s", e)
            status = "completed" if s.step >= s.total_steps else ("interrupted" if s.signalled else "stopped")
            atomic_write_json(self.out_dir / "train_state.json", {
                "status": status, "step": s.step, "total_steps": s.total_steps, "epoch": s.epoch,
                "train_seconds": s.elapsed(), "loss": s.loss, "knn_acc": s.knn_acc})
            if s.signalled:
                log.warning("stopped by %s at step %d; continue with --resume", self.signal_name, s.step)
        return export_path

    # ---- shared by phases and callbacks -----------------------------------------------------------------

    def save(self) -> None:
        """A resumable checkpoint of this step (once per step; every process takes part)."""
        if not self.checkpoints or self._saved_step == self.state.step:
            return
        s = self.state
        self._saved_step = s.step
        rngs = self._gathered_rng()
        if self.main:
            meta = {**self.meta, "step": s.step, "epoch": s.epoch, "batch_in_epoch": s.batch_in_epoch,
                    "train_seconds": s.elapsed(), "loss": s.loss}
            save_checkpoint(self.out_dir, self.task, self.opt, self.sched, self.scaler, meta, rngs,
                            self.cfg.keep_checkpoints)
        dist_utils.barrier()
        self._last_save = time.perf_counter()

    def export(self, path: Path) -> Path | None:
        """``task.export(path)`` on the main process (tasks without ``export`` write nothing)."""
        exported = None
        if self.main and hasattr(self.task, "export"):
            exported = self.task.export(path)
        dist_utils.barrier()
        return exported

    # ---- helpers ----------------------------------------------------------------------------------------

    def _epoch_iterator(self) -> Iterator[Any]:
        """The data of the current epoch, past the batches a resumed run already consumed."""
        data, s = self.data, self.state
        s.epoch_loss_sum, s.epoch_batches = 0.0, 0
        if hasattr(data, "set_epoch"):
            data.set_epoch(s.epoch)
        elif hasattr(getattr(data, "sampler", None), "set_epoch"):
            data.sampler.set_epoch(s.epoch)
        if s.batch_in_epoch and hasattr(data, "skip_batches"):
            data.skip_batches(s.batch_in_epoch)
            iterator = iter(data)
        else:
            iterator = iter(data)
            for _ in range(s.batch_in_epoch):
                if next(iterator, None) is None:
                    break
        if self._pending_rng is not None:
            # Restored after the data iterator exists, so augmentation draws continue exactly.
            set_rng_state(self._pending_rng[self.rank % len(self._pending_rng)])
            self._pending_rng = None
        return iterator

    def _backward_and_step(self, loss: torch.Tensor) -> bool:
        """Backward and optimizer step; False when the update was skipped (non-finite bf16 gradients)."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        if self.cfg.grad_clip > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.task.parameters(), self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        elif self.amp_dtype == torch.bfloat16 and not self._grads_finite():
            self._skip_bad_step()
            return False
        else:
            self._bad_grad_steps = 0
            self.opt.step()
        return True

    def _grads_finite(self) -> bool:
        # oneDNN's bf16 convolution backward has been seen to return NaN gradients under a finite loss; one such
        # update poisons every later step and the exported weights, so bf16 steps check before they apply.
        grads = [p.grad for p in self.task.parameters() if p.grad is not None]
        return not grads or bool(torch.stack(torch._foreach_norm(grads)).isfinite().all())

    def _skip_bad_step(self) -> None:
        """Leave the weights as they are for this step; give up after a run of such steps."""
        self._bad_grad_steps += 1
        log.warning("step %d: non-finite gradients under bf16 autocast; update skipped", self.state.step)
        if self._bad_grad_steps >= MAX_BAD_GRAD_STEPS:
            raise SnapsightError(f"gradients were not finite in {MAX_BAD_GRAD_STEPS} steps in a row under bf16 "
                                 f"(step {self.state.step}): train with --set train.precision=fp32")

    def _log_step(self, loss: torch.Tensor, out: dict[str, Any], lr: float) -> None:
        s = self.state
        s.loss = float(dist_utils.all_reduce_mean(loss.detach().float()))
        now = time.perf_counter()
        ips = (s.images_seen - self._last_log[1]) / max(1e-9, now - self._last_log[0])
        self._last_log = (now, s.images_seen)
        if not self.main:
            return
        rec = {"step": s.step, "epoch": s.epoch, "loss": s.loss, "lr": lr, "images_per_s": round(ips, 2),
               "elapsed_s": round(s.elapsed(), 2)}
        for k, v in out.items():
            scalar = isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.numel() == 1)
            if scalar and k not in ("loss", "update"):
                rec[k] = float(v)
        self.metrics.write(rec)
        if self.pbar is not None:
            self.pbar.set_postfix(loss=f"{s.loss:.4f}", lr=f"{lr:.3g}", img_s=f"{ips:.0f}")

    def _gathered_rng(self) -> list[dict[str, Any]]:
        state = rng_state()
        if self.world > 1:
            out: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(out, state)
            return out
        return [state]

