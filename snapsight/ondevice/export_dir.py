"""Reading an export folder back: the manifest, its hashes, and onnxruntime sessions over its graphs.

Every file is checked against the sha256 in the manifest before it is used (a graph when its session opens, so a
run that only needs the image tower never reads the text tower), and every failure is one sentence: a folder
that is not an export, a file that changed or is missing, an opset the installed onnxruntime cannot run.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..artifacts.export import (
    EXPORT_FORMAT_VERSION,
    EXPORT_KIND,
    EXPORT_MANIFEST,
    file_sha256,
)
from ..artifacts.files import read_json
from ..errors import SnapsightError


class ExportDir:
    """An export folder with a checked manifest: ``manifest`` (dict), ``path``, :meth:`file` and :meth:`session`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        manifest_path = self.path / EXPORT_MANIFEST
        if not self.path.is_dir():
            raise SnapsightError(f"export folder not found: {self.path}")
        if not manifest_path.is_file():
            raise SnapsightError(f"{self.path} is not a snapsight export ({EXPORT_MANIFEST} missing); make one with "
                                 "`snapsight export --model ... --out DIR`")
        manifest = read_json(manifest_path)
        if not isinstance(manifest, dict) or manifest.get("kind") != EXPORT_KIND:
            raise SnapsightError(f"{manifest_path} is not a snapsight export manifest (kind is not '{EXPORT_KIND}')")
        if int(manifest.get("format_version", 0)) > EXPORT_FORMAT_VERSION:
            raise SnapsightError(f"{self.path} was written by a newer snapsight (export format "
                                 f"{manifest.get('format_version')}); upgrade snapsight to read it")
        if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
            raise SnapsightError(f"{manifest_path} lists no files with their hashes")
        self.manifest: dict[str, Any] = manifest
        self._checked: set[str] = set()

    @property
    def task(self) -> str:
        return str(self.manifest.get("task"))

    def file(self, name: str) -> Path:
        """The path of manifest-listed file ``name``, after checking its sha256 (once per process)."""
        want = self.manifest["files"].get(name)
        if want is None:
            raise SnapsightError(f"{self.path}: the manifest does not list {name}")
        p = self.path / name
        if name not in self._checked:
            if not p.is_file():
                raise SnapsightError(f"{p} is missing from the export; re-export the model")
            if file_sha256(p) != want:
                raise SnapsightError(f"{p} does not match the sha256 in {EXPORT_MANIFEST} (the file was changed "
                                     "after export); re-export the model")
            self._checked.add(name)
        return p

    def verify_all(self) -> None:
        """Check every file the manifest lists (``snapsight export`` does this after writing)."""
        for name in self.manifest["files"]:
            self.file(name)

    def session(self, name: str, threads: int | None = None) -> Any:
        """An onnxruntime CPU session over graph ``name`` (hash-checked first)."""
        import onnxruntime as ort

        path = self.file(name)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3  # onnxruntime's own warnings (e.g. unused initializers) are not the user's
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            msg = str(e)
            if "opset" in msg.lower() or "domain_version" in msg.lower():
                raise SnapsightError(
                    f"{path} needs ONNX opset {self.manifest.get('opset')}, which the installed onnxruntime "
                    f"{ort.__version__} cannot run; upgrade onnxruntime or re-export with a lower --opset") from e
            raise SnapsightError(f"onnxruntime cannot load {path}: {msg.splitlines()[0][:300]}") from e
