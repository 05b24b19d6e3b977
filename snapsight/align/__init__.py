"""Image-text alignment (CLIP, Radford et al. 2021) of a self-supervised image encoder with a text encoder.

The model *is* an open_clip ``CustomTextCLIP``, so what we train is exactly what plain open_clip loads:

- :mod:`.model`: the image tower (the pretrained backbone as a ``TimmModel`` trunk) and the HF text tower;
- :mod:`.loss`: symmetric InfoNCE with a learnable temperature (open_clip ``ClipLoss``), negatives gathered
  from every process; with class-labeled pairs, captions of the same class count as positives (UniCL,
  Yang et al. 2022) instead of false negatives;
- :mod:`.task`: the task :func:`snapsight.train.loop.fit` trains, with LiT-style locking of either tower;
- :mod:`.pairs`: resumable, per-process batches of pairs;
- :mod:`.run`: the recipe (:class:`AlignConfig`) and the whole run (:func:`run_alignment`).

The export is open_clip's own local-dir folder (:mod:`snapsight.artifacts.clip_dir`), so
``open_clip.create_model_and_transforms("local-dir:OUT")`` loads it offline.
"""
from .loss import clip_contrastive_loss
from .model import ClipModelSpec, build_clip_model, preprocess_cfg_for, train_transform, vision_cfg_for
from .pairs import PairLoader
from .run import AlignConfig, load_align_config, open_config_pairs, run_alignment
from .task import LOCK_MODES, AlignTask

__all__ = ["LOCK_MODES", "AlignConfig", "AlignTask", "ClipModelSpec", "PairLoader", "build_clip_model",
           "clip_contrastive_loss", "load_align_config", "open_config_pairs", "preprocess_cfg_for",
           "run_alignment", "train_transform", "vision_cfg_for"]
