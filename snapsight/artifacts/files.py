"""Checkpoints and run directories.

Everything snapsight writes that a later stage reads is pickle-free: weights are safetensors, metadata
is JSON, and the training state (optimizer, scheduler, RNG) is loaded with ``torch.load(weights_only=True)``.
Every write is atomic: data goes to a temporary file in the same folder and is renamed over the target,
so a killed process never leaves a half-written file behind.

A pretraining run directory looks like::

    RUN_DIR/
      config.yaml              the fully resolved config
      encoder/                 the exported backbone: what ``--encoder RUN_DIR`` finds
        model.safetensors
        config.json            {"kind": "snapsight-encoder", "backbone": ..., "preprocessing": ...}
      checkpoints/latest.json  names the last complete checkpoint
      checkpoints/step-N/      model.safetensors, meta.json, state.pt (optimizer/scheduler/RNG; weights_only)
      metrics.jsonl, loss_curve.png
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SnapsightError

if TYPE_CHECKING:  # pragma: no cover
    import torch

# torch and safetensors.torch are imported inside the functions that need them: reading JSON and the folder
# layouts must not pull in torch (the on-device path and `detect` run without it).


def _atomic_target(path: str | Path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return path, Path(tmp)


def _commit(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path, tmp = _atomic_target(path)
    try:
        tmp.write_bytes(data)
        _commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; when the block ends normally it replaces ``path`` (a folder
    already there is removed first), and on any error it is removed, leaving ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temp file + rename. Only save tensors/containers/primitives so that
    :func:`load_training_state` can read it back with ``weights_only=True``."""
    import torch

    path, tmp = _atomic_target(path)
    try:
        torch.save(obj, tmp)
        _commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a resumable training state without executing pickled code (``weights_only=True``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise SnapsightError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or untrusted (pickled code) files
        raise SnapsightError(
            f"cannot load checkpoint {path}: it is corrupt or contains objects other than tensors "
            f"(refused for safety): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e


def save_weights(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Atomically save a state dict as safetensors (tensors made contiguous, shared storage cloned)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    path, tmp = _atomic_target(path)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        _commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise SnapsightError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise SnapsightError(f"{path} is not a valid safetensors file ({e}); re-export it or pass another file") from e


def state_dict_hash(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer of ``model`` (names, dtypes, shapes and bytes).

    The identity of weights held in memory (feature-cache and label-index keys); any changed tensor changes it.
    """
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise SnapsightError(f"file not found: {path}") from e
    except json.JSONDecodeError as e:
        raise SnapsightError(f"{path} is not valid JSON: {e}") from e


def cache_root() -> Path:
    """snapsight's cache folder: ``$SNAPSIGHT_CACHE``, else ``$XDG_CACHE_HOME/snapsight``, else ``~/.cache/snapsight``.

    The label-index, feature and default-model caches live below it (one place to move or clear).
    """
    env = os.environ.get("SNAPSIGHT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snapsight"
