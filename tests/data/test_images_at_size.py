"""open_image(min_side=...): large images are decoded (or shrunk) near the size the model needs, no smaller."""
import numpy as np
import pytest
from PIL import Image

from snapsight.data.images import SHRINK_HEADROOM, open_image, shrink_factor
from snapsight.errors import ImageError


def _gradient(w, h):
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    return Image.fromarray(np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                                           np.full((h, w, 1), 128, np.float32)], axis=2).astype(np.uint8))


def test_shrink_factor_keeps_the_headroom():
    assert shrink_factor(4000, 3000, 224) == 3000 // (SHRINK_HEADROOM * 224)
    assert shrink_factor(300, 300, 224) == 1 and shrink_factor(4000, 3000, None) == 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_large_image_comes_back_smaller_but_above_the_model_side(tmp_path, fmt):
    path = tmp_path / f"big.{fmt.lower()}"
    _gradient(2400, 1600).save(path, format=fmt)
    full = open_image(path)
    small = open_image(path, min_side=100)
    assert full.size == (2400, 1600)
    assert min(small.size) >= SHRINK_HEADROOM * 100 and min(small.size) <= 1600 // 4
    assert small.mode == "RGB"
    # the same picture: resized to one size, the two agree closely (no crop, no shift)
    a = np.asarray(full.resize((48, 32), Image.BILINEAR), dtype=np.float32)
    b = np.asarray(small.resize((48, 32), Image.BILINEAR), dtype=np.float32)
    assert np.abs(a - b).mean() < 4.0


def test_small_images_and_no_min_side_keep_every_pixel(tmp_path):
    path = tmp_path / "small.png"
    _gradient(300, 200).save(path)
    assert open_image(path, min_side=224).size == (300, 200)
    assert open_image(_gradient(3000, 2000), min_side=None).size == (3000, 2000)


def test_exif_orientation_survives_the_shrink(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    path = tmp_path / "r.jpg"
    _gradient(2000, 1000).save(path, exif=exif)
    w, h = open_image(path, min_side=64).size
    assert h > w and w >= SHRINK_HEADROOM * 64


def test_palette_and_transparent_images_shrink_too(tmp_path):
    p = tmp_path / "pal.png"
    _gradient(2000, 1200).convert("P").save(p)
    assert min(open_image(p, min_side=100).size) < 1200
    rgba = tmp_path / "t.png"
    Image.new("RGBA", (2000, 1200), (255, 0, 0, 0)).save(rgba)
    out = open_image(rgba, min_side=100)
    assert min(out.size) < 1200 and out.getpixel((0, 0)) == (255, 255, 255)


def test_the_pixel_limit_still_applies_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    Image.new("L", (3000, 3000)).save(p)
    with pytest.raises(ImageError, match="pixel limit"):
        open_image(p, max_pixels=1_000_000, min_side=32)
