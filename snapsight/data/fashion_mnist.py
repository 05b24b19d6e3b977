"""Fashion-MNIST from its idx files (Debian package ``dataset-fashion-mnist`` or any folder).

Xiao et al. 2017. Looks in ``root`` if given, else ``$SNAPSIGHT_FASHION_MNIST``, else the Debian path.
Files may be gzipped (``*-idx3-ubyte.gz``) or plain.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import SnapsightError

DEBIAN_PATH = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def fashion_mnist_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the idx files, or a one-sentence error saying how to get them."""
    candidates = [Path(root)] if root else []
    if os.environ.get("SNAPSIGHT_FASHION_MNIST"):
        candidates.append(Path(os.environ["SNAPSIGHT_FASHION_MNIST"]))
    candidates.append(DEBIAN_PATH)
    for c in candidates:
        if _find(c, _FILES["train"][0]) or _find(c, _FILES["test"][0]):
            return c
    raise SnapsightError(
        "Fashion-MNIST idx files not found"
        + (f" in {root}" if root else "")
        + ": install them with `apt-get install dataset-fashion-mnist` or pass the folder holding "
        "train-images-idx3-ubyte(.gz)"
    )


def is_fashion_mnist_dir(path: str | os.PathLike) -> bool:
    return _find(Path(path), _FILES["train"][0]) is not None or _find(Path(path), _FILES["test"][0]) is not None


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SnapsightError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    arr = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if arr.size != int(np.prod(dims)):
        raise SnapsightError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {arr.size}")
    return arr.reshape(dims)


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: ``uint8`` ``(N, 28, 28)`` and ``int64`` ``(N,)``."""
    if split not in _FILES:
        raise SnapsightError(f"Fashion-MNIST split must be 'train' or 'test', got '{split}'")
    base = fashion_mnist_root(root)
    img_path, lbl_path = (_find(base, stem) for stem in _FILES[split])
    if img_path is None or lbl_path is None:
        raise SnapsightError(f"Fashion-MNIST '{split}' files are missing in {base}")
    images, labels = _read_idx(img_path), _read_idx(lbl_path).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise SnapsightError(f"Fashion-MNIST '{split}': {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels
