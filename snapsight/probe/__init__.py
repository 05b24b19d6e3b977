"""A classifier from a pretrained encoder and a few labels: linear probe, kNN or fine-tuning, with a per-class
report, saved as a self-contained folder (:mod:`snapsight.artifacts.classifier`).

- :mod:`.features`: frozen features, embedded once and cached;
- :mod:`.heads`: the standardised linear probe (L-BFGS) and weighted kNN;
- :mod:`.finetune`: end-to-end fine-tuning on the shared training loop (LP-FT, early stopping);
- :mod:`.report`: per-class precision/recall/F1, confusion matrix, worst-confused pairs;
- :mod:`.classifier`: :class:`Classifier`, :func:`save_classifier`, :func:`load_classifier`;
- :mod:`.run`: the recipe (:class:`ProbeConfig`) and the whole run (:func:`run_probe`).
"""
from .classifier import Classifier, load_classifier, save_classifier
from .run import ProbeConfig, run_probe

__all__ = ["Classifier", "ProbeConfig", "load_classifier", "run_probe", "save_classifier"]
