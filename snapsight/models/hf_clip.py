"""Hugging Face ``CLIPModel`` folders and Hub repos behind open_clip's interface."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ..artifacts.files import state_dict_hash
from ..artifacts.spec import WEIGHT_SUFFIXES
from ..errors import SnapsightError
from .hub import LoadedClip, fingerprint, hub_offline, not_available, offline_hub

log = logging.getLogger(__name__)


class HFCLIPAdapter(nn.Module):
    """open_clip's interface over a transformers ``CLIPModel`` (``get_image_features``/``get_text_features``).

    ``logit_scale`` is the model's log-scale parameter, as in open_clip (``logit_scale.exp()`` multiplies
    cosines). transformers 5 returns ``BaseModelOutputWithPooling`` from ``get_*_features``; the projected
    embedding is its ``pooler_output``.
    """

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model
        self.logit_scale = hf_model.logit_scale
        self.logit_bias = getattr(hf_model, "logit_bias", None)
        text_cfg = hf_model.config.text_config
        self.context_length = int(text_cfg.max_position_embeddings)
        self.eos_token_id = getattr(text_cfg, "eos_token_id", None)

    @staticmethod
    def _pooled(out: Any) -> torch.Tensor:
        return out.pooler_output if hasattr(out, "pooler_output") else out

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self._pooled(self.hf.get_image_features(pixel_values=image))
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self._pooled(self.hf.get_text_features(input_ids=text))
        return F.normalize(x, dim=-1) if normalize else x


class HFTokenizer:
    """transformers tokenizer -> open_clip-style ``(n, context_length)`` token ids (padded, truncated)."""

    def __init__(self, tokenizer: Any, context_length: int):
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.pad_token_id = tokenizer.pad_token_id
        self.eos_token_id = tokenizer.eos_token_id

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = self.tokenizer(texts, padding="max_length", truncation=True,
                             max_length=context_length or self.context_length, return_tensors="pt")
        return out["input_ids"]


def load_hf_clip(source: str, is_dir: bool, cache_dir: str | None) -> LoadedClip:
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    offline = False if is_dir else hub_offline()
    kwargs: dict[str, Any] = {"cache_dir": cache_dir} if cache_dir else {}
    if offline:
        kwargs["local_files_only"] = True
    try:
        with offline_hub(offline):
            hf_model = CLIPModel.from_pretrained(source, **kwargs)
            tok = AutoTokenizer.from_pretrained(source, **kwargs)
            processor = AutoImageProcessor.from_pretrained(source, **kwargs)
            if is_dir:
                folder = Path(source)
            else:
                from huggingface_hub import hf_hub_download

                folder = Path(hf_hub_download(source, "config.json", **kwargs)).parent
    except (OSError, ValueError) as e:
        if is_dir:
            raise SnapsightError(f"cannot load the Hugging Face CLIP folder {source}: {str(e).splitlines()[0][:300]}") from e
        raise not_available(f"the Hugging Face model {source}", offline,
                             "download it once with network access or pass --model a local folder", e) from e
    hf_model.eval()
    adapter = HFCLIPAdapter(hf_model)
    tokenizer = HFTokenizer(tok, adapter.context_length)

    def preprocess_batch(images: list[Image.Image]) -> torch.Tensor:
        return processor(images=list(images), return_tensors="pt")["pixel_values"]

    def preprocess(image: Image.Image) -> torch.Tensor:
        return preprocess_batch([image])[0]

    weights = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    info = {
        "name": source if not is_dir else folder.name,
        "pretrained": None,
        "source": str(folder),
        "kind": "hf",
        "image_size": int(hf_model.config.vision_config.image_size),
        "context_length": adapter.context_length,
        "preprocess": {k: v for k, v in processor.to_dict().items() if not k.startswith("_")},
        "fingerprint": fingerprint(weights + [folder / "config.json"]) if weights else state_dict_hash(hf_model)[:32],
    }
    return LoadedClip(model=adapter, preprocess=preprocess, tokenizer=tokenizer, info=info,
                      preprocess_batch_fn=preprocess_batch)
