"""The example pictures shipped with the demo (``snapsight/assets/examples/``) and how they were made.

Photos come from scikit-image's bundled samples (public domain / CC0, see ``skimage.data``), emoji are
rendered from Noto Color Emoji (SIL OFL 1.1). Rebuild with ``python -m snapsight.demo.examples``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"

# file name -> labels suggested for it in the demo
EXAMPLE_LABELS = {
    "cat.jpg": "cat, dog, coffee, rocket, pizza",
    "coffee.jpg": "coffee, tea, cat, pizza, rocket",
    "rocket.jpg": "rocket, airplane, cat, coffee, building",
    "astronaut.jpg": "astronaut, cat, rocket, coffee, pizza",
    "emoji-pizza.png": "pizza, cat, sunset, coffee, rocket",
    "emoji-cat.png": "cat, pizza, sunset, dog, rocket",
    "emoji-sunset.png": "sunset, pizza, cat, coffee, rocket",
}
_PHOTOS = {"cat.jpg": "chelsea", "coffee.jpg": "coffee", "rocket.jpg": "rocket", "astronaut.jpg": "astronaut"}
_EMOJI = {"emoji-pizza.png": "\U0001F355", "emoji-cat.png": "\U0001F431", "emoji-sunset.png": "\U0001F305"}


def example_files(knows_photos: bool = True) -> list[Path]:
    """The shipped example images that exist, in :data:`EXAMPLE_LABELS` order; without the photographs when the
    loaded model does not know photos (the offline default model: trained on garments, emoji and cut-out
    stamps, it flags scene photos as unfamiliar), so that every example shows what the model can do."""
    names = [n for n in EXAMPLE_LABELS if knows_photos or n not in _PHOTOS]
    return [EXAMPLES_DIR / name for name in names if (EXAMPLES_DIR / name).is_file()]


def render_emoji(char: str, font_path: str = EMOJI_FONT) -> Image.Image:
    """Render one emoji on white with the colour font (bitmap strike 109 px), tightly cropped, RGB."""
    font = ImageFont.truetype(font_path, 109)
    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((8, 8), char, font=font, embedded_color=True)
    box = canvas.getbbox() or (0, 0, 160, 160)
    glyph = canvas.crop(box)
    out = Image.new("RGB", (glyph.width + 16, glyph.height + 16), (255, 255, 255))
    out.paste(glyph, (8, 8), glyph)
    return out


def build_examples(out_dir: Path = EXAMPLES_DIR, max_side: int = 192) -> list[Path]:
    """Write the example images into ``out_dir`` (photos as JPEG at ``max_side``, emoji as PNG)."""
    from PIL import Image
    from skimage import data

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, sample in _PHOTOS.items():
        img = Image.fromarray(getattr(data, sample)()).convert("RGB")
        img.thumbnail((max_side, max_side), Image.LANCZOS)
        img.save(out_dir / name, quality=85, optimize=True)
        written.append(out_dir / name)
    for name, char in _EMOJI.items():
        render_emoji(char).save(out_dir / name, optimize=True)
        written.append(out_dir / name)
    return written


if __name__ == "__main__":
    for path in build_examples():
        print(f"{path}  {path.stat().st_size / 1024:.1f} KiB")
    sys.exit(0)
