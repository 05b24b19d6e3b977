import gzip

import numpy as np
import pytest

from snapsight.data.fashion_mnist import DEBIAN_PATH, load_fashion_mnist
from snapsight.errors import SnapsightError


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_reads_idx_written_here(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    x, y = load_fashion_mnist("test", tmp_path)
    assert x.shape == (5, 28, 28) and (x == imgs).all() and y.tolist() == [0, 1, 2, 3, 4]


def test_missing_gives_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr("snapsight.data.fashion_mnist.DEBIAN_PATH", tmp_path / "nope")
    with pytest.raises(SnapsightError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)


@pytest.mark.skipif(not DEBIAN_PATH.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_package():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and set(np.unique(y)) == set(range(10))
