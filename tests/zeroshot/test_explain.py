"""Why-this-label heatmaps: shape and range on a real (tiny, random) open_clip model, and the gradient
saliency checked against finite differences and a model that only looks at half the image."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from snapsight.zeroshot.explain import (
    explain_label,
    gradient_saliency,
    overlay_heatmap,
    patch_similarity,
    supports_patch_similarity,
)
from tests.demo.tiny_clip import make_tiny_clip_dir


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import open_clip

    d = make_tiny_clip_dir(tmp_path_factory.mktemp("tiny-clip"))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{d}")
    return model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{d}")


def _photo(w=48, h=40, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("method", ["gradient", "patch"])
def test_heatmap_shape_and_range(tiny_clip, method):
    model, preprocess, tokenizer = tiny_clip
    exp = explain_label(model, preprocess, tokenizer, _photo(), "cat", method=method, samples=2)
    assert exp.heatmap.shape == (32, 32) and exp.heatmap.dtype == np.float32
    assert np.isfinite(exp.heatmap).all()
    assert exp.heatmap.min() >= 0.0 and exp.heatmap.max() <= 1.0 and exp.heatmap.max() > 0.5
    assert exp.image.size == exp.overlay.size == (224, 224)
    assert exp.method == method and exp.label == "cat"


def test_bf16_weights_work(tiny_clip):
    """The zero-shot loader may keep weights in bf16 on CPUs that have it; inputs must follow."""
    import copy

    model, preprocess, tokenizer = tiny_clip
    half = copy.deepcopy(model).to(torch.bfloat16)
    for method in ("gradient", "patch"):
        exp = explain_label(half, preprocess, tokenizer, _photo(), "cat", method=method, samples=2)
        assert exp.heatmap.shape == (32, 32) and np.isfinite(exp.heatmap).all() and exp.heatmap.max() > 0


def test_auto_uses_gradient_and_bad_method_is_refused(tiny_clip):
    model, preprocess, tokenizer = tiny_clip
    assert supports_patch_similarity(model)
    assert explain_label(model, preprocess, tokenizer, _photo(), "dog", samples=1).method == "gradient"
    with pytest.raises(ValueError, match="unknown explain method"):
        explain_label(model, preprocess, tokenizer, _photo(), "dog", method="magic")


class _LinearImageModel(torch.nn.Module):
    """encode_image = flattened pixels @ W, with the right half of the image masked out."""

    def __init__(self, side=6, dim=5, mask_right=False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(3 * side * side, dim, generator=g))
        mask = torch.ones(3, side, side)
        if mask_right:
            mask[:, :, side // 2:] = 0
        self.register_buffer("mask", mask)

    def encode_image(self, x):
        return (x * self.mask).flatten(1) @ self.w


def test_gradient_saliency_matches_finite_differences():
    model = _LinearImageModel().double()
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    t = F.normalize(torch.randn(5, generator=torch.Generator().manual_seed(2)), dim=0)
    got = gradient_saliency(model.float(), x, t, samples=1, blur_sigma=0)

    @torch.no_grad()
    def score(z):
        return float(F.normalize(model.double().encode_image(z.double()), dim=-1)[0] @ t.double())

    eps = 1e-4
    fd = torch.zeros(3, 6, 6, dtype=torch.float64)
    for c in range(3):
        for i in range(6):
            for j in range(6):
                dx = torch.zeros_like(x, dtype=torch.float64)
                dx[0, c, i, j] = eps
                fd[c, i, j] = (score(x + dx) - score(x - dx)) / (2 * eps)
    ref = fd.abs().amax(dim=0).numpy()
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.99


def test_gradient_saliency_ignores_pixels_the_model_never_sees():
    model = _LinearImageModel(side=16, mask_right=True)
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(3))
    t = F.normalize(torch.randn(5), dim=0)
    sal = gradient_saliency(model, x, t, samples=4, blur_sigma=0)
    assert sal[:, 8:].max() == 0.0 and sal[:, :8].mean() > 0.1


def test_patch_similarity_refuses_non_vit():
    with pytest.raises(ValueError, match="VisionTransformer"):
        patch_similarity(_LinearImageModel(), torch.zeros(3, 6, 6), torch.ones(5))


def test_overlay_keeps_size_and_leaves_cold_regions_close_to_the_photo():
    img = Image.new("RGB", (40, 20), (200, 100, 50))
    hm = np.zeros((10, 10), dtype=np.float32)
    hm[:, 5:] = 1.0
    out = np.asarray(overlay_heatmap(img, hm, alpha=0.5), dtype=np.float32)
    assert out.shape == (20, 40, 3)
    cold = np.abs(out[:, :10] - np.array([200, 100, 50])).mean()
    hot = np.abs(out[:, 30:] - np.array([200, 100, 50])).mean()
    assert cold < hot
