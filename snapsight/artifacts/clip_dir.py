"""The open_clip local-dir folder: what ``snapsight align`` exports and the default model is assembled into.

The layout is open_clip's own (what ``open_clip.push_to_hf_hub.save_for_hf`` writes)::

    OUT/open_clip_config.json       {"model_cfg": {...}, "preprocess_cfg": {...}}
    OUT/open_clip_model.safetensors the whole CustomTextCLIP state dict
    OUT/config.json, tokenizer*     the text model's HF config and tokenizer (open_clip reads them
                                    from this folder: text_cfg.hf_model_name is OUT's absolute path)
    OUT/snapsight_align.json        how it was made (encoder, text tower, lock, data, steps)

so ``open_clip.create_model_and_transforms("local-dir:OUT")`` and ``open_clip.get_tokenizer("local-dir:OUT")``
load it offline. Because ``hf_model_name`` must be a path, a moved folder needs :func:`relocate_clip_dir`
(one JSON rewrite). A Hugging Face ``CLIPModel`` folder (``save_pretrained`` layout) is told apart by
:func:`is_hf_clip_dir`.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SnapsightError
from .files import atomic_write_json, read_json, save_weights
from .text_encoders import TEXT_ENCODER_ALIASES, register_text_archs, resolve_text_encoder  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

CLIP_KIND = "snapsight-clip"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
ALIGN_META = "snapsight_align.json"
MODEL_SUBDIR = "model"
# Files of an HF text model folder that open_clip needs beside the weights (config + tokenizer).
TEXT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
              "merges.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")


def save_clip_dir(
    model: nn.Module,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any],
    text_dir: str | Path,
    out_dir: str | Path,
    meta: dict[str, Any] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``out_dir`` in open_clip's local-dir layout (see the module docstring); returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text_dir = Path(text_dir)
    if text_dir.resolve() != out_dir.resolve():
        for name in TEXT_FILES:
            if (text_dir / name).is_file():
                shutil.copyfile(text_dir / name, out_dir / name)
    save_weights(state_dict if state_dict is not None else model.state_dict(), out_dir / OPEN_CLIP_WEIGHTS)
    cfg = copy.deepcopy(model_cfg)
    cfg["text_cfg"]["hf_model_pretrained"] = False  # the weights are in open_clip_model.safetensors
    _point_text_at(cfg, out_dir)
    atomic_write_json(out_dir / OPEN_CLIP_CONFIG, {"model_cfg": cfg, "preprocess_cfg": preprocess_cfg})
    atomic_write_json(out_dir / ALIGN_META, {"kind": CLIP_KIND, **(meta or {})})
    return out_dir


def _point_text_at(model_cfg: dict[str, Any], folder: Path) -> None:
    text_cfg = model_cfg.get("text_cfg", {})
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_name"] = str(folder.resolve())
        text_cfg["hf_tokenizer_name"] = str(folder.resolve())


def relocate_clip_dir(path: str | Path) -> Path:
    """Point a copied/moved aligned model folder's text tower at the folder's new location (rewrites
    ``open_clip_config.json`` in place); returns the folder. A no-op when already right."""
    path = find_clip_dir(path)
    data = read_json(path / OPEN_CLIP_CONFIG)
    before = json.dumps(data, sort_keys=True)
    _point_text_at(data["model_cfg"], path)
    if json.dumps(data, sort_keys=True) != before:
        atomic_write_json(path / OPEN_CLIP_CONFIG, data)
    return path


def find_clip_dir(path: str | Path) -> Path:
    """The open_clip folder of ``path``: the folder itself or an align run's ``model/``."""
    p = Path(path)
    for cand in (p, p / MODEL_SUBDIR):
        if (cand / OPEN_CLIP_CONFIG).is_file():
            return cand
    raise SnapsightError(f"no aligned model in {p}: expected {OPEN_CLIP_CONFIG} there or in {p / MODEL_SUBDIR}")


def load_clip_dir(path: str | Path, device: str | torch.device = "cpu"):
    """Load an aligned model with plain open_clip: ``(model, preprocess, tokenizer)``, model in eval mode
    (a moved folder is relocated first)."""
    import open_clip

    d = relocate_clip_dir(path)
    register_text_archs()
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{d}", device=device)
    return model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{d}")


def is_hf_clip_dir(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return data.get("model_type") == "clip" or "CLIPModel" in (data.get("architectures") or [])
