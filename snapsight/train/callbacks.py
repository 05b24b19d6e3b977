"""Optional parts of a training run, passed as ``fit(..., callbacks=[...])``.

A callback sees the :class:`~snapsight.train.run.Run` (``run.state`` holds step, epoch, elapsed time, losses)
at four points and may call ``run.request_stop(reason)``. Under DDP every process runs every callback, so a
stop must be asked for by all processes at the same step: decide on values that agree across processes
(step counts, a validation score of the shared weights), or agree with :func:`~snapsight.train.distributed.any_process`.

- :class:`KnnEvaluation`: online kNN accuracy after epochs (``fit(knn=...)`` adds it);
- :class:`Snapshots`: export copies of the model at wall-clock minutes (benchmarks: accuracy against time);
- :class:`StepLimit`: pause after ``n`` steps of this call, with a checkpoint and no export;
- :class:`EarlyStopping`: keep the weights of the best validation score, stop when it stops improving.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..artifacts.files import atomic_write_json
from . import distributed as dist_utils
from .monitor import KNNMonitor
from .run import Run

log = logging.getLogger(__name__)


class Callback:
    """Hooks of a run; each does nothing unless overridden."""

    def on_fit_start(self, run: Run) -> None:
        """Before the first step of this call (after a resume restored the state)."""

    def on_step_end(self, run: Run) -> None:
        """After each optimizer step, before the loop decides whether to stop."""

    def on_epoch_end(self, run: Run) -> None:
        """After a full pass over the data (``run.state.epoch`` already counts it), before its checkpoint.
        A run that reaches its last step does not call it for that epoch: ``on_fit_end`` follows instead."""

    def on_fit_end(self, run: Run) -> None:
        """After the last step, before the final checkpoint and export."""


class KnnEvaluation(Callback):
    """Online weighted-kNN accuracy of ``task.features`` every ``every`` epochs and at the end of the run
    (not after a signal: a stop asked for with Ctrl-C should be quick). Written to ``metrics.jsonl``."""

    def __init__(self, monitor: KNNMonitor, every: int = 1):
        self.monitor, self.every = monitor, every
        self._last_step = -1

    def on_epoch_end(self, run: Run) -> None:
        if run.state.steps_per_epoch and self.every and run.state.epoch % self.every == 0:
            self.evaluate(run)

    def on_fit_end(self, run: Run) -> None:
        if self._last_step != run.state.step and not run.state.signalled:
            self.evaluate(run)

    def evaluate(self, run: Run) -> None:
        s, task = run.state, run.task
        self._last_step = s.step
        if run.main and hasattr(task, "features"):
            was_training = task.training
            task.eval()
            try:
                with torch.no_grad(), torch.autocast(run.device.type, dtype=run.amp_dtype or torch.float32,
                                                     enabled=run.amp_dtype is not None):
                    s.knn_acc = self.monitor.evaluate(lambda x: task.features(x.to(run.device)))
            finally:
                task.train(was_training)
            run.metrics.write({"step": s.step, "epoch": s.epoch, "knn_acc": s.knn_acc})
            log.info("epoch %d: online kNN accuracy %.2f%%", s.epoch, 100 * s.knn_acc)
        dist_utils.barrier()


class Snapshots(Callback):
    """Export the model into ``RUN/snapshots/<m>min/`` (with ``snapshot.json``: minutes, step, epoch, elapsed_s,
    loss) once ``m`` minutes of training have passed, for each ``m`` in ``minutes``.

    Snapshots come from one run whose learning rate is still high: they show what stopping at that time
    gives, not what a run scheduled for that budget would give. A resumed run skips the minutes already past.
    """

    def __init__(self, minutes: Sequence[float]):
        self.minutes = sorted(float(m) for m in minutes)
        self._pending: list[float] = []

    def on_fit_start(self, run: Run) -> None:
        self._pending = [m for m in self.minutes if not run.resumed or m * 60 > run.state.elapsed_before]

    def on_step_end(self, run: Run) -> None:
        s = run.state
        if not self._pending or not dist_utils.any_process(s.elapsed() >= self._pending[0] * 60, run.device):
            return
        m = self._pending.pop(0)
        path = run.out_dir / "snapshots" / f"{m:g}min"
        run.export(path)
        if run.main:
            atomic_write_json(path / "snapshot.json", {"minutes": m, "step": s.step, "epoch": s.epoch,
                                                       "elapsed_s": s.elapsed(), "loss": s.loss})


class StepLimit(Callback):
    """Pause after ``steps`` optimizer steps of this call: checkpoint, no export (``--resume`` continues).

    The run reports ``interrupted``; a limit that falls on the run's last step ends it normally.
    """

    def __init__(self, steps: int):
        self.steps = steps
        self._stop_at = 0

    def on_fit_start(self, run: Run) -> None:
        self._stop_at = run.state.step + self.steps

    def on_step_end(self, run: Run) -> None:
        if run.state.step >= self._stop_at and run.state.step < run.state.total_steps:
            run.request_stop("step limit", export=False)


class EarlyStopping(Callback):
    """Score the task at the start and after every epoch; keep the weights of the best score, stop after
    ``patience`` epochs without a better one, and put the best weights back at the end.

    The starting weights (epoch 0) count as a candidate: training must beat them to be kept (LP-FT starts
    from the linear probe). ``score(task) -> float`` (higher is better) must give the same value on every
    process. ``report(record)`` is called after each score with ``{"epoch", "score", "train_loss", "seconds",
    "best_epoch", "best_score", "stale"}``; ``history`` keeps those records.
    """

    def __init__(self, score: Callable[[nn.Module], float], patience: int,
                 report: Callable[[dict[str, Any]], None] | None = None):
        self.score, self.patience, self.report = score, patience, report
        self.history: list[dict[str, Any]] = []
        self.best_score = float("-inf")
        self.best_epoch = -1
        self._best_state: dict[str, torch.Tensor] | None = None
        self._stale = 0
        self._scored_epoch = -1
        self._since = 0.0

    def on_fit_start(self, run: Run) -> None:
        self._evaluate(run, train_loss=None)

    def on_epoch_end(self, run: Run) -> None:
        self._evaluate(run, run.state.epoch_mean_loss())
        if self._stale >= self.patience:
            run.request_stop("early stopping")

    def on_fit_end(self, run: Run) -> None:
        s = run.state
        if self._scored_epoch != s.epoch and s.batch_in_epoch == 0 and not s.signalled:
            self._evaluate(run, s.epoch_mean_loss())
        if self._best_state is not None:
            run.task.load_state_dict(self._best_state)

    def _evaluate(self, run: Run, train_loss: float | None) -> None:
        task, epoch = run.task, run.state.epoch
        was_training = task.training
        try:
            score = float(self.score(task))
        finally:
            task.train(was_training)
        self._scored_epoch = epoch
        if score > self.best_score:
            self.best_score, self.best_epoch, self._stale = score, epoch, 0
            self._best_state = copy.deepcopy(task.state_dict())
        else:
            self._stale += 1
        now = time.perf_counter()
        record = {"epoch": epoch, "score": score, "train_loss": train_loss,
                  "seconds": round(now - self._since, 1) if epoch else 0.0, "best_epoch": self.best_epoch,
                  "best_score": self.best_score, "stale": self._stale}
        self._since = now
        self.history.append(record)
        if self.report is not None:
            self.report(record)
