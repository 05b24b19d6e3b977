"""Why-this-label heatmaps for CLIP-style zero-shot classification.

Two ways to ask "which pixels made the model pick this label":

- ``gradient`` (any model): the gradient of the cosine similarity between the image embedding and the
  label's text embedding with respect to the input pixels, its magnitude maxed over colour channels
  (Simonyan et al. 2014, "Deep Inside Convolutional Networks", eq. 1-2), averaged over a few noisy
  copies of the image (SmoothGrad, Smilkov et al. 2017) and blurred, then scaled to ``[0, 1]``.
- ``patch`` (open_clip ViTs only): every output patch token is projected into the joint space and
  compared with the text embedding (the patch-level similarity used by MaskCLIP, Zhou et al. 2022).
  Cheaper (no backward pass) but coarse (one value per patch).

The heatmap lives on the model's input grid (after resize and crop), so :class:`Explanation` also
carries ``image``: the picture exactly as the model saw it, de-normalised, for the overlay.

These functions need only ``model`` (with ``encode_image``/``encode_text``), ``preprocess``
(PIL -> ``(3, H, W)`` tensor) and ``tokenizer`` (list of str -> token tensor), the open_clip trio that
:class:`snapsight.zeroshot.ZeroShotClassifier` exposes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

EXPLAIN_METHODS = ("auto", "gradient", "patch")
DEFAULT_PROMPTS = ("a photo of a {}.", "{}")


@dataclass
class Explanation:
    """A heatmap for one (image, label) pair.

    ``heatmap``: ``(H, W)`` float32 in ``[0, 1]`` on the model's input grid; ``image``: the model's view of
    the picture (RGB, ``W x H``); ``overlay``: ``image`` with the heatmap blended on top.
    """

    label: str
    method: str
    heatmap: np.ndarray
    image: Image.Image
    overlay: Image.Image


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The weights' floating dtype (models may be held in bf16 for speed); inputs must match it."""
    try:
        for p in model.parameters():
            if p.is_floating_point():
                return p.dtype
    except AttributeError:
        pass
    return torch.float32


@torch.no_grad()
def label_text_embedding(
    model: Any, tokenizer: Callable, label: str, prompts: Sequence[str] = DEFAULT_PROMPTS
) -> torch.Tensor:
    """Unit-norm text embedding ``(dim,)`` of ``label``: the mean of its prompt embeddings, renormalised
    (the prompt ensemble of Radford et al. 2021, sec. 3.1.4)."""
    texts = [p.format(label) for p in prompts]
    tokens = tokenizer(texts).to(_model_device(model))
    emb = F.normalize(model.encode_text(tokens).float(), dim=-1).mean(dim=0)
    return F.normalize(emb, dim=-1)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(1, 1, H, W)``."""
    if sigma <= 0:
        return x
    radius = max(1, int(round(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def _to_unit_range(m: torch.Tensor, clip_percentile: float = 99.0) -> np.ndarray:
    """Scale to ``[0, 1]``: subtract the minimum, divide by a high percentile (robust to one hot pixel)."""
    m = m - m.min()
    hi = torch.quantile(m.flatten().float(), clip_percentile / 100.0)
    if not torch.isfinite(hi) or hi <= 0:
        hi = m.max()
    if hi <= 0:
        return np.zeros(tuple(m.shape), dtype=np.float32)
    return (m / hi).clamp(0, 1).cpu().numpy().astype(np.float32)


def gradient_saliency(
    model: Any,
    pixels: torch.Tensor,
    text_embedding: torch.Tensor,
    samples: int = 8,
    noise: float = 0.15,
    blur_sigma: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """SmoothGrad saliency ``(H, W)`` in ``[0, 1]`` of ``cos(encode_image(x), text_embedding)``.

    ``pixels``: one normalised image ``(3, H, W)`` or ``(1, 3, H, W)``; ``text_embedding``: ``(dim,)``.
    ``samples`` noisy copies (std ``noise`` times the image's value range) go through the model as one batch;
    ``samples=1`` gives the plain gradient. ``blur_sigma`` defaults to 1/56 of the image side.
    """
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(0)
    device = _model_device(model)
    x0 = pixels.to(device).float()
    t = F.normalize(text_embedding.to(device).float(), dim=-1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = max(1, int(samples))
    eps = torch.randn((n, *x0.shape[1:]), generator=gen).to(device)
    scale = float(x0.max() - x0.min()) or 1.0
    x = x0.expand(n, -1, -1, -1) + (eps * noise * scale if n > 1 else 0.0)
    x = x.to(_model_dtype(model)).contiguous().detach().requires_grad_(True)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.enable_grad():
            img = F.normalize(model.encode_image(x).float(), dim=-1)
            score = (img @ t).sum()
            (grad,) = torch.autograd.grad(score, x)
    finally:
        if was_training:
            model.train()
    sal = grad.float().abs().amax(dim=1).mean(dim=0, keepdim=True).unsqueeze(0)  # (1, 1, H, W)
    h, w = sal.shape[-2:]
    sigma = blur_sigma if blur_sigma is not None else max(h, w) / 56.0
    return _to_unit_range(_blur(sal, sigma)[0, 0])


def _vit_tower(model: Any):
    from open_clip.transformer import VisionTransformer

    visual = getattr(model, "visual", None)
    if isinstance(visual, VisionTransformer) and visual.proj is not None and visual.attn_pool is None:
        return visual
    return None


def supports_patch_similarity(model: Any) -> bool:
    """True for open_clip ViT image towers (class-token or average pooling, linear projection)."""
    return _vit_tower(model) is not None


@torch.no_grad()
def patch_similarity(model: Any, pixels: torch.Tensor, text_embedding: torch.Tensor) -> np.ndarray:
    """Cosine similarity of each projected patch token with the text embedding, upsampled to ``(H, W)``
    and scaled to ``[0, 1]``. Only for open_clip ViTs (see :func:`supports_patch_similarity`)."""
    visual = _vit_tower(model)
    if visual is None:
        raise ValueError("patch similarity needs an open_clip VisionTransformer image tower; use method='gradient'")
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(0)
    device = _model_device(model)
    x = pixels.to(device, _model_dtype(model)).contiguous()
    # the steps of VisionTransformer.forward, without flipping its output_tokens flag: other threads may be
    # running the same model for classification at this moment
    h = visual.transformer(visual._embeds(x))
    _, tokens = visual._pool(h)  # (1, grid*grid, width)
    if getattr(visual, "final_ln_after_pool", False):  # these towers norm only the pooled token; norm patches alike
        tokens = visual.ln_post(tokens)
    patches = F.normalize((tokens @ visual.proj).float(), dim=-1)[0]  # (grid*grid, dim)
    t = F.normalize(text_embedding.to(device).float(), dim=-1)
    grid_h, grid_w = visual.grid_size
    sim = (patches @ t).view(1, 1, grid_h, grid_w)
    sim = F.interpolate(sim.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return _to_unit_range(sim, clip_percentile=100.0)


def _denormalise(preprocess: Any, pixels: torch.Tensor) -> Image.Image:
    """The model's view of the image: undo the ``Normalize`` step of ``preprocess`` (min-max if none)."""
    x = pixels.detach().float().cpu()
    if x.dim() == 4:
        x = x[0]
    mean = std = None
    for step in getattr(preprocess, "transforms", []):
        if hasattr(step, "mean") and hasattr(step, "std"):
            mean, std = step.mean, step.std
    if mean is None and hasattr(preprocess, "mean") and hasattr(preprocess, "std"):  # snapsight Preprocessing
        mean, std = preprocess.mean, preprocess.std
    if mean is not None:
        x = x * torch.as_tensor(std).view(-1, 1, 1) + torch.as_tensor(mean).view(-1, 1, 1)
    else:
        x = (x - x.min()) / ((x.max() - x.min()) or 1.0)
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


def overlay_heatmap(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend ``heatmap`` (``(h, w)`` in ``[0, 1]``, resized to the image) over ``image`` with a colormap.

    Where the heatmap is low the photo shows through: the blend weight is ``alpha * heatmap``.
    """
    from matplotlib import colormaps

    image = image.convert("RGB")
    hm = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if hm.shape != (image.height, image.width):
        hm_img = Image.fromarray((hm * 255).astype(np.uint8), mode="L").resize(image.size, Image.BILINEAR)
        hm = np.asarray(hm_img, dtype=np.float32) / 255.0
    colours = colormaps[cmap](hm)[..., :3].astype(np.float32)
    base = np.asarray(image, dtype=np.float32) / 255.0
    weight = (alpha * (0.25 + 0.75 * hm))[..., None]
    out = base * (1 - weight) + colours * weight
    return Image.fromarray((out * 255 + 0.5).clip(0, 255).astype(np.uint8), mode="RGB")


def explain_label(
    model: Any,
    preprocess: Callable,
    tokenizer: Callable,
    image: Image.Image,
    label: str,
    method: str = "auto",
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    samples: int = 8,
    display_size: int | None = 224,
) -> Explanation:
    """Heatmap of where ``image`` (RGB PIL) matches ``label``.

    ``method``: ``"gradient"`` (any model), ``"patch"`` (open_clip ViTs) or ``"auto"`` (gradient).
    ``display_size``: the returned ``image``/``overlay`` are upscaled to at least this side for viewing
    (``heatmap`` stays on the model grid).
    """
    if method not in EXPLAIN_METHODS:
        raise ValueError(f"unknown explain method {method!r}; choose one of {', '.join(EXPLAIN_METHODS)}")
    if method == "auto":
        method = "gradient"
    pixels = preprocess(image.convert("RGB"))
    t = label_text_embedding(model, tokenizer, label, prompts)
    if method == "patch":
        heatmap = patch_similarity(model, pixels, t)
    else:
        heatmap = gradient_saliency(model, pixels, t, samples=samples)
    view = _denormalise(preprocess, pixels)
    if display_size and max(view.size) < display_size:
        s = display_size / max(view.size)
        view = view.resize((round(view.width * s), round(view.height * s)), Image.BICUBIC)
    return Explanation(label=label, method=method, heatmap=heatmap, image=view, overlay=overlay_heatmap(view, heatmap))
