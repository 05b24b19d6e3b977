"""Runtime helpers: device names from the user, the one cache folder, the bf16 question."""
from pathlib import Path

import pytest
import torch

from snapsight import runtime
from snapsight.errors import SnapsightError
from snapsight.runtime import CPU_FLAGS, autocast_dtype, bf16_supported, cache_root, cpu_features, resolve_device


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


def test_cpu_features_read_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\nbugs\t\t: spectre\n")
    assert cpu_features(info) == {"avx2": True, "avx512f": True, "avx512_bf16": False, "amx_bf16": False}
    assert cpu_features(tmp_path / "missing") == dict.fromkeys(CPU_FLAGS, False)
    assert set(cpu_features()) == set(CPU_FLAGS)


@pytest.mark.parametrize("native,expected", [(True, torch.bfloat16), (False, None)])
def test_auto_precision_on_cpu_is_bf16_only_where_native(monkeypatch, native, expected):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype(torch.device("cpu")) == expected
    assert bf16_supported(torch.device("cpu")) is native
