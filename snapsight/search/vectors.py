"""The image index's FAISS part: exact, IVF, HNSW or PQ search over L2-normalised float32 vectors (never a model).

faiss is taken from :mod:`snapsight.zeroshot.index`, the one module that imports it (torch and faiss each bring an
OpenMP runtime; loading faiss in one place keeps their order fixed and the clash easy to audit).

All three kinds use inner product on unit vectors, so a score is a cosine similarity:

- ``flat``: ``IndexFlatIP``, exact; chosen up to ``flat_max`` vectors, where one scan stays fast.
- ``ivf``: ``IndexIVFFlat`` with ``nlist`` lists (``ivf_nlist``, 0 = about ``sqrt(n)``) trained by k-means,
  ``nprobe`` lists visited per query (Jégou et al. 2011, inverted files).
- ``hnsw``: ``IndexHNSWFlat`` (Malkov & Yashunin 2018) with graph degree ``hnsw_m``, ``efConstruction`` and
  ``efSearch`` set here rather than left at faiss' own defaults.
- ``pq``: every vector also as a 4-bit product-quantization code (Jégou et al. 2011; ``pq_m`` sub-vectors, faiss'
  SIMD "fast scan" layout, André et al. 2017) scanned in full, and the best ``pq_rerank * k`` candidates re-scored
  exactly against the stored float32 vectors (``IndexRefineFlat``), so the scores returned are exact cosines.

``auto`` picks ``flat`` up to ``flat_max`` vectors and ``large_kind`` above; benchmarks/search.py measures
recall@10 against exact search and the latency of each on 1,000,000 vectors, and the defaults below come from it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..errors import SnapsightError
from ..zeroshot.index import faiss, graph_or_flat_index, normalize_rows

KINDS = ("auto", "flat", "ivf", "hnsw", "pq")
PQ_MIN_VECTORS = 1_000  # a 4-bit code book has 16 centroids per sub-vector: k-means wants a few hundred points


@dataclass
class VectorIndexConfig:
    """How the image index's FAISS index is chosen and tuned."""

    kind: str = "auto"  # auto, flat, ivf, hnsw or pq
    flat_max: int = 50_000  # auto: exact search up to this many images (~15 ms a query on one core), large_kind above
    large_kind: str = "pq"  # auto above flat_max: ivf, hnsw or pq (the one that met recall@10 >= 0.95 on 1M)
    ivf_nlist: int = 0  # IVF lists; 0 = sqrt(n), at least 1 and at most n / 39 (faiss' k-means minimum)
    ivf_nprobe: int = 64  # IVF lists scanned per query
    hnsw_m: int = 32  # HNSW graph degree M
    hnsw_ef_construction: int = 200  # HNSW candidate list while building (faiss default 40)
    hnsw_ef_search: int = 256  # HNSW candidate list per query (faiss default 16, far too low for recall)
    pq_m: int = 0  # PQ sub-vectors of 4 bits each; 0 = dim / 2 (192 for 384-d: 96 bytes per vector)
    pq_rerank: int = 50  # PQ: candidates re-scored exactly per result wanted (k_factor)
    pq_train: int = 100_000  # PQ: vectors the code book is trained on (a fixed sample)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VectorIndexConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def resolve_kind(num_vectors: int, cfg: VectorIndexConfig) -> str:
    """The index kind for ``num_vectors`` vectors: ``cfg.kind``, or for ``auto`` flat / ``cfg.large_kind`` by size."""
    if cfg.kind not in KINDS:
        raise SnapsightError(f"index kind must be one of {', '.join(KINDS)}, got {cfg.kind!r}")
    if cfg.large_kind not in ("ivf", "hnsw", "pq"):
        raise SnapsightError(f"large_kind must be ivf, hnsw or pq, got {cfg.large_kind!r}")
    if cfg.kind != "auto":
        return cfg.kind
    if num_vectors <= cfg.flat_max or (cfg.large_kind == "pq" and num_vectors < PQ_MIN_VECTORS):
        return "flat"
    return cfg.large_kind


def ivf_nlist(num_vectors: int, cfg: VectorIndexConfig) -> int:
    """Lists of an IVF index over ``num_vectors`` vectors (k-means needs about 39 points per centroid)."""
    nlist = cfg.ivf_nlist or round(math.sqrt(max(num_vectors, 1)))
    return max(1, min(nlist, num_vectors // 39 or 1))


def build_vector_index(vectors: np.ndarray, kind: str, cfg: VectorIndexConfig) -> Any:
    """A faiss index of kind ``kind`` over ``(n, dim)`` vectors (normalised here); row ``i`` gets id ``i``."""
    x = normalize_rows(vectors)
    n, dim = x.shape
    if kind in ("flat", "hnsw"):
        index = graph_or_flat_index(x, kind, cfg.hnsw_m, cfg.hnsw_ef_construction, cfg.hnsw_ef_search)
    elif kind == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, ivf_nlist(n, cfg), faiss.METRIC_INNER_PRODUCT)
        if n:
            index.train(x)
    elif kind == "pq":
        index = _pq_index(x, cfg)
    else:
        raise SnapsightError(f"unknown index kind {kind!r}")
    if n and kind in ("ivf", "pq"):
        index.add(x)
    set_search_params(index, kind, cfg)
    return index


def _pq_index(x: np.ndarray, cfg: VectorIndexConfig) -> Any:
    """A trained, empty 4-bit fast-scan PQ index with exact re-ranking for ``x`` ``(n, dim)``."""
    n, dim = x.shape
    m = cfg.pq_m or next(d for d in range(max(dim // 2, 1), 0, -1) if dim % d == 0)
    if m < 1 or dim % m:
        raise SnapsightError(f"pq_m must divide the vectors' width {dim}, got {m}")
    if n < PQ_MIN_VECTORS:
        raise SnapsightError(f"a pq index needs at least {PQ_MIN_VECTORS:,} images, got {n:,}; use flat")
    index = faiss.IndexRefineFlat(faiss.IndexPQFastScan(dim, m, 4, faiss.METRIC_INNER_PRODUCT))
    sample = x if n <= cfg.pq_train else x[np.random.default_rng(0).choice(n, cfg.pq_train, replace=False)]
    index.train(sample)
    return index


def set_search_params(index: Any, kind: str, cfg: VectorIndexConfig) -> None:
    """Apply the per-query settings (``nprobe``, ``efSearch``), which faiss does not store in the index file."""
    if kind == "hnsw":
        index.hnsw.efSearch = cfg.hnsw_ef_search
    elif kind == "ivf":
        index.nprobe = min(cfg.ivf_nprobe, index.nlist)
    elif kind == "pq":
        index.k_factor = float(cfg.pq_rerank)


def search_vectors(index: Any, kind: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows per query: ``(scores, ids)``, each ``(queries, k)``, scores descending; ids ``-1`` pad."""
    q = normalize_rows(np.atleast_2d(queries))
    k = max(1, min(int(k), index.ntotal))
    if kind == "flat":
        # Below this many queries faiss scans with a scalar loop per query instead of BLAS (zeroshot.index).
        faiss.cvar.distance_compute_blas_threshold = 1
    return index.search(q, k)


def write_vector_index(index: Any, path: str) -> None:
    faiss.write_index(index, path)


def read_vector_index(path: str) -> Any:
    return faiss.read_index(path)


def set_threads(n: int) -> None:
    """faiss' OpenMP threads (benchmarks time one query on one thread)."""
    faiss.omp_set_num_threads(int(n))
