"""`snapsight index` and `snapsight search` end to end with a tiny CLIP: output formats, text and image queries
checked against a brute-force search, the other-model refusal, skipped files and user errors."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from snapsight.cli import main
from tests.search.conftest import write_images


@pytest.fixture
def index_dir(photos, tmp_path, tiny_open_clip_dir, capsys) -> Path:
    out = tmp_path / "idx"
    assert main(["index", str(photos), "--model", str(tiny_open_clip_dir), "--out", str(out), "--no-progress",
                 "--precision", "fp32"]) == 0
    capsys.readouterr()
    return out


def test_index_prints_a_summary_and_counts_skipped_files(capsys, photos, tiny_open_clip_dir, tmp_path):
    index_dir = tmp_path / "idx"
    assert main(["index", str(photos), "--model", str(tiny_open_clip_dir), "--out", str(index_dir), "--no-progress",
                 "--precision", "fp32"]) == 0
    captured = capsys.readouterr()
    assert "indexed 10 images" in captured.out and "10 embedded, 0 unchanged, 0 dropped" in captured.out
    assert "(flat, 32-d)" in captured.out
    assert f"skipped {photos / 'broken.jpg'}: cannot decode image" in captured.err
    assert f"skipped {photos / 'notes.png'}: not an image file" in captured.err
    assert "2 of 12 images skipped (unreadable)" in captured.err
    write_images(photos / "later", 2, seed=7, start=200)
    assert main(["index", str(photos), "--model", str(tiny_open_clip_dir), "--out", str(index_dir),
                 "--no-progress", "--precision", "fp32"]) == 0
    assert "indexed 12 images" in capsys.readouterr().out


def _hits(capsys, *argv: str) -> list[dict]:
    assert main(["search", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_image_query_finds_the_image_itself(index_dir, photos, capsys):
    query = photos / "trip" / "img-008.png"
    hits = _hits(capsys, str(index_dir), "--image", str(query), "--top-k", "3")
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["path"] == str(query.absolute()) and hits[0]["score"] > 0.99
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_text_query_agrees_with_brute_force(index_dir, capsys):
    from snapsight.search import StoredIndex
    from snapsight.zeroshot import ZeroShotClassifier, ZeroShotConfig

    hits = _hits(capsys, str(index_dir), "a red car", "--top-k", "10", "--precision", "fp32", "--templates", "none")
    idx = StoredIndex.load(index_dir)
    clf = ZeroShotClassifier.load(idx.model["spec"], config=ZeroShotConfig(precision="fp32", cache_dir=""))
    cos = idx.vectors @ clf.encode_text(["a red car"]).numpy()[0]
    order = np.argsort(-cos)
    assert [h["path"] for h in hits] == [idx.files[i].path for i in order]
    np.testing.assert_allclose([h["score"] for h in hits], cos[order], atol=1e-4)
    # the default: the mean over the default templates' prompts, a different query vector
    templated = _hits(capsys, str(index_dir), "a red car", "--precision", "fp32")
    assert [h["score"] for h in templated] != [h["score"] for h in hits]


def test_table_and_csv_formats(index_dir, capsys, photos):
    assert main(["search", str(index_dir), "--image", str(photos / "img-000.png"), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("  1. cos +1.000") and lines[0].endswith("img-000.png")
    assert main(["search", str(index_dir), "shoes", "--format", "csv", "--top-k", "4"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["rank", "path", "score"] and [r[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert all(-1.0 <= float(r[2]) <= 1.0 for r in rows[1:])


def test_query_with_another_model_is_refused(index_dir, capsys, tiny_hf_dir, tiny_open_clip_dir):
    assert main(["search", str(index_dir), "a red car", "--model", str(tiny_hf_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' own loading bar
    assert err.startswith("error: ")
    assert "another model" in err and str(tiny_open_clip_dir) in err
    # the index's own model given explicitly is accepted
    assert main(["search", str(index_dir), "a red car", "--model", str(tiny_open_clip_dir)]) == 0


def test_changed_weights_are_refused(index_dir, capsys, tiny_open_clip_dir, tmp_path):
    import shutil

    from tests.zeroshot.conftest import build_tiny_open_clip, save_open_clip_dir

    moved = tmp_path / "model"
    save_open_clip_dir(build_tiny_open_clip(seed=0), moved)
    assert main(["index", str(index_dir.parent / "photos"), "--model", str(moved), "--out", str(tmp_path / "i2"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    shutil.rmtree(moved)
    save_open_clip_dir(build_tiny_open_clip(seed=1), moved)  # other weights at the same path
    assert main(["search", str(tmp_path / "i2"), "shoes"]) == 2
    assert "weights differ" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["search", "{idx}"], "either a text query"),
    (["search", "{idx}", "cat", "--image", "x.png"], "either a text query"),
    (["search", "{idx}", "cat", "--top-k", "0"], "--top-k must be at least 1"),
    (["search", "{idx}", "cat", "--templates", "fancy"], "unknown template set"),
    (["search", "{tmp}", "cat"], "is not a snapsight image index"),
    (["search", "{tmp}/nothing", "cat"], "index folder not found"),
    (["search", "{idx}", "--image", "{tmp}/missing.png"], "missing.png: file not found"),
    (["index", "{tmp}/nothing", "--out", "{tmp}/o"], "folder not found"),
    (["index", "{idx}", "--out", "{tmp}/o", "--model", "{model}"], "has no images"),
])
def test_user_errors_exit_2_with_one_line(index_dir, capsys, tmp_path, tiny_open_clip_dir, argv, message):
    capsys.readouterr()
    argv = [a.format(idx=index_dir, tmp=tmp_path, model=tiny_open_clip_dir) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
