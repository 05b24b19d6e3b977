"""ModelCache loads each model once, even when many requests ask at the same moment."""
import threading
import time

import pytest

from snapsight.demo.app import DemoConfig, banner_markdown, is_loopback
from snapsight.demo.models import ModelCache, ModelChoice
from snapsight.errors import SnapsightError


def test_concurrent_gets_load_once():
    loads = []

    def loader(key, device):
        loads.append(key)
        time.sleep(0.05)
        return object()

    cache = ModelCache(loader)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(ModelChoice("m")))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [ModelChoice("m")]
    assert len(got) == 8 and all(g is got[0] for g in got)


def test_failed_load_is_not_cached_and_lru_evicts():
    attempts = []

    def loader(key, device):
        attempts.append(key)
        if key == "broken" and attempts.count("broken") == 1:
            raise SnapsightError("weights missing")
        return f"model:{key}"

    cache = ModelCache(loader, max_models=2)
    with pytest.raises(SnapsightError):
        cache.get("broken")
    assert cache.get("broken") == "model:broken"  # retried, e.g. after the user built the weights
    cache.get("a")
    cache.get("b")
    assert cache.loaded() == ["a", "b"]


def test_serving_defaults_are_local_and_private():
    cfg = DemoConfig()
    assert cfg.host == "127.0.0.1" and cfg.share is False
    assert cfg.local_paths_allowed
    assert not DemoConfig(host="0.0.0.0").local_paths_allowed
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("192.168.1.2")


def test_banner_names_the_offline_default():
    assert "Offline default model" in banner_markdown(ModelChoice())
    assert "pretrained CLIP" in banner_markdown(ModelChoice())
    assert "ViT-B-32 (openai)" in banner_markdown(ModelChoice("ViT-B-32", "openai"))


def test_demo_command_defaults():
    from snapsight.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.host == "127.0.0.1" and args.port == 7860 and args.share is False and args.model is None


def test_folders_are_told_apart_before_anything_loads(tmp_path):
    """The model picker refuses a classifier folder (its one message names the Classifier tab), and the
    Classifier tab refuses a folder that holds no classifier, both without calling a loader."""
    import gradio as gr

    from snapsight.artifacts.classifier import CLASSIFIER_JSON, CLASSIFIER_KIND
    from snapsight.demo.app import SOURCE_LOCAL, DemoApp

    def no_loading(key, device):
        raise AssertionError(f"{key} was loaded")

    clf = tmp_path / "clf"
    clf.mkdir()
    (clf / CLASSIFIER_JSON).write_text(f'{{"kind": "{CLASSIFIER_KIND}"}}')
    (tmp_path / "a.png").write_bytes(b"")
    app = DemoApp(DemoConfig(), zeroshot=ModelCache(no_loading), probes=ModelCache(no_loading))
    with pytest.raises(gr.Error, match="Classifier tab"):
        app.load_model(SOURCE_LOCAL, "", "", str(clf))
    with pytest.raises(gr.Error, match="cannot be used: give a folder this server can read that holds a classifier"):
        app.run_probe(str(tmp_path), [str(tmp_path / "a.png")])
