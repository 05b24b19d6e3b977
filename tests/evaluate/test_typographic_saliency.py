"""The text overlay really writes the text; a perfect saliency map beats a random one."""
from __future__ import annotations

import numpy as np
import torch

from snapsight.evaluate.model import from_function
from snapsight.evaluate.saliency import deletion_insertion, saliency_check
from snapsight.evaluate.typographic import overlay_text, text_mask, wrong_labels


def test_overlay_writes_the_text_on_the_pixels():
    grey = torch.full((3, 96, 96), 0.5)
    out = overlay_text(grey, "dog")
    glyphs = torch.from_numpy(text_mask("dog", 96, 96) > 0.99)
    assert glyphs.sum() > 50  # the glyphs cover a real area
    # inside the glyphs the image is white, as drawn; far from them it is untouched
    assert torch.all(out[:, glyphs] > 0.99)
    assert torch.allclose(out[:, :10, :], grey[:, :10, :], atol=1 / 255)
    # a different word gives a different pattern of ink
    other = overlay_text(grey, "cat")
    assert (other - out).abs().amax(dim=0).gt(0.5).sum() > 20


def test_wrong_labels_are_always_wrong_and_spread():
    labels = np.arange(1000) % 4
    wrong = wrong_labels(labels, 4, seed=0)
    assert not np.any(wrong == labels)
    assert set(np.unique(wrong)) == {0, 1, 2, 3}


def _quadrant_model():
    """Class 0's logit is the brightness of the top-left quadrant: only those pixels matter."""
    def logits(x):
        q = x[:, :, :8, :8].mean(dim=(1, 2, 3)) * 10
        return torch.stack([q, torch.full_like(q, 2.0)], dim=1)

    return from_function(logits, ["lit", "other"], 16)


def test_deletion_curve_of_a_perfect_map_beats_a_random_one():
    model = _quadrant_model()
    x = torch.full((3, 16, 16), 0.9)
    perfect = np.zeros((16, 16))
    perfect[:8, :8] = 1.0

    def prob_fn(p):
        return model.logits(p).softmax(-1)

    good = deletion_insertion(prob_fn, x, perfect, target=0, steps=16)
    rng = np.random.default_rng(0)
    randoms = [deletion_insertion(prob_fn, x, rng.random((16, 16)), target=0, steps=16) for _ in range(5)]
    assert good["deletion"][0] > 0.9 and good["deletion"][-1] < 0.2
    assert all(good["deletion_auc"] < r["deletion_auc"] - 0.1 for r in randoms)
    # an inverted map (the quadrant last) is worse than random
    assert deletion_insertion(prob_fn, x, 1 - perfect, 0, 16)["deletion_auc"] > np.mean([r["deletion_auc"] for r in randoms])


def test_saliency_check_finds_the_gradient_heatmap_faithful_on_the_quadrant_model():
    model = _quadrant_model()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.7
    out = saliency_check(model, x, samples=2, steps=8)
    assert out["n"] == 3
    assert out["heatmap"]["deletion_auc"] < out["random"]["deletion_auc"]
    assert out["heatmap_beats_random"]["deletion"] == 1.0
