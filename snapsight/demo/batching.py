"""Dynamic micro-batching: requests that arrive together share one forward pass.

Each web request calls :meth:`MicroBatcher.submit` from its own thread and blocks on the answer. One
worker thread takes whatever is waiting (up to ``max_batch_size``, after a short ``max_wait_s`` window
so that requests arriving together meet), groups the items by key (model, labels, settings: only items
with the same key can share a call) and runs ``run_batch(key, items)`` once per group. While a batch runs,
new requests pile up and form the next batch, so the batch size grows with the load by itself.

Unlike Gradio's ``batch=True``, a failure stays with its own request: bad inputs are rejected before
they are submitted, and if ``run_batch`` raises for a group, only that group's requests see the error.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """Counters for monitoring and the load benchmark."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many batches had it

    @property
    def mean_batch_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher:
    """Run ``run_batch(key, items) -> results`` (same length and order) on batches of concurrent submissions."""

    def __init__(
        self,
        run_batch: Callable[[Hashable, list[Any]], Sequence[Any]],
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
        name: str = "micro-batcher",
    ):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: queue.Queue[tuple[Hashable, Any, Future]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._name = name

    def submit(self, key: Hashable, item: Any, timeout: float | None = None) -> Any:
        """Queue ``item`` under ``key`` and wait for its result (re-raises the batch's exception)."""
        return self.submit_async(key, item).result(timeout=timeout)

    def submit_async(self, key: Hashable, item: Any) -> Future:
        self._ensure_worker()
        fut: Future = Future()
        self._queue.put((key, item, fut))
        return fut

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()

    def _take_batch(self) -> list[tuple[Hashable, Any, Future]]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            groups: dict[Hashable, list[tuple[Any, Future]]] = {}
            for key, item, fut in batch:
                if fut.set_running_or_notify_cancel():
                    groups.setdefault(key, []).append((item, fut))
            for key, members in groups.items():
                self._run_group(key, members)

    def _run_group(self, key: Hashable, members: list[tuple[Any, Future]]) -> None:
        n = len(members)
        self.stats.batches += 1
        self.stats.items += n
        self.stats.largest = max(self.stats.largest, n)
        self.stats.sizes[n] = self.stats.sizes.get(n, 0) + 1
        try:
            results = list(self.run_batch(key, [item for item, _ in members]))
            if len(results) != n:
                raise RuntimeError(f"run_batch returned {len(results)} results for {n} items")
        except BaseException as e:  # noqa: BLE001 - the error belongs to the waiting requests
            for _, fut in members:
                fut.set_exception(e)
            return
        for (_, fut), res in zip(members, results):
            fut.set_result(res)
