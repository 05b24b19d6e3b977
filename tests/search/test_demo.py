"""The demo's Search tab on an index chosen at launch: text and image queries through the public API, a gallery
with scores, and only the index's own files served."""
from __future__ import annotations

import pytest

from snapsight.cli import main
from tests.demo.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def served(photos, tmp_path, tiny_open_clip_dir, monkeypatch, capsys):
    from snapsight.demo.app import DemoApp, DemoConfig

    out = tmp_path / "idx"
    assert main(["index", str(photos), "--model", str(tiny_open_clip_dir), "--out", str(out), "--no-progress"]) == 0
    cfg = DemoConfig(model=f"local-dir:{tiny_open_clip_dir}", index=str(out), device="cpu", port=free_port())
    app = DemoApp(cfg)
    demo = app.build(app.preload())
    demo, url = app.launch(demo, block=False, quiet=True)
    yield url, app
    demo.close()


def test_search_tab_text_and_image_queries(served, photos):
    import httpx
    from gradio_client import Client, handle_file

    url, app = served
    client = Client(url, verbose=False)
    query = photos / "trip" / "img-007.png"
    gallery = client.predict("", handle_file(str(query)), 3, api_name="/search")
    assert len(gallery) == 3
    assert gallery[0]["caption"].endswith("  img-007.png") and float(gallery[0]["caption"].split()[0]) > 0.99
    scores = [float(item["caption"].split()[0]) for item in gallery]
    assert scores == sorted(scores, reverse=True)
    hits = app.search_tab.searcher.search_text("a red car", 5)
    gallery = client.predict("a red car", None, 5, api_name="/search")
    assert [item["caption"].split()[1] for item in gallery] == [h.path.rsplit("/", 1)[1] for h in hits]
    with pytest.raises(Exception, match="one of the two"):
        client.predict("", None, 5, api_name="/search")
    # Gradio serves the index's images and nothing else next to them (broken.jpg is in the folder, not the index)
    allowed = set(app.search_tab.allowed_paths())
    assert str(query.absolute()) in allowed and str(photos / "broken.jpg") not in allowed and len(allowed) == 10
    assert httpx.get(f"{url}gradio_api/file={query.absolute()}", timeout=30).status_code == 200
    r = httpx.get(f"{url}gradio_api/file={photos / 'broken.jpg'}", timeout=30)
    assert r.status_code in (403, 404)


def test_a_bad_index_fails_at_start(tmp_path):
    from snapsight.demo.app import DemoApp, DemoConfig
    from snapsight.errors import SnapsightError

    with pytest.raises(SnapsightError, match="index folder not found"):
        DemoApp(DemoConfig(index=str(tmp_path / "none"), device="cpu"))
