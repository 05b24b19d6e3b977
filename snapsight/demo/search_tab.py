"""The demo's Search tab: an image index chosen when the demo starts (``snapsight demo --index DIR``), searched by
text or by an uploaded image; the hits come back as a gallery captioned with their scores.

Nobody at the page names a folder: the index is the launch's, and the gallery returns only that index's files, so
:meth:`SearchTab.allowed_paths` lists exactly those files (not their folders) for Gradio's ``allowed_paths``. The
query image is an upload like every other (the front door, :mod:`snapsight.demo.guard`, refuses server paths).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from snapsight import ImageError, SnapsightError
from snapsight.demo.inputs import UserError
from snapsight.search import ImageSearcher, load_searcher

log = logging.getLogger(__name__)

MAX_TOP_K = 48  # gallery size at most


def _top_k(value: Any) -> int:
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise UserError(f"Top-k must be a whole number from 1 to {MAX_TOP_K}.", title="Top-k") from None
    if not 1 <= k <= MAX_TOP_K:
        raise UserError(f"Top-k must be a whole number from 1 to {MAX_TOP_K}.", title="Top-k")
    return k


def _upload_path(payload: Any) -> str | None:
    if payload is None or payload == "":
        return None
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict) and payload.get("path"):
        return str(payload["path"])
    raise UserError("That upload has no file in it; upload the image again.")


class SearchTab:
    """The launched index with its own model (loaded once, at start) and the tab's request handler."""

    def __init__(self, index_dir: str, device: str = "auto"):
        self.index_dir = index_dir
        self.searcher: ImageSearcher = load_searcher(index_dir, device=device)  # a bad index fails at start
        self._lock = threading.Lock()  # one query at a time on the index's model

    def allowed_paths(self) -> list[str]:
        """The files the gallery may serve: the index's images, one by one."""
        return [f.path for f in self.searcher.index.files]

    def search(self, text: Any, image: Any, top_k: Any = 12) -> list[tuple[str, str]]:
        """Gallery items ``(path, "score  name")`` for a text query or an uploaded query image (not both)."""
        k = _top_k(top_k)
        text = text.strip() if isinstance(text, str) else ""
        path = _upload_path(image)
        if bool(text) == bool(path):
            raise UserError("Type a text query or upload a query image (one of the two).", title="Search")
        try:
            with self._lock:
                hits = self.searcher.search_image(path, k) if path else self.searcher.search_text(text, k)
        except ImageError as e:
            reason = str(e)[len(path):].lstrip(": ") if path and str(e).startswith(path) else str(e)
            raise UserError(f"Query image: {reason}", title="Cannot use this file") from None
        except SnapsightError as e:
            raise UserError(str(e), title="Search") from None
        return [(h.path, f"{h.score:+.3f}  {Path(h.path).name}") for h in hits]

    def build(self, concurrency_limit: int = 1) -> None:
        """The tab and its event (``api_name="search"``); call inside the page's ``gr.Blocks``."""
        index = self.searcher.index
        with gr.Tab("Search"):
            gr.Markdown(f"Search the {len(index.files):,} images of the index this demo was started with, by text "
                        "or by an image. Scores are cosine similarities.")
            with gr.Row():
                with gr.Column(scale=1):
                    text = gr.Textbox(label="Text query", placeholder="a red car", elem_id="search-text")
                    image = gr.Image(type="filepath", label="... or a query image", sources=["upload", "clipboard"],
                                     height=200, elem_id="search-image")
                    top_k = gr.Slider(1, MAX_TOP_K, value=12, step=1, label="Results")
                    run = gr.Button("Search", variant="primary", elem_id="search-run")
                with gr.Column(scale=2):
                    gallery = gr.Gallery(label="Hits", columns=4, height=520, elem_id="search-gallery")
            run.click(self.search, [text, image, top_k], [gallery], api_name="search", preprocess=False,
                      concurrency_limit=concurrency_limit, concurrency_id="search")
            text.submit(self.search, [text, image, top_k], [gallery], api_visibility="private", preprocess=False,
                        concurrency_limit=concurrency_limit, concurrency_id="search")
