"""The encoder folder that ``snapsight pretrain`` exports: ``model.safetensors`` + ``config.json``.

``config.json`` holds ``{"kind": "snapsight-encoder", "backbone": ..., "backbone_kwargs": ...,
"preprocessing": ...}``; a pretraining run directory keeps it in ``RUN_DIR/encoder/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SnapsightError
from .files import atomic_write_json, read_json, save_weights

if TYPE_CHECKING:  # pragma: no cover
    import torch

ENCODER_KIND = "snapsight-encoder"
ENCODER_SUBDIR = "encoder"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_encoder(
    out_dir: str | Path,
    backbone: str,
    state_dict: dict[str, torch.Tensor],
    preprocessing: dict[str, Any],
    backbone_kwargs: dict[str, Any] | None = None,
    num_features: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Export a backbone as ``out_dir/{model.safetensors, config.json}``; returns ``out_dir``."""
    out_dir = Path(out_dir)
    save_weights(state_dict, out_dir / WEIGHTS_NAME)
    meta = {
        "kind": ENCODER_KIND,
        "backbone": backbone,
        "backbone_kwargs": backbone_kwargs or {},
        "num_features": num_features,
        "preprocessing": preprocessing,
        **(extra or {}),
    }
    atomic_write_json(out_dir / CONFIG_NAME, meta)
    return out_dir


def find_encoder_dir(path: str | Path) -> Path:
    """Locate the exported encoder for ``--encoder PATH``: an encoder folder itself, or a run
    directory holding ``encoder/``. Raises a one-line :class:`SnapsightError` otherwise."""
    path = Path(path)
    if not path.exists():
        raise SnapsightError(f"encoder path does not exist: {path}")
    for cand in (path, path / ENCODER_SUBDIR):
        cfg = cand / CONFIG_NAME
        if cfg.is_file():
            meta = read_json(cfg)
            if meta.get("kind") == ENCODER_KIND:
                return cand
    raise SnapsightError(
        f"no snapsight encoder found in {path}: pass a `snapsight pretrain` run directory (it holds "
        f"'{ENCODER_SUBDIR}/{CONFIG_NAME}') or an exported encoder folder"
    )
