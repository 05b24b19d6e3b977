"""Text before the tokenizer: open_clip's clean-up, which a ``tokenizers`` file cannot express.

open_clip cleans every prompt before tokenizing (``open_clip.tokenizer.basic_clean`` and friends): ``ftfy``'s
``fix_text`` (curly quotes, ligatures, mojibake), HTML entities unescaped twice, whitespace collapsed, and for CLIP
BPE lower case. The export names the mode in its manifest (``text.clean``) and the device applies the same steps
here, without importing open_clip (and so torch).
"""
from __future__ import annotations

import html

from ..errors import SnapsightError

CLEAN_MODES = ("none", "whitespace", "lower")


def _basic_clean(text: str) -> str:
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def clean_text(text: str, mode: str) -> str:
    """``text`` as open_clip's clean function ``mode`` leaves it (``none``: unchanged)."""
    if mode == "none":
        return text
    if mode == "whitespace":
        return " ".join(_basic_clean(text).split())
    if mode == "lower":
        return " ".join(_basic_clean(text).split()).lower()
    raise SnapsightError(f"unknown text clean-up {mode!r} in the export (expected one of {', '.join(CLEAN_MODES)})")
