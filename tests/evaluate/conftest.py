"""Tiny models and data for the trust-report tests: a tiny random open_clip folder (tests/zeroshot) and
hand-made functions on pixels whose behaviour under each check is known."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.zeroshot.conftest import build_tiny_open_clip, save_open_clip_dir


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return save_open_clip_dir(build_tiny_open_clip(), tmp_path_factory.mktemp("eval-oc") / "tiny-clip")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path / "snapsight-cache"))


def write_labeled_csv(root: Path, n_per_class: int = 12, classes=("cat", "dog"), seed: int = 0) -> Path:
    """Random-noise images in ``root/img``, listed in ``root/data.csv`` with a ``site`` column (a, b alternating)."""
    rng = np.random.RandomState(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = ["path,label,site"]
    k = 0
    for c in classes:
        for _ in range(n_per_class):
            Image.fromarray(rng.randint(0, 256, (36, 40, 3), dtype=np.uint8)).save(root / "img" / f"{k}.png")
            lines.append(f"img/{k}.png,{c},{'ab'[k % 2]}")
            k += 1
    (root / "data.csv").write_text("\n".join(lines) + "\n")
    return root / "data.csv"
