import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from snapsight.data.sources import StreamingSource, TensorSource, detect_kind, open_source
from snapsight.errors import SnapsightError


def _write_images(root, n, classes=("cat", "dog"), size=(12, 10), bad=0):
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / classes[i % len(classes)] if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        arr = (rng.random((size[1], size[0], 3)) * 255).astype("uint8")
        mode = ["RGB", "L", "RGBA", "P"][i % 4]
        Image.fromarray(arr).convert(mode).save(folder / f"img{i}.png")
    for j in range(bad):
        folder = root / classes[0] if classes else root
        (folder / f"broken{j}.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    return root


def test_folder_in_memory_with_labels_and_skipped_files(tmp_path):
    root = _write_images(tmp_path / "imgs", 10, bad=2)
    assert detect_kind(root) == "folder"
    src = open_source(root, load_size=8, progress=False)
    assert isinstance(src, TensorSource)
    assert src.num_images == 10 and src.class_names == ["cat", "dog"] and len(src.skipped) == 2
    assert "broken0.jpg" in src.skipped.summary()
    batch = next(iter(src.loader(4)))
    assert batch["images"].shape == (4, 3, 8, 8) and batch["images"].dtype == torch.uint8
    assert batch["labels"].shape == (4,)


def test_flat_folder_has_no_labels(tmp_path):
    src = open_source(_write_images(tmp_path, 6, classes=()), load_size=8, progress=False)
    assert not src.has_labels and src.labeled_sample(3) is None


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(SnapsightError, match="does not exist"):
        open_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapsightError, match="empty"):
        open_source(tmp_path / "empty")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"garbage")
    (junk / "b.jpg").write_bytes(b"")
    with pytest.raises(SnapsightError, match="none of the 2 files"):
        open_source(junk, progress=False)
    with pytest.raises(SnapsightError, match="none of the 2 files"):
        open_source(junk, streaming="on")
    with pytest.raises(SnapsightError, match="no data"):
        open_source("")


def test_streaming_yields_full_batches_and_counts_skips(tmp_path):
    root = _write_images(tmp_path, 12, bad=3)
    src = open_source(root, load_size=8, streaming="on")
    assert isinstance(src, StreamingSource) and src.num_images == 15
    loader = src.loader(4, seed=1)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    assert all(b["images"].shape == (4, 3, 8, 8) for b in batches)
    assert len(src.skipped) == 3
    assert [b["labels"].tolist() for b in batches] == [b["labels"].tolist() for b in src.loader(4, seed=1)]


def test_streaming_loader_resumes_and_shards(tmp_path):
    root = _write_images(tmp_path, 16, bad=2)
    src = open_source(root, load_size=8, streaming="on")
    loader = src.loader(4, seed=2)
    loader.set_epoch(1)
    full = [b["images"] for b in loader]
    loader.set_epoch(1)
    loader.skip_batches(2)
    rest = [b["images"] for b in loader]
    assert len(rest) == len(full) - 2 and all(torch.equal(a, b) for a, b in zip(rest, full[2:]))
    loader.set_epoch(2)
    assert not all(torch.equal(a, b["images"]) for a, b in zip(full, loader))
    halves = [src.loader(4, seed=2, rank=r, world_size=2) for r in range(2)]
    for h in halves:
        h.set_epoch(1)
    batches = [list(h) for h in halves]
    assert len(batches[0]) == len(batches[1]) == len(full)  # DDP processes step together
    assert all(b["images"].shape[0] == 2 for bs in batches for b in bs)


def test_loader_is_deterministic_resumable_and_sharded():
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 1, 2, 2).contiguous()
    src = TensorSource(images, torch.arange(20))
    loader = src.loader(8, seed=3)
    loader.set_epoch(1)
    full = [b["labels"] for b in loader]
    assert len(full) == 2
    loader.skip_batches(1)
    assert torch.equal(next(iter(loader))["labels"], full[1])
    loader.set_epoch(2)
    assert not torch.equal(next(iter(loader))["labels"], full[0])
    shards = [src.loader(8, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(1)
    assert torch.equal(torch.cat([next(iter(s))["labels"] for s in shards]), full[0])


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray((rng.random((9, 9, 3)) * 255).astype("uint8")) for _ in range(6)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y"])})
    ds = datasets.Dataset.from_dict({"image": imgs, "label": [0, 1] * 3}, features=features)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hf"))
    assert detect_kind(tmp_path / "hf") == "hf"
    src = open_source(tmp_path / "hf", load_size=8, progress=False)
    assert src.num_images == 6 and src.class_names == ["x", "y"]
    images, labels = src.labeled_sample(4)
    assert images.shape == (4, 3, 8, 8) and set(labels.tolist()) <= {0, 1}
    stream = open_source(tmp_path / "hf", load_size=8, streaming="on")
    assert next(iter(stream.loader(2)))["images"].shape == (2, 3, 8, 8)


def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_folder(tmp_path):
    _idx(tmp_path / "train-images-idx3-ubyte.gz", np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 4]))
    assert detect_kind(tmp_path) == "fashion-mnist"
    src = open_source(tmp_path)
    assert src.num_images == 5 and src.channels == 1 and len(src.class_names) == 10
    assert next(iter(src.loader(2)))["images"].shape == (2, 1, 28, 28)
