"""The demo's checks on what a request sends: numbers, flags, templates and model-name fields.

Each refusal is one sentence for the person at the page (a ``gr.Error`` without a server traceback).
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
from typing import Any

import gradio as gr

from snapsight import SnapsightError
from snapsight.zeroshot import TEMPLATE_SETS, resolve_templates

TOP_K_SLIDER_MAX = 20  # the page's top-k slider; a top-k up to this is accepted whatever the label count


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def UserError(message: str, title: str = "Error") -> gr.Error:  # noqa: N802 - reads like the exception it makes
    """A message for the person at the page: shown as a toast (or raised by gradio_client), no server traceback."""
    return gr.Error(message, title=title, print_exception=False)


def template_choices() -> list[str]:
    """Template set names for the dropdown, ``default`` first."""
    return ["default"] + [name for name in TEMPLATE_SETS if name != "default"]


def templates_of(value: Any) -> tuple[str, ...]:
    """A template set name or one template (plain text with one ``{}``) -> templates; else one sentence."""
    if value is None or (isinstance(value, str) and not value.strip()):
        value = "default"
    if not isinstance(value, str):
        raise UserError("Prompt templates must be a template set name (none, default, clip80) or one template "
                        "with {} where the label goes.", title="Templates")
    try:
        return tuple(resolve_templates(value))
    except SnapsightError as e:
        raise UserError(str(e)[:1].upper() + str(e)[1:] + ".", title="Templates") from None


def _number(value: Any) -> float | None:
    """A finite float from an int/float/numeric string; None if it is not one (bools are not numbers)."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_top_k(value: Any, num_labels: int) -> int:
    """``top_k`` as an int: a whole number from 1 to max(num_labels, the slider's 20); more than the labels shows
    them all. Anything else is refused in one sentence."""
    if value is None or value == "":
        value = 5
    x = _number(value)
    most = max(num_labels, TOP_K_SLIDER_MAX)
    if x is None or x != int(x) or not 1 <= x <= most:
        raise UserError(f"Top-k must be a whole number from 1 to {most}; got {shown(value)}.", title="Top-k")
    return min(int(x), num_labels)


def validate_threshold(value: Any) -> float | None:
    """The 'none of these' threshold: a finite cosine from 0 to 1 (0 or empty = off) -> float or None."""
    if value is None or value == "":
        return None
    x = _number(value)
    if x is None or not 0.0 <= x <= 1.0:
        raise UserError("The 'none of these' threshold must be a number from 0 to 1 (a cosine similarity; 0 = off); "
                        f"got {shown(value)}.", title="Threshold")
    return x if x > 0 else None


def validate_flag(value: Any, what: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise UserError(f"{what} must be true or false; got {shown(value)}.")


def names_server_path(text: str) -> bool:
    """Whether a model-name field's text could name a file or folder on the server (checked on the text only:
    nothing is looked up, so the answer says nothing about what exists)."""
    t = text.strip()
    if t.startswith("hf-hub:"):
        return "\\" in t or ".." in t
    if t.startswith(("local-dir:", "/", "~", ".", "file:")) or "/" in t or "\\" in t or os.sep in t:
        return True
    if re.search(r"\.(json|safetensors|bin|pt|pth|ckpt|npz|onnx)$", t, flags=re.IGNORECASE):
        return True
    return bool(os.altsep and os.altsep in t)
