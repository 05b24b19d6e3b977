"""The FAISS part of the image index: approximate kinds checked against exact search (recall@10), the settings
that faiss does not store re-applied on load, and the automatic choice by size."""
from __future__ import annotations

import numpy as np
import pytest

from snapsight.errors import SnapsightError
from snapsight.search.vectors import (
    VectorIndexConfig,
    build_vector_index,
    ivf_nlist,
    read_vector_index,
    resolve_kind,
    search_vectors,
    set_search_params,
    write_vector_index,
)


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around 50 centres: image embeddings have such structure; uniform noise has none."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim))
    x = centres[rng.integers(0, 50, n)] + 0.6 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _recall_at_10(kind: str, cfg: VectorIndexConfig, data: np.ndarray, queries: np.ndarray) -> float:
    _, exact = search_vectors(build_vector_index(data, "flat", cfg), "flat", queries, 10)
    _, approx = search_vectors(build_vector_index(data, kind, cfg), kind, queries, 10)
    return float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)]))


@pytest.mark.parametrize("kind", ["ivf", "hnsw", "pq"])
def test_approximate_kinds_agree_with_exact_search(kind):
    data, queries = _clustered(4000, 32, 0), _clustered(50, 32, 1)
    cfg = VectorIndexConfig()
    assert _recall_at_10(kind, cfg, data, queries) >= 0.95
    # the settings matter: one IVF list per query, an HNSW candidate list of 1, or PQ codes without re-ranking
    # lose neighbours
    starved = VectorIndexConfig(ivf_nprobe=1, hnsw_ef_search=1, hnsw_m=4, pq_rerank=1)
    assert _recall_at_10(kind, starved, data, queries) < 0.9


def test_flat_is_exact_and_scores_are_cosines():
    data = _clustered(500, 16, 2)
    q = data[:3] * 7.0  # unnormalised queries are normalised
    scores, ids = search_vectors(build_vector_index(data, "flat", VectorIndexConfig()), "flat", q, 5)
    expected = np.argsort(-(data[:3] @ data.T), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(data[:3] @ data.T, expected, 1), atol=1e-5)


def test_search_settings_are_reapplied_after_reading(tmp_path):
    cfg = VectorIndexConfig(ivf_nprobe=7, hnsw_ef_search=77, pq_rerank=7)
    for kind in ("ivf", "hnsw", "pq"):
        index = build_vector_index(_clustered(2000, 16, 3), kind, cfg)
        write_vector_index(index, str(tmp_path / kind))
        back = read_vector_index(str(tmp_path / kind))
        set_search_params(back, kind, cfg)
        if kind == "ivf":
            assert back.nprobe == 7
        elif kind == "hnsw":
            assert back.hnsw.efSearch == 77
        else:
            assert back.k_factor == 7


def test_kind_by_size():
    for large in ("ivf", "hnsw", "pq"):
        cfg = VectorIndexConfig(flat_max=1000, large_kind=large)
        assert resolve_kind(1000, cfg) == "flat" and resolve_kind(1001, cfg) == large
    # PQ code books need a thousand vectors: below that auto stays exact whatever flat_max says
    assert resolve_kind(999, VectorIndexConfig(flat_max=10, large_kind="pq")) == "flat"
    assert resolve_kind(999, VectorIndexConfig(flat_max=10, large_kind="ivf")) == "ivf"
    assert resolve_kind(10, VectorIndexConfig(kind="ivf")) == "ivf"
    with pytest.raises(SnapsightError, match="auto, flat, ivf, hnsw, pq"):
        resolve_kind(10, VectorIndexConfig(kind="IVF"))
    assert ivf_nlist(1_000_000, VectorIndexConfig()) == 1000 and ivf_nlist(100, VectorIndexConfig()) == 2
    assert ivf_nlist(10, VectorIndexConfig()) == 1


def test_pq_scores_are_exact_cosines_and_small_sets_are_refused():
    data = _clustered(2000, 32, 4)
    scores, ids = search_vectors(build_vector_index(data, "pq", VectorIndexConfig()), "pq", data[:4], 5)
    np.testing.assert_allclose(scores, np.take_along_axis(data[:4] @ data.T, ids, 1), atol=1e-5)  # re-scored exactly
    with pytest.raises(SnapsightError, match="at least 1,000 images"):
        build_vector_index(data[:999], "pq", VectorIndexConfig())
    with pytest.raises(SnapsightError, match="pq_m must divide"):
        build_vector_index(data, "pq", VectorIndexConfig(pq_m=5))
