"""The one function that opens images.

Every path in snapsight that turns a file (or bytes) into pixels goes through :func:`open_image`, so
the limits and conversions live here once:

- decompression bombs are refused before decoding (``max_pixels``, default 64 MP);
- with ``min_side``, a large image is decoded at a reduced size that still keeps its shorter side at least
  twice ``min_side`` (JPEG: ``Image.draft``, DCT scaling while decoding; other formats: ``Image.reduce``, a box
  filter by a whole factor): a 64 MP photo for a 224-pixel model then costs a few MB instead of ~200 MB;
- EXIF orientation is applied (phone photos come out upright);
- every mode is converted the same way to RGB: ``L``/``LA``/``P``/``RGBA`` composite onto white
  (transparency becomes background, as a viewer shows it), ``CMYK``/``YCbCr`` convert, 16- and
  32-bit single-channel images (``I;16``, ``I``, ``F``) are scaled to 8 bits by their true range;
- animated images use their first frame;
- anything unreadable raises :class:`~snapsight.errors.ImageError` with the file name and the reason.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import ImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MAX_IMAGE_PIXELS = 64_000_000  # ~8000x8000; larger files are refused before decoding

# Our own limit is enforced below; keep PIL's global check from firing first with a different message.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0 if hi > 255 else 255.0
        scale = (hi - lo) or 1.0
        arr8 = np.clip((arr - lo) / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode == "1":
        return img.convert("L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


# Decoding at reduced size keeps this many times the model's side, so the model's own (antialiased) resize
# still has real pixels to average.
SHRINK_HEADROOM = 2


def shrink_factor(width: int, height: int, min_side: int | None) -> int:
    """Largest whole factor keeping the shorter side of ``width x height`` at least ``SHRINK_HEADROOM * min_side``."""
    if not min_side or min_side < 1:
        return 1
    return max(1, min(width, height) // (SHRINK_HEADROOM * int(min_side)))


def _draft_jpeg(img: Image.Image, min_side: int | None) -> None:
    """Ask the JPEG decoder for a 1/2, 1/4 or 1/8 scale that still keeps the headroom (before ``load()``)."""
    w, h = img.size
    if img.format != "JPEG" or shrink_factor(w, h, min_side) < 2:
        return
    scale = SHRINK_HEADROOM * int(min_side) / min(w, h)
    img.draft(img.mode, (math.ceil(w * scale), math.ceil(h * scale)))


def _reduce(img: Image.Image, min_side: int | None) -> Image.Image:
    """``img`` shrunk by :func:`shrink_factor` with ``Image.reduce``; unchanged when the mode has no reduce."""
    factor = shrink_factor(img.width, img.height, min_side)
    if factor < 2:
        return img
    try:
        return img.reduce(factor)
    except (ValueError, NotImplementedError):  # e.g. palette images: reduced after the RGB conversion
        return img


def open_image(
    source: str | os.PathLike | bytes | io.IOBase | Image.Image,
    max_pixels: int | None = MAX_IMAGE_PIXELS,
    min_side: int | None = None,
) -> Image.Image:
    """Open ``source`` (path, bytes, file object or PIL image) as an upright RGB PIL image.

    ``min_side``: the side the caller's model needs; larger images come back shrunk to keep their shorter side
    at least twice that (decoded at that size where the format allows). None keeps every pixel.
    Raises :class:`ImageError` for missing, corrupt, truncated, non-image or over-large inputs.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "<image>"
    if isinstance(source, Image.Image):
        img = source
        w, h = img.size
        if max_pixels is not None and w * h > max_pixels:
            raise ImageError(f"{name}: image is {w}x{h} = {w * h:,} pixels, over the {max_pixels:,}-pixel limit")
    else:
        try:
            if isinstance(source, bytes):
                source = io.BytesIO(source)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(source)
                w, h = img.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageError(
                        f"{name}: image is {w}x{h} = {w * h:,} pixels, over the {max_pixels:,}-pixel limit "
                        "(refused as a possible decompression bomb; resize it first)"
                    )
                img.seek(0)
                _draft_jpeg(img, min_side)
                img.load()
        except ImageError:
            raise
        except FileNotFoundError as e:
            raise ImageError(f"{name}: file not found") from e
        except IsADirectoryError as e:
            raise ImageError(f"{name}: is a directory, not an image") from e
        except UnidentifiedImageError as e:
            raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from e
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from e
    img = _reduce(img, min_side)
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the picture
        pass
    return _reduce(_to_rgb(img), min_side)


def iter_image_entries(root: str | os.PathLike, extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
                       ) -> Iterator[os.DirEntry]:
    """The ``os.DirEntry`` of every image file under ``root``, in :func:`iter_image_files`' order: a folder's
    files sorted by name, then its sub-folders sorted, hidden ones skipped, symlinked folders listed but not
    entered (as ``os.walk`` does). ``entry.stat()`` gives size and mtime without building a ``Path`` per file."""
    try:
        with os.scandir(root) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:  # unreadable or removed while walking: os.walk skips it too
        return
    folders = []
    for e in entries:
        try:
            is_dir = e.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if not e.is_symlink():
                folders.append(e)
        elif e.name.lower().endswith(extensions):
            yield e
    for e in folders:
        yield from iter_image_entries(e.path, extensions)


def iter_image_files(root: str | os.PathLike, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> Iterator[Path]:
    """Yield image files under ``root`` recursively, sorted, skipping hidden files and folders."""
    for e in iter_image_entries(root, extensions):
        yield Path(e.path)
