"""Models for the demo: loaded on first use, then kept and shared by every request.

:class:`ModelChoice` names a zero-shot model the way the CLI does (``model=None`` is the offline default
of :mod:`snapsight.default_model`); :class:`ModelCache` loads each spec once through the public
:meth:`snapsight.zeroshot.ZeroShotClassifier.load` (probe classifiers through
:func:`snapsight.probe.classifier.load_classifier`), keeps the ``max_models`` most recently used, and makes
concurrent requests for a model that is still loading wait for that one load instead of starting another.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from snapsight import OnnxZeroShotClassifier, ZeroShotClassifier, detect, load_classifier


@dataclass(frozen=True)
class ModelChoice:
    """The zero-shot model a session asked for, as typed: ``model`` in the CLI's grammar (an open_clip name such
    as ``ViT-B-32``, ``local-dir:PATH``, a folder, ``hf-hub:REPO``; see :func:`snapsight.artifacts.parse_model_spec`,
    which the loader applies) and an optional ``pretrained`` tag; ``model=None`` is the offline default model.
    Hashable: it is the :class:`ModelCache` key."""

    model: str | None = None
    pretrained: str | None = None

    @property
    def is_offline_default(self) -> bool:
        return self.model is None

    def describe(self) -> str:
        if self.model is None:
            return "offline default model"
        return f"{self.model} ({self.pretrained})" if self.pretrained else self.model


def _load_zeroshot(spec: ModelChoice, device: str) -> Any:
    if spec.model is not None and detect(spec.model) == "export":  # an ONNX export: onnxruntime, no torch
        return OnnxZeroShotClassifier.load(spec.model)
    return ZeroShotClassifier.load(spec.model, pretrained=spec.pretrained, device=device)


def _load_probe(path: str, device: str) -> Any:
    return load_classifier(path, device=device)


class _Slot:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class ModelCache:
    """Load-once cache, least recently used evicted beyond ``max_models``; thread-safe.

    ``loader(key, device)`` builds the object for ``key``; a failed load is not cached (the next request
    tries again, e.g. after the user ran ``snapsight build-default-model``).
    """

    def __init__(self, loader: Callable[[Any, str], Any], device: str = "auto", max_models: int = 2):
        self.loader = loader
        self.device = device
        self.max_models = max(1, max_models)
        self._slots: OrderedDict[Any, _Slot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            slot = self._slots.get(key)
            owner = slot is None
            if owner:
                slot = self._slots[key] = _Slot()
            self._slots.move_to_end(key)
        if owner:
            try:
                slot.value = self.loader(key, self.device)
            except BaseException as e:
                slot.error = e
                with self._lock:
                    if self._slots.get(key) is slot:
                        del self._slots[key]
            finally:
                slot.ready.set()
            self._evict()
        slot.ready.wait()
        if slot.error is not None:
            raise slot.error
        return slot.value

    def loaded(self) -> list[Any]:
        """Keys whose objects are loaded, most recent last."""
        with self._lock:
            return [k for k, s in self._slots.items() if s.ready.is_set() and s.error is None]

    def _evict(self) -> None:
        with self._lock:
            while len(self._slots) > self.max_models:
                self._slots.popitem(last=False)


def zeroshot_cache(device: str = "auto", max_models: int = 2) -> ModelCache:
    """Cache of :class:`~snapsight.zeroshot.ZeroShotClassifier` keyed by :class:`ModelChoice`."""
    return ModelCache(_load_zeroshot, device=device, max_models=max_models)


def probe_cache(device: str = "auto", max_models: int = 2) -> ModelCache:
    """Cache of probe classifiers (``snapsight probe`` output folders) keyed by path."""
    return ModelCache(_load_probe, device=device, max_models=max_models)
