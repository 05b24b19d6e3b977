"""``snapsight index``: embed every image under some folders into a searchable index (again = refresh)."""
from __future__ import annotations

import argparse
import sys

HELP = "index the images under folders for `snapsight search` (re-run to add new, drop deleted, re-embed changed)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+", help="folders of images (searched recursively, hidden files skipped)")
    p.add_argument("--out", required=True, help="index folder to write; an index there is refreshed")
    p.add_argument("--model", help="CLIP model: open_clip name, hf-hub:ID, local folder ... (default: the offline "
                   "default model)")
    p.add_argument("--pretrained", help="open_clip pretrained tag or weights file (with an open_clip --model name)")
    p.add_argument("--index-kind", choices=("auto", "flat", "ivf", "hnsw", "pq"), default="auto",
                   help="FAISS index: auto (the default) is exact (flat) for small indexes and an approximate one "
                        "above (docs/search.md); or force one")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--chunk-size", type=int, default=256,
                   help="images per saved chunk: a killed run resumes after the last saved chunk (default 256)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="model weights precision (default auto: bf16 where the CPU or GPU has it natively)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..runtime import resolve_device
    from ..search import VectorIndexConfig, index_folders
    from ..train import distributed as du

    device = du.init_distributed(resolve_device(args.device))  # one shard per process under torchrun
    try:
        report = index_folders(args.folders, args.out, model=args.model, pretrained=args.pretrained,
                               device=str(device), precision=args.precision,
                               config=VectorIndexConfig(kind=args.index_kind), chunk_size=args.chunk_size,
                               batch_size=args.batch_size, progress=not args.no_progress)
    finally:
        du.cleanup_distributed()
    if du.get_rank() != 0:
        return 0
    for reason in report.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"indexed {report.total} images in {args.out} ({report.kind}, {report.dim}-d): {report.embedded} embedded, "
          f"{report.reused} unchanged, {report.removed} dropped, in {report.seconds:.1f} s")
    if report.skipped:
        print(f"{len(report.skipped)} of {report.total + len(report.skipped)} images skipped (unreadable)",
              file=sys.stderr)
    return 0
