"""Colour emoji rendered from Noto Color Emoji, named from Unicode."""
from __future__ import annotations

import pytest

from snapsight.data.emoji import Emoji, clean_emoji_name, find_emoji_font, list_emoji, render_all_emoji, render_emoji
from snapsight.errors import SnapsightError

try:
    find_emoji_font()
    HAVE_FONT = True
except SnapsightError:
    HAVE_FONT = False
needs_font = pytest.mark.skipif(not HAVE_FONT, reason="fonts-noto-color-emoji not installed")


def test_clean_emoji_name():
    assert clean_emoji_name("WOMANS SANDAL") == "woman's sandal"
    assert clean_emoji_name("SLICE OF PIZZA") == "slice of pizza"


@needs_font
def test_list_emoji_has_everyday_concepts_with_names_and_synonyms():
    emojis = list_emoji()
    assert len(emojis) > 1000
    by_name = {e.name: e for e in emojis}
    for name in ("cat face", "slice of pizza", "sunrise", "handbag", "athletic shoe"):
        assert name in by_name
    assert "pizza" in by_name["slice of pizza"].names
    assert by_name["cat face"].char == "\U0001F431"
    # sequence parts are not pictures on their own
    assert not any(n.startswith(("regional indicator", "emoji modifier", "zero width")) for n in by_name)
    assert len(by_name) == len(emojis)


@needs_font
def test_render_emoji_gives_square_colour_rgb_image():
    img = render_emoji(Emoji("\U0001F355", "slice of pizza"))
    assert img.mode == "RGB" and img.width == img.height > 100
    colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # a colour bitmap, not a monochrome glyph
    r, g, b = img.getpixel((0, 0))
    assert (r, g, b) == (255, 255, 255)


@needs_font
def test_render_all_emoji_resizes_and_keeps_names():
    sample = list_emoji()[:5]
    images, kept = render_all_emoji(sample, size=32)
    assert [e.name for e in kept] == [e.name for e in sample]
    assert all(im.size == (32, 32) and im.mode == "RGB" for im in images)


def test_missing_font_is_a_one_line_error(tmp_path):
    with pytest.raises(SnapsightError, match="fonts-noto-color-emoji"):
        find_emoji_font(tmp_path / "nope.ttf")
