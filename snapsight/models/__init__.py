"""Loading models, always with the preprocessing and tokenizer of their weights: CLIP of every kind
(:func:`load_clip`), frozen image encoders for probes (:func:`load_feature_encoder`), and the offline default
model's asset (:mod:`.default`)."""
from .clip import load_clip
from .encoders import FeatureEncoder, load_feature_encoder
from .hub import LoadedClip

__all__ = ["FeatureEncoder", "LoadedClip", "load_clip", "load_feature_encoder"]
