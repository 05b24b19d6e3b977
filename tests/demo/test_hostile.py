"""The demo under hostile use: templates, numbers, budgets, endpoints, paths and uploads (no timing thresholds)."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from tests.demo.conftest import free_port, write_photo

TEMPLATE_ATTACKS = ["{:>1000000000}{{}}", "{} {}", "{0}", "a {x} of a {}", "{}}", "no placeholder {"]


def _call_error(client, *args, api_name="/classify") -> str:
    with pytest.raises(Exception) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


# ------------------------------------------------------------------------------------------ templates (library)
@pytest.mark.parametrize("template", TEMPLATE_ATTACKS)
def test_templates_other_than_one_plain_placeholder_are_refused(template):
    from snapsight import SnapsightError
    from snapsight.labels import resolve_templates

    with pytest.raises(SnapsightError, match="exactly one \\{\\} where the label goes|unknown template set"):
        resolve_templates(template)
    with pytest.raises(SnapsightError):
        resolve_templates(["a photo of a {}.", template])


def test_templates_are_filled_without_str_format():
    """A label may contain braces; substitution is plain text, so a format spec in it is never run."""
    from snapsight.labels import load_label_set

    label_set = load_label_set(["{:>1000000000}", "cat"])
    texts, _ = label_set.prompts(["a photo of a {}."])
    assert texts == ["a photo of a {:>1000000000}.", "a photo of a cat."]
    with pytest.raises(Exception, match="exactly one"):
        load_label_set("cat: a {} and a {}")  # a per-label template obeys the same rule


# --------------------------------------------------------------------------------------------- over the API
@pytest.mark.parametrize("template", TEMPLATE_ATTACKS[:3])
def test_api_refuses_bad_templates_in_one_sentence(client, tmp_path, template):
    from gradio_client import handle_file

    path = handle_file(str(write_photo(tmp_path / "t.png")))
    msg = _call_error(client, path, "cat, dog", template)
    assert "exactly one {} where the label goes" in msg and "upstream" not in msg


@pytest.mark.parametrize("top_k", ["abc", -1, 0, 10**9, 2.5, "nan", "Infinity"])
def test_api_refuses_bad_top_k(client, tmp_path, top_k):
    from gradio_client import handle_file

    path = handle_file(str(write_photo(tmp_path / "k.png")))
    msg = _call_error(client, path, "cat, dog", "default", top_k)
    assert "Top-k must be a whole number from 1 to 20" in msg


@pytest.mark.parametrize("threshold", ["abc", "NaN", "inf", -0.5, 1.5])
def test_api_refuses_bad_threshold(client, tmp_path, threshold):
    from gradio_client import handle_file

    path = handle_file(str(write_photo(tmp_path / "h.png")))
    msg = _call_error(client, path, "cat, dog", "default", 2, threshold)
    assert "threshold must be a number from 0 to 1" in msg


def test_top_k_above_the_labels_shows_them_all(client, tmp_path):
    from gradio_client import handle_file

    path = handle_file(str(write_photo(tmp_path / "all.png")))
    result = client.predict(path, "cat, dog", "default", 20, 0.0, api_name="/classify")
    assert len(result["confidences"]) == 2


def test_label_budget_is_refused_before_any_work(client, demo_server, tmp_path):
    from gradio_client import handle_file

    _, app, _ = demo_server
    path = handle_file(str(write_photo(tmp_path / "b.png")))
    chunks = app.text_chunks
    too_many = ", ".join(f"label {i}" for i in range(app.cfg.max_labels + 1))
    assert "more than the 1,000 this demo accepts" in _call_error(client, path, too_many)
    prompts = ", ".join(f"thing {i}" for i in range(app.cfg.max_prompts // 80 + 1))  # x 80 clip80 templates
    assert "prompts, more than the 8,000" in _call_error(client, path, prompts, "clip80")
    assert app.text_chunks == chunks  # nothing was embedded


def test_only_the_public_api_is_callable_by_name(demo_server):
    import httpx

    url, _, _ = demo_server
    from gradio_client import Client

    named = set(Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == {"/classify", "/classify_many", "/classify_with_classifier"}
    for name in ("load_model", "explain"):
        for route in (f"gradio_api/call/{name}", f"gradio_api/call/v2/{name}", f"gradio_api/run/{name}"):
            r = httpx.post(url + route, json={"data": ["Local folder", "", "", "/"]}, timeout=30)
            assert r.status_code == 404, (route, r.text)
    r = httpx.post(url + "gradio_api/call/classify", json={"data": [None, "cat", "default", 5, 0, False, None]},
                   timeout=30)
    assert r.status_code == 200 and "event_id" in r.json()


@pytest.mark.parametrize("path", ["/etc/hostname", "../../etc/hostname", "https://example.com/cat.jpg",
                                  "file:///etc/hostname"])
def test_files_must_be_uploads_and_the_refusal_is_one_log_line(demo_server, capfd, caplog, path):
    import logging

    import httpx

    url, _, _ = demo_server
    caplog.set_level(logging.INFO, logger="snapsight.demo.app")
    capfd.readouterr()
    r = httpx.post(url + "gradio_api/call/classify", timeout=30, json={
        "data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "cat, dog", "default", 5, 0, False, None]})
    assert r.status_code == 400 and "must be uploaded first" in r.json()["detail"]
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert [rec.message for rec in caplog.records if "not uploaded" in rec.message]


# -------------------------------------------------------------------------------------- paths and --host
def _offline_app(**cfg):
    from snapsight.demo.app import DemoApp, DemoConfig
    from snapsight.demo.models import ModelCache

    def loader(key, device):
        raise AssertionError(f"{key} must not be loaded")

    return DemoApp(DemoConfig(**cfg), zeroshot=ModelCache(loader), probes=ModelCache(loader))


@pytest.mark.parametrize("name, tag", [("local-dir:/srv/models", None), ("/srv/models/clip", None),
                                        ("../models", None), ("ViT-B-32", "/srv/weights.safetensors"),
                                        ("models/clip", None), ("config.json", None)])
def test_non_local_host_refuses_paths_in_every_model_field(name, tag):
    import gradio as gr

    from snapsight.demo.app import LOCAL_PATHS_OFF, SOURCE_LOCAL, SOURCE_OPEN_CLIP

    app = _offline_app(host="0.0.0.0")
    with pytest.raises(gr.Error) as info:
        app.load_model(SOURCE_OPEN_CLIP, name, tag or "", "")
    assert info.value.message == LOCAL_PATHS_OFF
    with pytest.raises(gr.Error) as info:
        app.load_model(SOURCE_LOCAL, "", "", name)
    assert info.value.message == LOCAL_PATHS_OFF


def test_one_message_for_every_path_that_cannot_be_used(tmp_path, tiny_probe_dir):
    """Missing, a file, an empty folder, a classifier folder: the same words, so answers do not map the disk."""
    import gradio as gr

    from snapsight.demo.app import SOURCE_LOCAL, SOURCE_OPEN_CLIP, UNUSABLE_PATH, DemoApp, DemoConfig
    from snapsight.demo.models import ModelCache, _load_zeroshot

    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    app = DemoApp(DemoConfig(device="cpu"), zeroshot=ModelCache(_load_zeroshot, device="cpu"))
    messages = set()
    for path in (tmp_path / "missing", tmp_path / "file.txt", tmp_path / "empty", tiny_probe_dir):
        for source, args in ((SOURCE_LOCAL, ("", "", str(path))), (SOURCE_OPEN_CLIP, (f"local-dir:{path}", "", ""))):
            with pytest.raises(gr.Error) as info:
                app.load_model(source, *args)
            messages.add(info.value.message)
    assert messages == {UNUSABLE_PATH}


# ------------------------------------------------------------------------------------------ fairness parts
def test_fair_lock_serves_waiters_in_arrival_order():
    from snapsight.demo.fairness import FairLock

    lock, order = FairLock(), []
    lock.acquire()
    threads = []
    for i in range(4):
        t = threading.Thread(target=lambda i=i: (lock.acquire(), order.append(i), lock.release()))
        t.start()
        threads.append(t)
        while len(lock._waiters) < i + 1:  # the i-th waiter is queued before the next one starts
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join(timeout=30)
    assert order == [0, 1, 2, 3]


def test_a_label_build_lets_a_waiting_batch_run_between_its_chunks():
    """While chunk 1 runs, an image batch asks for the model: it gets it before chunk 2 (not after the build)."""
    from snapsight.demo.fairness import ChunkedTextEncoder, FairLock

    turn, events = FairLock(), []
    in_chunk, batch_queued = threading.Event(), threading.Event()

    def encode(rows, n):
        events.append(f"chunk{len([e for e in events if e.startswith('chunk')]) + 1}")
        if len(events) == 1:
            in_chunk.set()
            batch_queued.wait(timeout=60)
        return torch.zeros(len(rows), 4)

    def batch():
        in_chunk.wait(timeout=60)
        t = threading.Thread(target=lambda: (turn.acquire(), events.append("batch"), turn.release()))
        t.start()
        while not turn._waiters:
            time.sleep(0.001)
        batch_queued.set()
        t.join(timeout=60)

    b = threading.Thread(target=batch)
    b.start()
    out = ChunkedTextEncoder(encode, turn, chunk_seconds=1e9, first_chunk=2, max_chunk=2)(torch.zeros(6, 3))
    b.join(timeout=60)
    assert out.shape == (6, 4)
    assert events == ["chunk1", "batch", "chunk2", "chunk3"]


def test_a_gone_client_stops_its_label_build_between_chunks():
    from snapsight.demo.fairness import Cancelled, ChunkedTextEncoder, FairLock

    calls = []
    encoder = ChunkedTextEncoder(lambda rows, n: calls.append(n) or torch.zeros(n, 2), FairLock(),
                                 gone=lambda: len(calls) >= 2, first_chunk=4, max_chunk=4)
    with pytest.raises(Cancelled):
        encoder(torch.zeros(100, 3))
    assert encoder.chunks == 2


def test_client_gone_reads_the_queue_events_of_the_session():
    from types import SimpleNamespace

    from snapsight.demo.fairness import ClientGone

    mine, other = SimpleNamespace(session_hash="s1", alive=True), SimpleNamespace(session_hash="s2", alive=True)
    blocks = SimpleNamespace(_queue=SimpleNamespace(active_jobs=[[mine], None, [other]]))
    gone = ClientGone(blocks, "s1")
    assert not gone()
    mine.alive = False  # what Gradio does when the session's event stream closes
    assert gone() and not ClientGone(blocks, "s2")() and not ClientGone(None, "s1")()


def test_one_build_per_label_set_and_the_others_wait_for_it():
    from snapsight.demo.fairness import LabelIndexes

    indexes, builds, release = LabelIndexes(), [], threading.Event()

    def build():
        builds.append(1)
        release.wait(timeout=60)
        return "index"

    results = []
    threads = [threading.Thread(target=lambda: results.append(indexes.get("k", build, 1000, lambda: False)))
               for _ in range(4)]
    for t in threads:
        t.start()
    while not builds:
        time.sleep(0.001)
    time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(timeout=60)
    assert results == ["index"] * 4 and builds == [1]


def test_decode_slots_bound_large_decodes_only_and_trim_after_a_burst():
    from snapsight.demo.fairness import DecodeSlots

    slots, inside, most = DecodeSlots(limit=1, large_pixels=10), [0], [0]
    lock = threading.Lock()

    def decode(pixels):
        with slots.slot(pixels):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=decode, args=(100,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert most[0] == 1
    slots._sem.acquire()  # every large slot taken: a small image still goes straight through
    done = threading.Event()
    threading.Thread(target=lambda: (decode(5), done.set())).start()
    assert done.wait(timeout=60)
    slots._sem.release()
    if slots._trim is not None:  # glibc
        assert slots.trims >= 1
        trims = slots.trims
        decode(5)  # a small image does not trigger another trim
        assert slots.trims == trims


# ------------------------------------------------------------------------------------------------- uploads
@pytest.fixture(scope="module")
def upload_server(tiny_clip_dir, zeroshot_api, tmp_path_factory):
    from snapsight.demo.app import DemoApp, DemoConfig

    cfg = DemoConfig(model=f"local-dir:{tiny_clip_dir}", device="cpu", port=free_port(), max_file_size="250kb",
                     max_upload_total="300kb", upload_max_age_s=1, upload_cleanup_every_s=1)
    app = DemoApp(cfg)
    demo = app.build(app.preload())
    demo, url = app.launch(demo, block=False, quiet=True)
    yield url, app
    demo.close()


def test_uploads_over_the_total_per_request_are_refused(upload_server):
    import httpx

    url, _ = upload_server
    files = [("files", (f"f{i}.bin", b"x" * 180_000, "application/octet-stream")) for i in range(2)]
    r = httpx.post(url + "gradio_api/upload", files=files, timeout=60)
    assert r.status_code == 413 and "more than the" in r.text
    one = httpx.post(url + "gradio_api/upload", files=files[:1], timeout=60)
    assert one.status_code == 200


def test_uploaded_files_are_deleted_after_their_age(upload_server, tmp_path):
    from pathlib import Path

    import httpx

    url, _ = upload_server
    with open(write_photo(tmp_path / "old.png"), "rb") as f:
        r = httpx.post(url + "gradio_api/upload", files=[("files", ("old.png", f, "image/png"))], timeout=60)
    [stored] = r.json()
    assert Path(stored).is_file()
    deadline = time.time() + 60  # swept every second once a second old; generous for a loaded machine
    while Path(stored).exists() and time.time() < deadline:
        time.sleep(0.5)
    assert not Path(stored).exists()


def test_a_client_that_disconnects_stops_its_label_build(upload_server, tmp_path, caplog):
    """A build slowed to ~0.1 s per prompt (1,000 prompts): the client reads its event stream for a moment and
    leaves; the build stops between chunks long before its end."""
    import logging

    import httpx

    url, app = upload_server
    clf = app.zeroshot.get(app.start_spec)
    fast = clf.encode_tokens

    def slow(tokens, batch_size=None):
        time.sleep(0.1)
        return fast(tokens, batch_size=batch_size)

    caplog.set_level(logging.INFO, logger="snapsight.demo.app")
    clf.encode_tokens = slow
    try:
        with open(write_photo(tmp_path / "d.png"), "rb") as f:
            [stored] = httpx.post(url + "gradio_api/upload", files=[("files", ("d.png", f, "image/png"))],
                                  timeout=60).json()
        labels = ", ".join(f"slow label {i}" for i in range(1000))
        data = [{"path": stored, "meta": {"_type": "gradio.FileData"}}, labels, "none", 5, 0, False, None]
        event = httpx.post(url + "gradio_api/call/classify", json={"data": data}, timeout=60).json()["event_id"]
        before = app.text_chunks
        with httpx.stream("GET", url + f"gradio_api/call/classify/{event}", timeout=60):
            while app.text_chunks == before:  # the build has started
                time.sleep(0.05)
        deadline = time.time() + 90  # Gradio notices a closed stream within its 10 s poll; generous on CI
        while not any("client disconnected" in r.message for r in caplog.records) and time.time() < deadline:
            time.sleep(0.2)
        assert any("classify stopped: the client disconnected" in r.message for r in caplog.records)
        stopped_at = app.text_chunks
        time.sleep(1.0)
        assert app.text_chunks == stopped_at and stopped_at - before < 1000
    finally:
        clf.encode_tokens = fast


def test_large_decodes_run_in_a_lower_priority_worker():
    import os

    from snapsight.demo.fairness import DecodeSlots

    slots = DecodeSlots(limit=1, large_pixels=10)
    here = threading.get_native_id()
    assert slots.decode(5, threading.get_native_id) == here  # small: in the caller's thread
    worker = slots.decode(100, threading.get_native_id)
    assert worker != here
    if hasattr(os, "getpriority"):
        niceness = slots.decode(100, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert niceness > os.getpriority(os.PRIO_PROCESS, here)


def test_multi_label_answers_say_what_the_percentages_are(demo_server, tmp_path, monkeypatch):
    """A multi-label answer comes with a notice saying what the percentages are and the rule for 'present'; a
    single-label answer does not."""
    import gradio as gr

    _, app, _ = demo_server
    notices: list[str] = []
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: notices.append(message))
    photo = str(write_photo(tmp_path / "m.png"))
    app.classify(photo, "cat, dog", multi_label=False)
    assert notices == []
    app.classify(photo, "cat, dog", multi_label=True, threshold=0.2)
    assert len(notices) == 1 and notices[0].startswith("multi-label scores are sigmoid(")
    assert "present = 50% or more and cosine >= 0.2" in notices[0]
