"""Labeled image sources for probes: ``(image, class index)`` pairs plus the class names.

One spec string names a source; :func:`load_labeled` detects which kind it is:

===============================  ==============================================================
spec                             source
===============================  ==============================================================
``DIR`` (sub-folders)            class-per-folder tree: ``DIR/<class>/<image>``; the folder name
                                 is the class name
``FILE.csv``                     rows of ``path,label`` (a header naming ``path``/``file``/``image``
                                 and ``label``/``class`` columns is optional); paths relative to
                                 the CSV's folder
``FILE.jsonl``                   one ``{"path": ..., "label": ...}`` object per line (same keys)
``DIR`` (``save_to_disk``)       a Hugging Face dataset with an image column and a label column;
                                 ``ClassLabel`` names are kept. ``DIR:split`` picks a split of a
                                 ``DatasetDict``
``fashion-mnist:train|test``     Fashion-MNIST from its idx files (``DIR:train`` for a folder of them)
===============================  ==============================================================

Columns beyond path and label (further CSV columns under a header, further JSONL keys, a Hugging Face dataset's
other scalar columns) are kept as strings in :attr:`LabeledDataset.columns`, e.g. for ``snapsight evaluate --group``.

Images are opened lazily, only through :func:`snapsight.data.images.open_image`, so a corrupt file
raises :class:`~snapsight.errors.ImageError` when it is read; callers (feature extraction,
fine-tuning) skip such items and report them.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import SnapsightError
from .fashion_mnist import _FILES, FASHION_MNIST_CLASSES, fashion_mnist_root, is_fashion_mnist_dir, load_fashion_mnist
from .images import IMAGE_EXTENSIONS, iter_image_files, open_image

PATH_KEYS = ("path", "file", "filename", "image", "image_path", "filepath")
LABEL_KEYS = ("label", "class", "category", "class_name", "target")
HF_IMAGE_KEYS = ("image", "img", "picture", "photo")
HF_LABEL_KEYS = ("label", "labels", "fine_label", "class", "category", "target")
SPLIT_NAMES = ("train", "test", "validation", "val", "valid", "dev")


@dataclass
class LabeledDataset:
    """Indexable labeled images. ``labels`` are ``int64`` indices into ``class_names``.

    ``identity`` is a stable string that changes when the underlying data changes (file names, sizes,
    mtimes, dataset fingerprints, the subset taken); feature caches are keyed by it.
    """

    name: str
    class_names: list[str]
    labels: np.ndarray
    identity: str
    _get: Callable[[int], Any] = field(repr=False)
    _describe: Callable[[int], str] = field(repr=False)
    # Extra per-item values beyond path and label (CSV/JSONL columns, Hugging Face dataset columns), as
    # strings, one list per column aligned with ``labels``; e.g. a group for ``snapsight evaluate --group``.
    columns: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def source(self, i: int) -> Any:
        """What :func:`open_image` reads for item ``i`` (path, bytes or PIL image)."""
        return self._get(i)

    def describe(self, i: int) -> str:
        """A human-readable name for item ``i`` (file path or ``name[i]``), used in reports."""
        return self._describe(i)

    def load(self, i: int) -> Image.Image:
        """Item ``i`` as an RGB PIL image; raises ImageError if it cannot be read."""
        return open_image(self._get(i))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names))

    def subset(self, indices: Sequence[int] | np.ndarray, tag: str = "subset") -> "LabeledDataset":
        """A view on ``indices`` (same class names); identity includes the chosen indices."""
        idx = np.asarray(indices, dtype=np.int64)
        digest = hashlib.sha256(idx.tobytes()).hexdigest()[:16]
        get, describe = self._get, self._describe
        return LabeledDataset(
            name=f"{self.name}[{tag}:{len(idx)}]",
            class_names=list(self.class_names),
            labels=self.labels[idx].copy(),
            identity=f"{self.identity}|{tag}:{digest}",
            _get=lambda i: get(int(idx[i])),
            _describe=lambda i: describe(int(idx[i])),
            columns={k: [v[int(i)] for i in idx] for k, v in self.columns.items()},
        )


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_stamp(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:16]


def _path_dataset(name: str, paths: list[Path], label_names: list[str], class_names: list[str] | None = None,
                  columns: dict[str, list[str]] | None = None) -> LabeledDataset:
    names = class_names if class_names is not None else sorted(set(label_names), key=_natural_key)
    pos = {c: j for j, c in enumerate(names)}
    labels = np.array([pos[c] for c in label_names], dtype=np.int64)
    identity = f"files:{_file_stamp(paths)}:{_digest(label_names)}:{_digest(names)}"
    return LabeledDataset(name, list(names), labels, identity, lambda i: paths[i], lambda i: str(paths[i]),
                          columns=dict(columns or {}))


def _natural_key(s: str):
    import re

    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


# ---------------------------------------------------------------------------------------------------------------
# Individual sources
# ---------------------------------------------------------------------------------------------------------------


def load_image_folder(root: str | os.PathLike) -> LabeledDataset:
    """Class-per-folder tree ``root/<class>/**/<image>``. A class folder without images is an error."""
    root = Path(root)
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: _natural_key(d.name))
    if not class_dirs:
        loose = any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir())
        raise SnapsightError(
            f"{root}: no class folders found"
            + (" (the images lie directly in it)" if loose else "")
            + "; a labeled folder must hold one sub-folder per class, e.g. "
            f"{root}/cat/1.jpg, {root}/dog/2.jpg"
        )
    paths, labels = [], []
    empty = []
    for d in class_dirs:
        files = list(iter_image_files(d))
        if not files:
            empty.append(d.name)
        paths += files
        labels += [d.name] * len(files)
    if empty:
        raise SnapsightError(
            f"{root}: class folder(s) {', '.join(repr(e) for e in empty)} hold no images "
            f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder"
        )
    return _path_dataset(str(root), paths, labels, [d.name for d in class_dirs])


def _pick_key(keys: Sequence[str], wanted: Sequence[str], what: str, where: str) -> str:
    lower = {k.lower().strip(): k for k in keys}
    for w in wanted:
        if w in lower:
            return lower[w]
    raise SnapsightError(f"{where}: no {what} column; expected one of {list(wanted)}, found {list(keys)}")


def load_csv(path: str | os.PathLike) -> LabeledDataset:
    """CSV of ``path,label`` rows (header optional; ``.tsv``: tab-separated); paths relative to the CSV file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise SnapsightError(f"cannot read {path}: {e}") from e
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise SnapsightError(f"{path}: the CSV is empty")
    header = [c.strip().lower() for c in rows[0]]
    if any(h in PATH_KEYS for h in header) and any(h in LABEL_KEYS for h in header):
        pi = header.index(_pick_key(header, PATH_KEYS, "path", str(path)))
        li = header.index(_pick_key(header, LABEL_KEYS, "label", str(path)))
        body, first_line = rows[1:], 2
    else:
        if len(rows[0]) < 2:
            raise SnapsightError(f"{path}: each row needs a path and a label (path,label)")
        pi, li, body, first_line = 0, 1, rows, 1
    records = []
    extra = {h: j for j, h in enumerate(rows[0]) if j not in (pi, li) and h.strip()} if first_line == 2 else {}
    columns: dict[str, list[str]] = {h.strip(): [] for h in extra}
    for n, r in enumerate(body, start=first_line):
        if len(r) <= max(pi, li) or not r[pi].strip() or not r[li].strip():
            raise SnapsightError(f"{path}:{n}: row {r!r} lacks a path or a label")
        records.append((r[pi].strip(), r[li].strip()))
        for h, j in extra.items():
            columns[h.strip()].append(r[j].strip() if j < len(r) else "")
    return _records_dataset(path, records, columns)


def load_jsonl(path: str | os.PathLike) -> LabeledDataset:
    """JSON Lines of ``{"path": ..., "label": ...}``; paths relative to the file's folder."""
    path = Path(path)
    records = []
    extras: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise SnapsightError(f"cannot read {path}: {e}") from e
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise SnapsightError(f"{path}:{n}: not valid JSON ({e.msg})") from e
        if not isinstance(obj, dict):
            raise SnapsightError(f"{path}:{n}: expected an object with 'path' and 'label'")
        pk = _pick_key(list(obj), PATH_KEYS, "path", f"{path}:{n}")
        lk = _pick_key(list(obj), LABEL_KEYS, "label", f"{path}:{n}")
        records.append((str(obj[pk]), str(obj[lk])))
        extras.append({k: v for k, v in obj.items() if k not in (pk, lk) and isinstance(v, (str, int, float, bool))})
    if not records:
        raise SnapsightError(f"{path}: no records")
    keys = sorted({k for e in extras for k in e})
    columns = {k: ["" if e.get(k) is None else str(e.get(k)) for e in extras] for k in keys}
    return _records_dataset(path, records, columns)


def _records_dataset(list_file: Path, records: list[tuple[str, str]],
                     columns: dict[str, list[str]] | None = None) -> LabeledDataset:
    base = list_file.parent
    paths = [(base / p) if not Path(p).is_absolute() else Path(p) for p, _ in records]
    return _path_dataset(str(list_file), paths, [lbl for _, lbl in records], columns=columns)


def is_hf_dataset_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))


def load_hf_dataset(path: str | os.PathLike, split: str | None = None,
                    image_column: str | None = None, label_column: str | None = None) -> LabeledDataset:
    """A ``datasets`` folder written by ``save_to_disk`` (Dataset or DatasetDict)."""
    import datasets

    path = Path(path)
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - any failure here means "not a readable saved dataset"
        raise SnapsightError(f"{path}: cannot load the Hugging Face dataset ({type(e).__name__}: {e})") from e
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds.keys())
        if split is None:
            if len(splits) != 1:
                raise SnapsightError(f"{path} has splits {splits}; pick one with {path}:<split>")
            split = splits[0]
        if split not in ds:
            raise SnapsightError(f"{path} has no split '{split}'; it has {splits}")
        ds = ds[split]
    elif split is not None and split not in ("train", "all"):
        raise SnapsightError(f"{path} is a single dataset without splits; drop ':{split}'")
    feats = ds.features
    if image_column is None:
        img_cols = [k for k, f in feats.items() if isinstance(f, datasets.Image)]
        image_column = img_cols[0] if img_cols else _pick_key(list(feats), HF_IMAGE_KEYS, "image", str(path))
    if label_column is None:
        cl_cols = [k for k, f in feats.items() if isinstance(f, datasets.ClassLabel)]
        label_column = cl_cols[0] if cl_cols else _pick_key(list(feats), HF_LABEL_KEYS, "label", str(path))
    for col in (image_column, label_column):
        if col not in feats:
            raise SnapsightError(f"{path}: no column '{col}'; columns are {list(feats)}")
    raw = ds[label_column]
    lf = feats[label_column]
    if isinstance(lf, datasets.ClassLabel):
        class_names = list(lf.names)
        labels = np.asarray(raw, dtype=np.int64)
    elif raw and isinstance(raw[0], str):
        class_names = sorted(set(raw), key=_natural_key)
        pos = {c: j for j, c in enumerate(class_names)}
        labels = np.array([pos[c] for c in raw], dtype=np.int64)
    else:
        values = np.asarray(raw, dtype=np.int64)
        if len(values) and values.min() < 0:
            raise SnapsightError(f"{path}: label column '{label_column}' has negative values")
        class_names = [str(i) for i in range(int(values.max()) + 1 if len(values) else 0)]
        labels = values
    # Decode lazily; keep bytes/paths so open_image (not datasets) does the decoding and the checks.
    if isinstance(feats[image_column], datasets.Image):
        images = ds.cast_column(image_column, datasets.Image(decode=False))
    else:
        images = ds
    column = images.select_columns([image_column])

    def get(i: int) -> Any:
        v = column[int(i)][image_column]
        if isinstance(v, dict):
            if v.get("bytes"):
                return v["bytes"]
            if v.get("path"):
                return v["path"]
            raise SnapsightError(f"{path}[{i}]: image entry has neither bytes nor a path")
        if isinstance(v, (list, np.ndarray)):
            return Image.fromarray(np.asarray(v, dtype=np.uint8))
        return v

    fp = getattr(ds, "_fingerprint", None) or _file_stamp(sorted(path.rglob("*.arrow")))
    identity = f"hf:{path.resolve()}:{split}:{fp}:{image_column}:{label_column}"
    name = f"{path}" + (f":{split}" if split else "")
    scalar = [k for k, f in feats.items() if k not in (image_column, label_column)
              and isinstance(f, (datasets.Value, datasets.ClassLabel))]

    def column_values(k: str) -> list[str]:  # ClassLabel columns by name, as a user would write a group
        f = feats[k]
        values = ds[k]
        return [f.int2str(v) if isinstance(f, datasets.ClassLabel) else str(v) for v in values]

    return LabeledDataset(name, class_names, labels, identity, get, lambda i: f"{name}[{i}]",
                          columns={k: column_values(k) for k in scalar})


def load_fashion_mnist_labeled(split: str = "train", root: str | os.PathLike | None = None) -> LabeledDataset:
    """Fashion-MNIST ``split`` as 28x28 grey images (opened through open_image as RGB)."""

    images, labels = load_fashion_mnist(split, root)
    base = fashion_mnist_root(root)
    stamp = _file_stamp(sorted(base.glob(_FILES[split][0] + "*")))
    name = f"fashion-mnist:{split}"
    return LabeledDataset(
        name, list(FASHION_MNIST_CLASSES), labels, f"fashion-mnist:{split}:{stamp}",
        lambda i: Image.fromarray(images[i], mode="L"), lambda i: f"{name}[{i}]",
    )


# ---------------------------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------------------------


def _split_suffix(spec: str) -> tuple[str, str | None]:
    """``"data/x:test"`` -> ``("data/x", "test")`` when ``data/x`` exists (or is ``fashion-mnist``)."""
    if spec.lower().startswith("fashion-mnist"):
        _, _, split = spec.partition(":")
        return "fashion-mnist", split or None
    if ":" in spec and not Path(spec).exists():
        base, _, split = spec.rpartition(":")
        if base and split and "/" not in split and Path(base).exists():
            return base, split
    return spec, None


def load_labeled(spec: str | os.PathLike) -> LabeledDataset:
    """Load a labeled source, detecting its kind from ``spec`` (see the module docstring)."""

    base, split = _split_suffix(str(spec))
    if base == "fashion-mnist":
        return load_fashion_mnist_labeled(split or "train")
    path = Path(base)
    if not path.exists():
        raise SnapsightError(
            f"labeled data not found: {spec} (pass a class-per-folder directory, a .csv or .jsonl of "
            "path,label, a Hugging Face save_to_disk folder, or fashion-mnist:train|test)"
        )
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix in (".csv", ".tsv"):
            if split:
                raise SnapsightError(f"{path}: a CSV has no splits; drop ':{split}'")
            return load_csv(path)
        if suffix in (".jsonl", ".json", ".ndjson"):
            if split:
                raise SnapsightError(f"{path}: a JSONL file has no splits; drop ':{split}'")
            return load_jsonl(path)
        raise SnapsightError(f"{path}: unsupported labeled file type '{suffix}'; use .csv or .jsonl (path,label)")
    if is_hf_dataset_dir(path):
        return load_hf_dataset(path, split)
    if is_fashion_mnist_dir(path):
        return load_fashion_mnist_labeled(split or "train", root=path)
    if split:
        sub = path / split
        if sub.is_dir():
            return load_image_folder(sub)
        raise SnapsightError(f"{path} has no '{split}' folder")
    return load_image_folder(path)


# ---------------------------------------------------------------------------------------------------------------
# Checks and subsets used by the probe
# ---------------------------------------------------------------------------------------------------------------


def check_classes(ds: LabeledDataset, role: str = "train") -> None:
    """Refuse a source with fewer than two classes or a class that has no images."""
    counts = ds.class_counts()
    if len(ds) == 0:
        raise SnapsightError(f"{role} data {ds.name} holds no images")
    if len(ds.class_names) < 2 or (counts > 0).sum() < 2:
        present = [c for c, n in zip(ds.class_names, counts) if n > 0]
        raise SnapsightError(
            f"{role} data {ds.name} has a single class ({', '.join(present)}); a classifier needs at least two"
        )
    empty = [c for c, n in zip(ds.class_names, counts) if n == 0]
    if empty:
        raise SnapsightError(f"{role} data {ds.name}: class(es) {', '.join(map(repr, empty))} have no images")


def align_classes(train: LabeledDataset, other: LabeledDataset, role: str = "val") -> tuple[LabeledDataset, list[str]]:
    """Map ``other``'s labels onto ``train``'s class names. Classes ``other`` has that train lacks are an
    error; train classes missing from ``other`` give a note (they cannot be evaluated)."""
    train_set = set(train.class_names)
    present = [c for c, n in zip(other.class_names, other.class_counts()) if n > 0]
    unknown = [c for c in present if c not in train_set]
    if unknown:
        raise SnapsightError(
            f"labels do not match: {role} data {other.name} has class(es) {unknown} that the training data "
            f"{train.name} lacks (training classes: {train.class_names})"
        )
    notes = []
    missing = [c for c in train.class_names if c not in set(present)]
    if missing:
        notes.append(f"{role} data has no images of {', '.join(map(repr, missing))}; those classes are not evaluated")
    pos = {c: j for j, c in enumerate(train.class_names)}
    remap = np.array([pos.get(c, -1) for c in other.class_names], dtype=np.int64)  # -1 only for empty classes
    aligned = LabeledDataset(
        name=other.name,
        class_names=list(train.class_names),
        labels=remap[other.labels] if len(other.labels) else other.labels.copy(),
        identity=f"{other.identity}|classes:{_digest(train.class_names)}",
        _get=other._get,
        _describe=other._describe,
        columns=other.columns,
    )
    return aligned, notes


def stratified_fraction(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a class-stratified subset: each class keeps ``round(fraction * n_c)`` images (at least
    one), chosen with a fixed ``seed``. Returned sorted."""
    if not 0 < fraction <= 1:
        raise SnapsightError(f"labels fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    if fraction >= 1:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(1, int(round(fraction * len(idx))))
        out.append(rng.choice(idx, size=n, replace=False))
    return np.sort(np.concatenate(out))


def stratified_split(labels: np.ndarray, holdout: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(keep, held_out)`` with ``holdout`` of each class held out (at least one
    when a class has two or more images)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = int(round(holdout * len(idx)))
        n = min(max(n, 1 if len(idx) > 1 else 0), len(idx) - 1)
        held.append(idx[:n])
        keep.append(idx[n:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))
