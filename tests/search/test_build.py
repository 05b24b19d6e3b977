"""Building and refreshing an image index: fresh build, incremental refresh equal to a fresh build, resume after a
killed build without losing or repeating images, unreadable files skipped and counted, another model refused."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from snapsight.errors import SnapsightError
from snapsight.search import StoredIndex, VectorIndexConfig, build_index, scan_folders
from snapsight.search.store import FILES, MANIFEST, PARTIAL, VECTORS
from snapsight.search.vectors import search_vectors
from tests.search.conftest import IDENTITY, PixelEmbedder, write_images


def _assert_same_index(a: Path, b: Path) -> None:
    """Two index folders hold the same files (path, size, mtime), in the same order, with identical vectors and
    the same answers from their FAISS indexes."""
    x, y = StoredIndex.load(a), StoredIndex.load(b)
    assert x.files == y.files
    np.testing.assert_array_equal(x.vectors, y.vectors)
    assert x.kind == y.kind and x.manifest["count"] == y.manifest["count"]
    q = np.random.default_rng(0).standard_normal((5, x.vectors.shape[1])).astype(np.float32)
    for s, t in zip(search_vectors(x.faiss_index, x.kind, q, 4), search_vectors(y.faiss_index, y.kind, q, 4)):
        np.testing.assert_array_equal(s, t)


def test_fresh_build(photos, tmp_path):
    embed = PixelEmbedder()
    report = build_index([photos], tmp_path / "idx", embed, IDENTITY, chunk_size=4, batch_size=3, progress=False)
    idx = StoredIndex.load(tmp_path / "idx")
    names = [Path(f.path).name for f in idx.files]
    assert names == [f"img-{i:03d}.png" for i in range(10)]  # sorted by path; the hidden folder is left out
    assert all(os.path.isabs(f.path) for f in idx.files)
    assert report.total == 10 and report.embedded == 10 and report.reused == 0 and embed.seen == 10
    # the unreadable files are counted, each with open_image's sentence (what classify prints)
    assert len(report.skipped) == 2 and idx.manifest["skipped"] == report.skipped
    assert any("broken.jpg" in r and "cannot decode" in r for r in report.skipped)
    assert any("notes.png" in r and "not an image file" in r for r in report.skipped)
    # the stored vectors are the embedder's, normalised, in file order
    expected = PixelEmbedder()([__import__("PIL.Image").Image.open(f.path).convert("RGB") for f in idx.files])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(idx.vectors, expected, rtol=1e-6, atol=1e-6)
    assert idx.model == IDENTITY and idx.kind == "flat" and report.kind == "flat"
    assert not (tmp_path / "idx" / PARTIAL).exists()  # the chunks went with the finished build
    # no pickle anywhere: the vectors load with allow_pickle=False, the file list is JSON lines
    np.load(tmp_path / "idx" / VECTORS, allow_pickle=False)
    assert len((tmp_path / "idx" / FILES).read_text().splitlines()) == 10


def test_refresh_adds_drops_and_reembeds_changed_and_equals_fresh_build(photos, tmp_path):
    build_index([photos], tmp_path / "idx", PixelEmbedder(), IDENTITY, chunk_size=4, progress=False)
    # one new image, one deleted, one rewritten with other pixels (size and mtime change), one only touched
    write_images(photos / "trip", 1, seed=9, start=50)
    (photos / "img-001.png").unlink()
    changed = photos / "trip" / "img-007.png"
    write_images(tmp_path / "other", 1, seed=11)[0].replace(changed)
    touched = photos / "img-002.png"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))

    embed = PixelEmbedder()
    report = build_index([photos], tmp_path / "idx", embed, IDENTITY, chunk_size=4, progress=False)
    assert embed.seen == 3  # the new, the changed and the touched image; the 7 others are kept
    assert (report.embedded, report.reused, report.removed, report.total) == (3, 7, 1, 10)
    fresh = PixelEmbedder()
    build_index([photos], tmp_path / "fresh", fresh, IDENTITY, chunk_size=5, progress=False)
    assert fresh.seen == 10
    _assert_same_index(tmp_path / "idx", tmp_path / "fresh")
    paths = [Path(f.path).name for f in StoredIndex.load(tmp_path / "idx").files]
    assert len(paths) == len(set(paths)) and "img-001.png" not in paths and "img-050.png" in paths

    again = PixelEmbedder()
    report = build_index([photos], tmp_path / "idx", again, IDENTITY, progress=False)
    assert again.seen == 0 and report.embedded == 0 and report.reused == 10  # nothing changed: nothing embedded
    _assert_same_index(tmp_path / "idx", tmp_path / "fresh")


class Killed(Exception):
    pass


def test_killed_build_resumes_without_losing_or_repeating_images(photos, tmp_path):
    out = tmp_path / "idx"
    first = PixelEmbedder()

    def kill_after_two_chunks(i: int) -> None:
        if i == 1:
            raise Killed

    with pytest.raises(Killed):
        build_index([photos], out, first, IDENTITY, chunk_size=3, batch_size=2, progress=False,
                    after_chunk=kill_after_two_chunks)
    # two chunks of 3 files saved: broken.jpg (skipped) and img-000..004 (embedded), in path order
    assert first.seen == 5
    assert len(list((out / PARTIAL).glob("chunk-*.json"))) == 2
    with pytest.raises(SnapsightError, match="interrupted"):
        StoredIndex.load(out)

    second = PixelEmbedder()
    report = build_index([photos], out, second, IDENTITY, chunk_size=3, progress=False)
    assert second.seen == 5  # only the images the killed build had not saved
    assert first.seen + second.seen == 10 and report.total == 10 and report.reused == 5
    assert len(report.skipped) == 2  # the one skipped before the kill is still reported
    build_index([photos], tmp_path / "fresh", PixelEmbedder(), IDENTITY, progress=False)
    _assert_same_index(out, tmp_path / "fresh")


def test_killed_refresh_keeps_the_previous_index(photos, tmp_path):
    out = tmp_path / "idx"
    build_index([photos], out, PixelEmbedder(), IDENTITY, progress=False)
    before = (out / MANIFEST).read_text()
    write_images(photos / "new", 5, seed=5, start=100)
    killed = PixelEmbedder()
    with pytest.raises(Killed):
        build_index([photos], out, killed, IDENTITY, chunk_size=2, progress=False,
                    after_chunk=lambda i: (_ for _ in ()).throw(Killed))
    assert (out / MANIFEST).read_text() == before and StoredIndex.load(out).manifest["count"] == 10
    # the first chunk (broken.jpg, tried again, and new/img-100.png) was saved before the kill
    assert killed.seen == 1
    resumed = PixelEmbedder()
    report = build_index([photos], out, resumed, IDENTITY, chunk_size=2, progress=False)
    assert resumed.seen == 4 and report.total == 15 and report.embedded == 4  # img-100 is not embedded again


def test_partial_chunks_of_another_model_are_discarded(photos, tmp_path):
    out = tmp_path / "idx"
    with pytest.raises(Killed):
        build_index([photos], out, PixelEmbedder(), IDENTITY, chunk_size=3, progress=False,
                    after_chunk=lambda i: (_ for _ in ()).throw(Killed))
    other = dict(IDENTITY, fingerprint="p2")
    embed = PixelEmbedder()
    build_index([photos], out, embed, other, progress=False)
    assert embed.seen == 10 and StoredIndex.load(out).model == other


def test_index_of_another_model_is_refused(photos, tmp_path):
    build_index([photos], tmp_path / "idx", PixelEmbedder(), IDENTITY, progress=False)
    with pytest.raises(SnapsightError, match="another --out") as e:
        build_index([photos], tmp_path / "idx", PixelEmbedder(), dict(IDENTITY, fingerprint="other"), progress=False)
    assert "\n" not in str(e.value)


def test_bad_folders_and_no_readable_image(tmp_path):
    with pytest.raises(SnapsightError, match="folder not found"):
        scan_folders([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapsightError, match="has no images"):
        scan_folders([tmp_path / "empty"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_text("x")
    with pytest.raises(SnapsightError, match="none of the 1 images could be read"):
        build_index([tmp_path / "bad"], tmp_path / "idx", PixelEmbedder(), IDENTITY, progress=False)
    with pytest.raises(SnapsightError, match="index kind"):
        build_index([tmp_path / "bad"], tmp_path / "idx", PixelEmbedder(), IDENTITY,
                    config=VectorIndexConfig(kind="lsh"), progress=False)


def test_index_kind_by_size_and_forced(photos, tmp_path):
    cfg = VectorIndexConfig(flat_max=5, large_kind="hnsw")
    report = build_index([photos], tmp_path / "auto", PixelEmbedder(), IDENTITY, config=cfg, progress=False)
    assert report.kind == "hnsw"  # 10 images > flat_max
    manifest = json.loads((tmp_path / "auto" / MANIFEST).read_text())
    assert manifest["index"] == {"kind": cfg.large_kind, "config": cfg.to_dict()}
    for kind in ("flat", "ivf", "hnsw"):
        shutil.rmtree(tmp_path / "auto")
        report = build_index([photos], tmp_path / "auto", PixelEmbedder(), IDENTITY,
                             config=VectorIndexConfig(kind=kind), progress=False)
        idx = StoredIndex.load(tmp_path / "auto")
        assert report.kind == kind == idx.kind
        scores, ids = search_vectors(idx.faiss_index, idx.kind, idx.vectors[3:4], 1)
        assert ids[0, 0] == 3 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)  # each image finds itself
