"""Colour emoji rendered from the Noto Color Emoji font, each with its Unicode name as a caption.

About 1,400 single-code-point emoji (cat, pizza, sunrise, handbag, ...) give an offline image-text set
that covers many everyday concepts: the default zero-shot model learns from them beside Fashion-MNIST.
Names come from ``unicodedata.name`` (``"SLICE OF PIZZA"`` -> ``"slice of pizza"``), cleaned of Unicode
jargon, plus a few everyday synonyms (``"pizza"``) where they are cheap to list.

The font is Debian's ``fonts-noto-color-emoji``; it holds one bitmap strike, so glyphs are drawn at
size 109 (about 136x128 px) and composited onto a background colour.
"""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..errors import SnapsightError

NOTO_EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_FONT_SIZE = 109  # the only bitmap strike in NotoColorEmoji.ttf

# Code points that are parts of sequences, not pictures on their own.
_SKIP_PREFIXES = ("REGIONAL INDICATOR", "EMOJI MODIFIER", "TAG ", "CANCEL TAG", "VARIATION SELECTOR", "COMBINING")
_SKIP_NAMES = {"ZERO WIDTH JOINER", "COPYRIGHT SIGN", "REGISTERED SIGN", "TRADE MARK SIGN"}

# Unicode-name words that are jargon in a caption ("BLACK" means "filled" in symbol names).
_NAME_FIXES = {
    "womans": "woman's", "mans": "man's", "mens": "men's", "womens": "women's", "childrens": "children's",
}

# A few everyday wordings for common emoji; keys are cleaned names. Cheap to extend.
EMOJI_SYNONYMS: dict[str, tuple[str, ...]] = {
    "cat face": ("cat", "kitten"),
    "dog face": ("dog", "puppy"),
    "cat": ("house cat",),
    "dog": ("pet dog",),
    "slice of pizza": ("pizza",),
    "hamburger": ("burger",),
    "french fries": ("fries", "chips"),
    "sunrise": ("sun rise", "dawn"),
    "sunrise over mountains": ("mountain sunrise",),
    "sunset over buildings": ("sunset", "city sunset"),
    "automobile": ("car",),
    "oncoming automobile": ("car front",),
    "bicycle": ("bike",),
    "athletic shoe": ("sneaker", "sports shoe"),
    "man's shoe": ("shoe", "leather shoe"),
    "high-heeled shoe": ("high heels", "stiletto"),
    "woman's sandal": ("sandal",),
    "hiking boot": ("walking boot",),
    "t-shirt": ("shirt with short sleeves",),
    "jeans": ("denim trousers",),
    "dress": ("frock",),
    "woman's clothes": ("women's top",),
    "handbag": ("hand bag",),
    "purse": ("coin purse",),
    "coat": ("overcoat",),
    "necktie": ("tie",),
    "mobile phone": ("cell phone", "smartphone"),
    "personal computer": ("computer", "laptop"),
    "television": ("tv",),
    "red apple": ("apple",),
    "banana": ("bananas",),
    "hot beverage": ("coffee", "hot drink"),
    "birthday cake": ("cake",),
    "horse face": ("horse",),
    "cow face": ("cow",),
    "pig face": ("pig",),
    "mouse face": ("mouse",),
    "rabbit face": ("rabbit", "bunny"),
    "tiger face": ("tiger",),
    "monkey face": ("monkey",),
    "spouting whale": ("whale",),
    "bird": ("small bird",),
    "christmas tree": ("xmas tree",),
    "house building": ("house", "home"),
    "airplane": ("plane", "aeroplane"),
    "ship": ("boat",),
    "heavy black heart": ("heart", "red heart"),
    "soccer ball": ("football",),
    "books": ("stack of books",),
    "open book": ("book",),
}


@dataclass(frozen=True)
class Emoji:
    """One emoji: its character, cleaned Unicode name and extra wordings."""

    char: str
    name: str
    synonyms: tuple[str, ...] = field(default=())

    @property
    def codepoint(self) -> str:
        return f"U+{ord(self.char):04X}"

    @property
    def names(self) -> tuple[str, ...]:
        """The name first, then the synonyms (all wordings that caption this emoji)."""
        return (self.name, *self.synonyms)


def clean_emoji_name(unicode_name: str) -> str:
    """``"WOMANS SANDAL"`` -> ``"woman's sandal"``; lower-case, single spaces."""
    words = unicode_name.lower().replace("_", " ").split()
    return " ".join(_NAME_FIXES.get(w, w) for w in words)


def find_emoji_font(path: str | os.PathLike | None = None) -> Path:
    """The colour emoji font, or a one-sentence error saying how to install it."""
    p = Path(path) if path else Path(os.environ.get("SNAPSIGHT_EMOJI_FONT", NOTO_EMOJI_FONT))
    if not p.is_file():
        raise SnapsightError(
            f"colour emoji font not found at {p}: install it with `apt-get install fonts-noto-color-emoji` "
            "or set SNAPSIGHT_EMOJI_FONT to a NotoColorEmoji.ttf"
        )
    return p


@lru_cache(maxsize=4)
def _font(path: str) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(path, EMOJI_FONT_SIZE)
    except OSError as e:
        raise SnapsightError(f"cannot load the emoji font {path} at size {EMOJI_FONT_SIZE}: {e}") from e


def list_emoji(font_path: str | os.PathLike | None = None) -> list[Emoji]:
    """Every single-code-point emoji the font draws that has a Unicode name, sorted by code point."""
    from fontTools.ttLib import TTFont

    path = find_emoji_font(font_path)
    cmap = TTFont(str(path), lazy=True).getBestCmap()
    out: list[Emoji] = []
    seen: set[str] = set()
    for cp in sorted(cmap):
        if cp < 0x80:  # digits, '#', '*': keycap parts
            continue
        uname = unicodedata.name(chr(cp), "")
        if not uname or uname in _SKIP_NAMES or uname.startswith(_SKIP_PREFIXES):
            continue
        if unicodedata.category(chr(cp)) in ("Mn", "Me", "Cf", "Sk"):
            continue
        name = clean_emoji_name(uname)
        if name in seen:
            continue
        seen.add(name)
        out.append(Emoji(chr(cp), name, EMOJI_SYNONYMS.get(name, ())))
    return out


def render_emoji(
    emoji: Emoji | str,
    font_path: str | os.PathLike | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    pad: int = 8,
) -> Image.Image:
    """Draw one emoji as a square RGB image (about 150 px) on ``background``, centred with ``pad`` px margin."""
    char = emoji.char if isinstance(emoji, Emoji) else emoji
    font = _font(str(find_emoji_font(font_path)))
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((8, 8), char, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        raise SnapsightError(f"the emoji font draws nothing for {char!r} (U+{ord(char[0]):04X})")
    glyph = canvas.crop(box)
    side = max(glyph.size) + 2 * pad
    square = Image.new("RGBA", (side, side), (*background, 255))
    square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return square.convert("RGB")


def render_all_emoji(
    emojis: list[Emoji] | None = None, font_path: str | os.PathLike | None = None, size: int | None = None
) -> tuple[list[Image.Image], list[Emoji]]:
    """Render ``emojis`` (default: all of :func:`list_emoji`); skip any the font draws empty.

    ``size`` resizes each image to ``size x size`` (bicubic) to save memory. Returns ``(images, emojis)``.
    """
    emojis = list_emoji(font_path) if emojis is None else emojis
    images, kept = [], []
    for e in emojis:
        try:
            img = render_emoji(e, font_path)
        except SnapsightError:
            continue
        if size:
            img = img.resize((size, size), Image.BICUBIC)
        images.append(img)
        kept.append(e)
    return images, kept
