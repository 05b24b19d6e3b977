"""Attacks, corruptions and the typographic overlay on hand-made models whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from snapsight.evaluate.attacks import fgsm, pgd, robust_accuracy
from snapsight.evaluate.corrupt import CORRUPTIONS, SEVERITIES, corrupt
from snapsight.evaluate.model import from_function
from snapsight.evaluate.run import corruption_check, typographic_check

SIZE = 8


def brightness_model():
    """Class 1 when the mean pixel is above 0.5, else class 0; margins shrink near 0.5, so small eps flips them."""
    def logits(x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([(0.5 - m) * 40, (m - 0.5) * 40], dim=1)

    return from_function(logits, ["dark", "bright"], SIZE)


def constant_model():
    """Ignores its input entirely."""
    def logits(x):
        return torch.tensor([[2.0, 0.5, -1.0]]).expand(len(x), 3) + 0.0 * x.sum(dim=(1, 2, 3))[:, None]

    return from_function(logits, ["a", "b", "c"], SIZE)


def images(n=40, seed=0):
    """Uniform grey images at levels spread around 0.5 (the decision boundary of brightness_model)."""
    levels = np.linspace(0.45, 0.55, n)
    rng = np.random.default_rng(seed)
    x = torch.tensor(levels, dtype=torch.float32).view(-1, 1, 1, 1).expand(n, 3, SIZE, SIZE).clone()
    x += torch.from_numpy(rng.normal(0, 0.001, size=x.shape).astype(np.float32))
    labels = (levels > 0.5).astype(np.int64)
    return x.clamp(0, 1), labels


def test_eps_zero_leaves_accuracy_unchanged_and_robust_accuracy_never_rises():
    model = brightness_model()
    x, y = images()
    out = robust_accuracy(model, x, y, [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], steps=5, batch_size=16)
    clean = (model.predict_logits(x).argmax(1) == y).mean()
    assert out["clean"] == pytest.approx(clean) and out["clean"] > 0.9
    for key in ("fgsm", "pgd", "worst"):
        assert out[key][0] == pytest.approx(clean)  # eps = 0
        assert all(b <= a for a, b in zip(out[key], out[key][1:]))  # never rises
    # the attack does work: images within 4/255 of the boundary are flipped (levels 0.45..0.55 step 0.0026)
    assert out["pgd"][-1] < out["clean"] - 0.3


def test_fgsm_and_pgd_stay_in_the_ball_and_in_range():
    model = brightness_model()
    x, y = images(10)
    for adv in (fgsm(model, x, torch.as_tensor(y), 2 / 255), pgd(model, x, torch.as_tensor(y), 2 / 255, steps=4)):
        assert (adv - x).abs().max() <= 2 / 255 + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(fgsm(model, x, torch.as_tensor(y), 0.0), x)


def test_a_model_that_ignores_its_input_is_untouched_by_every_attack():
    model = constant_model()
    x, _ = images(12)
    y = np.array([0, 1, 2] * 4)
    clean = float((y == 0).mean())
    out = robust_accuracy(model, x, y, [0.0, 1 / 255, 4 / 255], steps=3)
    assert out["clean"] == pytest.approx(clean)
    assert out["fgsm"] == pytest.approx([clean] * 3) and out["pgd"] == pytest.approx([clean] * 3)
    corr = corruption_check(model, x, y, batch_size=5, seed=0, progress=False)
    assert all(a == pytest.approx(clean) for accs in corr["accuracy"].values() for a in accs)
    typo = typographic_check(model, torch.rand(12, 3, 32, 32), y, batch_size=5, seed=0, progress=False)
    assert typo["accuracy"] == pytest.approx(clean) and typo["drop"] == 0.0


def test_every_corruption_changes_the_pixels_more_at_higher_severity():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    for name in CORRUPTIONS:
        diffs = [float((corrupt(x, name, s) - x).abs().mean()) for s in SEVERITIES]
        assert diffs[0] > 0, name
        assert diffs[0] < diffs[1] < diffs[2], (name, diffs)
        out = corrupt(x, name, 3)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
