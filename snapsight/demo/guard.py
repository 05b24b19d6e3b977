"""What the demo's HTTP front door refuses before Gradio sees a request.

:class:`RequestGuard` is ASGI middleware: only the public endpoints can be called by name, an upload request has a
total size, and an event may name only files that were uploaded (no server paths, no URLs).
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any

from snapsight import SnapsightError

log = logging.getLogger(__name__)

PUBLIC_API = ("classify", "classify_many", "classify_with_classifier", "search")  # the only events callable by name


NOT_UPLOADED = "Every file must be uploaded first (POST /gradio_api/upload); server paths and URLs are refused."
MAX_JSON_BODY = 4 * 1024 * 1024  # an event's JSON (labels text, file references); uploads go elsewhere


def _file_paths(data: Any) -> list[str]:
    """Every ``path`` of a Gradio FileData-like dict inside a request's JSON ``data``."""
    found: list[str] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "path" in item and ("meta" in item or "orig_name" in item or "url" in item or len(item) == 1):
                found.append(str(item["path"]))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _uploaded(path: str, upload_dir: str) -> bool:
    """Whether ``path`` is a file inside Gradio's upload folder (after resolving links and ``..``)."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path):
        return False
    try:
        real, root = os.path.realpath(path), os.path.realpath(upload_dir)
        return os.path.commonpath([real, root]) == root and real != root
    except (ValueError, OSError):
        return False


class RequestGuard:
    """ASGI middleware in front of Gradio: only :data:`PUBLIC_API` can be called by name (``/gradio_api/call/``,
    ``/run/``, ``/api/``); one upload request may carry at most ``max_upload_bytes`` in all; and an event whose
    files are not uploads (server paths, URLs) is refused here with one sentence and one log line, before
    Gradio would refuse it with a traceback in the server log (or fetch the URL)."""

    _NAMED = re.compile(r"^/gradio_api/(?:call(?:/v2)?|run|api)/([^/]+)")
    _EVENT = re.compile(r"^/gradio_api/(?:call(?:/v2)?/[^/]+|queue/join|run/[^/]+|api/[^/]+)/?$")

    def __init__(self, app: Any, public: tuple[str, ...] = PUBLIC_API, max_upload_bytes: int | None = None):
        self.app, self.public, self.max_upload_bytes = app, set(public), max_upload_bytes
        from gradio.utils import get_upload_folder

        self.upload_dir = str(get_upload_folder())

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        root = scope.get("root_path", "") or ""
        if root and path.startswith(root):
            path = path[len(root):]
        named = self._NAMED.match(path)
        if named and named.group(1) not in self.public:
            log.info("refused a call to the non-public endpoint %r", named.group(1))
            return await _plain(send, 404, "Not Found: this demo's API is " + ", ".join(sorted(self.public)))
        if path.rstrip("/") == "/gradio_api/upload" and self.max_upload_bytes is not None:
            headers = dict(scope.get("headers") or [])
            try:
                length = int(headers.get(b"content-length", b"0") or 0)
            except ValueError:
                length = 0
            if length > self.max_upload_bytes:
                log.info("refused an upload of %d bytes (limit %d)", length, self.max_upload_bytes)
                return await _plain(send, 413, f"The files of one upload are {length:,} bytes together, more than "
                                               f"the {self.max_upload_bytes:,} this demo accepts.")
            receive = _counting(receive, self.max_upload_bytes)
        elif scope.get("method") == "POST" and self._EVENT.match(path):
            body, more = b"", True
            while more:
                message = await receive()
                if message.get("type") != "http.request":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_JSON_BODY:
                    log.info("refused an event body over %d bytes", MAX_JSON_BODY)
                    return await _plain(send, 413, f"The request is larger than the {MAX_JSON_BODY:,} bytes "
                                                   "this demo reads for one event.")
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                data = None
            bad = [p for p in _file_paths(data) if not _uploaded(p, self.upload_dir)]
            if bad:
                log.info("refused an event naming %d file(s) that were not uploaded, e.g. %r", len(bad), bad[0][:200])
                return await _plain(send, 400, NOT_UPLOADED)
            receive = _replay(body, receive)

        return await self.app(scope, receive, send)
async def _plain(send: Callable, status: int, text: str) -> None:
    body = json.dumps({"detail": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _counting(receive: Callable, limit: int) -> Callable:
    """``receive`` that ends the request (as a disconnect) once more than ``limit`` body bytes came in, for uploads
    sent without a Content-Length."""
    seen = 0

    async def wrapped() -> dict:
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                return {"type": "http.disconnect"}
        return message

    return wrapped


def _replay(body: bytes, receive: Callable) -> Callable:
    """``receive`` that hands on a body already read, then the connection's own messages (its disconnect)."""
    sent = False

    async def wrapped() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return wrapped


def parse_size(text: str | int) -> int:
    """``"100mb"`` -> bytes (the grammar of Gradio's ``max_file_size``)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+)\s*(b|kb|mb|gb|tb)\s*", str(text), flags=re.IGNORECASE)
    if not m:
        raise SnapsightError(f"a size takes a number and a unit (b, kb, mb, gb, tb), e.g. 100mb; got '{text}'")
    return int(m.group(1)) * 1024 ** ("b", "kb", "mb", "gb", "tb").index(m.group(2).lower())
