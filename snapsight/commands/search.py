"""``snapsight search``: the images of an index nearest to a text or an image query."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys

HELP = 'search an index built by `snapsight index` by text ("a red car") or by image (--image QUERY.jpg)'


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", help="index folder written by `snapsight index`")
    p.add_argument("query", nargs="?", help='text query, e.g. "a red car" (or use --image)')
    p.add_argument("--image", help="query by this image instead of text")
    p.add_argument("--top-k", type=int, default=10, help="results shown (default 10)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    p.add_argument("--templates", default="default",
                   help="prompt templates a text query is averaged over: default (as classify), clip80, or none "
                        "(the text as typed)")
    p.add_argument("--model", help="the model to embed the query with; it must be the index's own (the default)")
    p.add_argument("--pretrained", help="open_clip pretrained tag or weights file (with --model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="model weights precision")


def run(args: argparse.Namespace) -> int:
    from ..errors import SnapsightError

    if (args.query is None) == (args.image is None):
        raise SnapsightError('give either a text query ("a red car") or --image QUERY.jpg, not both')
    if args.top_k < 1:
        raise SnapsightError(f"--top-k must be at least 1, got {args.top_k}")
    from ..labels import resolve_templates
    from ..search import load_searcher

    resolve_templates(args.templates)  # a bad template set is one sentence before the model loads
    searcher = load_searcher(args.index, model=args.model, pretrained=args.pretrained, device=args.device,
                             precision=args.precision, templates=args.templates)
    hits = searcher.search_image(args.image, args.top_k) if args.image else searcher.search_text(args.query, args.top_k)
    sys.stdout.write(format_hits(hits, args.format))
    return 0


def format_hits(hits: list, fmt: str) -> str:
    """Render :class:`~snapsight.search.Hit` rows as a text table, JSON or CSV."""
    if fmt == "json":
        return json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["rank", "path", "score"])
        for h in hits:
            w.writerow([h.rank, h.path, f"{h.score:.6f}"])
        return buf.getvalue()
    return "".join(f"{h.rank:>3}. cos {h.score:+.3f}  {h.path}\n" for h in hits)
