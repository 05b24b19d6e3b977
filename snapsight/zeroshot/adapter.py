"""Few-shot on top of zero-shot: Tip-Adapter's training-free cache of example image features.

Tip-Adapter (Zhang et al., ECCV 2022, eq. 5-6): with an image's normalised feature ``f`` ``(1, D)``, cache keys
``F`` ``(N, D)`` (the examples' normalised image features), cache values ``L`` ``(N, C)`` (their one-hot labels)
and the zero-shot classifier ``W`` ``(C, D)`` (the label embeddings),

    A = exp(-beta * (1 - f F^T))            (1, N) affinities; beta sets how sharply they fall with distance
    logits = 100 * f W^T + alpha * A L      alpha weighs the cache against zero-shot

Here the zero-shot term keeps the model's own temperature ``s`` (100 for CLIP) and the cache term is added in
cosine units, ``logits = s * (f W^T + alpha / 100 * A L)``, so ``alpha`` means the paper's mix at CLIP's
temperature whatever the model's. A label without examples has a zero column in ``L``: it keeps its zero-shot
score. :func:`cache_scores` is that ``alpha / 100 * A L`` term.

``alpha`` and ``beta`` are chosen by leave-one-out on the examples themselves (:func:`leave_one_out_search`:
each example classified by zero-shot plus the cache without its own key, over a small grid) unless given. With one
example per label nothing can be scored that way; then ``beta`` is the paper's 5.5 and ``alpha`` the smallest on the
grid that classifies every example as its own label (:func:`smallest_fitting_alpha`).
Tip-F (the paper's fine-tuned variant) trains the keys; here on that same leave-one-out objective
(:func:`finetune_keys`), because without the paper's random crops an example's own key would make the loss
trivially small.

The keys are stored as a flat FAISS index through :func:`snapsight.zeroshot.index.load_or_build_index`, keyed by
the model and the examples' identity (file names, sizes and mtimes, or pixel hashes), beside the label indexes.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.labeled import LabeledDataset, load_labeled
from ..errors import ImageError, SnapsightError
from ..labels import LabelSet
from ..ondevice.scoring import IndexConfig
from .index import LabelIndex, load_or_build_index

log = logging.getLogger(__name__)

# Tip-Adapter's sharpness beta, used when leave-one-out has nothing to score (every class has a single example).
DEFAULT_BETA = 5.5
# The search grid: the paper searches beta in [0, 7] and alpha in [0, 3] on ImageNet and wider (to 12 and 10) on
# datasets far from CLIP's pretraining, such as EuroSAT.
ALPHA_GRID = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0)
BETA_GRID = (0.5, 1.0, 2.0, 3.0, 4.0, 5.5, 7.0, 9.0, 12.0)

ImageLike = Image.Image | str | os.PathLike


# ------------------------------------------------------------------------------------------------ maths


def cache_scores(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, alpha: float,
                 beta: float) -> torch.Tensor:
    """Tip-Adapter's cache term in cosine units, ``alpha / 100 * exp(-beta (1 - q K^T)) L``: ``(B, C)``.

    ``queries`` ``(B, D)`` and ``keys`` ``(N, D)`` normalised, ``values`` ``(N, C)`` one-hot.
    """
    affinity = torch.exp(-beta * (1.0 - queries.float() @ keys.float().T))
    return (alpha / 100.0) * (affinity @ values.float())


def one_hot_values(example_names: Sequence[str], label_names: Sequence[str]) -> torch.Tensor:
    """``(N, C)`` one-hot values: example ``i``'s row marks its label among ``label_names`` (matched ignoring
    case and surrounding space). An example label that is not among ``label_names`` is one error naming them."""
    pos = {fold_label(n): j for j, n in enumerate(label_names)}
    unknown = sorted({n for n in example_names if fold_label(n) not in pos})
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        shown = ", ".join(repr(n) for n in unknown[:10]) + more
        raise SnapsightError(f"the examples have label(s) that are not among the labels: {shown}; add them to the "
                             "labels or leave those examples out")
    values = torch.zeros(len(example_names), len(label_names))
    if len(example_names):
        values[torch.arange(len(example_names)), torch.tensor([pos[fold_label(n)] for n in example_names])] = 1.0
    return values


def fold_label(name: str) -> str:
    """How example labels are matched to labels: case and runs of white space ignored."""
    return " ".join(str(name).split()).casefold()


def _loo_scored(values: torch.Tensor) -> torch.Tensor:
    """Examples whose class has another example: only they can be scored with their own key left out."""
    counts = values.sum(0)
    return (values @ counts) >= 2


def _loo_cache(keys: torch.Tensor, values: torch.Tensor, beta: float) -> torch.Tensor:
    """``A L`` for every example with its own key removed: ``(N, C)``."""
    affinity = torch.exp(-beta * (1.0 - keys @ keys.T))
    affinity = affinity - torch.diag_embed(torch.diagonal(affinity))
    return affinity @ values


@dataclass
class CacheFit:
    """What classifying with a cache needs for one label set: the keys and values, the weights and how they were
    chosen (``leave-one-out``, ``given``, or ``fitted`` for one example per class: see
    :func:`smallest_fitting_alpha`), and the leave-one-out accuracies behind the choice."""

    keys: torch.Tensor  # (N, D) normalised, fine-tuned when finetune_steps > 0
    values: torch.Tensor  # (N, C) one-hot over the label set
    alpha: float
    beta: float
    chosen_by: str
    loo_accuracy: float | None = None  # zero-shot + cache, each example without its own key
    loo_zero_shot_accuracy: float | None = None  # zero-shot alone on the same examples
    finetune_steps: int = 0

    def scores(self, queries: torch.Tensor) -> torch.Tensor:
        """:func:`cache_scores` of ``queries`` ``(B, D)`` under this fit: ``(B, C)``."""
        return cache_scores(queries, self.keys, self.values, self.alpha, self.beta)


def leave_one_out_search(keys: torch.Tensor, values: torch.Tensor, zero_shot: torch.Tensor, logit_scale: float,
                         alphas: Sequence[float] = ALPHA_GRID, betas: Sequence[float] = BETA_GRID,
                         ) -> tuple[float, float, float, float] | None:
    """Choose ``(alpha, beta)`` by leave-one-out on the examples: ``(alpha, beta, loo_accuracy,
    zero_shot_accuracy)``, or None when no class has two examples (nothing can be scored).

    ``zero_shot`` ``(N, C)`` are the examples' cosines with the labels. Each example is classified by
    ``zero_shot + cache_scores`` over the other examples' keys; the best accuracy wins, ties go to the lower
    cross-entropy (at the model's temperature), then to the smaller alpha.
    """
    scored = _loo_scored(values)
    if not bool(scored.any()):
        return None
    y = values[scored].argmax(1)
    zs = zero_shot[scored].float()
    zs_acc = float((zs.argmax(1) == y).float().mean())
    best: tuple | None = None
    for beta in betas:
        cache = _loo_cache(keys.float(), values.float(), float(beta))[scored]
        for alpha in alphas:
            logits = zs + (alpha / 100.0) * cache
            acc = float((logits.argmax(1) == y).float().mean())
            ce = float(F.cross_entropy(logit_scale * logits, y))
            rank = (-acc, ce, alpha)
            if best is None or rank < best[0]:
                best = (rank, float(alpha), float(beta), acc)
    _, alpha, beta, acc = best
    return alpha, beta, acc, zs_acc


def smallest_fitting_alpha(keys: torch.Tensor, values: torch.Tensor, zero_shot: torch.Tensor, beta: float,
                           alphas: Sequence[float] = ALPHA_GRID) -> float:
    """The smallest alpha in ``alphas`` with which every example is classified as its own label, its own key
    present (the largest when none does): as little cache as the examples need. For one example per class, where
    leave-one-out has nothing to score; Tip-Adapter's fixed alpha 1 leaves a zero-shot classifier that is wrong on
    its own examples wrong (Fashion-MNIST with one everyday word per label: 56.1% against 70.9% this way)."""
    cache = cache_scores(keys, keys, values, 100.0, beta)  # alpha 100: the bare A L, weighed below
    y = values.argmax(1)
    for alpha in sorted(alphas):
        if bool(((zero_shot.float() + (alpha / 100.0) * cache).argmax(1) == y).all()):
            return float(alpha)
    return float(max(alphas))


def finetune_keys(keys: torch.Tensor, values: torch.Tensor, zero_shot: torch.Tensor, logit_scale: float,
                  alpha: float, beta: float, steps: int, lr: float = 1e-3) -> torch.Tensor:
    """Tip-F: train the cache keys with Adam on the leave-one-out cross-entropy of the examples (full batch,
    ``steps`` steps); returns new normalised keys ``(N, D)``. Deterministic for the same inputs."""
    scored = _loo_scored(values)
    if steps <= 0 or not bool(scored.any()):
        return keys
    y = values[scored].argmax(1)
    zs = zero_shot[scored].float()
    param = torch.nn.Parameter(keys.detach().float().clone())
    opt = torch.optim.Adam([param], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # as the paper's Tip-F schedule
    diag = torch.eye(len(keys), dtype=torch.bool)
    with torch.enable_grad():
        for _ in range(steps):
            k = F.normalize(param, dim=-1)
            affinity = torch.exp(-beta * (1.0 - k @ k.T)).masked_fill(diag, 0.0)
            logits = zs + (alpha / 100.0) * (affinity @ values.float())[scored]
            loss = F.cross_entropy(logit_scale * logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return F.normalize(param.detach(), dim=-1)


def fit_cache(keys: torch.Tensor, example_names: Sequence[str], label_names: Sequence[str], zero_shot: torch.Tensor,
              logit_scale: float, alpha: float | None = None, beta: float | None = None, finetune_steps: int = 0,
              finetune_lr: float = 1e-3) -> CacheFit:
    """Everything to classify with the cache over ``label_names``: values, weights (leave-one-out unless both are
    given; with one example per class, beta 5.5 and :func:`smallest_fitting_alpha`) and, with ``finetune_steps``,
    Tip-F keys (after which the weights are searched again on the new keys)."""
    values = one_hot_values(example_names, label_names)
    keys = F.normalize(keys.float(), dim=-1)

    def choose(k: torch.Tensor) -> tuple[float, float, str, float | None, float | None]:
        found = None if alpha is not None and beta is not None else leave_one_out_search(
            k, values, zero_shot, logit_scale,
            alphas=(alpha,) if alpha is not None else ALPHA_GRID, betas=(beta,) if beta is not None else BETA_GRID)
        if found is not None:
            return found[0], found[1], "leave-one-out", found[2], found[3]
        b = beta if beta is not None else DEFAULT_BETA
        if alpha is not None:
            return alpha, b, "given", None, None
        return smallest_fitting_alpha(k, values, zero_shot, b), b, "fitted", None, None

    a, b, how, loo, loo_zs = choose(keys)
    if finetune_steps > 0:
        keys = finetune_keys(keys, values, zero_shot, logit_scale, a, b, finetune_steps, finetune_lr)
        a, b, how, loo, loo_zs = choose(keys)
    return CacheFit(keys, values, a, b, how, loo, loo_zs, finetune_steps)


def select_shots(labels: np.ndarray, shots: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most ``shots`` items per class, drawn with ``seed`` (all when ``shots`` is None); sorted."""
    labels = np.asarray(labels)
    if shots is None:
        return np.arange(len(labels))
    if shots < 1:
        raise SnapsightError(f"--shots must be at least 1, got {shots}")
    rng = np.random.default_rng(seed)
    out = [rng.choice(np.flatnonzero(labels == c), size=min(shots, int((labels == c).sum())), replace=False)
           for c in np.unique(labels)]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------------ examples


def examples_dataset(examples: str | os.PathLike | LabeledDataset | Mapping[str, Sequence[ImageLike]]
                     ) -> LabeledDataset:
    """Examples as a :class:`LabeledDataset`: a labeled source spec (:func:`snapsight.data.labeled.load_labeled`:
    class folders, CSV/JSONL, a saved Hugging Face dataset, ``fashion-mnist:train``), a dataset, or a mapping
    ``{label: [images or paths]}`` (the demo's drop zones)."""
    if isinstance(examples, LabeledDataset):
        return examples
    if isinstance(examples, (str, os.PathLike)):
        return load_labeled(examples)
    if not isinstance(examples, Mapping):
        raise SnapsightError("examples must be a labeled source (folder, CSV/JSONL, dataset) or {label: [images]}")
    names = [str(n) for n, items in examples.items() if len(items)]
    items = [(im, j) for j, n in enumerate(names) for im in examples[n]]
    h = hashlib.sha256()
    for im, j in items:
        h.update(f"{names[j]}\0".encode())
        h.update(_image_stamp(im))
    return LabeledDataset(name="examples", class_names=names, labels=np.array([j for _, j in items], dtype=np.int64),
                          identity=f"mapping:{h.hexdigest()[:32]}", _get=lambda i: items[i][0],
                          _describe=lambda i: _describe_item(items[i][0], names[items[i][1]], i))


def _image_stamp(im: ImageLike) -> bytes:
    if isinstance(im, Image.Image):
        return hashlib.sha256(f"{im.mode}{im.size}".encode() + im.tobytes()).digest()
    p = Path(im)
    try:
        st = p.stat()
        return f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    except OSError:
        return f"{p}\0missing".encode()


def _describe_item(im: ImageLike, label: str, i: int) -> str:
    return str(im) if isinstance(im, (str, os.PathLike)) else f"{label} example {i + 1}"


@dataclass
class ExampleCache:
    """The examples' keys: ``index`` (a flat FAISS index over ``(N, D)`` normalised features, saved and reused
    like a label index) and the label of each key. ``notes`` say what was skipped."""

    index: LabelIndex | None
    names: list[str]
    notes: list[str] = field(default_factory=list)
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.names)

    @property
    def keys(self) -> torch.Tensor:
        """``(N, D)`` float32 normalised keys."""
        return torch.from_numpy(self.index.embeddings) if self.index is not None else torch.zeros(0, 0)


def build_example_cache(dataset: LabeledDataset, encode: Callable[[list[Image.Image]], torch.Tensor],
                        model_key: dict[str, Any], cache_dir: str | None = None, batch_size: int = 64,
                        progress: bool = False) -> ExampleCache:
    """Embed ``dataset``'s images with ``encode`` (normalised ``(n, D)`` features) into an :class:`ExampleCache`,
    or load it from the cache (``cache_dir`` as for label indexes; ``""`` disables). Unreadable images are
    skipped with a note."""
    names = [dataset.class_names[int(c)] for c in dataset.labels]
    if not names:
        return ExampleCache(None, [])
    parts = {**model_key, "kind": "example-cache", "examples": dataset.identity, "names": names}

    def embed() -> tuple[np.ndarray, dict]:
        from tqdm import tqdm

        rows, bad, skipped = [], [], []
        bar = tqdm(total=len(names), unit="example", desc="embedding examples", disable=not progress, leave=False)
        for start in range(0, len(names), batch_size):
            chunk, where = [], []
            for i in range(start, min(start + batch_size, len(names))):
                try:
                    chunk.append(dataset.load(i))
                    where.append(i)
                except ImageError as e:
                    bad.append(i)
                    skipped.append(f"{dataset.describe(i)} ({e})")
            out = np.zeros((min(batch_size, len(names) - start), 0), np.float32)
            if chunk:
                emb = encode(chunk).numpy()
                out = np.zeros((out.shape[0], emb.shape[1]), np.float32)
                out[np.array(where) - start] = emb
            rows.append(out)
            bar.update(out.shape[0])
        bar.close()
        if len(bad) == len(names):
            raise SnapsightError(f"none of the {len(names)} example images could be read: " + "; ".join(skipped[:3]))
        dim = max(r.shape[1] for r in rows)
        rows = [r if r.shape[1] == dim else np.zeros((r.shape[0], dim), np.float32) for r in rows]
        return np.concatenate(rows), {"bad": bad, "skipped": skipped}

    index, from_cache, extra = load_or_build_index(parts, names, embed, cfg=IndexConfig(kind="flat"),
                                                   cache_dir=cache_dir)
    bad = set(extra.get("bad", []))
    notes = []
    if bad:
        keep = [i for i in range(len(names)) if i not in bad]
        skipped = extra.get("skipped", [])
        notes.append(f"{len(bad)} example image(s) could not be read and were skipped: "
                     + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""))
        names = [names[i] for i in keep]
        index = LabelIndex(index.embeddings[keep], kind="flat", cfg=IndexConfig(kind="flat")) if keep else None
    return ExampleCache(index, names, notes, from_cache)


# ------------------------------------------------------------------------------------------------ the adapter


class CacheAdapter:
    """The cache a :class:`~snapsight.zeroshot.classify.ZeroShotClassifier` adds to its zero-shot scores.

    Weights (and Tip-F keys) depend on the label set, so they are fitted at the first request for a label set and
    remembered for the last one (the demo calls from several threads, hence the lock).
    """

    def __init__(self, cache: ExampleCache, alpha: float | None = None, beta: float | None = None,
                 finetune_steps: int = 0, finetune_lr: float = 1e-3):
        for name, v in (("alpha", alpha), ("beta", beta)):
            if v is not None and not (np.isfinite(v) and v >= 0):
                raise SnapsightError(f"--{name} must be a number of at least 0, got {v}")
        if finetune_steps < 0:
            raise SnapsightError(f"--finetune-steps must be at least 0, got {finetune_steps}")
        self.cache, self.alpha, self.beta = cache, alpha, beta
        self.finetune_steps, self.finetune_lr = int(finetune_steps), float(finetune_lr)
        self._last: tuple[LabelIndex, tuple[str, ...], CacheFit] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.cache)

    def fit(self, label_set: LabelSet, index: LabelIndex, logit_scale: float) -> CacheFit:
        """The :class:`CacheFit` for ``label_set`` (whose label embeddings are ``index``)."""
        names = tuple(label_set.names)
        with self._lock:
            last = self._last
            if last is not None and last[0] is index and last[1] == names:
                return last[2]
            keys = self.cache.keys
            fit = fit_cache(keys, self.cache.names, names, index.similarities(keys), logit_scale, self.alpha,
                            self.beta, self.finetune_steps, self.finetune_lr)
            log.debug("example cache: %d keys, alpha %.3g, beta %.3g (%s)", len(keys), fit.alpha, fit.beta,
                     fit.chosen_by)
            self._last = (index, names, fit)
            return fit

    def scores(self, image_emb: torch.Tensor, label_set: LabelSet, index: LabelIndex, logit_scale: float,
               multi_label: bool = False) -> torch.Tensor | None:
        """The cache term ``(B, C)`` to add to the images' zero-shot cosines, or None without examples (so that
        classifying is then exactly zero-shot)."""
        if len(self.cache) == 0:
            return None
        if multi_label:
            raise SnapsightError("examples work with single-label classification; drop multi-label or the examples")
        return self.fit(label_set, index, logit_scale).scores(image_emb)
