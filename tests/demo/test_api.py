"""The demo's API through gradio_client, against a demo launched on localhost with a tiny random CLIP."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.demo.conftest import png_bytes, write_photo


def _confidences(result: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in result["confidences"]}


def _call_error(client, *args, api_name="/classify") -> str:
    with pytest.raises(Exception) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


def test_classify_returns_ranked_probabilities(client, tmp_path):
    from gradio_client import handle_file

    path = write_photo(tmp_path / "photo.png")
    result = client.predict(handle_file(str(path)), "cat, dog, pizza", api_name="/classify")
    conf = _confidences(result)
    assert set(conf) == {"cat", "dog", "pizza"}
    probs = [c["confidence"] for c in result["confidences"]]
    assert probs == sorted(probs, reverse=True)
    assert abs(sum(probs) - 1.0) < 1e-4  # 3 labels <= top-k 5: the whole distribution
    assert result["label"] == result["confidences"][0]["label"]


def test_api_matches_the_library(client, demo_server, tmp_path, zeroshot_api):
    """The demo adds no logic: its answer is ZeroShotClassifier.classify's answer."""
    from gradio_client import handle_file

    path = write_photo(tmp_path / "same.png", seed=3)
    result = client.predict(handle_file(str(path)), "cat\nsunset\npizza\nrocket", api_name="/classify")
    _, app, _ = demo_server
    clf = app.zeroshot.get(app.start_spec)
    ref = clf.classify([Image.open(path).convert("RGB")], ["cat", "sunset", "pizza", "rocket"], top_k=5)[0]
    got = _confidences(result)
    assert list(got) == ref.labels
    np.testing.assert_allclose([got[l] for l in ref.labels], ref.probs, atol=1e-5)


def test_top_k_and_none_of_these_threshold(client, tmp_path):
    from gradio_client import handle_file

    path = handle_file(str(write_photo(tmp_path / "k.png", seed=4)))
    top2 = client.predict(path, "a, b, c, d", "default", 2, 0.0, api_name="/classify")
    assert len(top2["confidences"]) == 2
    # a random model's cosines are far below 0.99, so every label is rejected
    rejected = client.predict(path, "a, b, c", "default", 5, 0.99, api_name="/classify")
    assert rejected["label"] == "none of these" and len(rejected["confidences"]) == 3


def test_endpoint_signature_is_image_then_labels(client):
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/classify"]
    params = info["parameters"]
    assert [p["component"] for p in params[:2]] == ["Image", "Textbox"]
    assert not params[0]["parameter_has_default"] or params[0]["parameter_default"] is None
    assert all(p["parameter_has_default"] for p in params[2:])  # templates, top-k, threshold are optional
    assert [r["component"] for r in info["returns"]] == ["Label"]


def test_empty_labels_are_refused_with_a_message(client, tmp_path):
    from gradio_client import handle_file

    path = handle_file(str(write_photo(tmp_path / "e.png")))
    assert "No labels" in _call_error(client, path, " , ,\n ")
    assert "No labels" in _call_error(client, path, "")


def test_not_an_image_is_refused_with_a_message(client, tmp_path):
    from gradio_client import handle_file

    fake = tmp_path / "notes.png"
    fake.write_text("these are not pixels")
    assert "notes.png: not an image file" in _call_error(client, handle_file(str(fake)), "cat, dog")


def test_truncated_image_is_refused_with_a_message(client, tmp_path):
    from gradio_client import handle_file

    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    msg = _call_error(client, handle_file(str(cut)), "cat, dog")
    assert "cut.png: cannot decode image" in msg


def test_too_many_pixels_is_refused_before_decoding(client, tmp_path):
    from gradio_client import handle_file

    big = tmp_path / "big.png"
    Image.new("RGB", (1200, 1000), "white").save(big)  # 1.2 MP, a few kB: over the test's 1 MP limit
    assert "pixel limit" in _call_error(client, handle_file(str(big)), "cat, dog")


def test_too_large_upload_is_refused(client, tmp_path):
    from gradio_client import handle_file

    heavy = tmp_path / "heavy.png"
    heavy.write_bytes(png_bytes(Image.fromarray(
        np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8))))  # ~270 kB > 200 kB
    msg = _call_error(client, handle_file(str(heavy)), "cat, dog")
    assert "large" in msg.lower() or "size" in msg.lower() or "413" in msg


def test_several_images_give_a_table_and_bad_files_get_their_own_row(client, tmp_path):
    from gradio_client import handle_file

    good = [write_photo(tmp_path / f"g{i}.png", seed=i) for i in range(3)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    files = [handle_file(str(p)) for p in good + [bad]]
    table = client.predict(files, "cat, dog", api_name="/classify_many")
    rows = table["data"]
    assert [r[0] for r in rows] == ["g0.png", "g1.png", "g2.png", "bad.jpg"]
    assert all(r[1] in ("cat", "dog") and 0.5 <= r[2] <= 1.0 for r in rows[:3])
    assert rows[3][1].startswith("(skipped)")


def test_concurrent_requests_are_batched_and_the_model_loads_once(client, demo_server, tmp_path):
    from gradio_client import Client, handle_file

    url, app, loads = demo_server
    path = handle_file(str(write_photo(tmp_path / "c.png")))
    before = app.batcher.stats.largest
    clients = [Client(url, verbose=False) for _ in range(4)]
    barrier = threading.Barrier(8)

    def one(i):
        barrier.wait()
        return clients[i % 4].predict(path, "cat, dog, pizza", api_name="/classify")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert all(r["confidences"] for r in results)
    assert len({r["label"] for r in results}) == 1  # same image, same answer, whatever the batch
    assert max(before, app.batcher.stats.largest) > 1
    assert loads.counts == {app.start_spec: 1}


def test_classifier_tab_runs_a_probe_classifier(client, tmp_path):
    from gradio_client import handle_file

    files = [handle_file(str(write_photo(tmp_path / f"p{i}.png", seed=i))) for i in range(2)]
    label, table = client.predict("", files, 3, api_name="/classify_with_classifier")
    assert label["label"] in {"shirt", "shoe", "bag"}
    assert abs(sum(c["confidence"] for c in label["confidences"]) - 1.0) < 1e-4
    assert [r[0] for r in table["data"]] == ["p0.png", "p1.png"]


def test_model_picker_loads_on_demand_and_reports_what_is_loaded(demo_server, tiny_clip_dir):
    import gradio as gr

    from snapsight.demo.app import SOURCE_LOCAL, SOURCE_OPEN_CLIP
    from snapsight.demo.models import ModelChoice

    _, app, loads = demo_server
    spec, status, banner = app.load_model(SOURCE_LOCAL, "", "", str(tiny_clip_dir))
    assert spec == ModelChoice(str(tiny_clip_dir)) and loads.counts[spec] == 1
    assert "Loaded" in status and "embed dim: `16`" in status and "Offline default" not in banner
    app.load_model(SOURCE_LOCAL, "", "", str(tiny_clip_dir))
    assert loads.counts[spec] == 1  # cached
    with pytest.raises(gr.Error, match="open_clip model name"):
        app.load_model(SOURCE_OPEN_CLIP, " ", "", "")
    with pytest.raises(gr.Error, match="needs --pretrained"):
        app.load_model(SOURCE_OPEN_CLIP, "ViT-B-32", "", "")


def test_heatmap_step_returns_an_overlay(demo_server, tmp_path):
    _, app, _ = demo_server
    out = app.explain(str(write_photo(tmp_path / "h.png")), "cat")
    assert out.value is not None and "Why" in out.label
    assert app.explain(None, "cat") is None and app.explain(str(tmp_path / "h.png"), "cat", enabled=False) is None


def test_label_synonyms_reach_the_model(client, demo_server, tmp_path):
    """'cat: kitty | a photo of a cat' keeps its prompts: the answer equals the library's on the same text."""
    from gradio_client import handle_file

    path = write_photo(tmp_path / "syn.png", seed=5)
    text = "cat: kitty | a photo of a cat\ndog: puppy\npizza"
    result = client.predict(handle_file(str(path)), text, api_name="/classify")
    _, app, _ = demo_server
    clf = app.zeroshot.get(app.start_spec)
    ref = clf.classify([Image.open(path).convert("RGB")], text, top_k=5)[0]
    plain = clf.classify([Image.open(path).convert("RGB")], ["cat", "dog", "pizza"], top_k=5)[0]
    got = _confidences(result)
    assert set(got) == {"cat", "dog", "pizza"}
    np.testing.assert_allclose([got[l] for l in ref.labels], ref.probs, atol=1e-5)
    assert not np.allclose(sorted(ref.probs), sorted(plain.probs), atol=1e-6)  # synonyms changed the answer


def test_requests_do_not_rebuild_gradio_analytics(client, monkeypatch, tmp_path):
    """Gradio's queue rebuilt a pandas DataFrame of every past event after each request (for /monitoring);
    the demo turns that off, so the per-request server cost does not grow with uptime."""
    from gradio.queueing import Queue
    from gradio_client import handle_file

    built = []
    original = Queue._get_df
    monkeypatch.setattr(Queue, "_get_df", staticmethod(lambda records: built.append(len(records)) or original(records)))
    path = handle_file(str(write_photo(tmp_path / "a.png")))
    for _ in range(3):
        assert client.predict(path, "cat, dog", api_name="/classify")["confidences"]
    assert built == []


def test_monitoring_routes_are_off(demo_server):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(demo_server[0].rstrip("/") + "/monitoring/summary", timeout=10)
    assert info.value.code == 403
