"""A demo served on localhost (random free port) on a tiny random open_clip model, shared by the API tests."""
from __future__ import annotations

import io
import socket
import threading

import numpy as np
import pytest
from PIL import Image

from snapsight.probe.classifier import save_classifier
from snapsight.probe.heads import LinearProbe
from tests.demo.tiny_clip import make_tiny_clip_dir

# Limits small enough to test with tiny files.
TEST_MAX_PIXELS = 1_000_000
TEST_MAX_FILE_SIZE = "200kb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_photo(path, w=40, h=32, seed=0, fmt=None):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    return make_tiny_clip_dir(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def zeroshot_api():
    from snapsight.zeroshot import ZeroShotClassifier

    return ZeroShotClassifier


@pytest.fixture(scope="session")
def tiny_probe_dir(tmp_path_factory):
    """A 3-class linear classifier on a random small_cnn, saved the way `snapsight probe` saves it."""
    import torch

    from snapsight.backbones import create_backbone
    from snapsight.preprocessing import Preprocessing

    torch.manual_seed(0)
    encoder = create_backbone("small_cnn", image_size=16, widths=(4, 8))
    head = LinearProbe(encoder.num_features, 3)
    arch = {"type": "snapsight", "backbone": "small_cnn", "image_size": 16, "backbone_kwargs": {"widths": [4, 8]}}
    out = tmp_path_factory.mktemp("probe")
    save_classifier(out, encoder, arch, head, ["shirt", "shoe", "bag"], Preprocessing(image_size=16), "linear")
    return out


class CountingLoads:
    """Wraps the demo's model loader to count how often each model is really loaded."""

    def __init__(self, loader):
        self.loader, self.counts, self._lock = loader, {}, threading.Lock()

    def __call__(self, key, device):
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
        return self.loader(key, device)


@pytest.fixture(scope="session")
def demo_server(tiny_clip_dir, tiny_probe_dir, zeroshot_api, tmp_path_factory):
    """(url, app, load counter) of a demo launched in this process on 127.0.0.1."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SNAPSIGHT_CACHE", str(tmp_path_factory.mktemp("label-index-cache")))  # keep ~/.cache clean
    from snapsight.demo import models
    from snapsight.demo.app import DemoApp, DemoConfig

    cfg = DemoConfig(
        model=f"local-dir:{tiny_clip_dir}", classifier=str(tiny_probe_dir), device="cpu", port=free_port(),
        max_pixels=TEST_MAX_PIXELS, max_file_size=TEST_MAX_FILE_SIZE, explain_samples=2, max_batch_size=16,
    )
    counter = CountingLoads(models._load_zeroshot)
    app = DemoApp(cfg, zeroshot=models.ModelCache(counter, device="cpu"))
    demo = app.build(app.preload())
    demo, url = app.launch(demo, block=False, quiet=True)
    yield url, app, counter
    demo.close()
    mp.undo()


@pytest.fixture(scope="session")
def client(demo_server):
    from gradio_client import Client

    return Client(demo_server[0], verbose=False)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
