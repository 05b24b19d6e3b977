"""The alignment recipe (:class:`AlignConfig`) and the whole run: build the model, read the pairs, train, export."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from ..config import load_config, require, save_config, to_dict
from ..data.captions import CLASS_TEMPLATES, ConcatPairs, open_pairs, read_synonyms
from ..errors import SnapsightError
from ..runtime import seed_everything
from ..train import distributed as dist_utils
from ..train.loop import FitResult, TrainConfig, fit, setup_device
from .model import build_clip_model, train_transform
from .pairs import PairLoader
from .task import AlignTask

log = logging.getLogger(__name__)


def _align_train_defaults() -> TrainConfig:
    return TrainConfig(epochs=5, optimizer="adamw", lr=5e-4, lr_scaling="linear", weight_decay=0.1,
                       warmup_epochs=0.5, betas=[0.9, 0.98], knn_every=0)


@dataclass
class AlignConfig:
    RETIRED_KEYS = {k: "a text-side option that measured no gain (docs/default-model.md)"
                    for k in ("text_proj_identity", "text_unlocked_layers", "text_lr_scale")}

    image_encoder: str = ""  # snapsight pretrain run/encoder folder, or random:<backbone>@<size>
    text_encoder: str = "minilm"  # minilm (all-MiniLM-L6-v2), mpnet (all-mpnet-base-v2) or a Hugging Face folder
    pairs: list[str] = field(default_factory=list)  # pairs sources (see snapsight.data.captions.open_pairs)
    lock: Literal["image", "text", "none"] = "text"  # which pretrained tower stays frozen (image = LiT)
    embed_dim: int = 0  # joint space size (0: text width when text_proj is none, else 256)
    text_proj: Literal["none", "linear", "mlp"] = "none"  # projection after the text encoder
    image_proj: Literal["linear", "mlp"] = "linear"  # projection after the image trunk
    context_length: int = 32  # tokens per caption
    synonyms: str = ""  # optional synonyms file for class-labeled pairs ("class: a | b | c" lines)
    templates: list[str] = field(default_factory=list)  # caption templates for class-labeled pairs ([]: built-in)
    num_workers: int = 0  # data-loader worker processes
    train: TrainConfig = field(default_factory=_align_train_defaults)  # the shared training loop's settings

    def __post_init__(self) -> None:
        require(self.embed_dim >= 0, "embed_dim", "be 0 (automatic) or a positive size", self.embed_dim)
        require(self.context_length >= 1, "context_length", "be at least 1 token", self.context_length)
        require(self.num_workers >= 0, "num_workers", "be 0 or more", self.num_workers)


def load_align_config(path: str | Path | None = None, overrides: Sequence[Any] = ()) -> AlignConfig:
    """Typed :class:`AlignConfig` from a YAML file or packaged recipe name (``"align-default"``) + overrides
    (``train.*`` keys go to the loop's TrainConfig); ``path`` None starts from the defaults."""
    # alignment's loop defaults (AdamW, CLIP's betas, ...) lie under the file's values, not TrainConfig's own
    return load_config(AlignConfig, path, overrides, base={"train": to_dict(_align_train_defaults())})


def open_config_pairs(cfg: AlignConfig) -> Any:
    """The pairs named by ``cfg.pairs`` (several sources are concatenated)."""
    if not cfg.pairs:
        raise SnapsightError("no image-text pairs given: pass --pairs DATA")
    synonyms = read_synonyms(cfg.synonyms) if cfg.synonyms else None
    templates = tuple(cfg.templates) or CLASS_TEMPLATES
    parts = [open_pairs(s, templates, synonyms) for s in cfg.pairs]
    return parts[0] if len(parts) == 1 else ConcatPairs(parts)


def run_alignment(cfg: AlignConfig, out_dir: str | Path, pairs: Any = None, resume: bool = False,
                  extra_meta: dict[str, Any] | None = None) -> FitResult:
    """Build the model, train it with the shared loop, export ``out_dir/model``; returns the ``FitResult``.

    ``pairs`` given (e.g. the default model's, made in code) replaces the sources named by ``cfg.pairs``."""
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
    task = AlignTask(spec, cfg.lock, cfg.train.weight_decay, meta)
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
