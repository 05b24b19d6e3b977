"""Build or refresh an image index: walk folders, embed what is new or changed, in resumable chunks, on N processes.

One build, top to bottom (:func:`build_index`):

1. rank 0 walks the folders (:func:`scan_folders`) and plans: an image whose path, size and modification time match
   the existing index, or a chunk finished by an earlier, killed build, keeps its vector; every other image is to
   embed; images no longer found are dropped;
2. under ``torchrun`` the list to embed is broadcast and process ``r`` of ``N`` embeds every ``N``-th image from
   ``r``; each process writes each finished chunk of ``chunk_size`` images to ``INDEX_DIR/.partial/`` at once, so a
   killed build loses at most the chunk in flight;
3. rank 0 merges the kept vectors and every chunk, in path order, builds the FAISS index and replaces the folder
   atomically (the partial chunks go with it).

The result depends only on the files and the model, never on which build embedded a vector, so a refresh equals a
fresh build. Unreadable files are skipped with :func:`snapsight.data.images.open_image`'s message, as ``classify``
does.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from PIL import Image

from ..data.images import IMAGE_EXTENSIONS, iter_image_entries, open_image
from ..errors import ImageError, SnapsightError
from ..ondevice.scoring import ZeroShotConfig
from ..train import distributed as du
from ..zeroshot.classify import ZeroShotClassifier
from ..zeroshot.index import normalize_rows
from .store import (
    INDEX_FORMAT,
    INDEX_KIND,
    PARTIAL,
    FileStamp,
    StoredIndex,
    is_index_dir,
    load_npy,
    save_npy,
    write_index_dir,
)
from .vectors import VectorIndexConfig, build_vector_index, resolve_kind

log = logging.getLogger(__name__)

Embed = Callable[[list[Image.Image]], np.ndarray]  # PIL images -> (n, dim) float32 embeddings


@dataclass
class BuildReport:
    """What a build did: counts of images kept, embedded (new or changed), dropped and skipped."""

    total: int = 0  # images in the finished index
    embedded: int = 0  # embedded by this run (all processes)
    reused: int = 0  # vectors kept from the previous index or from chunks of a killed build
    removed: int = 0  # images of the previous index no longer found
    skipped: list[str] = field(default_factory=list)  # one reason per unreadable file
    kind: str = ""
    dim: int = 0
    seconds: float = 0.0


def scan_folders(folders: Sequence[str | os.PathLike]) -> list[FileStamp]:
    """Every image file under ``folders`` (recursive, hidden files skipped): absolute path, size and mtime,
    sorted by path, each file once."""
    stamps: dict[str, FileStamp] = {}
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise SnapsightError(f"{folder}: folder not found" if not root.exists() else
                                 f"{folder} is a file; snapsight index takes folders of images")
        found = 0
        for entry in iter_image_entries(os.path.abspath(root)):  # an absolute root gives absolute, normal paths
            try:
                st = entry.stat()
            except OSError:  # removed while walking
                continue
            stamps[entry.path] = FileStamp(entry.path, int(st.st_size), int(st.st_mtime_ns))
            found += 1
        if not found:
            raise SnapsightError(f"{folder}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [stamps[p] for p in sorted(stamps)]


def same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two model identities (``name``, ``fingerprint``, ``dim``) describe the same weights."""
    return all(a.get(k) == b.get(k) for k in ("name", "fingerprint", "dim"))


def describe_model(identity: dict[str, Any]) -> str:
    spec = identity.get("spec") or "clip:default"
    pre = identity.get("pretrained")
    return spec + (f" ({pre})" if pre else "")


def model_identity(clf: ZeroShotClassifier, spec: str | None, pretrained: str | None) -> dict[str, Any]:
    """What an index records about its model: the spec to load it again (local paths made absolute, so a search
    from another folder finds it), its name, pretrained tag, weights fingerprint and embedding width."""
    if spec:
        prefix = "local-dir:" if spec.startswith("local-dir:") else ""
        rest = spec[len(prefix):]
        if Path(rest).expanduser().exists():
            spec = prefix + os.path.abspath(Path(rest).expanduser())
    if pretrained and Path(pretrained).expanduser().is_file():
        pretrained = os.path.abspath(Path(pretrained).expanduser())
    info = clf.bundle.info
    return {"spec": spec, "pretrained": pretrained, "name": info.get("name"), "fingerprint": info.get("fingerprint"),
            "dim": int(clf.embed_dim)}


# ----------------------------------------------------------------------------------------------- partial chunks
def _partial_dir(out: Path) -> Path:
    return out / PARTIAL


def _open_partial(out: Path, model: dict[str, Any]) -> Path:
    """The chunk folder of ``out``, emptied when it holds chunks of another model."""
    part = _partial_dir(out)
    ident = part / "model.json"
    if part.is_dir():
        try:
            keep = same_model(json.loads(ident.read_text(encoding="utf-8")), model)
        except (OSError, ValueError):
            keep = False
        if not keep:
            shutil.rmtree(part)
    part.mkdir(parents=True, exist_ok=True)
    if not ident.is_file():
        ident.write_text(json.dumps(model), encoding="utf-8")
    return part


def _write_chunk(part: Path, name: str, stamps: list[FileStamp], vectors: np.ndarray,
                 skipped: list[tuple[FileStamp, str]]) -> None:
    """One finished chunk: its vectors, then the list of its files (a chunk counts once its list exists)."""
    if len(stamps):
        save_npy(part / f"{name}.npy", vectors)
    record = {"files": [s.to_dict() for s in stamps], "skipped": [[s.to_dict(), r] for s, r in skipped]}
    tmp = part / f".{name}.json.tmp"
    tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, part / f"{name}.json")


def _read_chunks(part: Path) -> tuple[dict[str, tuple[FileStamp, np.ndarray]], dict[str, tuple[FileStamp, str]]]:
    """Vectors and skipped files of every finished chunk, by path."""
    done: dict[str, tuple[FileStamp, np.ndarray]] = {}
    skipped: dict[str, tuple[FileStamp, str]] = {}
    if not part.is_dir():
        return done, skipped
    for record_path in sorted(part.glob("chunk-*.json")):
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            stamps = [FileStamp(**d) for d in record["files"]]
            vectors = load_npy(record_path.with_suffix(".npy")) if stamps else np.zeros((0, 0), np.float32)
        except (OSError, ValueError, KeyError, TypeError):  # a damaged chunk is embedded again
            continue
        if len(vectors) != len(stamps):
            continue
        for s, v in zip(stamps, vectors):
            done[s.path] = (s, v)
        for d, reason in record.get("skipped", []):
            s = FileStamp(**d)
            skipped[s.path] = (s, reason)
    return done, skipped


# ----------------------------------------------------------------------------------------------- the build
def _plan(files: list[FileStamp], out: Path, model: dict[str, Any],
          ) -> tuple[list[FileStamp], int, StoredIndex | None]:
    """``(to_embed, removed, previous)``: files whose vectors neither the index at ``out`` nor a finished chunk
    has, and that index (its vectors memory-mapped), which the merge reuses."""
    known: dict[str, FileStamp] = {}
    removed = 0
    previous = None
    if is_index_dir(out):
        previous = StoredIndex.load(out, with_faiss=False)
        if not same_model(previous.model, model):
            raise SnapsightError(f"{out} holds an index built with {describe_model(previous.model)}, and this build "
                                 f"uses {describe_model(model)}, whose vectors are not comparable; choose another "
                                 f"--out or delete {out}")
        current = {f.path for f in files}
        known = {s.path: s for s in previous.files}
        removed = sum(1 for p in known if p not in current)
    done, skipped = _read_chunks(_open_partial(out, model))
    known.update({p: s for p, (s, _) in done.items()})
    known.update({p: s for p, (s, _) in skipped.items()})
    todo = [f for f in files if known.get(f.path) != f]
    return todo, removed, previous


def _embed_shard(shard: list[FileStamp], embed: Embed, part: Path, run_id: str, rank: int, chunk_size: int,
                 batch_size: int, progress: bool, after_chunk: Callable[[int], None] | None) -> int:
    """Embed ``shard`` chunk by chunk into ``part``; returns the number of images embedded."""
    from tqdm import tqdm

    embedded = 0
    bar = tqdm(total=len(shard), unit="img", desc=f"embedding (process {rank})" if du.is_distributed() else
               "embedding", disable=not progress, file=sys.stderr)
    for c, start in enumerate(range(0, len(shard), chunk_size)):
        stamps: list[FileStamp] = []
        vectors: list[np.ndarray] = []
        skipped: list[tuple[FileStamp, str]] = []
        chunk = shard[start:start + chunk_size]
        for b in range(0, len(chunk), batch_size):
            images, opened = [], []
            for s in chunk[b:b + batch_size]:
                try:
                    images.append(open_image(s.path))
                    opened.append(s)
                except ImageError as e:
                    skipped.append((s, str(e)))
            if images:
                vectors.append(np.asarray(embed(images), dtype=np.float32))
                stamps.extend(opened)
                embedded += len(images)
            bar.update(len(chunk[b:b + batch_size]))
        matrix = normalize_rows(np.concatenate(vectors)) if vectors else np.zeros((0, 0), np.float32)
        _write_chunk(part, f"chunk-{run_id}-r{rank:03d}-{c:06d}", stamps, matrix, skipped)
        if after_chunk is not None:
            after_chunk(c)
    bar.close()
    return embedded


def _broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (a collective)."""
    if not du.is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def build_index(
    folders: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    embed: Embed,
    model: dict[str, Any],
    config: VectorIndexConfig | None = None,
    chunk_size: int = 256,
    batch_size: int = 32,
    progress: bool = True,
    after_chunk: Callable[[int], None] | None = None,
) -> BuildReport:
    """Build the image index of ``folders`` at ``out``, or refresh the one there; see the module docstring.

    ``embed``: PIL images -> ``(n, dim)`` embeddings from the model ``model`` describes (``spec``, ``pretrained``,
    ``name``, ``fingerprint``, ``dim``: kept in the manifest; an index at ``out`` from another model is refused).
    ``after_chunk(i)`` runs after chunk ``i`` of this process is saved. Under ``torchrun`` every process calls this
    with the same arguments and rank 0 writes the folder. Returns the :class:`BuildReport` (complete on rank 0).
    """
    if chunk_size < 1 or batch_size < 1:
        raise SnapsightError(f"chunk size and batch size must be at least 1, got {chunk_size} and {batch_size}")
    config = config or VectorIndexConfig()
    resolve_kind(0, config)  # a bad kind is one sentence before any image is read
    out = Path(out)
    started = time.perf_counter()
    rank, world = du.get_rank(), du.get_world_size()
    plan: Any = None
    previous = None  # rank 0: the index being refreshed, read once for the plan and the merge
    if rank == 0:
        try:
            files = scan_folders(folders)
            todo, removed, previous = _plan(files, out, model)
            plan = (files, todo, removed, f"{time.time_ns():x}")
        except SnapsightError as e:  # every process stops with the same sentence
            plan = str(e)
    plan = _broadcast(plan)
    if isinstance(plan, str):
        raise SnapsightError(plan)
    files, todo, removed, run_id = plan
    if rank == 0:
        log.info("%d images under the folders: %d to embed, %d unchanged, %d dropped", len(files), len(todo),
                 len(files) - len(todo), removed)
    part = _partial_dir(out)
    embedded = _embed_shard(todo[rank::world], embed, part, run_id, rank, chunk_size, batch_size, progress,
                            after_chunk)
    if du.is_distributed():
        counts = [0] * world
        dist.all_gather_object(counts, embedded)
        embedded = sum(counts)
    report = BuildReport(embedded=embedded, removed=removed)
    error = None
    if rank == 0:
        try:
            _merge(files, out, model, config, report, previous)
        except SnapsightError as e:
            error = str(e)
    error = _broadcast(error)  # also keeps the other processes until the folder is written
    if error:
        raise SnapsightError(error)
    report.seconds = time.perf_counter() - started
    return report


def _merge(files: list[FileStamp], out: Path, model: dict[str, Any], config: VectorIndexConfig,
           report: BuildReport, previous: StoredIndex | None) -> None:
    """Rank 0: the previous index's kept vectors and every finished chunk, in path order, written as ``out``."""
    # Where each path's vector is: (source, row), source 0 the previous index, 1 the new chunks; gathered in one
    # indexing per source, since row-by-row reads of the memory-mapped previous vectors dominate a refresh.
    where: dict[str, tuple[int, int]] = {}
    stamp_of: dict[str, FileStamp] = {}
    sources: list[np.ndarray] = [np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)]
    if previous is not None:
        sources[0] = previous.vectors
        for i, s in enumerate(previous.files):
            where[s.path], stamp_of[s.path] = (0, i), s
    done, skipped = _read_chunks(_partial_dir(out))
    if done:
        sources[1] = np.stack([v for _, v in done.values()])
        for i, (p, (s, _)) in enumerate(done.items()):
            where[p], stamp_of[p] = (1, i), s
    kept: list[FileStamp] = []
    picks: list[tuple[int, int]] = []
    for f in files:
        if stamp_of.get(f.path) == f:
            kept.append(f)
            picks.append(where[f.path])
        elif f.path in skipped and skipped[f.path][0] == f:
            report.skipped.append(skipped[f.path][1])
        else:  # every planned file is in a chunk once all processes are done; a gap is a bug, not bad input
            raise RuntimeError(f"no vector for {f.path} after the build")
    if not picks:
        raise SnapsightError(f"none of the {len(files)} images could be read")
    src = np.fromiter((s for s, _ in picks), np.int64, len(picks))
    row = np.fromiter((r for _, r in picks), np.int64, len(picks))
    dim = max(a.shape[1] for a in sources if len(a))
    vectors = np.empty((len(picks), dim), np.float32)
    for k, arr in enumerate(sources):
        mask = src == k
        if mask.any():
            vectors[mask] = arr[row[mask]]
    kind = resolve_kind(len(vectors), config)
    manifest = {
        "kind": INDEX_KIND, "format": INDEX_FORMAT, "model": model, "dim": int(vectors.shape[1]),
        "count": len(kept), "index": {"kind": kind, "config": config.to_dict()},
        "skipped": report.skipped,
    }
    write_index_dir(out, manifest, kept, vectors, build_vector_index(vectors, kind, config))
    report.total, report.kind, report.dim = len(kept), kind, int(vectors.shape[1])
    report.reused = report.total - report.embedded


def index_folders(folders: Sequence[str | os.PathLike], out: str | os.PathLike, model: str | None = None,
                  pretrained: str | None = None, device: str = "auto", precision: str = "auto",
                  config: VectorIndexConfig | None = None, chunk_size: int = 256, batch_size: int = 32,
                  progress: bool = True) -> BuildReport:
    """:func:`build_index` with CLIP model ``model`` (None = the default model) loaded here, on ``device``
    (under ``torchrun`` each process's own; start the process group first)."""
    clf = ZeroShotClassifier.load(model, pretrained, device=device,
                                  config=ZeroShotConfig(precision=precision, cache_dir=""))
    return build_index(folders, out,
                       lambda images: clf.encode_images(images, batch_size=batch_size, familiarity=False).numpy(),
                       model_identity(clf, model, pretrained), config=config, chunk_size=chunk_size,
                       batch_size=batch_size, progress=progress)
