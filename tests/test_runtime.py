"""Runtime helpers: device names from the user, the one cache folder."""
from pathlib import Path

import pytest
import torch

from snapsight.errors import SnapsightError
from snapsight.runtime import cache_root, resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(SnapsightError, match="unknown device 'gpu0'"):  # was torch's RuntimeError traceback
        resolve_device("gpu0")
    with pytest.raises(SnapsightError):
        resolve_device("cuda:99")


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.setenv("SNAPSIGHT_CACHE", "")  # empty means unset, not the current folder
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "snapsight"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "snapsight"
    from snapsight.probe.features import default_cache_dir
    from snapsight.zeroshot.index import default_cache_dir as index_cache_dir

    assert default_cache_dir().parent == index_cache_dir().parent == cache_root()
