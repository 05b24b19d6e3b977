"""Search your own image folders by text or by image through a FAISS index of their features.

Public API::

    from snapsight.search import index_folders, load_searcher

    report = index_folders(["photos/"], "runs/photos-index")        # the default model; again = refresh
    searcher = load_searcher("runs/photos-index")                     # loads the model that built it
    searcher.search_text("a red car", k=10)                            # [Hit(rank, path, score), ...]
    searcher.search_image("query.jpg", k=10)

``build`` walks, embeds (resumable chunks, one shard per ``torchrun`` process) and writes the folder that ``store``
describes; ``vectors`` is the FAISS part (flat, IVF, HNSW) on plain float32 arrays; ``query`` searches.
"""
from __future__ import annotations

from .build import BuildReport, build_index, index_folders, model_identity, scan_folders
from .query import Hit, ImageSearcher, load_searcher
from .store import StoredIndex, is_index_dir
from .vectors import VectorIndexConfig

__all__ = ["BuildReport", "Hit", "ImageSearcher", "StoredIndex", "VectorIndexConfig", "build_index", "index_folders",
           "is_index_dir", "load_searcher", "model_identity", "scan_folders"]
