"""What snapsight writes and reads back, and how a name or a folder says which model it is.

- :mod:`.files`: atomic writes, safetensors weights, JSON, resumable training state;
- :mod:`.encoder`, :mod:`.classifier`, :mod:`.clip_dir`: the encoder, classifier and open_clip folders;
- :mod:`.spec`: :func:`parse_model_spec` (the one grammar for model names) and :func:`detect` (what a folder holds).
"""
from .spec import ModelSpec, detect, parse_model_spec

__all__ = ["ModelSpec", "detect", "parse_model_spec"]
