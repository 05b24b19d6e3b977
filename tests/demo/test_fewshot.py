"""The Zero-shot tab's few-shot panel: its checks, its answer against the library's, and that it is a page step
that cannot be called by name."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from snapsight.demo.fewshot import SLOTS, check_example_labels, slot_pairs
from snapsight.demo.guard import PUBLIC_API

COLOURS = {"cat": (220, 30, 30), "sunset": (30, 220, 30), "pizza": (30, 30, 220)}


def _colour(path, rgb, seed):
    rng = np.random.RandomState(seed)
    pixels = np.clip(np.array(rgb)[None, None] + rng.randint(-20, 21, (32, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture
def slots(tmp_path):
    """Two example images per label, as the page sends them (label, [upload payloads], ...)."""
    values = []
    for n, (name, rgb) in enumerate(COLOURS.items()):
        files = [{"path": _colour(tmp_path / f"{name}{i}.png", rgb, 10 * n + i), "orig_name": f"{name}{i}.png"}
                 for i in range(2)]
        values += [name, files]
    return values + [None, None] * (SLOTS - len(COLOURS))


@pytest.fixture(scope="module")
def app(tiny_clip_dir, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SNAPSIGHT_CACHE", str(tmp_path_factory.mktemp("fewshot-cache")))
    from snapsight.demo.app import DemoApp, DemoConfig

    app = DemoApp(DemoConfig(model=f"local-dir:{tiny_clip_dir}", device="cpu", max_images=8))
    app.build(app.preload())
    yield app
    mp.undo()


def test_slots_are_read_as_label_and_files():
    assert slot_pairs(["cat", ["a", None], "", None, "  dog ", "b"]) == [("cat", ["a"]), ("dog", ["b"])]
    with pytest.raises(Exception, match="no label"):
        slot_pairs(["", ["a"]])
    with pytest.raises(Exception, match="must be text"):
        slot_pairs([{"x": 1}, ["a"]])
    with pytest.raises(Exception, match="longer than"):
        slot_pairs(["x" * 500, ["a"]])


def test_example_labels_must_be_among_the_labels_and_within_the_limit():
    check_example_labels([("Cat", ["a"])], ["cat", "dog"], 8)
    with pytest.raises(Exception, match="'ferret'"):
        check_example_labels([("ferret", ["a"]), ("cat", ["b"])], ["cat", "dog"], 8)
    with pytest.raises(Exception, match="9 example images is more than the 8"):
        check_example_labels([("cat", ["a"] * 9)], ["cat", "dog"], 8)


def test_panel_answers_as_the_library_does(app, slots, tmp_path):
    query = _colour(tmp_path / "query.png", COLOURS["pizza"], 99)
    labels = "cat, sunset, pizza, rocket"
    data, note = app.fewshot.classify({"path": query, "orig_name": "query.png"}, labels, "default", 4, 0.0, None,
                                      *slots)
    clf = app.zeroshot.get(app.start_spec)
    examples = {slots[i]: [Image.open(f["path"]).convert("RGB") for f in slots[i + 1]]
                for i in range(0, 2 * len(COLOURS), 2)}
    ref = clf.with_examples(examples, cache_dir="").classify([Image.open(query).convert("RGB")],
                                                              ["cat", "sunset", "pizza", "rocket"], top_k=4)[0]
    got = {c["label"]: c["confidence"] for c in data["confidences"]}
    assert list(got) == ref.labels and data["label"] == "pizza"
    np.testing.assert_allclose([got[k] for k in ref.labels], ref.probs, atol=1e-5)
    plain = clf.classify([Image.open(query).convert("RGB")], ["cat", "sunset", "pizza", "rocket"], top_k=4)[0]
    assert plain.labels[0] != "pizza"  # the examples changed the answer
    assert "6 example image(s) used" in note and "leave-one-out" in note


def test_panel_refusals_are_messages(app, slots, tmp_path):
    import gradio as gr

    query = {"path": _colour(tmp_path / "q.png", (0, 0, 0), 1), "orig_name": "q.png"}
    with pytest.raises(gr.Error, match="not among the labels"):
        app.fewshot.classify(query, "cat, rocket", "default", 2, 0.0, None, *slots)
    with pytest.raises(gr.Error, match="No examples"):
        app.fewshot.classify(query, "cat, rocket", "default", 2, 0.0, None, *([None] * (2 * SLOTS)))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    bad = ["cat", [{"path": str(tmp_path / "bad.png"), "orig_name": "bad.png"}]] + [None] * (2 * SLOTS - 2)
    with pytest.raises(gr.Error, match="bad.png"):
        app.fewshot.classify(query, "cat, rocket", "default", 2, 0.0, None, *bad)


def test_panel_is_a_private_page_step(app):
    fns = [fn for fn in app.blocks.fns.values() if getattr(fn.fn, "__func__", None) is type(app.fewshot).classify]
    assert len(fns) == 1
    assert fns[0].api_visibility == "private" and fns[0].api_name not in PUBLIC_API
    assert "classify_with_examples" not in PUBLIC_API
