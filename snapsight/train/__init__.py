"""The one training loop: :func:`fit` trains any task (SimCLR, alignment, fine-tuning) with checkpoints, exact
resume, DDP, mixed precision and callbacks; :class:`TrainConfig` is the ``train:`` section of every recipe."""
from .callbacks import Callback, EarlyStopping, KnnEvaluation, Snapshots, StepLimit
from .config import TrainConfig
from .loop import FitResult, fit

__all__ = ["Callback", "EarlyStopping", "FitResult", "KnnEvaluation", "Snapshots", "StepLimit", "TrainConfig", "fit"]
