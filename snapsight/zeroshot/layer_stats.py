"""Channel statistics of intermediate layers: the image features the "unfamiliar image" flag compares.

A model's joint-space embedding says *what* an image shows, so a held-out emoji of a new thing lies as far from
the training emoji as a photo does. The mean and standard deviation of each channel of the early layers say how
the image *looks* (flat drawing on white, grey garment on black, textured photo): the style statistics of Gatys et
al. 2016 / Huang & Belongie 2017 (AdaIN), which Sastry & Oore 2020 ("Detecting out-of-distribution examples with
Gram matrices") use for out-of-distribution detection. Each layer's ``(mean, std)`` vector is L2-normalised, then
the layers are concatenated (each layer weighs the same in a cosine).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import SnapsightError


class _Enough(Exception):
    """Raised by the last hook: the layers after it need not run."""


def channel_stats(x: torch.Tensor) -> torch.Tensor:
    """``(batch, 2 * channels)``: per-channel mean and standard deviation over the spatial positions of a
    ``(batch, channels, height, width)`` map, or over the tokens of a ``(batch, tokens, channels)`` sequence."""
    x = x.float()
    if x.ndim == 4:
        flat = x.flatten(2)
    elif x.ndim == 3:
        flat = x.transpose(1, 2)
    else:
        raise SnapsightError(f"layer statistics need a (B, C, H, W) or (B, T, C) activation, got {tuple(x.shape)}")
    return torch.cat([flat.mean(-1), flat.std(-1, unbiased=False)], dim=1)


def find_layers(model: nn.Module, layers: Sequence[str]) -> list[nn.Module]:
    """The sub-modules of ``model`` named ``layers`` (``named_modules`` names); one sentence when one is missing."""
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise SnapsightError(f"the model has no layer {missing[0]!r} (its familiarity reference was made for another "
                             "architecture)")
    return [modules[name] for name in layers]


@contextlib.contextmanager
def recording_statistics(model: nn.Module, layers: Sequence[str], stop_early: bool = False,
                         ) -> Iterator[dict[str, torch.Tensor]]:
    """While the block runs, each forward pass of ``model`` in this thread stores the L2-normalised channel
    statistics (:func:`channel_stats`) of ``layers`` in the yielded dict, by layer name. With ``stop_early`` the
    pass is cut short (by an exception the caller catches, :class:`_Enough`) once every layer has been seen.
    Other threads' passes are ignored."""
    owner = threading.get_ident()
    captured: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(_module, _inputs, output):
            if threading.get_ident() != owner:
                return
            out = output[0] if isinstance(output, (tuple, list)) else output
            captured[name] = torch.nn.functional.normalize(channel_stats(out), dim=1)
            if stop_early and len(captured) == len(layers):
                raise _Enough
        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in zip(layers, find_layers(model, layers))]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def joined_statistics(captured: dict[str, torch.Tensor], layers: Sequence[str]) -> torch.Tensor:
    """The recorded statistics of ``layers``, concatenated in that order; one sentence when a layer did not run."""
    if len(captured) < len(layers) or any(name not in captured for name in layers):
        raise SnapsightError(f"layers {sorted(set(layers) - set(captured))} did not run in the image tower")
    return torch.cat([captured[name] for name in layers], dim=1)


@torch.inference_mode()
def layer_statistics(model: nn.Module, pixels: torch.Tensor, layers: Sequence[str]) -> np.ndarray:
    """``(batch, features)`` float32: for each of ``layers`` (in the order given) the L2-normalised channel
    statistics (:func:`channel_stats`) of its output while ``model.encode_image(pixels)`` runs, concatenated.
    The forward pass stops once every layer has been seen. Other threads' passes are ignored."""
    with recording_statistics(model, layers, stop_early=True) as captured:
        try:
            model.encode_image(pixels)
        except _Enough:
            pass
    return joined_statistics(captured, layers).cpu().numpy()
