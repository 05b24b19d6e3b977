"""Image preprocessing as data, in numpy and PIL: the same tensor the model's torch path computes.

An export stores its preprocessing as a JSON record (:func:`check_preprocessing` lists the fields); ``flavor`` says
whose resize and crop rules to follow, because they differ in rounding:

- ``snapsight``: :class:`snapsight.preprocessing.Preprocessing` (probe classifiers): shorter side to ``size`` with
  ``round``, crop at ``(new - size) // 2``; or ``squash`` to a square;
- ``open_clip``: open_clip's eval transform, i.e. torchvision's ``Resize(size)`` on a PIL image (long side
  truncated with ``int``) and ``CenterCrop`` (offset ``round((new - size) / 2)``, zero padding when smaller);
- ``hf``: transformers' ``CLIPImageProcessor`` (shortest edge to ``size`` with ``int``, crop at
  ``(new - crop) // 2``). transformers 5 resizes with torchvision on tensors (antialiased bicubic); PIL's bicubic
  is a close but not bit-equal twin (the tests measure the difference).

Every flavor then scales to ``[0, 1]``, subtracts ``mean`` and divides by ``std`` in float32, in the torch path's
order, so ``snapsight`` and ``open_clip`` give the torch tensor exactly.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..errors import SnapsightError

FLAVORS = ("snapsight", "open_clip", "hf")
RESIZE_MODES = ("shortest", "squash")
_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
             "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


def check_preprocessing(p: dict[str, Any]) -> dict[str, Any]:
    """Validate an export's preprocessing record: ``flavor``, ``resize`` (shortest | squash), ``size`` (resize
    target), ``crop`` (square side the model sees), ``interpolation``, ``mean`` and ``std`` (3 floats each)."""
    try:
        out = {"flavor": str(p["flavor"]), "resize": str(p["resize"]), "size": int(p["size"]),
               "crop": int(p["crop"]), "interpolation": str(p["interpolation"]),
               "mean": [float(x) for x in p["mean"]], "std": [float(x) for x in p["std"]]}
    except (KeyError, TypeError, ValueError) as e:
        raise SnapsightError(f"the export's preprocessing record is incomplete or malformed ({e})") from e
    if out["flavor"] not in FLAVORS or out["resize"] not in RESIZE_MODES or out["interpolation"] not in _RESAMPLE \
            or len(out["mean"]) != 3 or len(out["std"]) != 3:
        raise SnapsightError(f"unsupported preprocessing in the export: {p}")
    return out


def _resize_shortest(img: Image.Image, size: int, flavor: str, resample: int) -> Image.Image:
    w, h = img.size
    if flavor == "snapsight":
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    else:  # torchvision and transformers: the long side truncated
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
        if (nw, nh) == (w, h):
            return img
    return img.resize((nw, nh), resample)


def _crop(img: Image.Image, crop: int, flavor: str) -> np.ndarray:
    """Centre crop ``(crop, crop, 3)`` uint8, with each flavor's offset rule (zero padding where smaller)."""
    a = np.asarray(img, dtype=np.uint8)
    h, w = a.shape[:2]
    if h < crop or w < crop:  # torchvision pads with zeros before cropping; snapsight/hf never get here
        ph, pw = max(crop - h, 0), max(crop - w, 0)
        a = np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        h, w = a.shape[:2]
    if flavor == "open_clip":
        top, left = round((h - crop) / 2.0), round((w - crop) / 2.0)
    else:
        top, left = (h - crop) // 2, (w - crop) // 2
    return a[top:top + crop, left:left + crop]


def preprocess_image(img: Image.Image, p: dict[str, Any]) -> np.ndarray:
    """RGB PIL image -> normalised float32 ``(3, crop, crop)`` (``p``: a checked preprocessing record)."""
    resample = _RESAMPLE[p["interpolation"]]
    if p["resize"] == "squash":
        pixels = np.asarray(img.resize((p["crop"], p["crop"]), resample), dtype=np.uint8)
    else:
        pixels = _crop(_resize_shortest(img, p["size"], p["flavor"], resample), p["crop"], p["flavor"])
    x = pixels.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    mean = np.asarray(p["mean"], dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(p["std"], dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def preprocess_batch(images: Sequence[Image.Image], p: dict[str, Any]) -> np.ndarray:
    """RGB PIL images -> ``(batch, 3, crop, crop)`` float32."""
    return np.stack([preprocess_image(im, p) for im in images])
