import io

import numpy as np
import pytest
from PIL import Image

from snapsight.data.images import iter_image_files, open_image
from snapsight.errors import ImageError


def _save(img, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1", "RGB"])
def test_every_mode_becomes_rgb(mode):
    img = Image.new(mode, (10, 7))
    out = open_image(img)
    assert out.mode == "RGB" and out.size == (10, 7)


def test_16bit_scaled_by_range(tmp_path):
    arr = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    p = _save(Image.fromarray(arr.astype("<u2")), tmp_path / "a.png")  # uint16 -> mode I;16
    out = np.asarray(open_image(p))
    assert out.max() > 200 and out.min() == 0


def test_transparent_becomes_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert open_image(img).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation(tmp_path):
    img = Image.new("RGB", (20, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    p = tmp_path / "r.jpg"
    img.save(p, exif=exif)
    assert open_image(p).size == (10, 20)


def test_corrupt_and_non_image(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="not an image"):
        open_image(tmp_path / "x.png")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buf, format="PNG")
    (tmp_path / "t.png").write_bytes(buf.getvalue()[:60])
    with pytest.raises(ImageError):
        open_image(tmp_path / "t.png")
    with pytest.raises(ImageError, match="not found"):
        open_image(tmp_path / "missing.png")


def test_bomb_refused_before_decoding(tmp_path):
    p = _save(Image.new("L", (3000, 3000)), tmp_path / "big.png")
    with pytest.raises(ImageError, match="pixel limit"):
        open_image(p, max_pixels=1_000_000)


def test_iter_image_files(tmp_path):
    (tmp_path / "a" / ".hidden").mkdir(parents=True)
    for name in ["a/1.PNG", "a/2.jpg", "a/.hidden/3.png", "b.txt", "c.webp"]:
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert found == ["c.webp", "a/1.PNG", "a/2.jpg"]  # a folder's files, then its sub-folders (os.walk's order)


def test_iter_image_files_lists_but_does_not_enter_a_linked_folder(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.png").write_bytes(b"")
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "y.png").write_bytes(b"")
    (tmp_path / "top" / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "top" / "z.png").symlink_to(tmp_path / "real" / "x.png")  # a linked file is a file
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path / "top")]
    assert found == ["top/y.png", "top/z.png"]
