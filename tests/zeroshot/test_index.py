import json

import numpy as np
import pytest
import torch

from snapsight.zeroshot.index import IndexConfig, LabelIndex, build_label_index, load_or_build_index, normalize_rows


def _unit(n, d, seed):
    return normalize_rows(np.random.RandomState(seed).randn(n, d).astype(np.float32))


@pytest.mark.parametrize("num_queries", [1, 7, 50])
def test_flat_topk_equals_torch_matmul_topk(num_queries):
    labels = _unit(3000, 32, 0)
    queries = _unit(num_queries, 32, 1)
    index = build_label_index(labels)
    assert index.kind == "flat"
    scores, ids = index.search(queries, 10)
    ref_scores, ref_ids = (torch.from_numpy(queries) @ torch.from_numpy(labels).T).topk(10, dim=1)
    np.testing.assert_array_equal(ids, ref_ids.numpy())
    np.testing.assert_allclose(scores, ref_scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(index.similarities(queries).numpy(), queries @ labels.T, atol=1e-5)


def test_index_normalises_its_input():
    raw = np.random.RandomState(0).randn(50, 8).astype(np.float32) * 7
    index = build_label_index(raw)
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)
    scores, _ = index.search(raw[:3], 1)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_hnsw_recall_against_exact_search():
    # clustered vectors, like label embeddings (labels share words and templates)
    rng = np.random.RandomState(0)
    centres = rng.randn(100, 32)
    labels = normalize_rows((centres[rng.randint(0, 100, 5000)] + 0.5 * rng.randn(5000, 32)).astype(np.float32))
    queries = normalize_rows((centres[rng.randint(0, 100, 200)] + 0.5 * rng.randn(200, 32)).astype(np.float32))
    cfg = IndexConfig(kind="hnsw")
    hnsw = build_label_index(labels, cfg)
    assert hnsw.kind == "hnsw" and hnsw.faiss_index.hnsw.efSearch == cfg.hnsw_ef_search
    _, approx = hnsw.search(queries, 10)
    _, exact = build_label_index(labels).search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    print(f"HNSW recall@10 vs exact (M={cfg.hnsw_m}, efSearch={cfg.hnsw_ef_search}, 5k labels): {recall:.4f}")
    assert recall >= 0.95
    hnsw.faiss_index.hnsw.efSearch = 10
    _, approx_low = hnsw.search(queries, 10)
    recall_low = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_low, exact)])
    print(f"... and with efSearch=10: {recall_low:.4f}")
    assert recall >= recall_low


def test_auto_kind_switches_to_hnsw():
    cfg = IndexConfig(kind="auto", hnsw_min_labels=100)
    assert build_label_index(_unit(99, 8, 0), cfg).kind == "flat"
    assert build_label_index(_unit(100, 8, 0), cfg).kind == "hnsw"


def test_hundred_thousand_labels():
    labels = _unit(100_000, 32, 0)
    index = build_label_index(labels)
    q = labels[[5, 99_999]]
    scores, ids = index.search(q, 3)
    assert ids[:, 0].tolist() == [5, 99_999]
    assert index.similarities(q).shape == (2, 100_000)


def test_cache_hit_miss_and_invalidation(tmp_path):
    calls = []

    def embed(seed):
        def fn():
            calls.append(seed)
            return _unit(3, 8, seed), {"notes": ["n"]}
        return fn

    parts = {"fingerprint": "A", "labels": ["a", "b", "c"], "templates": ["{}"]}
    names = ["a", "b", "c"]
    idx1, hit1, extra1 = load_or_build_index(parts, names, embed(1), cache_dir=tmp_path)
    idx2, hit2, extra2 = load_or_build_index(parts, names, embed(2), cache_dir=tmp_path)
    assert (hit1, hit2) == (False, True) and calls == [1]
    assert extra2 == {"notes": ["n"]}
    np.testing.assert_array_equal(idx1.embeddings, idx2.embeddings)
    for changed in ({**parts, "fingerprint": "B"}, {**parts, "templates": ["a {}"]},
                    {**parts, "labels": ["a", "b", "d"]}):
        _, hit, _ = load_or_build_index(changed, names, embed(3), cache_dir=tmp_path)
        assert not hit
    assert calls == [1, 3, 3, 3]
    # disabled cache never hits
    _, hit, _ = load_or_build_index(parts, names, embed(4), cache_dir="")
    assert not hit


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    parts = {"fingerprint": "A", "labels": ["a", "b"]}
    load_or_build_index(parts, ["a", "b"], lambda: _unit(2, 4, 0), cache_dir=tmp_path)
    entry = next(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    (entry / "index.faiss").write_bytes(b"garbage")
    index, hit, _ = load_or_build_index(parts, ["a", "b"], lambda: _unit(2, 4, 0), cache_dir=tmp_path)
    assert not hit and index.num_labels == 2
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["num_labels"] == 2 and meta["key_parts"]["fingerprint"] == "A"


def test_hnsw_index_round_trips_through_cache(tmp_path):
    parts = {"fingerprint": "A", "labels": list("abcdefgh")}
    cfg = IndexConfig(kind="hnsw", hnsw_ef_search=77)
    load_or_build_index(parts, list("abcdefgh"), lambda: _unit(8, 4, 0), cfg=cfg, cache_dir=tmp_path)
    index, hit, _ = load_or_build_index(parts, list("abcdefgh"), lambda: _unit(8, 4, 0), cfg=cfg, cache_dir=tmp_path)
    assert hit and isinstance(index, LabelIndex) and index.kind == "hnsw"
    assert index.faiss_index.hnsw.efSearch == 77


def test_unknown_index_kind_is_a_config_error():
    """`--set index.kind=foo` printed a ValueError traceback; a ConfigError is one `error:` line."""
    from snapsight.errors import ConfigError
    from snapsight.zeroshot.index import IndexConfig, resolve_kind

    with pytest.raises(ConfigError, match="index.kind"):
        resolve_kind(10, IndexConfig(kind="foo"))
