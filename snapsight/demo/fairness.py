"""Sharing one model between many requests: no single request may hold it for long.

The expensive part of a request with a *new* label set is embedding its prompts (labels x templates text
forward passes); images are cheap and are merged into shared forward passes by
:class:`~snapsight.demo.batching.MicroBatcher`. So:

- :class:`FairLock` is the model's turn: the batcher takes it for each image batch, a label-set build for
  each short chunk of prompts. Waiters are served first come, first served, so a build of thousands of
  prompts lets the image batches that arrived meanwhile run between its chunks.
- :class:`ChunkedTextEncoder` embeds prompts in chunks sized to take about ``chunk_seconds`` each (measured as
  it goes), leaves the model to others for a while after each chunk when they are waiting (so a build takes
  at most ``share`` of the model's time under load), and checks between chunks whether the client is still
  there (:class:`ClientGone`).
- :class:`LabelIndexes` makes concurrent requests for the same label set wait for one build, and lets only
  ``max_builds`` large builds run at once (small ones, a chunk or less, never wait for a large one).
- :func:`check_budget` refuses a request whose labels x templates is over the configured budget, in one
  sentence, before any work is done.
- :class:`DecodeSlots` bounds how many *large* images are decoded at once (small ones never queue behind
  them) and gives freed heap pages back to the system (glibc ``malloc_trim``) when a burst is over.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator, Sequence

import numpy as np
import torch

from snapsight import SnapsightError

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The client of this request has gone: stop its work."""


class FairLock:
    """A mutex handed to waiters in arrival order (Python's ``threading.Lock`` may let the releasing thread
    take it again at once, which would let a long build starve the image batches)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Event] = deque()
        self._held = False

    def acquire(self) -> None:
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                return
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # ownership is handed over by release()

    def waiting(self) -> int:
        """How many threads are queued for the lock now."""
        return len(self._waiters)

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False

    def __enter__(self) -> "FairLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class ClientGone:
    """``gone()`` is true once the web client of a request has disconnected.

    Gradio marks the queue events of a session ``alive = False`` when its event stream closes; this reads that
    flag for the events of ``session_hash`` that are running. Without a queue (a direct call, a test) it is
    never true.
    """

    def __init__(self, blocks: Any = None, session_hash: str | None = None):
        self.blocks, self.session_hash = blocks, session_hash

    def __call__(self) -> bool:
        queue = getattr(self.blocks, "_queue", None)
        if queue is None or not self.session_hash:
            return False
        events = [e for job in list(getattr(queue, "active_jobs", []) or []) if job for e in job
                  if getattr(e, "session_hash", None) == self.session_hash]
        return bool(events) and not any(getattr(e, "alive", True) for e in events)

    def check(self) -> None:
        """Raise :class:`Cancelled` if the client has gone."""
        if self():
            raise Cancelled("the client disconnected")


def check_budget(num_labels: int, num_prompts: int, max_labels: int, max_prompts: int) -> None:
    """Refuse (one sentence) a label set over ``max_labels`` labels or ``max_prompts`` prompts (labels x templates)."""
    if num_labels > max_labels:
        raise SnapsightError(
            f"{num_labels:,} labels is more than the {max_labels:,} this demo accepts in one request; "
            "use fewer labels (or the CLI, `snapsight classify`, for large label sets)")
    if num_prompts > max_prompts:
        raise SnapsightError(
            f"{num_labels:,} labels x their templates make {num_prompts:,} prompts, more than the {max_prompts:,} "
            "this demo embeds for one request; use fewer labels or the 'none' template set")


class ChunkedTextEncoder:
    """``encoder(tokens) -> (n, dim)`` for :meth:`ZeroShotClassifier.label_index`, run in chunks under ``turn``.

    Each chunk is sized from the measured time per prompt so that it takes about ``chunk_seconds``. After a
    chunk, if others are waiting for the model, the build stays away for ``took * (1 / share - 1)`` (``share``
    0.5: as long as the chunk took). Before each chunk ``gone`` is checked and :class:`Cancelled` raised if the
    client has left. ``chunks`` counts the chunks run (tests and the benchmark read it).
    """

    def __init__(self, encode: Callable[[torch.Tensor, int], torch.Tensor], turn: FairLock,
                 chunk_seconds: float = 0.05, gone: Callable[[], bool] | None = None, first_chunk: int = 8,
                 max_chunk: int = 256, share: float = 0.5, on_chunk: Callable[[], None] | None = None):
        self.encode, self.turn, self.chunk_seconds, self.on_chunk = encode, turn, chunk_seconds, on_chunk
        self.share = min(1.0, max(0.05, share))
        self.gone = gone or (lambda: False)
        self.first_chunk, self.max_chunk = first_chunk, max_chunk
        self.chunks = 0

    def __call__(self, tokens: Any) -> Any:
        parts: list[torch.Tensor] = []
        size, start = self.first_chunk, 0
        while start < len(tokens):
            if self.gone():
                raise Cancelled("the client disconnected")
            rows = tokens[start:start + size]
            with self.turn:
                t0 = time.perf_counter()
                parts.append(self.encode(rows, len(rows)))
                took = time.perf_counter() - t0
            self.chunks += 1
            if self.on_chunk is not None:
                self.on_chunk()
            start += len(rows)
            if self.share < 1.0 and start < len(tokens) and self.turn.waiting():
                time.sleep(took * (1.0 / self.share - 1.0))
            per_row = took / max(1, len(rows))
            size = max(1, min(self.max_chunk, int(self.chunk_seconds / per_row) if per_row > 0 else self.max_chunk))
        if not parts:
            return self.encode(tokens[:0], 1)
        # torch tensors from the torch classifier, numpy arrays from an ONNX export's
        return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


class LabelIndexes:
    """One build per label set at a time; at most ``max_builds`` large builds at once.

    ``get(key, build, prompts, gone)`` returns ``build()``'s value; a request that asks for a ``key`` being
    built waits for that build (checking ``gone`` every ``poll_s``). If the build stops because *its* client
    left, a waiter whose client is still there builds it itself. A build of more than ``small_prompts`` prompts
    first takes one of ``max_builds`` slots.
    """

    def __init__(self, max_builds: int = 1, small_prompts: int = 64, poll_s: float = 0.25):
        self.small_prompts = small_prompts
        self.poll_s = poll_s
        self._slots = threading.BoundedSemaphore(max(1, max_builds))
        self._inflight: dict[Hashable, Future] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any], prompts: int, gone: Callable[[], bool]) -> Any:
        while True:
            with self._lock:
                fut = self._inflight.get(key)
                owner = fut is None
                if owner:
                    fut = self._inflight[key] = Future()
            if owner:
                try:
                    fut.set_result(self._build(build, prompts, gone))
                except BaseException as e:  # noqa: BLE001 - handed to every waiter
                    fut.set_exception(e)
                finally:
                    with self._lock:
                        self._inflight.pop(key, None)
                return fut.result()
            try:
                return self._wait(fut, gone)
            except Cancelled:
                if gone():
                    raise
                # the builder's client left, ours has not: build it ourselves

    def _wait(self, fut: Future, gone: Callable[[], bool]) -> Any:
        while True:
            try:
                return fut.result(timeout=self.poll_s)
            except FutureTimeout:
                if gone():
                    raise Cancelled("the client disconnected") from None

    def _build(self, build: Callable[[], Any], prompts: int, gone: Callable[[], bool]) -> Any:
        if prompts <= self.small_prompts:
            return build()
        while not self._slots.acquire(timeout=self.poll_s):
            if gone():
                raise Cancelled("the client disconnected")
        try:
            return build()
        finally:
            self._slots.release()


def _malloc_trim() -> Callable[[], Any] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def _lower_priority(niceness: int = 10) -> None:
    """Make the calling thread nicer (Linux schedules threads one by one), so the CPU goes to batches first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed: the thread keeps its priority
        pass


class DecodeSlots:
    """At most ``limit`` decodes of large images (over ``large_pixels``) at once, run by worker threads of lower
    CPU priority than the request threads (a 64 MP PNG takes about a second of a core to decode and cannot be
    decoded at a smaller size); small images decode at once in the request's thread and never queue behind
    large ones. When the last large decode of a burst ends, the heap pages it freed are returned to the system
    (a 64 MP PNG frees ~200 MB that glibc would otherwise keep for the life of the process)."""

    def __init__(self, limit: int = 1, large_pixels: int = 4_000_000):
        self._sem = threading.BoundedSemaphore(max(1, limit))
        self._pool = ThreadPoolExecutor(max(1, limit), thread_name_prefix="large-decode", initializer=_lower_priority)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._large_since_trim = False
        self.large_pixels = large_pixels
        self._trim = _malloc_trim()
        self.trims = 0

    @contextmanager
    def slot(self, pixels: int, gone: Callable[[], bool] | None = None, poll_s: float = 0.25) -> Iterator[None]:
        """``with slots.slot(width * height, gone): decode``; raises Cancelled if ``gone`` while waiting."""
        if pixels <= self.large_pixels:
            yield
            return
        with self._lock:
            self._in_flight += 1
            self._large_since_trim = True
        try:
            while not self._sem.acquire(timeout=poll_s):
                if gone is not None and gone():
                    raise Cancelled("the client disconnected")
            try:
                yield
            finally:
                self._sem.release()
        finally:
            with self._lock:
                self._in_flight -= 1
                trim = self._in_flight == 0 and self._large_since_trim
                if trim:
                    self._large_since_trim = False
            if trim:
                self.release_memory()

    def decode(self, pixels: int, fn: Callable[[], Any], gone: Callable[[], bool] | None = None,
               poll_s: float = 0.25) -> Any:
        """``fn()``: at once for a small image, else in a low-priority decode worker (in its turn); raises
        Cancelled if ``gone`` becomes true while waiting."""
        if pixels <= self.large_pixels:
            return fn()
        with self.slot(pixels, gone, poll_s):
            fut = self._pool.submit(fn)
            while True:
                try:
                    return fut.result(timeout=poll_s)
                except FutureTimeout:
                    if gone is not None and gone():
                        fut.cancel()
                        raise Cancelled("the client disconnected") from None

    def release_memory(self) -> None:
        """Give free heap pages back to the system now (no-op without glibc)."""
        if self._trim is not None:
            self._trim()
            self.trims += 1


def total_prompts(labels: Sequence[Any], templates: Sequence[str]) -> int:
    """How many prompts ``labels`` (:class:`~snapsight.labels.Label`) make under ``templates``."""
    return sum(len(label.texts(templates)) for label in labels)
