import io

import numpy as np
import pytest
import torch
from PIL import Image

from snapsight.data.images import open_image
from snapsight.data.sources import load_square
from snapsight.preprocessing import Preprocessing
from snapsight.ssl.augment import AugmentConfig, SimCLRViewTransform, _hsv_to_rgb, _rgb_to_hsv, simclr_pil_transform

PREP = Preprocessing(image_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def _images_in_every_mode(size=20):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray((rng.random((size, size + 3, 3)) * 255).astype("uint8"))
    gray16 = Image.fromarray((rng.random((size, size)) * 65535).astype("uint16"))
    return {
        "RGB": rgb, "L": rgb.convert("L"), "LA": rgb.convert("LA"), "RGBA": rgb.convert("RGBA"),
        "P": rgb.convert("P"), "CMYK": rgb.convert("CMYK"), "1": rgb.convert("1"), "I;16": gray16,
        "I": gray16.convert("I"), "F": rgb.convert("F"), "YCbCr": rgb.convert("YCbCr"),
    }


def _check_views(views, batch, prep=PREP):
    lo = (0 - torch.tensor(prep.mean)) / torch.tensor(prep.std)
    hi = (1 - torch.tensor(prep.mean)) / torch.tensor(prep.std)
    for v in views:
        assert v.shape == (batch, 3, prep.image_size, prep.image_size) and v.dtype == torch.float32
        assert torch.isfinite(v).all()
        per_channel = v.permute(1, 0, 2, 3).reshape(3, -1)
        assert (per_channel.min(1).values >= lo - 1e-4).all() and (per_channel.max(1).values <= hi + 1e-4).all()


@pytest.mark.parametrize("mode", list(_images_in_every_mode()))
def test_every_image_mode(mode):
    img = _images_in_every_mode()[mode]
    if mode == "YCbCr":
        rgb = open_image(img)  # no common file format stores it; convert the in-memory image
    else:
        buf = io.BytesIO()
        img.save(buf, format="TIFF")
        rgb = open_image(buf.getvalue())
    batch = torch.from_numpy(np.stack([load_square(rgb, 20)] * 4))
    assert batch.shape == (4, 3, 20, 20) and batch.dtype == torch.uint8
    for blur in ("off", "on"):
        transform = SimCLRViewTransform(AugmentConfig(blur=blur), PREP)
        _check_views(transform(batch), 4)
    pil = simclr_pil_transform(AugmentConfig(), PREP)
    _check_views([pil(rgb).unsqueeze(0)], 1)


def test_grayscale_batches_and_blur_at_64px():
    prep = Preprocessing(image_size=64, mean=(0.3,) * 3, std=(0.3,) * 3)
    gray = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)  # (B, H, W) like Fashion-MNIST
    transform = SimCLRViewTransform(AugmentConfig.recommended(64), prep)
    assert transform.blur
    _check_views(transform(gray), 3, prep)
    a, b = transform(gray)
    assert torch.equal(a[:, 0], a[:, 1]) and torch.equal(a[:, 1], a[:, 2])  # gray stays gray
    assert not torch.equal(a, b)  # two different views


def test_identity_settings_reproduce_the_input():
    cfg = AugmentConfig(crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0], hflip_p=0.0, jitter_p=0.0, gray_p=0.0,
                        blur="off")
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    view, _ = SimCLRViewTransform(cfg, PREP)(x)
    expected = (x.float() / 255 - torch.tensor(PREP.mean).view(1, 3, 1, 1)) / torch.tensor(PREP.std).view(1, 3, 1, 1)
    assert torch.allclose(view, expected, atol=1e-5)
    flipped, _ = SimCLRViewTransform(AugmentConfig(**{**cfg.__dict__, "hflip_p": 1.0}), PREP)(x)
    assert torch.allclose(flipped, expected.flip(-1), atol=1e-5)


def test_hsv_round_trip():
    x = torch.rand(4, 3, 5, 5)
    assert torch.allclose(_hsv_to_rgb(_rgb_to_hsv(x)), x, atol=1e-5)


def test_bad_shapes_rejected():
    with pytest.raises(ValueError):
        SimCLRViewTransform(AugmentConfig(), PREP)(torch.zeros(2, 2, 8, 8, dtype=torch.uint8))


def test_bad_blur_setting_is_a_config_error():
    """`--set augment.blur=maybe` printed a ValueError traceback; a ConfigError is one `error:` line."""
    from snapsight.errors import ConfigError
    from snapsight.ssl.augment import AugmentConfig

    with pytest.raises(ConfigError, match="augment.blur"):
        AugmentConfig(blur="maybe").blur_enabled(32)
