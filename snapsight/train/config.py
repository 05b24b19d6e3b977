"""The ``train:`` section of a recipe: the settings of :func:`snapsight.train.loop.fit`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import require


@dataclass
class TrainConfig:
    RETIRED_KEYS = {"snapshot_minutes": "snapshots are a callback of fit() now (snapsight.train.callbacks.Snapshots)"}

    epochs: int = 100  # passes over the data
    max_steps: int = 0  # stop after this many optimizer steps in total (0: only epochs decide)
    steps_per_epoch: int = 0  # steps per epoch for iterables without len() (0: use len(data))
    batch_size: int = 256  # global batch size (all processes together); used for lr scaling
    optimizer: Literal["lars", "sgd", "adamw"] = "lars"  # lars | sgd | adamw
    lr: float = 0.3  # peak learning rate for a batch of 256 (see lr_scaling)
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"  # peak lr = lr * f(batch_size / 256): linear | sqrt | none
    weight_decay: float = 1e-6  # L2 penalty (biases and norm layers excluded)
    momentum: float = 0.9  # SGD/LARS momentum
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    warmup_epochs: float = 10.0  # linear warm-up length in epochs (SimCLR: 10)
    warmup_steps: int = 0  # warm-up length in steps; overrides warmup_epochs when > 0
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where native, else fp16 (CUDA) / fp32
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
    progress: bool = True  # show a progress bar on an interactive terminal
    find_unused_parameters: bool = False  # DDP flag for tasks with parameters unused in some steps
    sync_batchnorm: bool = True  # convert BatchNorm to SyncBatchNorm under multi-GPU DDP

    def __post_init__(self) -> None:
        # Values that would fail deep inside the loop (a batch size of 0 divides by zero in the loader,
        # log_every=0 in the step counter) are refused where the config is read, naming the key.
        at_least = {"epochs": 1, "batch_size": 1, "log_every": 1, "keep_checkpoints": 1, "max_steps": 0,
                    "steps_per_epoch": 0, "warmup_steps": 0, "checkpoint_every": 0, "knn_every": 0,
                    "num_threads": 0, "lr": 0, "weight_decay": 0, "momentum": 0, "warmup_epochs": 0,
                    "grad_clip": 0, "checkpoint_minutes": 0, "max_minutes": 0}
        for key, low in at_least.items():
            require(getattr(self, key) >= low, f"train.{key}", f"be at least {low}", getattr(self, key))
        require(0 <= self.min_lr_ratio <= 1, "train.min_lr_ratio", "be between 0 and 1", self.min_lr_ratio)
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "train.betas",
                "be two numbers in [0, 1)", self.betas)
