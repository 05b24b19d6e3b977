"""Resumable checkpoints of a run: ``RUN/checkpoints/step-N/{model.safetensors, meta.json, state.pt}``.

``model.safetensors`` holds ``task.state_dict()``; ``meta.json`` the position in the data (step, epoch,
batch_in_epoch), the elapsed time and the run's config; ``state.pt`` (tensors and plain containers only, read
with ``weights_only=True``) the optimizer, schedule, loss scaler and every process's RNG states.
``checkpoints/latest.json`` names the newest complete one.
"""
from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from ..errors import SnapsightError

CHECKPOINT_DIR = "checkpoints"
LATEST_NAME = "latest.json"


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run directory, or None."""
    ckpt_root = Path(out_dir) / CHECKPOINT_DIR
    pointer = ckpt_root / LATEST_NAME
    if pointer.is_file():
        path = ckpt_root / read_json(pointer)["dir"]
        if (path / "state.pt").is_file():
            return path
    return None


def save_checkpoint(out_dir: Path, task: nn.Module, opt: torch.optim.Optimizer, sched: Any, scaler: Any,
                    meta: dict[str, Any], rng_states: list[dict[str, Any]], keep: int) -> Path:
    """Write ``checkpoints/step-N/`` into a temporary folder and rename it into place, then point
    ``latest.json`` at it: a kill at any moment leaves the previous checkpoint intact. Keeps the newest ``keep``."""
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


@dataclass
class Restored:
    """What a checkpoint gives back besides the tensors loaded in place."""

    path: Path
    meta: dict[str, Any]  # step, epoch, batch_in_epoch, train_seconds, loss, config, ...
    rng_states: list[dict[str, Any]]  # one per process of the run that saved it


def restore_checkpoint(source: Path, task: nn.Module, opt: torch.optim.Optimizer, sched: Any, scaler: Any,
                       device: torch.device) -> Restored:
    """Load ``source`` (a checkpoint folder, or a run directory's latest) into task, optimizer, schedule, scaler."""
    ckpt = source if (source / "state.pt").is_file() else latest_checkpoint(source)
    if ckpt is None:
        raise SnapsightError(f"nothing to resume: no checkpoint in {source / CHECKPOINT_DIR}")
    missing, unexpected = task.load_state_dict(load_weights(ckpt / "model.safetensors", device=device), strict=False)
    if missing or unexpected:
        raise SnapsightError(f"checkpoint {ckpt} does not fit this model ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected tensors): was it made with another config?")
    meta = read_json(ckpt / "meta.json")
    state = load_training_state(ckpt / "state.pt", map_location="cpu")
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return Restored(ckpt, meta, state["rng"])


def rng_state() -> dict[str, Any]:
    """This process's torch, numpy, python (and CUDA) RNG states as tensors and lists (pickle-free)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in py))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
