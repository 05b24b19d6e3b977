"""The CLI side of issue 10: templates and numbers refused in one `error:` line (exit 2), the narrow-model note,
and what multi-label percentages mean, printed with them."""
from __future__ import annotations

import pytest

from snapsight.cli import main
from tests.demo.conftest import write_photo


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def common(tmp_path, tiny_clip_dir, monkeypatch):
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path / "cache"))
    return [str(write_photo(tmp_path / "x.png")), "--model", str(tiny_clip_dir), "--no-progress"]


@pytest.mark.parametrize("template", ["{} {}", "{:>1000000000}{{}}", "a {0}", "a {x} {}"])
def test_bad_templates_are_one_error_line(capsys, common, template):
    code, out, err = _run(capsys, ["classify", *common, "--labels", "cat, dog", "--templates", template])
    assert code == 2 and out == ""
    assert err.startswith("error: template") and "exactly one {}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags, words", [
    (["--threshold", "nan"], "--threshold is a cosine similarity: a number from -1 to 1"),
    (["--threshold", "inf"], "--threshold is a cosine similarity"),
    (["--threshold", "1.5"], "--threshold is a cosine similarity"),
    (["--top-k", "0"], "--top-k must be at least 1"),
    (["--top-k", "3"], "--top-k must be from 1 to the number of labels (2), got 3"),
    (["--set", "multi_label_min_prob=nan"], "multi_label_min_prob must be a number from 0 to 1"),
])
def test_bad_numbers_are_one_error_line(capsys, common, flags, words):
    code, out, err = _run(capsys, ["classify", *common, "--labels", "cat, dog", *flags])
    assert code == 2 and words in err and "Traceback" not in err


def test_multi_label_output_says_what_the_percentages_are(capsys, common):
    code, out, err = _run(capsys, ["classify", *common, "--labels", "cat, dog", "--multi-label"])
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("(multi-label scores are sigmoid(") and "cos(image, a generic photo)" in first
    assert "present = 50% or more" in first
    code, out, err = _run(capsys, ["classify", *common, "--labels", "cat, dog", "--multi-label", "--threshold",
                                   "0.2", "--format", "json"])
    assert code == 0 and "note: multi-label scores are sigmoid(" in err and "cosine >= 0.2" in err
    assert out.lstrip().startswith("[")  # JSON stays parseable


def test_default_model_prints_the_demo_note(capsys, tmp_path, tiny_clip_dir, monkeypatch):
    from snapsight.commands.classify import DEFAULT_MODEL_NOTE
    from snapsight.zeroshot.classify import ZeroShotClassifier

    load = ZeroShotClassifier.load.__func__
    monkeypatch.setattr(ZeroShotClassifier, "load", classmethod(
        lambda cls, model=None, *a, **kw: load(cls, str(tiny_clip_dir) if model is None else model, *a, **kw)))
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path / "cache"))
    code, out, err = _run(capsys, ["classify", str(write_photo(tmp_path / "y.png")), "--labels", "cat, dog",
                                   "--no-progress"])
    assert code == 0 and f"note: {DEFAULT_MODEL_NOTE}" in err
    code, out, err = _run(capsys, ["classify", str(write_photo(tmp_path / "y.png")), "--labels", "cat, dog",
                                   "--no-progress", "--model", str(tiny_clip_dir)])
    assert DEFAULT_MODEL_NOTE not in err
