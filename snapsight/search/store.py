"""The image index folder that ``snapsight index`` writes and ``snapsight search`` and the demo read::

    INDEX_DIR/
      snapsight_index.json   kind, format, the model that embedded the images (spec, name, pretrained, fingerprint,
                             width), the FAISS kind and its settings, the indexed folders, count, skipped files
      files.jsonl            one {"path", "size", "mtime_ns"} per row; row i is vector i
      vectors.npy            (n, dim) float32, L2-normalised (numpy format, read with allow_pickle=False)
      index.faiss            the FAISS index over vectors.npy (ids = rows)
      .partial/              only while a build runs: finished chunks a killed build resumes from

The folder is written with :func:`snapsight.artifacts.files.atomic_folder`, so a killed build leaves the previous
index whole (and the partial chunks beside it).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts.files import atomic_folder, atomic_write_bytes, read_json
from ..errors import SnapsightError
from .vectors import VectorIndexConfig, read_vector_index, set_search_params, write_vector_index

INDEX_KIND = "snapsight-image-index"
INDEX_FORMAT = 1
MANIFEST = "snapsight_index.json"
FILES = "files.jsonl"
VECTORS = "vectors.npy"
FAISS_FILE = "index.faiss"
PARTIAL = ".partial"


@dataclass(frozen=True)
class FileStamp:
    """An image file as the index knows it: a changed size or modification time means it is embedded again."""

    path: str
    size: int
    mtime_ns: int

    def to_dict(self) -> dict[str, Any]:  # by hand: dataclasses.asdict deep-copies, 10x slower on 10k files
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}


def save_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as a .npy file, atomically."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """A .npy file without pickles; ``mmap``: mapped read-only instead of read into memory."""
    return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)


def is_index_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def write_index_dir(out: Path, manifest: dict[str, Any], files: list[FileStamp], vectors: np.ndarray,
                    faiss_index: Any) -> None:
    """Replace ``out`` with a complete index folder (its ``.partial/`` goes with it)."""
    with atomic_folder(out) as tmp:  # the folder is replaced whole, so its files need no atomic writes of their own
        np.save(tmp / VECTORS, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        (tmp / FILES).write_text("".join(json.dumps(f.to_dict(), ensure_ascii=False) + "\n" for f in files),
                                 encoding="utf-8")
        write_vector_index(faiss_index, str(tmp / FAISS_FILE))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_manifest(index_dir: str | Path) -> dict[str, Any]:
    """The manifest of an index folder; one sentence when ``index_dir`` is not one."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise SnapsightError(f"{index_dir}: index folder not found (build one with `snapsight index FOLDER --out "
                             f"{index_dir}`)")
    if not (index_dir / MANIFEST).is_file():
        extra = " (a build was interrupted; run the same `snapsight index` again to finish it)" \
            if (index_dir / PARTIAL).is_dir() else ""
        raise SnapsightError(f"{index_dir} is not a snapsight image index: it has no {MANIFEST}{extra}")
    manifest = read_json(index_dir / MANIFEST)
    if manifest.get("kind") != INDEX_KIND or manifest.get("format") != INDEX_FORMAT:
        raise SnapsightError(f"{index_dir}/{MANIFEST} is not a format-{INDEX_FORMAT} snapsight image index")
    return manifest


def read_files(index_dir: Path) -> list[FileStamp]:
    lines = (index_dir / FILES).read_text(encoding="utf-8").splitlines()
    return [FileStamp(**json.loads(line)) for line in lines if line.strip()]


@dataclass
class StoredIndex:
    """An index folder read back: manifest, files (row order), vectors ``(n, dim)`` and the FAISS index."""

    directory: Path
    manifest: dict[str, Any]
    files: list[FileStamp]
    vectors: np.ndarray
    faiss_index: Any

    @property
    def kind(self) -> str:
        return self.manifest["index"]["kind"]

    @property
    def model(self) -> dict[str, Any]:
        return self.manifest["model"]

    @property
    def config(self) -> VectorIndexConfig:
        return VectorIndexConfig.from_dict(self.manifest["index"].get("config", {}))

    @classmethod
    def load(cls, index_dir: str | Path, with_faiss: bool = True) -> StoredIndex:
        """Read ``index_dir``; ``with_faiss=False`` skips the FAISS file (a rebuild only needs the vectors)."""
        index_dir = Path(index_dir)
        manifest = read_manifest(index_dir)
        try:
            files = read_files(index_dir)
            vectors = load_npy(index_dir / VECTORS, mmap=True)  # searching reads only the FAISS index
            faiss_index = read_vector_index(str(index_dir / FAISS_FILE)) if with_faiss else None
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            raise SnapsightError(f"{index_dir} is damaged ({type(e).__name__}: {e}); build it again with "
                                 "`snapsight index`") from e
        if len(files) != len(vectors) or (faiss_index is not None and faiss_index.ntotal != len(vectors)):
            raise SnapsightError(f"{index_dir} is damaged: {len(files)} files, {len(vectors)} vectors; build it again "
                                 "with `snapsight index`")
        stored = cls(index_dir, manifest, files, vectors, faiss_index)
        if faiss_index is not None:
            set_search_params(faiss_index, stored.kind, stored.config)
        return stored
