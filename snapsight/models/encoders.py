"""Frozen features: load an encoder, embed a labeled source once, cache the result on disk.

Encoders (``--encoder``):

- a ``snapsight pretrain`` run directory or its ``encoder/`` folder;
- ``random:<backbone>[@<image_size>]``: a randomly initialised backbone (a baseline);
- a CLIP image tower: ``openclip:<model>[:<pretrained tag or file>]``, ``local-dir:<open_clip folder>``, a
  folder holding ``open_clip_config.json``, or ``clip:default`` (the project's default model).

A :class:`FeatureEncoder` knows how to rebuild its architecture (``arch``), so a classifier saved from it is
self-contained. The feature cache key is ``sha256(weights + architecture + preprocessing + data identity)``:
any change to the encoder's tensors (a new checkpoint, another random init) or to the data makes a new key,
so stale features are never reused.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artifacts.files import state_dict_hash
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
    if text.startswith(("openclip:", "local-dir:", "clip:")):
        return _load_openclip(text, device)
    if not text.startswith("random:"):
        for folder in (Path(text), Path(text) / "model"):  # an open_clip folder or a `snapsight align` run
            if (folder / "open_clip_config.json").is_file():
                return _load_openclip(f"local-dir:{folder}", device)
        _refuse_wrong_kind(Path(text))

    model, prep, meta = load_encoder(text, device=device)
    arch = {
        "type": "snapsight",
        "backbone": meta["backbone"],
        "backbone_kwargs": meta.get("backbone_kwargs", {}),
        "num_features": int(getattr(model, "num_features", meta.get("num_features") or 0)),
        "image_size": prep.image_size,
    }
    return FeatureEncoder(model, prep, arch, text, arch["num_features"])


def _refuse_wrong_kind(path: Path) -> None:
    """One clear sentence for the usual mix-ups: a bare weights file, a classifier, an open_clip folder."""
    if not path.exists():
        raise SnapsightError(
            f"encoder not found: {path} (pass a `snapsight pretrain` run directory, its encoder/ folder, "
            "random:<backbone>@<size>, or openclip:<model>)"
        )
    if path.is_file():
        raise SnapsightError(
            f"{path} is a file; --encoder takes a `snapsight pretrain` run directory or an encoder folder "
            "(holding config.json and model.safetensors), not a bare weights or checkpoint file"
        )
    if (path / "classifier.json").is_file():
        raise SnapsightError(
            f"{path} is a trained classifier (snapsight probe output), not an encoder; use it with "
            "`snapsight classify --model`, or pass the encoder it was trained from"
        )


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


def _parse_clip_spec(spec: str) -> tuple[str | None, str | None]:
    """``openclip:NAME[:PRETRAINED]`` / ``local-dir:DIR`` / ``clip:default`` -> ``(model, pretrained)``."""
    if spec.startswith("clip:"):
        if spec != "clip:default":
            raise SnapsightError(f"unknown CLIP encoder '{spec}'; use clip:default, openclip:<model>[:<pretrained>] or local-dir:<folder>")
        return None, None
    if spec.startswith("local-dir:"):
        return spec, None
    name, _, pretrained = spec[len("openclip:"):].partition(":")
    if not name:
        raise SnapsightError("openclip: needs a model name, e.g. openclip:ViT-B-32:laion2b_s34b_b79k")
    return name, pretrained or None


def _openclip_model_cfg(name: str | None, source: str | None) -> dict[str, Any] | None:
    import open_clip

    for folder in (source, name[len("local-dir:"):] if name and name.startswith("local-dir:") else None):
        if folder and (Path(folder) / "open_clip_config.json").is_file():
            return json.loads((Path(folder) / "open_clip_config.json").read_text())["model_cfg"]
    return open_clip.get_model_config(name) if name else None


def _load_openclip(spec: str, device: str | torch.device) -> FeatureEncoder:
    """CLIP image tower through the zero-shot loader (same resolution rules as ``snapsight classify``)."""

    model_name, pretrained = _parse_clip_spec(spec)
    bundle = load_clip(model_name, pretrained, device="cpu")
    kind, info = bundle.info.get("kind", "open_clip"), bundle.info
    if kind != "open_clip":
        raise SnapsightError(
            f"{spec} is a {kind} CLIP model; probes take open_clip image towers (openclip:<model>, "
            "local-dir:<folder>, clip:default)"
        )
    visual, source, name = bundle.model.visual, info.get("source"), info.get("name") or model_name
    model_cfg = _openclip_model_cfg(model_name if model_name and model_name.startswith("local-dir:") else name, source)
    if model_cfg is None:
        raise SnapsightError(f"cannot find the open_clip architecture config of '{spec}', so a classifier could not be saved")
    model_cfg = with_activation_of(model_cfg, visual)
    pp = getattr(visual, "preprocess_cfg", {}) or {}
    size = pp.get("size", getattr(visual, "image_size", 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    resize = "squash" if pp.get("resize_mode") == "squash" else "shorter"
    prep = Preprocessing(image_size=size, mean=tuple(pp.get("mean", OPENAI_MEAN)), std=tuple(pp.get("std", OPENAI_STD)),
                         resize=resize)
    tower = _ClipImageTower(visual, int(model_cfg["embed_dim"]))
    arch = {"type": "openclip", "model_cfg": model_cfg, "name": str(name), "pretrained": pretrained,
            "num_features": tower.num_features}
    return FeatureEncoder(tower.to(device).eval(), prep, arch, spec, tower.num_features)
