"""Frozen features: load an encoder, embed a labeled source once, cache the result on disk.

Encoders (``--encoder``, parsed by :func:`snapsight.artifacts.spec.parse_model_spec` in its ``encoder`` role):

- a ``snapsight pretrain`` run directory or its ``encoder/`` folder;
- ``random:<backbone>[@<image_size>]``: a randomly initialised backbone (a baseline);
- a CLIP image tower: ``openclip:<model>[:<pretrained tag or file>]``, ``local-dir:<open_clip folder>``, an
  open_clip folder or ``snapsight align`` run, ``hf-hub:<repo>``, or ``clip:default`` (the project's default model).

A :class:`FeatureEncoder` knows how to rebuild its architecture (``arch``), so a classifier saved from it is
self-contained. The feature cache key is ``sha256(weights + architecture + preprocessing + data identity)``:
any change to the encoder's tensors (a new checkpoint, another random init) or to the data makes a new key,
so stale features are never reused.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artifacts.clip_dir import OPEN_CLIP_CONFIG
from ..artifacts.files import state_dict_hash
from ..artifacts.spec import ModelSpec, parse_model_spec, read_open_clip_config
from ..backbones import create_backbone, load_encoder
from ..errors import SnapsightError
from ..preprocessing import Preprocessing
from .clip import load_clip

log = logging.getLogger(__name__)

CACHE_VERSION = 1
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class FeatureEncoder:
    """A frozen image encoder: ``model`` maps ``(batch, 3, S, S)`` to ``(batch, num_features)``.

    ``arch`` is a JSON-able description that :func:`build_encoder_module` turns back into ``model``
    (weights loaded separately); ``source`` is what the user passed.
    """

    model: nn.Module
    preprocessing: Preprocessing
    arch: dict[str, Any]
    source: str
    num_features: int
    _hash: str | None = field(default=None, repr=False)

    @property
    def weights_hash(self) -> str:
        if self._hash is None:
            self._hash = state_dict_hash(self.model)
        return self._hash


# ---------------------------------------------------------------------------------------------------------------
# Loading encoders
# ---------------------------------------------------------------------------------------------------------------


def load_feature_encoder(spec: str | os.PathLike, device: str | torch.device = "cpu") -> FeatureEncoder:
    """Load the encoder named by ``spec`` (see module docstring) in eval mode on ``device``."""
    text = str(spec)
    parsed = parse_model_spec(text, role="encoder")
    if parsed.is_clip:
        return _load_openclip(parsed, device)
    model, prep, meta = load_encoder(text if parsed.kind == "random" else parsed.path, device=device)
    arch = {
        "type": "snapsight",
        "backbone": meta["backbone"],
        "backbone_kwargs": meta.get("backbone_kwargs", {}),
        "num_features": int(getattr(model, "num_features", meta.get("num_features") or 0)),
        "image_size": prep.image_size,
    }
    return FeatureEncoder(model, prep, arch, text, arch["num_features"])


def build_encoder_module(arch: dict[str, Any]) -> nn.Module:
    """Re-create the (randomly initialised) encoder module described by ``arch``."""
    if arch["type"] == "snapsight":
        return create_backbone(arch["backbone"], image_size=int(arch.get("image_size", 224)), **arch.get("backbone_kwargs", {}))
    if arch["type"] == "openclip":
        return _openclip_visual_from_cfg(arch["model_cfg"])
    raise SnapsightError(f"unknown encoder type '{arch['type']}' in classifier metadata")


# --- CLIP image towers -----------------------------------------------------------------------------------------


class _ClipImageTower(nn.Module):
    """Wraps open_clip's ``model.visual`` so that ``forward`` gives image embeddings ``(batch, embed_dim)``."""

    def __init__(self, visual: nn.Module, embed_dim: int):
        super().__init__()
        self.visual = visual
        self.num_features = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.visual(x)
        return out[0] if isinstance(out, tuple) else out


def _openclip_visual_from_cfg(model_cfg: dict[str, Any]) -> nn.Module:
    try:
        from open_clip.model import _build_vision_tower
    except ImportError as e:  # pragma: no cover - open_clip is a dependency
        raise SnapsightError("open_clip is required for CLIP image towers: pip install open_clip_torch") from e
    visual = _build_vision_tower(model_cfg["embed_dim"], model_cfg["vision_cfg"], quick_gelu=model_cfg.get("quick_gelu", False))
    return _ClipImageTower(visual, int(model_cfg["embed_dim"]))


def with_activation_of(model_cfg: dict[str, Any], visual: nn.Module) -> dict[str, Any]:
    """``model_cfg`` with ``quick_gelu`` set as in the loaded tower.

    Tags trained with QuickGELU (e.g. ``openai``) are loaded with ``force_quick_gelu`` on a config that does not
    say so; a classifier saved with the plain config would be rebuilt with GELU and give other features.
    """
    from open_clip.transformer import QuickGELU

    quick = any(isinstance(m, QuickGELU) for m in visual.modules())
    if bool(model_cfg.get("quick_gelu", False)) == quick:
        return model_cfg
    return {**model_cfg, "quick_gelu": quick}


def _openclip_model_cfg(spec: ModelSpec, info: dict[str, Any]) -> dict[str, Any] | None:
    """The architecture config of a loaded CLIP model: from its folder's ``open_clip_config.json`` when it has one,
    else from open_clip's registry."""
    import open_clip

    for folder in (info.get("source"), spec.path if spec.kind == "open_clip_dir" else None):
        if folder and (Path(folder) / OPEN_CLIP_CONFIG).is_file():
            return read_open_clip_config(Path(folder) / OPEN_CLIP_CONFIG)
    name = info.get("name") or spec.name
    return open_clip.get_model_config(name) if name else None


def _load_openclip(spec: ModelSpec, device: str | torch.device) -> FeatureEncoder:
    """CLIP image tower through the zero-shot loader (same resolution rules as ``snapsight classify``)."""

    bundle = load_clip(spec, device="cpu")
    kind, info = bundle.info.get("kind", "open_clip"), bundle.info
    if kind != "open_clip":
        raise SnapsightError(
            f"{spec.text} is a {kind} CLIP model; probes take open_clip image towers (openclip:<model>, "
            "local-dir:<folder>, clip:default)"
        )
    visual, name = bundle.model.visual, info.get("name") or spec.name
    model_cfg = _openclip_model_cfg(spec, info)
    if model_cfg is None:
        raise SnapsightError(
            f"cannot find the open_clip architecture config of '{spec.text}', so a classifier could not be saved")
    model_cfg = with_activation_of(model_cfg, visual)
    pp = getattr(visual, "preprocess_cfg", {}) or {}
    size = pp.get("size", getattr(visual, "image_size", 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    resize = "squash" if pp.get("resize_mode") == "squash" else "shorter"
    prep = Preprocessing(image_size=size, mean=tuple(pp.get("mean", OPENAI_MEAN)), std=tuple(pp.get("std", OPENAI_STD)),
                         resize=resize)
    tower = _ClipImageTower(visual, int(model_cfg["embed_dim"]))
    arch = {"type": "openclip", "model_cfg": model_cfg, "name": str(name), "pretrained": spec.pretrained,
            "num_features": tower.num_features}
    return FeatureEncoder(tower.to(device).eval(), prep, arch, spec.text, tower.num_features)
