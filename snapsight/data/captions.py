"""Image-text pairs for alignment: item ``i`` is an image, one of its captions, and a group id.

One spec string names a source; :func:`open_pairs` detects which kind it is:

==================================  ===========================================================
spec                                source
==================================  ===========================================================
``FILE.csv`` / ``FILE.tsv``         a table with an image column (``filepath``, ``image``,
                                    ``path``, ...) and a caption column (``title``, ``caption``,
                                    ``text``, ...), as open_clip's trainer reads (``--csv-img-key
                                    filepath --csv-caption-key title``); tab or comma separated;
                                    paths relative to the file's folder
``FILE.jsonl``                      one ``{"image": ..., "caption": ...}`` object per line (same
                                    key choices; ``caption`` may be a list of alternatives)
``DIR`` (``save_to_disk``)          a Hugging Face dataset with an image column and a text column
                                    (``DIR:split`` picks a split)
``DIR`` (sidecar captions)          ``photo.jpg`` + ``photo.txt``; each non-empty line of the .txt
                                    is one alternative caption
``labeled:SPEC``, ``DIR`` of class  class-labeled data (any :func:`snapsight.data.labeled.load_labeled`
folders, ``fashion-mnist[:split]``  spec): captions made from class names with templates and synonyms
``emoji``                           colour emoji rendered from Noto Color Emoji with their names
==================================  ===========================================================

Tux Paint stamps (:func:`stamp_pairs`) are captioned by the default model's build, which chooses their words.

Class-labeled pairs carry their class as the *group* id, so the contrastive loss can treat two images
of the same class as positives of each other's captions rather than as negatives (UniCL, Yang et al.
2022). Free-form pairs get group ``-1`` (only their own caption is positive).
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from ..errors import SnapsightError
from .emoji import render_all_emoji
from .images import iter_image_files, open_image
from .labeled import is_hf_dataset_dir, load_labeled
from .stamps import render_stamp

IMAGE_KEYS = ("filepath", "image", "image_path", "path", "file", "filename", "img", "url")
CAPTION_KEYS = ("title", "caption", "captions", "text", "sentence", "description", "alt_text")

# Templates for captions generated from class names. Kept apart from the zero-shot prompts
# (snapsight.zeroshot.prompts "default": "a photo of a {}.", "itap of a {}.", ...), so evaluating with
# those prompts measures wordings the model never saw.
CLASS_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a {}",
    "a picture of a {}",
    "an image of a {}",
    "a photo showing a {}",
    "a black and white photo of a {}",
    "a grayscale picture of a {}",
    "a product photo of a {}",
    "a low resolution picture of a {}",
    "this is a {}",
    "a {} on a plain background",
    "a catalogue image of a {}",
)


@dataclass
class PairDataset:
    """Indexable image-text pairs.

    ``captions[i]`` lists the alternative captions of item ``i`` (one is drawn per visit); ``groups[i]``
    is a class id (``>= 0``) or ``-1``. ``load(i)`` opens the image through :func:`open_image`.
    """

    name: str
    captions: list[tuple[str, ...]]
    groups: np.ndarray
    _get: Callable[[int], Any] = field(repr=False)
    group_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)

    def source(self, i: int) -> Any:
        return self._get(i)

    def load(self, i: int) -> Image.Image:
        return open_image(self._get(i))

    def caption(self, i: int, rng: random.Random | None = None) -> str:
        """One caption of item ``i``: drawn with ``rng``, or the first when ``rng`` is None."""
        options = self.captions[i]
        return options[0] if rng is None or len(options) == 1 else options[rng.randrange(len(options))]


def in_memory_pairs(
    name: str,
    images: Sequence[Any],
    captions: Sequence[Sequence[str]],
    groups: Sequence[int] | np.ndarray | None = None,
    group_names: Sequence[str] = (),
) -> PairDataset:
    """Pairs from Python lists: ``images[i]`` (PIL image, ``uint8`` array, path or bytes) and its captions."""
    if len(images) != len(captions):
        raise SnapsightError(f"{name}: {len(images)} images but {len(captions)} caption lists")
    caps = [tuple(c) if not isinstance(c, str) else (c,) for c in captions]
    for i, c in enumerate(caps):
        if not c:
            raise SnapsightError(f"{name}[{i}] has no caption")
    g = np.full(len(caps), -1, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)

    def get(i: int) -> Any:
        v = images[i]
        return Image.fromarray(v) if isinstance(v, np.ndarray) else v

    return PairDataset(name, caps, g, get, list(group_names))


def class_captions(
    class_names: Sequence[str],
    templates: Sequence[str] = CLASS_TEMPLATES,
    synonyms: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[str, ...]]:
    """For each class, every ``template`` filled with every wording (the class name and its synonyms)."""
    out = []
    for c in class_names:
        wordings = list(synonyms[c]) if synonyms and synonyms.get(c) else [clean_class_name(c)]
        wordings = list(dict.fromkeys(w for w in wordings if w.strip()))
        out.append(tuple(dict.fromkeys(t.format(w) for t in templates for w in wordings)))
    return out


def clean_class_name(name: str) -> str:
    """``"T-shirt/top"`` -> ``"t-shirt or top"``, ``"ankle_boot"`` -> ``"ankle boot"``."""
    s = name.replace("_", " ").replace("/", " or ")
    return re.sub(r"\s+", " ", s).strip().lower()


def labeled_pairs(
    ds: Any,
    templates: Sequence[str] = CLASS_TEMPLATES,
    synonyms: Mapping[str, Sequence[str]] | None = None,
) -> PairDataset:
    """Class-labeled data (a :class:`snapsight.data.labeled.LabeledDataset`) -> pairs with generated captions.

    ``synonyms`` maps a class name to its wordings; a class listed there uses exactly those wordings,
    other classes use their cleaned name.
    """
    per_class = class_captions(ds.class_names, templates, synonyms)
    labels = np.asarray(ds.labels, dtype=np.int64)
    captions = [per_class[int(y)] for y in labels]
    return PairDataset(f"{ds.name} (class captions)", captions, labels.copy(), ds.source, list(ds.class_names))


def read_synonyms(path: str | os.PathLike) -> dict[str, list[str]]:
    """A synonyms file: one class per line, ``class: wording | wording | ...``; ``#`` starts a comment."""
    path = Path(path)
    if not path.is_file():
        raise SnapsightError(f"synonyms file not found: {path}")
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, rest = line.partition(":")
        if not sep:
            raise SnapsightError(f"{path}:{n}: expected 'class: wording | wording', got {line!r}")
        words = [w.strip() for w in rest.split("|") if w.strip()]
        out[name.strip()] = words or [clean_class_name(name.strip())]
    return out


def _pick(keys: Sequence[str], wanted: Sequence[str]) -> str | None:
    lower = {k.lower().strip(): k for k in keys}
    for w in wanted:
        if w in lower:
            return lower[w]
    return None


def _as_captions(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    s = "" if value is None else str(value).strip()
    return (s,) if s else ()


def _table_pairs(path: Path, rows: list[dict[str, Any]], name: str) -> PairDataset:
    if not rows:
        raise SnapsightError(f"{path}: no rows")
    keys = list(rows[0].keys())
    img_key, cap_key = _pick(keys, IMAGE_KEYS), _pick(keys, CAPTION_KEYS)
    if img_key is None or cap_key is None:
        raise SnapsightError(
            f"{path}: need an image column ({', '.join(IMAGE_KEYS)}) and a caption column "
            f"({', '.join(CAPTION_KEYS)}); found {keys}"
        )
    paths, captions = [], []
    for n, row in enumerate(rows):
        caps = _as_captions(row.get(cap_key))
        img = row.get(img_key)
        if not img or not caps:
            raise SnapsightError(f"{path}: row {n + 1} lacks an image or a caption")
        p = Path(str(img))
        paths.append(p if p.is_absolute() else path.parent / p)
        captions.append(caps)
    return PairDataset(name, captions, np.full(len(paths), -1, dtype=np.int64), lambda i: paths[i])


def read_pairs_table(path: str | os.PathLike) -> PairDataset:
    """CSV/TSV (header row; tab or comma separated) or JSONL of ``(image, caption)``."""
    path = Path(path)
    if not path.is_file():
        raise SnapsightError(f"pairs file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SnapsightError(f"{path}:{n}: not valid JSON ({e})") from e
        return _table_pairs(path, rows, str(path))
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0] if text else ""
    delimiter = "\t" if "\t" in first or suffix == ".tsv" else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    return _table_pairs(path, rows, str(path))


def sidecar_pairs(root: str | os.PathLike) -> PairDataset:
    """Images with a same-named ``.txt`` caption file beside them; images without one are skipped."""
    root = Path(root)
    paths, captions = [], []
    for p in iter_image_files(root):
        txt = p.with_suffix(".txt")
        if txt.is_file():
            caps = tuple(line.strip() for line in txt.read_text(encoding="utf-8").splitlines() if line.strip())
            if caps:
                paths.append(p)
                captions.append(caps)
    if not paths:
        raise SnapsightError(f"{root}: no image has a sidecar .txt caption (photo.jpg + photo.txt)")
    return PairDataset(str(root), captions, np.full(len(paths), -1, dtype=np.int64), lambda i: paths[i])


def _has_sidecars(root: Path) -> bool:
    for p in iter_image_files(root):
        if p.with_suffix(".txt").is_file():
            return True
    return False


def hf_pairs(path: str | os.PathLike, split: str | None = None, image_column: str | None = None,
             text_column: str | None = None) -> PairDataset:
    """A Hugging Face dataset folder (``save_to_disk``) with an image column and a text column."""
    import datasets

    path = Path(path)
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - any failure means "not a readable saved dataset"
        raise SnapsightError(f"{path}: cannot load the Hugging Face dataset ({type(e).__name__}: {e})") from e
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds.keys())
        split = split or ("train" if "train" in ds else splits[0] if len(splits) == 1 else None)
        if split not in ds:
            raise SnapsightError(f"{path} has splits {splits}; pick one with {path}:<split>")
        ds = ds[split]
    feats = ds.features
    if image_column is None:
        img_cols = [k for k, f in feats.items() if isinstance(f, datasets.Image)]
        image_column = img_cols[0] if img_cols else _pick(list(feats), IMAGE_KEYS)
    if text_column is None:
        text_column = _pick(list(feats), CAPTION_KEYS)
    if image_column not in feats or text_column not in feats:
        raise SnapsightError(f"{path}: need an image column and a text column; columns are {list(feats)}")
    captions = [_as_captions(v) for v in ds[text_column]]
    empty = [i for i, c in enumerate(captions) if not c]
    if empty:
        raise SnapsightError(f"{path}: {len(empty)} rows have an empty '{text_column}' (first: row {empty[0]})")
    images = ds.cast_column(image_column, datasets.Image(decode=False)) if isinstance(
        feats[image_column], datasets.Image) else ds
    column = images.select_columns([image_column])

    def get(i: int) -> Any:
        v = column[int(i)][image_column]
        if isinstance(v, dict):
            return v.get("bytes") or v.get("path")
        if isinstance(v, (list, np.ndarray)):
            return Image.fromarray(np.asarray(v, dtype=np.uint8))
        return v

    return PairDataset(f"{path}" + (f":{split}" if split else ""), captions,
                       np.full(len(captions), -1, dtype=np.int64), get)


def emoji_pairs(
    emojis: Sequence[Any] | None = None,
    templates: Sequence[str] = ("{}", "an emoji of a {}", "a {} emoji", "an icon of a {}", "a cartoon {}",
                                "a drawing of a {}"),
    size: int | None = 64,
    group_offset: int = 0,
) -> PairDataset:
    """Rendered colour emoji captioned with their names and synonyms; each emoji is its own group."""

    images, kept = render_all_emoji(list(emojis) if emojis is not None else None, size=size)
    captions = [tuple(dict.fromkeys(t.format(n) for t in templates for n in e.names)) for e in kept]
    groups = np.arange(len(kept), dtype=np.int64) + group_offset
    return in_memory_pairs("emoji", images, captions, groups, [e.name for e in kept])


def stamp_pairs(stamps: Sequence[Any], captions: Sequence[Sequence[str]], size: int | None = 64,
                group_offset: int = 0) -> PairDataset:
    """Tux Paint stamps (:class:`snapsight.data.stamps.Stamp`) rendered on white (resized to ``size`` px to save
    memory) with the given captions; each stamp is its own group."""
    images = []
    for st in stamps:
        img = render_stamp(st)
        images.append(img.resize((size, size), Image.BICUBIC) if size else img)
    groups = np.arange(len(stamps), dtype=np.int64) + group_offset
    return in_memory_pairs("stamps", images, captions, groups, [st.name for st in stamps])


class ConcatPairs(PairDataset):
    """Several pair sources as one; group ids are shifted so that sources never share a group."""

    def __init__(self, parts: Sequence[PairDataset]):
        if not parts:
            raise SnapsightError("no image-text pairs given")
        captions: list[tuple[str, ...]] = []
        groups, names, index = [], [], []
        offset = 0
        for k, p in enumerate(parts):
            captions += p.captions
            g = p.groups.copy()
            g[g >= 0] += offset
            groups.append(g)
            names += p.group_names or [f"{p.name}:{j}" for j in range(int(p.groups.max(initial=-1)) + 1)]
            offset += int(p.groups.max(initial=-1)) + 1
            index += [(k, i) for i in range(len(p))]
        self.parts = list(parts)
        super().__init__(" + ".join(p.name for p in parts), captions, np.concatenate(groups),
                         lambda i: self.parts[index[i][0]].source(index[i][1]), names)


def open_pairs(
    spec: str | os.PathLike,
    templates: Sequence[str] = CLASS_TEMPLATES,
    synonyms: Mapping[str, Sequence[str]] | None = None,
) -> PairDataset:
    """Open one pairs source, detecting its kind from ``spec`` (see the module docstring)."""

    s = str(spec)
    if s == "emoji":
        return emoji_pairs()
    if s.startswith("labeled:"):
        return labeled_pairs(load_labeled(s[len("labeled:"):]), templates, synonyms)
    if s.lower().startswith("fashion-mnist"):
        return labeled_pairs(load_labeled(s), templates, synonyms)
    base, split = s, None
    if ":" in s and not Path(s).exists():
        b, _, sp = s.rpartition(":")
        if b and Path(b).exists() and "/" not in sp:
            base, split = b, sp
    path = Path(base)
    if not path.exists():
        raise SnapsightError(
            f"image-text pairs not found: {spec} (pass a .csv/.tsv/.jsonl of image,caption, a folder of images "
            "with sidecar .txt captions, a Hugging Face save_to_disk folder, labeled:<class-labeled data>, "
            "fashion-mnist or emoji)"
        )
    if path.is_file():
        if path.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".ndjson", ".json"):
            raise SnapsightError(f"{path}: unsupported pairs file type '{path.suffix}'; use .csv, .tsv or .jsonl")
        return read_pairs_table(path)
    if is_hf_dataset_dir(path):
        try:
            return hf_pairs(path, split)
        except SnapsightError as e:
            if "text column" not in str(e):
                raise
            return labeled_pairs(load_labeled(s), templates, synonyms)  # image + label columns
    if _has_sidecars(path):
        return sidecar_pairs(path)
    return labeled_pairs(load_labeled(s), templates, synonyms)  # class-per-folder tree


def repeat_pairs(pairs: PairDataset, times: int) -> PairDataset:
    """``pairs`` listed ``times`` times (same group ids), to weight a small source in a concatenation."""
    if times <= 1:
        return pairs
    n = len(pairs)
    return PairDataset(f"{pairs.name} x{times}", pairs.captions * times, np.tile(pairs.groups, times),
                       lambda i: pairs.source(i % n), list(pairs.group_names))
