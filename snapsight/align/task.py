"""The alignment task the shared training loop runs: encode both sides, CLIP loss, LiT-style locking.

Locking (LiT, Zhai et al. 2022): ``lock="image"`` freezes the pretrained image trunk (weights and BatchNorm
statistics stay bit-identical) and tunes the text side; ``lock="text"`` freezes the text transformer and tunes
the image side; ``"none"`` tunes both. Projections always train.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..artifacts.clip_dir import MODEL_SUBDIR, save_clip_dir
from ..errors import SnapsightError
from ..train import distributed as dist_utils
from .loss import clip_contrastive_loss
from .model import ClipModelSpec

LOCK_MODES = ("image", "text", "none")


class AlignTask(nn.Module):
    """Contrastive image-text task for :func:`snapsight.train.loop.fit`.

    A batch is ``{"images": (B, 3, S, S), "captions": list[str], "groups": (B,) int}``. While the text
    transformer is locked its mean-pooled outputs are cached per caption string (captions generated from
    class names repeat), which makes text-locked training cost about as much as the image tower alone.
    """

    def __init__(self, spec: ClipModelSpec, lock: str = "text", weight_decay: float = 0.1,
                 meta: dict[str, Any] | None = None, max_cache: int = 200_000):
        super().__init__()
        if lock not in LOCK_MODES:
            raise SnapsightError(f"lock must be one of {', '.join(LOCK_MODES)}, got '{lock}'")
        self.model = spec.model
        self.spec_cfg = (spec.model_cfg, spec.preprocess_cfg)
        self.text_dir = spec.text_dir
        self.tokenizer = spec.tokenizer
        self.lock = lock
        self.weight_decay = weight_decay
        self.meta = dict(meta or {})
        self.meta.setdefault("model", spec.info)
        self._cache: dict[str, torch.Tensor] = {}
        self._max_cache = max_cache
        if lock == "image":
            for p in self.model.visual.trunk.parameters():
                p.requires_grad_(False)
        if lock == "text":
            for p in self.model.text.transformer.parameters():
                p.requires_grad_(False)

    # Locked towers stay in eval mode: BatchNorm statistics frozen, dropout off (so cached text is exact).
    def train(self, mode: bool = True) -> "AlignTask":
        super().train(mode)
        if self.lock == "image":
            self.model.visual.trunk.eval()
        if self.lock == "text":
            self.model.text.transformer.eval()
        return self

    def param_groups(self) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            # Pretrained text weights (trained when the text is not locked) are not decayed towards 0.
            if p.ndim <= 1 or name == "logit_scale" or name.startswith("text.transformer."):
                no_decay.append(p)
            else:
                decay.append(p)
        groups = [{"params": decay, "weight_decay": self.weight_decay, "lars_exclude": False},
                  {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True}]
        return [g for g in groups if g["params"]]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> L2-normalised ``(B, embed_dim)``."""
        visual = self.model.visual
        if self.lock == "image":
            with torch.no_grad():
                feats = visual.trunk(images)
            return F.normalize(visual.head(feats), dim=-1)
        return F.normalize(visual(images), dim=-1)

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """Captions -> L2-normalised ``(B, embed_dim)`` (cached pooled features when the text is locked)."""
        text = self.model.text
        if self.lock != "text":
            return F.normalize(text.proj(self._pooled_text(captions, grad=True)), dim=-1)
        new = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if new:
            if len(self._cache) + len(new) > self._max_cache:
                self._cache.clear()
            self._cache.update(zip(new, self._pooled_text(new)))
        pooled = torch.stack([self._cache[c] for c in captions]).to(self.model.logit_scale.device)
        return F.normalize(text.proj(pooled), dim=-1)

    def _pooled_text(self, captions: Sequence[str], grad: bool = False) -> torch.Tensor:
        """Mean-pooled text transformer outputs ``(n, width)`` (before the projection).

        Trailing padding columns are cut before the transformer: they are masked out of attention and of
        the mean, so the result equals open_clip's fixed-length forward while costing ~3x less. Without
        ``grad`` (the locked tower's cache) it runs without autocast, in fp32."""
        text = self.model.text
        ids = self.tokenizer(list(captions)).to(self.model.logit_scale.device)
        attn = (ids != text.config.pad_token_id).long()
        width = int(attn.sum(1).max())  # padding is on the right
        ids, attn = ids[:, :width], attn[:, :width]
        if grad:
            return text.pooler(text.transformer(input_ids=ids, attention_mask=attn), attn)
        with torch.no_grad(), torch.autocast(ids.device.type, enabled=False):
            out = text.transformer(input_ids=ids, attention_mask=attn)
            return text.pooler(out, attn).float()

    def prewarm_text(self, captions: Sequence[str], batch_size: int = 256) -> int:
        """Fill the locked-text cache for ``captions`` up front (grouped by length); returns how many were new."""
        if self.lock != "text":
            return 0
        new = sorted((c for c in dict.fromkeys(captions) if c not in self._cache), key=len)
        if len(self._cache) + len(new) > self._max_cache:
            return 0
        for i in range(0, len(new), batch_size):
            chunk = new[i:i + batch_size]
            self._cache.update(zip(chunk, self._pooled_text(chunk)))
        return len(new)

    def training_step(self, batch: dict[str, Any]) -> dict[str, Any]:
        img = self.encode_image(batch["images"])
        txt = self.encode_text(batch["captions"])
        scale = self.model.logit_scale.exp().clamp(max=100.0)  # open_clip clamps ln(scale) to ln(100)
        groups = batch.get("groups")
        if groups is not None and bool((groups < 0).all()) and not dist_utils.is_distributed():
            groups = None  # only locally: under DDP every process must run the same collectives
        loss = clip_contrastive_loss(img, txt, scale, groups)
        with torch.no_grad():
            acc = ((img @ txt.T).argmax(dim=1) == torch.arange(len(img), device=img.device)).float().mean()
        return {"loss": loss, "logit_scale": scale.detach(), "pair_acc": acc}

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)

    def export(self, out_dir: str | Path) -> Path:
        """Write the open_clip folder to ``out_dir/model`` and return it."""
        model_cfg, preprocess_cfg = self.spec_cfg
        meta = {**self.meta, "lock": self.lock}
        return save_clip_dir(self.model, model_cfg, preprocess_cfg, self.text_dir, Path(out_dir) / MODEL_SUBDIR, meta)
