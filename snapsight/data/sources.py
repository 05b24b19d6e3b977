"""Image sources for pretraining: one small interface over folders, Hugging Face datasets and Fashion-MNIST.

:func:`open_source` looks at ``--data`` and returns an :class:`ImageSource`:

==========================  ==========================================================================
``--data``                  source
==========================  ==========================================================================
``fashion-mnist``           the idx files at the Debian path (or ``$SNAPSIGHT_FASHION_MNIST``)
folder with idx files       Fashion-MNIST from that folder
folder from save_to_disk    a Hugging Face ``datasets`` dataset (``dataset_info.json``/``state.json``);
                            the image column is the first ``Image`` feature, labels a ``ClassLabel``
any other folder            every image under it, recursively (jpg/png/webp/bmp/tiff/gif; all modes
                            through :func:`~snapsight.data.images.open_image`); images inside
                            per-class subfolders (the ``datasets`` *imagefolder* layout) get those labels
==========================  ==========================================================================

Every source yields ``uint8`` batches ``{"images": (batch, C, S, S), "labels": (batch,)}`` with ``C`` 1
(Fashion-MNIST) or 3 and ``S`` the load size; augmentation happens later, on the training device. Labels,
where present, are only for monitoring (online kNN). Sources small enough are decoded once into memory
(:class:`TensorSource`); larger ones are streamed from disk by worker processes (:class:`StreamingSource`,
an ``IterableDataset``), so corpora larger than memory train too. Unreadable files are skipped, counted and
reported (``source.skipped``); a source fails only when nothing in it is usable.

Both loaders read in the order of :class:`~snapsight.data.loaders.BatchOrder`: deterministic per ``(seed, epoch)``,
with ``set_epoch`` / ``skip_batches`` so that ``snapsight.train.loop.fit`` resumes exactly, and under DDP each
process reads its own share.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from ..errors import ImageError, SnapsightError
from .fashion_mnist import FASHION_MNIST_CLASSES, is_fashion_mnist_dir, load_fashion_mnist
from .images import IMAGE_EXTENSIONS, iter_image_files, open_image
from .loaders import BatchOrder

log = logging.getLogger(__name__)

FASHION_MNIST_NAMES = ("fashion-mnist", "fashion_mnist", "fmnist")
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


@dataclass
class SkipReport:
    """Files that could not be used, with the reason (kept once per file however often it was met)."""

    reasons: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, reason: str) -> None:
        self.reasons.setdefault(name, reason)

    def __len__(self) -> int:
        return len(self.reasons)

    def summary(self, limit: int = 5) -> str:
        if not self.reasons:
            return "no files skipped"
        items = list(self.reasons.items())[:limit]
        more = f" (and {len(self.reasons) - limit} more)" if len(self.reasons) > limit else ""
        return f"skipped {len(self.reasons)} unreadable file(s): " + "; ".join(r for _, r in items) + more


def load_square(img: Image.Image, size: int) -> np.ndarray:
    """RGB PIL image -> ``uint8`` ``(3, size, size)``: shorter side resized to ``size``, centre-cropped."""
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


# ---------------------------------------------------------------------------------------------------------
# Loaders


class TensorBatchLoader(BatchOrder):
    """Batches ``{"images": uint8 (local_batch, C, S, S)[, "labels"]}`` from in-memory images in the
    resumable per-process order of :class:`~snapsight.data.loaders.BatchOrder`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = True):
        super().__init__(len(images), batch_size, seed=seed, rank=rank, world_size=world_size, shuffle=shuffle,
                         drop_last=drop_last)
        self.images, self.labels = images, labels

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for idx in self.local_batches():
            batch = {"images": self.images[idx]}
            if self.labels is not None:
                batch["labels"] = self.labels[idx]
            yield batch


class _Decoder:
    """Turns one item (a path, or an index into a HF dataset) into ``(uint8 (3,S,S), label)`` or an error."""

    def __init__(self, items: Sequence[Any], labels: Sequence[int] | None, load_size: int, hf=None,
                 image_column: str = ""):
        self.items, self.labels, self.load_size = items, labels, load_size
        self.hf, self.image_column = hf, image_column

    def name(self, i: int) -> str:
        return str(self.items[i]) if self.hf is None else f"row {self.items[i]}"

    def __call__(self, i: int) -> tuple[np.ndarray | None, int, str | None]:
        label = int(self.labels[i]) if self.labels is not None else -1
        try:
            if self.hf is None:
                img = open_image(self.items[i])
            else:
                value = self.hf[int(self.items[i])][self.image_column]
                if isinstance(value, dict):  # undecoded {"bytes", "path"}
                    value = value.get("bytes") or value.get("path")
                if value is None:
                    raise ImageError(f"{self.name(i)}: empty image cell")
                img = open_image(value)
            return load_square(img, self.load_size), label, None
        except ImageError as e:
            return None, label, str(e)
        except Exception as e:  # noqa: BLE001 - a broken file must not kill a long run
            return None, label, f"{self.name(i)}: {type(e).__name__}: {e}"


class _DecodeDataset(Dataset):
    def __init__(self, decoder: _Decoder):
        self.decoder = decoder

    def __len__(self) -> int:
        return len(self.decoder.items)

    def __getitem__(self, i: int):
        arr, label, err = self.decoder(i)
        return i, arr, label, err


class _StreamDataset(IterableDataset):
    """Yields full local batches from ``share`` (this process's items in this epoch's order), split again over
    loader workers; unreadable files are skipped (and reported in the batch) without shrinking a batch."""

    def __init__(self, decoder: _Decoder, local_batch: int, steps: int):
        self.decoder, self.local_batch, self.steps = decoder, local_batch, steps
        self.share: list[int] = []

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        mine = self.share[wid::nw]
        # Worker w makes batches w, w + nw, ...; DataLoader returns them round-robin, in order.
        my_steps = len(range(wid, self.steps, nw))
        pos, tried_since_ok = 0, 0
        for _ in range(my_steps):
            images, labels, skipped = [], [], []
            while len(images) < self.local_batch:
                if not mine or tried_since_ok > len(mine):
                    yield {"images": None, "skipped": skipped}  # nothing usable in this shard
                    return
                i = mine[pos % len(mine)]
                pos += 1
                arr, label, err = self.decoder(i)
                if err is not None:
                    skipped.append((self.decoder.name(i), err))
                    tried_since_ok += 1
                    continue
                tried_since_ok = 0
                images.append(arr)
                labels.append(label)
            yield {"images": torch.from_numpy(np.stack(images)), "labels": torch.tensor(labels),
                   "skipped": skipped}


class StreamingLoader(BatchOrder):
    """Batches decoded from disk by ``num_workers`` processes: exactly ``len(self)`` per epoch on every process
    (short shards wrap around, so DDP processes never wait on each other), skipped files collected in ``report``.

    Each process reads its :meth:`~snapsight.data.loaders.BatchOrder.process_share` of the epoch's order; a
    resumed epoch decodes and drops the batches already trained on, because skipped files shift what follows.
    """

    def __init__(self, decoder: _Decoder, batch_size: int, *, seed: int, rank: int, world_size: int, shuffle: bool,
                 num_workers: int, report: SkipReport, has_labels: bool):
        super().__init__(len(decoder.items), batch_size, seed=seed, rank=rank, world_size=world_size,
                         shuffle=shuffle)
        self.dataset = _StreamDataset(decoder, self.local_batch_size, len(self))
        self.num_workers, self.report, self.has_labels = num_workers, report, has_labels

    def __iter__(self):
        self.dataset.share = self.process_share().tolist()
        loader = DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers,
                            generator=torch.Generator().manual_seed(self.seed),
                            persistent_workers=False, prefetch_factor=4 if self.num_workers else None)
        skip = self.take_skip()
        for k, batch in enumerate(loader):
            for name, reason in batch.pop("skipped"):
                self.report.add(name, reason)
            if batch["images"] is None:
                raise SnapsightError(f"no usable images left to read: {self.report.summary()}")
            if k < skip:
                continue
            if not self.has_labels:
                batch.pop("labels", None)
            yield batch


# ---------------------------------------------------------------------------------------------------------
# Sources


class ImageSource:
    """What pretraining needs from data: batches of ``uint8`` images, optional labels for monitoring, and
    a report of skipped files."""

    name: str = ""
    channels: int = 3
    class_names: list[str] | None = None

    def __init__(self):
        self.skipped = SkipReport()

    @property
    def num_images(self) -> int:
        raise NotImplementedError

    @property
    def has_labels(self) -> bool:
        return self.class_names is not None

    def loader(self, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
               shuffle: bool = True, num_workers: int = 0):
        """Iterable of ``{"images": uint8 (batch_size // world_size, C, S, S)[, "labels"]}`` batches."""
        raise NotImplementedError

    def labeled_sample(self, n: int, seed: int = 0, exclude: int = 0) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Up to ``n`` labeled images ``(uint8 (n, C, S, S), int64 (n,))`` for monitoring, drawn at random
        after skipping the first ``exclude`` of the same random order (to get disjoint samples); None
        when the source has no labels."""
        raise NotImplementedError

    def describe(self) -> str:
        labels = f", {len(self.class_names)} classes (monitoring only)" if self.class_names else ""
        return f"{self.name}: {self.num_images:,} images{labels}"


class TensorSource(ImageSource):
    """Images held in memory as one ``uint8`` tensor ``(n, C, S, S)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 class_names: list[str] | None = None, name: str = "in-memory images",
                 skipped: SkipReport | None = None):
        super().__init__()
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if len(images) == 0:
            raise SnapsightError(f"{name}: no usable images")
        self.images, self.labels = images, labels
        self.class_names = class_names if labels is not None else None
        self.channels = images.shape[1]
        self.name = name
        if skipped is not None:
            self.skipped = skipped

    @property
    def num_images(self) -> int:
        return len(self.images)

    def loader(self, batch_size, *, seed=0, rank=0, world_size=1, shuffle=True, num_workers=0):
        return TensorBatchLoader(self.images, self.labels, batch_size, shuffle=shuffle, seed=seed, rank=rank,
                                 world_size=world_size)

    def labeled_sample(self, n, seed=0, exclude=0):
        if self.labels is None:
            return None
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(seed))[exclude:exclude + n]
        return self.images[order], self.labels[order].long()


class StreamingSource(ImageSource):
    """Images decoded from disk (or a HF dataset) as they are needed, by ``num_workers`` processes."""

    def __init__(self, decoder: _Decoder, class_names: list[str] | None, name: str):
        super().__init__()
        self.decoder = decoder
        self.class_names = class_names
        self.name = name
        self.channels = 3
        self._check_some_usable()

    def _check_some_usable(self, probe: int = 32) -> None:
        n = len(self.decoder.items)
        for i in range(min(n, probe)):
            arr, _, err = self.decoder(i)
            if err is None:
                return
            self.skipped.add(self.decoder.name(i), err)
        if n <= probe:
            raise SnapsightError(f"{self.name}: none of the {n} files is a usable image ({self.skipped.summary()})")
        # Many bad files at the start; sample further before giving up.
        for i in np.random.default_rng(0).choice(n, size=min(n, 4 * probe), replace=False):
            if self.decoder(int(i))[2] is None:
                return
        raise SnapsightError(f"{self.name}: found no usable image in a sample of its files ({self.skipped.summary()})")

    @property
    def num_images(self) -> int:
        return len(self.decoder.items)

    def loader(self, batch_size, *, seed=0, rank=0, world_size=1, shuffle=True, num_workers=0):
        if self.num_images < batch_size:
            raise SnapsightError(f"{self.name}: {self.num_images} images are fewer than one batch of {batch_size}")
        return StreamingLoader(self.decoder, batch_size, seed=seed, rank=rank, world_size=world_size, shuffle=shuffle,
                               num_workers=num_workers, report=self.skipped, has_labels=self.has_labels)

    def labeled_sample(self, n, seed=0, exclude=0):
        if self.class_names is None:
            return None
        order = np.random.default_rng(seed).permutation(self.num_images)[exclude:]
        images, labels = [], []
        for i in order:
            arr, label, err = self.decoder(int(i))
            if err is None:
                images.append(arr)
                labels.append(label)
                if len(images) >= n:
                    break
        if not images:
            return None
        return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long)


# ---------------------------------------------------------------------------------------------------------
# Opening sources


def _folder_items(root: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    files = list(iter_image_files(root))
    if not files:
        others = sum(1 for p in root.rglob("*") if p.is_file())
        raise SnapsightError(
            f"no image files ({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}) under {root}"
            + (f" ({others} other file(s) found)" if others else " (the folder is empty)"))
    # The imagefolder layout: every image one level down in a class folder, at least two classes.
    parents = [p.relative_to(root).parts for p in files]
    if all(len(parts) == 2 for parts in parents):
        names = sorted({parts[0] for parts in parents})
        if len(names) >= 2:
            index = {n: i for i, n in enumerate(names)}
            return files, [index[parts[0]] for parts in parents], names
    return files, None, None


def _hf_items(path: Path, split: str, image_column: str, label_column: str):
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - datasets raises several types for a bad folder
        raise SnapsightError(f"{path} looks like a Hugging Face dataset but cannot be loaded: {e}") from e
    if isinstance(ds, datasets.DatasetDict):
        if split in ds:
            ds = ds[split]
        else:
            name = next(iter(ds))
            log.warning("split '%s' not in %s (has %s); using '%s'", split, path, ", ".join(ds), name)
            ds = ds[name]
    feats = ds.features
    if not image_column:
        image_column = next((k for k, v in feats.items() if isinstance(v, datasets.Image)), "")
        if not image_column:
            raise SnapsightError(f"{path}: no Image column among {list(feats)}; set data.image_column")
    elif image_column not in feats:
        raise SnapsightError(f"{path}: no column '{image_column}' (columns: {', '.join(feats)})")
    if not label_column:
        label_column = next((k for k, v in feats.items() if isinstance(v, datasets.ClassLabel)), "")
    labels = names = None
    if label_column:
        if label_column not in feats:
            raise SnapsightError(f"{path}: no column '{label_column}' (columns: {', '.join(feats)})")
        labels = [int(x) for x in ds[label_column]]
        feat = feats[label_column]
        names = list(feat.names) if isinstance(feat, datasets.ClassLabel) else [str(i) for i in range(max(labels) + 1)]
    return ds.select_columns([image_column]), image_column, labels, names


def detect_kind(path: str | os.PathLike) -> str:
    """``fashion-mnist``, ``hf`` or ``folder`` for a ``--data`` value (raises for a missing path)."""
    text = str(path)
    if text.lower() in FASHION_MNIST_NAMES:
        return "fashion-mnist"
    p = Path(text).expanduser()
    if not p.exists():
        raise SnapsightError(f"data path does not exist: {p}")
    if not p.is_dir():
        raise SnapsightError(f"data path {p} is a file: pass a folder of images, a saved Hugging Face dataset "
                             "folder or 'fashion-mnist'")
    if is_fashion_mnist_dir(p):
        return "fashion-mnist"
    if any((p / m).is_file() for m in HF_MARKERS):
        return "hf"
    return "folder"


def open_source(path: str | os.PathLike, *, kind: str = "auto", split: str = "train", load_size: int = 32,
                streaming: str = "auto", cache_gb: float = 4.0, num_workers: int = 0, image_column: str = "",
                label_column: str = "", max_images: int = 0, progress: bool = True) -> ImageSource:
    """Open ``--data`` as an :class:`ImageSource` (see the module docstring for what is recognised)."""
    if not str(path):
        raise SnapsightError("no data given: pass --data (an image folder, a saved Hugging Face dataset, or "
                             "'fashion-mnist')")
    kind = detect_kind(path) if kind == "auto" else kind
    if kind == "fashion-mnist":
        root = None if str(path).lower() in FASHION_MNIST_NAMES else path
        images, labels = load_fashion_mnist(split, root)
        images, labels = torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.copy())
        if max_images:
            images, labels = images[:max_images], labels[:max_images]
        return TensorSource(images, labels, list(FASHION_MNIST_CLASSES), name=f"Fashion-MNIST {split}")

    p = Path(path).expanduser()
    hf = None
    if kind == "hf":
        hf, image_column, labels, names = _hf_items(p, split, image_column, label_column)
        items: Sequence[Any] = list(range(len(hf)))
        name = f"Hugging Face dataset {p}"
    elif kind == "folder":
        if not p.is_dir():
            raise SnapsightError(f"data folder does not exist: {p}")
        items, labels, names = _folder_items(p)
        name = f"image folder {p}"
    else:
        raise SnapsightError(f"data.kind must be auto, folder, hf or fashion-mnist, got '{kind}'")
    if max_images and len(items) > max_images:
        items = items[:max_images]
        labels = labels[:max_images] if labels is not None else None
    decoder = _Decoder(items, labels, load_size, hf=hf, image_column=image_column)
    decoded_gb = len(items) * 3 * load_size * load_size / 1e9
    if streaming == "on" or (streaming == "auto" and decoded_gb > cache_gb):
        log.info("%s: %d images, streamed from disk (%.1f GB decoded > data.cache_gb)", name, len(items), decoded_gb)
        return StreamingSource(decoder, names, name)
    if streaming not in ("auto", "off", "on"):
        raise SnapsightError(f"data.streaming must be auto, on or off, got '{streaming}'")
    return _decode_all(decoder, names, name, num_workers, progress)


def _decode_all(decoder: _Decoder, names: list[str] | None, name: str, num_workers: int,
                progress: bool) -> TensorSource:
    n = len(decoder.items)
    images = torch.empty((n, 3, decoder.load_size, decoder.load_size), dtype=torch.uint8)
    labels = torch.full((n,), -1, dtype=torch.long)
    ok = torch.zeros(n, dtype=torch.bool)
    report = SkipReport()
    loader = DataLoader(_DecodeDataset(decoder), batch_size=None, num_workers=num_workers if n > 256 else 0)
    it = loader
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, total=n, desc=f"decoding {n} images", unit="img", disable=None, mininterval=1.0)
    for i, arr, label, err in it:
        if err is not None:
            report.add(decoder.name(i), err)
            continue
        images[i] = torch.as_tensor(arr)
        labels[i] = label
        ok[i] = True
    if not bool(ok.any()):
        raise SnapsightError(f"{name}: none of the {n} files is a usable image ({report.summary()})")
    if len(report):
        log.warning("%s: %s", name, report.summary())
    keep = ok.nonzero().squeeze(1)
    has_labels = names is not None
    return TensorSource(images[keep], labels[keep] if has_labels else None, names, name=name, skipped=report)
