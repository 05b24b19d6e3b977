"""Searching your folders: `snapsight index` / `snapsight search` on Fashion-MNIST, and FAISS kinds on 1M vectors.

In one run:

1. the 10,000 Fashion-MNIST test images written as PNGs (``OUT/fashion-mnist/<class>/<i>.png``) and indexed with the
   offline default model (:func:`snapsight.search.index_folders`): images/s of the full build; precision@10 of the
   ten class names as text queries (as typed, and with the default templates); query latency (text embedding +
   search, and the search alone); then 1% of the files rewritten (other pixels) and the index refreshed: the
   refresh's time as a share of the full build's (target <= 5%; model loading is outside both), and the refreshed
   index next to a fresh build of the changed folder;
2. ``--n`` random unit vectors (Gaussian, normalised; default 1,000,000) at ``--dim`` (default 768, the default
   model's width; 384 is MiniLM's):
   build time, index size and the process's peak memory, per-query latency on one thread
   (``faiss.omp_set_num_threads(1)``, one query at a time) and recall@10 against exact search: exact search at
   several sizes, IVF over a sweep of ``nprobe``, 4-bit PQ with exact re-ranking over a sweep of the re-rank
   factor, and HNSW over a sweep of ``efSearch`` (on the first ``--hnsw-n`` vectors: building the graph over all
   of them takes too long on a 2-core CPU). Target: recall@10 >= 0.95 at <= 5 ms.

Run (writes ``OUT/results.json`` and ``OUT/results.md``)::

    nice -n 5 .venv/bin/python -m benchmarks.search --out runs/search-bench
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


# ------------------------------------------------------------------------------------------- 1. Fashion-MNIST
def write_fashion_mnist(root: Path, limit: int) -> list[tuple[Path, int]]:
    from PIL import Image

    from snapsight.data.fashion_mnist import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    images, labels = images[:limit], labels[:limit]
    files = []
    for i, (img, y) in enumerate(zip(images, labels)):
        p = root / f"{int(y)}" / f"{i:05d}.png"
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(img, dtype=np.uint8)).save(p)
        files.append((p, int(y)))
    return files


def fashion_mnist_part(out: Path, changed_share: float, limit: int) -> dict:
    from PIL import Image

    from snapsight.data.fashion_mnist import FASHION_MNIST_CLASSES
    from snapsight.search import StoredIndex, index_folders, load_searcher

    data = out / "fashion-mnist"
    files = write_fashion_mnist(data, limit)
    index = out / "fashion-mnist-index"
    shutil.rmtree(index, ignore_errors=True)
    log(f"full build of {len(files)} images")
    full = index_folders([data], index, progress=False)
    res: dict = {"images": full.total, "full_build_s": full.seconds, "images_per_s": full.total / full.seconds,
                 "kind": full.kind}
    log(f"  {full.seconds:.1f} s, {res['images_per_s']:.0f} images/s")

    class_of = {str(p.absolute()): y for p, y in files}
    for templates in ("none", "default"):
        searcher = load_searcher(index, templates=templates)
        precision = {}
        for c, name in enumerate(FASHION_MNIST_CLASSES):
            hits = searcher.search_text(name, 10)
            precision[name] = sum(class_of[h.path] == c for h in hits) / 10
        res[f"precision_at_10_{templates}"] = precision
        res[f"mean_precision_at_10_{templates}"] = float(np.mean(list(precision.values())))
        log(f"  precision@10 (templates {templates}): {res[f'mean_precision_at_10_{templates}']:.3f}")
    searcher = load_searcher(index)  # the default: queries averaged over the default templates
    queries = list(FASHION_MNIST_CLASSES) * 5
    searcher.search_text(queries[0], 10)  # warm-up
    t0 = time.perf_counter()
    vectors = [searcher.text_vector(q) for q in queries]
    t1 = time.perf_counter()
    for v in vectors:
        searcher.search_vectors(v, 10)
    t2 = time.perf_counter()
    res["query_ms_text_and_search"] = (t2 - t0) / len(queries) * 1e3
    res["query_ms_search_only"] = (t2 - t1) / len(queries) * 1e3
    log(f"  query: {res['query_ms_text_and_search']:.2f} ms with the text tower, {res['query_ms_search_only']:.3f} "
        "ms search only")

    rng = np.random.default_rng(0)
    n_changed = round(changed_share * len(files))
    for i in rng.choice(len(files), n_changed, replace=False):
        p = files[i][0]
        img = np.asarray(Image.open(p))
        Image.fromarray((255 - img).astype(np.uint8)).save(p)  # other pixels: size and mtime change
    log(f"refresh after {n_changed} files changed")
    refresh = index_folders([data], index, progress=False)
    res.update(changed_files=n_changed, refresh_s=refresh.seconds, refresh_embedded=refresh.embedded,
               refresh_share_of_full=refresh.seconds / full.seconds)
    log(f"  {refresh.seconds:.2f} s = {100 * res['refresh_share_of_full']:.1f}% of the full build")
    fresh = out / "fashion-mnist-fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    index_folders([data], fresh, progress=False)
    a, b = StoredIndex.load(index), StoredIndex.load(fresh)
    # bf16 embeddings of an image differ in the last bits with the batch it was embedded in: the same files, the
    # vectors' largest difference, and whether the class-name queries' top 10 agree
    queries = np.concatenate([searcher.text_vector(name) for name in FASHION_MNIST_CLASSES])
    top_a, top_b = (np.argsort(-(np.asarray(x.vectors) @ queries.T), axis=0)[:10].T for x in (a, b))
    res["refresh_same_files"] = a.files == b.files
    res["refresh_max_abs_diff"] = float(np.abs(np.asarray(a.vectors) - np.asarray(b.vectors)).max())
    res["refresh_top10_agreement"] = float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b)]))
    shutil.rmtree(fresh, ignore_errors=True)
    return res


# ------------------------------------------------------------------------------------------- 2. 1M vectors
def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):  # in blocks: no float64 copy of the whole matrix
        block = rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32)
        out[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def time_queries(index, kind: str, queries: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    """Mean ms per query, one query at a time, and the ids found."""
    from snapsight.search.vectors import search_vectors

    ids = np.empty((len(queries), k), np.int64)
    for i in range(min(10, len(queries))):  # warm-up: first touches of the index's pages are not a query's cost
        search_vectors(index, kind, queries[i:i + 1], k)
    t0 = time.perf_counter()
    for i in range(len(queries)):
        ids[i] = search_vectors(index, kind, queries[i:i + 1], k)[1][0]
    return (time.perf_counter() - t0) / len(queries) * 1e3, ids


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]))


def vectors_part(out: Path, n: int, dim: int, n_queries: int, kinds: list[str], sweeps: dict[str, list[int]],
                 pq_ms: list[int], hnsw_n: int, cfg_args: dict) -> dict:
    from snapsight.search.vectors import (
        VectorIndexConfig,
        build_vector_index,
        ivf_nlist,
        search_vectors,
        set_search_params,
        set_threads,
        write_vector_index,
    )

    log(f"{n:,} random unit vectors, {dim}-d")
    data = unit_vectors(n, dim, 0)
    queries = unit_vectors(n_queries, dim, 1)
    cfg = VectorIndexConfig(**cfg_args)
    res: dict = {"n": n, "dim": dim, "queries": n_queries, "data_gb": data.nbytes / 1e9, "config": cfg.to_dict(),
                 "flat_ms_by_size": {}, "builds": []}
    t0 = time.perf_counter()
    exact = search_vectors(build_vector_index(data, "flat", cfg), "flat", queries, 10)[1]  # batched: ground truth
    log(f"  exact ground truth in {time.perf_counter() - t0:.1f} s")
    set_threads(1)
    for size in sorted({min(n, s) for s in (10_000, 50_000, 100_000, n)}):
        ms, _ = time_queries(build_vector_index(data[:size], "flat", cfg), "flat", queries[:50])
        res["flat_ms_by_size"][size] = ms
        log(f"  flat, {size:,} vectors: {ms:.2f} ms/query")
    builds = [(k, {"pq_m": m}) for k in kinds for m in (pq_ms if k == "pq" else [0])]  # in the order given
    for kind, extra in builds:
        kcfg = VectorIndexConfig(**{**cfg.to_dict(), **extra})
        set_threads(2)
        size, truth = n, exact
        if kind == "hnsw" and 0 < hnsw_n < n:  # a graph over all n takes too long on a small CPU: a subset
            size = hnsw_n
            truth = search_vectors(build_vector_index(data[:size], "flat", cfg), "flat", queries, 10)[1]
        t0 = time.perf_counter()
        index = build_vector_index(data[:size], kind, kcfg)
        build_s = time.perf_counter() - t0
        path = out / f"{kind}.faiss"
        write_vector_index(index, str(path))
        entry = {"kind": kind, "n": size, "build_s": build_s, "index_gb": path.stat().st_size / 1e9, "sweep": [],
                 "setting": {"ivf": f"nlist {ivf_nlist(n, kcfg)}", "hnsw": f"M {kcfg.hnsw_m}, efConstruction "
                             f"{kcfg.hnsw_ef_construction}", "pq": f"{kcfg.pq_m or dim // 4} x 4-bit"}[kind],
                 "sweep_param": {"ivf": "nprobe", "hnsw": "efSearch", "pq": "re-rank factor"}[kind],
                 "peak_rss_gb": peak_rss_gb()}
        path.unlink()
        log(f"  {kind} ({entry['setting']}): built in {build_s:.0f} s, {entry['index_gb']:.2f} GB")
        set_threads(1)
        for p in sweeps[kind]:
            key = {"ivf": "ivf_nprobe", "hnsw": "hnsw_ef_search", "pq": "pq_rerank"}[kind]
            set_search_params(index, kind, VectorIndexConfig(**{**kcfg.to_dict(), key: p}))
            ms, found = time_queries(index, kind, queries)
            entry["sweep"].append({"param": p, "ms_per_query": ms, "recall_at_10": recall_at_10(found, truth)})
            log(f"    {entry['sweep_param']} {p}: recall@10 {entry['sweep'][-1]['recall_at_10']:.3f}, {ms:.2f} ms/query")
        res["builds"].append(entry)
        del index
    set_threads(2)
    res["peak_rss_gb"] = peak_rss_gb()
    return res


def markdown(res: dict) -> str:
    lines = [f"cpu: {res['cpu']}", ""]
    fm = res.get("fashion_mnist")
    if fm:
        lines += [
            "| Fashion-MNIST test, default model | value |", "|---|---|",
            f"| images indexed | {fm['images']:,} ({fm['kind']}) |",
            f"| full build | {fm['full_build_s']:.1f} s, {fm['images_per_s']:.0f} images/s |",
            f"| precision@10, class names as typed | {fm['mean_precision_at_10_none']:.3f} |",
            f"| precision@10, class names with the default templates | {fm['mean_precision_at_10_default']:.3f} |",
            f"| query latency (text tower + search) | {fm['query_ms_text_and_search']:.2f} ms |",
            f"| query latency (search only) | {fm['query_ms_search_only']:.3f} ms |",
            (f"| refresh after {fm['changed_files']} files changed | {fm['refresh_s']:.2f} s = "
            f"{100 * fm['refresh_share_of_full']:.1f}% of the full build |"),
            (f"| refreshed index against a fresh build | same files: {fm['refresh_same_files']}; largest vector "
             f"difference {fm['refresh_max_abs_diff']:.1e}; class queries' top-10 agreement "
             f"{fm['refresh_top10_agreement']:.3f} |"), ""]
    vec = res.get("vectors")
    if vec:
        lines += [(f"{vec['n']:,} random unit vectors, {vec['dim']}-d ({vec['data_gb']:.2f} GB), {vec['queries']} "
                  "queries one at a time on one thread; recall@10 against exact search"), "",
                  "| kind | built with | build | index file | searched with | ms/query | recall@10 |",
                  "|---|---|---|---|---|---|---|"]
        for size, ms in vec["flat_ms_by_size"].items():
            lines.append(f"| flat | {int(size):,} vectors | - | - | exact | {ms:.2f} | 1.000 |")
        for e in vec["builds"]:
            for s in e["sweep"]:
                over = "" if e["n"] == vec["n"] else f" (first {e['n']:,} vectors only)"
                lines.append(f"| {e['kind']}{over} | {e['setting']} | {e['build_s']:.0f} s | {e['index_gb']:.2f} GB | "
                             f"{e['sweep_param']} {s['param']} | {s['ms_per_query']:.2f} | {s['recall_at_10']:.3f} |")
        lines += ["", f"peak memory of the process: {vec['peak_rss_gb']:.1f} GB"]
    return "\n".join(lines) + "\n"


def main() -> None:
    from snapsight.runtime import describe_cpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/search-bench")
    ap.add_argument("--skip-fashion-mnist", action="store_true")
    ap.add_argument("--skip-vectors", action="store_true")
    ap.add_argument("--changed-share", type=float, default=0.01)
    ap.add_argument("--limit", type=int, default=10_000, help="Fashion-MNIST test images used (smoke runs)")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768, help="vector width (768: the default model's)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--kinds", default="ivf,pq,hnsw", help="approximate kinds to build, in this order")
    ap.add_argument("--nprobe", default="16,64,256")
    ap.add_argument("--ef-search", default="64,256,1024")
    ap.add_argument("--rerank", default="5,10,20,50,100")
    ap.add_argument("--pq-m", default="96,192", help="PQ sub-vectors per build (4 bits each)")
    ap.add_argument("--nlist", type=int, default=0)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--hnsw-n", type=int, default=100_000,
                    help="build HNSW on the first N vectors only (0: all; 1M takes over an hour on 2 cores)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = describe_cpu()
    print(f"cpu: {cpu}", flush=True)
    res: dict = {"cpu": cpu, "command": " ".join(sys.argv)}
    if not args.skip_fashion_mnist:
        res["fashion_mnist"] = fashion_mnist_part(out, args.changed_share, args.limit)
    if not args.skip_vectors:
        ints = lambda text: [int(x) for x in text.split(",") if x]
        res["vectors"] = vectors_part(
            out, args.n, args.dim, args.queries, [k for k in args.kinds.split(",") if k],
            {"ivf": ints(args.nprobe), "hnsw": ints(args.ef_search), "pq": ints(args.rerank)}, ints(args.pq_m),
            args.hnsw_n,
            {"ivf_nlist": args.nlist, "hnsw_m": args.hnsw_m, "hnsw_ef_construction": args.ef_construction})
    (out / "results.json").write_text(json.dumps(res, indent=2))
    (out / "results.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
