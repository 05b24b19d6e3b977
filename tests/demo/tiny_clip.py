"""A tiny random open_clip model saved in open_clip's local-dir layout, for tests (nothing downloads).

``open_clip_config.json`` + ``open_clip_model.safetensors`` written with open_clip's own
``save_config_for_hf``, so ``open_clip.create_model_and_transforms("local-dir:" + path)`` loads it.
The BPE vocabulary (49,408 tokens) dominates its ~0.9 M parameters; everything else is a few k.
"""
from __future__ import annotations

from pathlib import Path

TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1, "mlp_ratio": 2.0},
}


def make_tiny_clip_dir(out_dir: str | Path, seed: int = 0) -> Path:
    """Build, randomly initialise (seeded) and save a tiny ViT CLIP; return the folder."""
    import open_clip
    import torch
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if (out_dir / "open_clip_model.safetensors").is_file():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    model.visual.image_mean = open_clip.OPENAI_DATASET_MEAN  # create_model sets these; save_config_for_hf reads them
    model.visual.image_std = open_clip.OPENAI_DATASET_STD
    save_config_for_hf(model, out_dir / "open_clip_config.json", model_config=TINY_CLIP_CONFIG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "open_clip_model.safetensors"))
    return out_dir


def make_random_clip_dir(out_dir: str | Path, model_name: str = "ViT-B-32", seed: int = 0) -> Path:
    """Any open_clip architecture (e.g. ``ViT-B-32``) with random weights, saved the same way: the real model's
    compute cost without downloading its weights (for load benchmarks, not for accuracy)."""
    import open_clip
    import torch
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if (out_dir / "open_clip_model.safetensors").is_file():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.create_model(model_name)  # no pretrained tag: random init, sets image_mean/std
    save_config_for_hf(model, out_dir / "open_clip_config.json", model_config=open_clip.get_model_config(model_name))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "open_clip_model.safetensors"))
    return out_dir
