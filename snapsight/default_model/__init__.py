"""The offline default zero-shot model: what ``classify`` and the demo use when no ``--model`` is given.

It is small and honest about it: a ResNet-10-T image tower (32 px), SimCLR-pretrained on Fashion-MNIST and
aligned with the bundled, frozen all-mpnet-base-v2 sentence encoder on Fashion-MNIST images captioned with many everyday
wordings (widened with WordNet), ~1,200 colour emoji captioned with their Unicode names and ~700 Tux Paint stamps
captioned with their descriptions. It knows clothing and, roughly, emoji-like pictures and cut-outs of everyday
things, and it carries a reference of its training images so that results say when an image is unfamiliar; real
photos need a pretrained CLIP (``--model ViT-B-32 --pretrained laion2b_s34b_b79k``).

- :mod:`.wordings`: the training captions (WordNet words, stamp captions) and the held-out lists the evaluation
  uses;
- :mod:`.build`: the build (``snapsight build-default-model``) on the packaged recipes ``simclr-default-model``
  and ``align-default``;
- :mod:`.reference`: the unfamiliar-image reference of the built model;
- :mod:`snapsight.models.default`: the committed asset and its assembly into an open_clip folder.
"""
from ..models.default import DEFAULT_MODEL_NAME, default_model_dir, find_default_asset
from .build import build_default_model, default_align_config, default_pairs, default_pretrain_config
from .wordings import EVAL_WORDINGS, TEST_WORDINGS, TRAIN_WORDINGS, heldout_phrases

__all__ = ["DEFAULT_MODEL_NAME", "EVAL_WORDINGS", "TEST_WORDINGS", "TRAIN_WORDINGS", "build_default_model",
           "default_align_config", "default_model_dir", "default_pairs", "default_pretrain_config",
           "find_default_asset", "heldout_phrases"]
