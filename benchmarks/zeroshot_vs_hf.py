"""snapsight zero-shot vs ``transformers.pipeline("zero-shot-image-classification")``, same weights, same images.

Both sides load ONE Hugging Face ``CLIPModel`` folder written here: ViT-B/32 architecture (openai
config), random weights (no download is possible here), CLIP's real BPE tokenizer (open_clip's vocab
file), CLIP's image processor. snapsight loads it through its HF path; the pipeline loads it as usual.
Both use the pipeline's prompt ``"This is a photo of {}."``, so the probabilities must agree.

Measured in one run (``--quick`` shrinks everything for a smoke test):

1. encoder throughput: images/s of the image tower (fp32 / bf16, batch 1 / 32, channels_last,
   optional torch.compile), its GFLOP/s (FLOPs counted by ``torch.utils.flop_counter``) against a
   plain 4096^2 matmul in the same dtype;
2. label index build time (cold) and load time (cached) at 10 / 1,000 / 21,843 labels;
3. per-image latency (batch 1) and images/s (batch 32) of snapsight vs the pipeline, each at its fastest
   precision on this CPU (bf16 where the CPU has native bf16, fp32 where bf16 would be emulated, e.g. AVX2 only),
   batch 1 and 32 at 10 labels; fewer images at large label counts, where the pipeline re-encodes every label
   for every image; both sides also in fp32 at 10 labels;
4. agreement: max |p_snapsight - p_pipeline| and top-1 agreement at 10 labels.

Run (writes a JSON + markdown table under --out)::

    nice -n 5 .venv/bin/python benchmarks/zeroshot_vs_hf.py --out runs/zeroshot/bench
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

PROMPT = "This is a photo of {}."
TEN_LABELS = ["cat", "dog", "astronaut", "rocket", "cup of coffee", "galaxy", "brick wall", "grass",
              "colour wheel", "microscope slide"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_model_dir(out: Path, quick: bool) -> Path:
    """Random ViT-B/32 CLIPModel + CLIP tokenizer + image processor in save_pretrained layout."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    directory = out / ("tiny-clip-hf" if quick else "vit-b-32-random-hf")
    if (directory / "config.json").is_file():
        return directory
    if quick:
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
        vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                      image_size=224, patch_size=32)
        proj = 32
    else:  # openai/clip-vit-base-patch32
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=32)
        proj = 512
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=49407, **text),
        vision_config=vision, projection_dim=proj)
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    st = SimpleTokenizer()
    specials = {49406: "<|startoftext|>", 49407: "<|endoftext|>"}
    vocab = {specials.get(v, k): v for k, v in st.encoder.items()}
    merges = [tuple(m) for m, _ in sorted(st.bpe_ranks.items(), key=lambda kv: kv[1])]
    model.save_pretrained(directory)
    CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(directory)
    CLIPImageProcessor().save_pretrained(directory)
    return directory


def make_images(out: Path, n: int) -> list[Path]:
    """``n`` JPEG photos: crops of scikit-image's sample pictures at typical phone-thumbnail sizes."""
    import skimage.data as data
    from PIL import Image

    folder = out / "images"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) >= n:
        return sorted(folder.glob("*.jpg"))[:n]
    folder.mkdir(parents=True, exist_ok=True)
    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field(),
               data.immunohistochemistry(), data.colorwheel()]
    rng = np.random.RandomState(0)
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = rng.randint(0, h - ch + 1), rng.randint(0, w - cw + 1)
        im = Image.fromarray(src[y:y + ch, x:x + cw]).resize((640, 480))
        p = folder / f"img_{i:03d}.jpg"
        im.save(p, quality=90)
        paths.append(p)
    return paths


def make_labels(n: int) -> list[str]:
    """``n`` distinct labels: ImageNet-1k names first, then adjective+noun combinations (ImageNet-21k sized)."""
    from snapsight.zeroshot.prompts import builtin_label_set

    base = list(dict.fromkeys(lab.names[0] for lab in builtin_label_set("imagenet-1k").labels))
    labels = list(dict.fromkeys(TEN_LABELS + base))
    adjectives = ["small", "large", "red", "blue", "green", "old", "young", "wooden", "metal", "striped",
                  "spotted", "wet", "dry", "broken", "shiny", "dark", "bright", "wild", "toy", "giant",
                  "tiny", "plastic"]
    i = 0
    while len(labels) < n:
        labels.append(f"{adjectives[i // len(base) % len(adjectives)]} {base[i % len(base)]}")
        i += 1
    return labels[:n]


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    out = None
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t0) / repeat, out


def matmul_gflops(dtype: torch.dtype, n: int = 4096, repeat: int = 3) -> float:
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b
    t, _ = timed(lambda: a @ b, repeat)
    return 2 * n ** 3 / t / 1e9


def encoder_benchmark(model_dir: Path, images: list, quick: bool, try_compile: bool) -> dict:
    """Image-tower images/s and GFLOP/s for the cheap wins; returns a dict of rows."""
    from torch.utils.flop_counter import FlopCounterMode

    from snapsight.models.clip import load_clip

    bundle = load_clip(str(model_dir))
    pixels32 = bundle.preprocess_batch(images[:32])
    with FlopCounterMode(display=False) as fc:
        with torch.inference_mode():
            bundle.model.encode_image(pixels32[:1])
    flops_per_image = fc.get_total_flops()
    rows = {"flops_per_image": flops_per_image}
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    rows["matmul_gflops"] = peak
    log(f"matmul 4096^2: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    variants = [  # (dtype, batch, variant, iterations)
        ("fp32", 1, "plain", 8), ("fp32", 32, "plain", 1),
        ("bf16", 1, "plain", 8), ("bf16", 32, "plain", 2), ("bf16", 32, "channels_last", 1),
        ("bf16", 32, "no_grad_instead_of_inference_mode", 1), ("fp32", 32, "autocast_bf16", 1),
    ]
    for dtype_name, bs, variant, n_iter in variants:
        dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
        model = bundle.model.to(dtype)
        x = pixels32[:bs].to(dtype)
        if variant == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.no_grad if variant.startswith("no_grad") else torch.inference_mode
        amp = (torch.autocast("cpu", dtype=torch.bfloat16) if variant == "autocast_bf16"
               else contextlib.nullcontext())
        with ctx(), amp:
            model.encode_image(x)  # warm-up
            t, _ = timed(lambda: model.encode_image(x), n_iter)
        ips = bs / t
        gf = ips * flops_per_image / 1e9
        key = f"{dtype_name}/bs{bs}/{variant}"
        ref = peak["bf16" if variant == "autocast_bf16" else dtype_name]
        rows[key] = {"images_per_s": ips, "gflops": gf, "fraction_of_matmul": gf / ref}
        log(f"encoder {key}: {ips:.1f} img/s, {gf:.0f} GFLOP/s = {100 * gf / ref:.0f}% of matmul")
    bundle.model.to(torch.float32)
    reps = 1
    if try_compile:
        model = bundle.model.to(torch.bfloat16)
        x = pixels32.to(torch.bfloat16)
        try:
            compiled = torch.compile(model.hf.vision_model)
            t0 = time.perf_counter()
            with torch.inference_mode():
                compiled(pixel_values=x)
            compile_s = time.perf_counter() - t0
            with torch.inference_mode():
                t, _ = timed(lambda: compiled(pixel_values=x), 2 * reps)
            ips = 32 / t
            rows["bf16/bs32/torch.compile(vision_model)"] = {"images_per_s": ips, "compile_s": compile_s,
                                                             "gflops": ips * flops_per_image / 1e9}
            log(f"encoder bf16/bs32/torch.compile: {ips:.1f} img/s (compile {compile_s:.0f}s)")
        except Exception as e:  # noqa: BLE001 - report, do not fail the benchmark
            rows["torch.compile"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
            log(f"torch.compile failed: {e}")
    return rows


def snapsight_benchmark(model_dir: Path, paths: list[Path], images: list, label_counts: list[int],
                        cache_dir: Path, precision: str) -> tuple[dict, dict]:
    from snapsight.zeroshot import ZeroShotClassifier

    rows: dict = {}
    probs10 = {}
    clf = ZeroShotClassifier.load(str(model_dir), device="cpu", precision=precision, cache_dir=str(cache_dir))
    for n in label_counts:
        labels = make_labels(n)
        t_cold, _ = timed(lambda: clf.label_index(labels, [PROMPT]))
        clf.clear_memory_cache()  # drop the in-memory copy: measure a second run that finds the disk cache
        t_warm, (label_set, index) = timed(lambda: clf.label_index(labels, [PROMPT]))
        # latency: one image at a time, as a user classifying one photo (decode+preprocess included)
        n_lat = min(8, len(paths))
        clf.classify(paths[:1], label_set, templates=[PROMPT])  # warm-up
        t_lat, _ = timed(lambda: [clf.classify([p], label_set, templates=[PROMPT]) for p in paths[:n_lat]])
        latency = t_lat / n_lat
        # throughput: batches of 32 images
        t_bat, res = timed(lambda: clf.classify(paths, label_set, templates=[PROMPT], batch_size=32))
        rows[n] = {"index_build_s": t_cold, "index_cached_load_s": t_warm, "latency_s": latency,
                   "images_per_s": len(paths) / t_bat, "images": len(paths)}
        log(f"snapsight[{precision}] {n} labels: index build {t_cold:.2f}s, cached load {t_warm:.3f}s, "
            f"latency {1000 * latency:.1f} ms/img, {len(paths) / t_bat:.1f} img/s")
        if n == label_counts[0]:
            probs10 = {str(p): dict(zip(r.labels, r.probs)) for p, r in
                       zip(paths, clf.classify(paths, label_set, templates=[PROMPT], top_k=n))}
    return rows, probs10


def pipeline_benchmark(model_dir: Path, paths: list[Path], label_counts: list[int], dtype: torch.dtype,
                       images_for: dict[int, int]) -> tuple[dict, dict]:
    from transformers import pipeline

    pipe = pipeline("zero-shot-image-classification", model=str(model_dir), device="cpu", dtype=dtype)
    name = str(dtype).replace("torch.", "")
    rows: dict = {}
    probs10 = {}
    for n in label_counts:
        labels = make_labels(n)
        k = images_for[n]
        sel = [str(p) for p in paths[:k]]
        pipe(sel[0], candidate_labels=labels[:10])  # warm-up
        t_lat, out = timed(lambda: [pipe(p, candidate_labels=labels) for p in sel])
        latency = t_lat / k
        row = {"latency_s": latency, "images": k}
        if n == label_counts[0]:
            probs10 = {p: {d["label"]: d["score"] for d in o} for p, o in zip(sel, out)}
            allp = [str(p) for p in paths]
            t_bat, _ = timed(lambda: pipe(allp, candidate_labels=labels, batch_size=32))
            row["images_per_s_batch32"] = len(allp) / t_bat
            row["images_per_s_batch1"] = 1 / latency
        else:
            row["images_per_s_batch1"] = 1 / latency
        rows[n] = row
        log(f"pipeline[{name}] {n} labels: {1000 * latency:.0f} ms/img over {k} images"
            + (f", batch 32: {row['images_per_s_batch32']:.1f} img/s" if "images_per_s_batch32" in row else ""))
    return rows, probs10


def fastest_precision() -> str:
    """``bf16`` where the CPU runs it natively, else ``fp32`` (emulated bf16 is several times slower than fp32)."""
    from snapsight.runtime import cpu_has_native_bf16

    return "bf16" if cpu_has_native_bf16() else "fp32"


def torch_dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


def head_to_head(model_dir: Path, paths: list[Path], n_labels: int, reps: int) -> dict:
    """Alternate snapsight and the pipeline (both at the fastest precision, batch 32) ``reps`` times, so both see
    the same load.

    On a shared CPU the load drifts by minutes; measurements taken minutes apart are not comparable.
    """
    from transformers import pipeline

    from snapsight.zeroshot import ZeroShotClassifier

    labels = make_labels(n_labels)
    fast = fastest_precision()
    clf = ZeroShotClassifier.load(str(model_dir), device="cpu", precision=fast, cache_dir="")
    pipe = pipeline("zero-shot-image-classification", model=str(model_dir), device="cpu", dtype=torch_dtype(fast))
    label_set, _ = clf.label_index(labels, [PROMPT])
    names = [str(p) for p in paths]
    clf.classify(paths[:2], label_set, templates=[PROMPT])
    pipe(names[:2], candidate_labels=labels, batch_size=2)  # warm-up both
    ours, theirs = [], []
    for rep in range(reps):
        t, _ = timed(lambda: clf.classify(paths, label_set, templates=[PROMPT], batch_size=32))
        ours.append(len(paths) / t)
        t, _ = timed(lambda: pipe(names, candidate_labels=labels, batch_size=32))
        theirs.append(len(paths) / t)
        log(f"head-to-head {n_labels} labels rep {rep}: snapsight {ours[-1]:.1f} img/s, pipeline {theirs[-1]:.1f} img/s")
    return {"labels": n_labels, "images": len(paths), "precision": fast, "snapsight_images_per_s": ours, "pipeline_images_per_s": theirs,
            "median_ratio": float(np.median(np.array(ours) / np.array(theirs)))}


def agreement(a: dict, b: dict) -> dict:
    diffs, top1 = [], []
    for img, pa in a.items():
        pb = b[img]
        diffs += [abs(pa[k] - pb[k]) for k in pa]
        top1.append(max(pa, key=pa.get) == max(pb, key=pb.get))
    return {"max_abs_prob_diff": max(diffs), "top1_agreement": float(np.mean(top1)), "images": len(top1)}


def main() -> int:
    from snapsight.runtime import describe_cpu

    print(f"cpu: {describe_cpu()}", flush=True)  # figures depend on it: name it beside them
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/zeroshot/bench")
    ap.add_argument("--quick", action="store_true", help="tiny model and sizes: checks that the script runs")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--labels", default="10,1000,21843")
    ap.add_argument("--try-compile", action="store_true", help="also time torch.compile on the vision tower")
    ap.add_argument("--skip-encoder", action="store_true")
    ap.add_argument("--head-to-head-only", type=int, default=0, metavar="REPS",
                    help="only alternate snapsight/pipeline at the first label count, REPS times")
    ap.add_argument("--keep-cache", action="store_true", help="reuse label indexes from an earlier run")
    ap.add_argument("--pipeline-labels", default=None,
                    help="label counts to run the pipeline at (default: all); larger counts are extrapolated "
                         "from the largest measured one (its cost per image grows linearly: it re-encodes labels)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    label_counts = [int(x) for x in args.labels.split(",")]
    n_images = 4 if args.quick else args.images
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    model_dir = build_model_dir(out, args.quick)
    paths = make_images(out, n_images)
    from snapsight.data.images import open_image

    images = [open_image(p) for p in paths]
    cache_dir = out / "index-cache"
    if not args.keep_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or "",
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "load_avg_start": os.getloadavg()}
    log(f"env: {env}")
    result: dict = {"env": env, "model_dir": str(model_dir), "images": n_images, "prompt": PROMPT}
    if args.head_to_head_only:
        result["head_to_head"] = head_to_head(model_dir, paths, label_counts[0], args.head_to_head_only)
        result["load_avg_end"] = os.getloadavg()
        (out / "head_to_head.json").write_text(json.dumps(result, indent=2, default=str))
        print(json.dumps(result["head_to_head"], indent=2))
        return 0
    if not args.skip_encoder:
        result["encoder"] = encoder_benchmark(model_dir, images, args.quick, args.try_compile)
    fast = fastest_precision()
    result["precision"] = fast  # both sides: bf16 only where the CPU has it natively
    result["cpu_line"] = describe_cpu()
    result["snapsight_fast"], p_ours = snapsight_benchmark(model_dir, paths, images, label_counts, cache_dir, fast)
    result["snapsight_fp32"], p_ours32 = snapsight_benchmark(model_dir, paths, images, label_counts[:1], cache_dir,
                                                             "fp32")
    few = {label_counts[0]: min(8, n_images)}
    for n in label_counts[1:]:
        few[n] = 2 if n <= 2000 else 1
    pipe_counts = [int(x) for x in args.pipeline_labels.split(",")] if args.pipeline_labels else label_counts
    result["pipeline_fast"], p_pipe = pipeline_benchmark(model_dir, paths, pipe_counts, torch_dtype(fast), few)
    for n in label_counts:
        if n not in result["pipeline_fast"]:  # linear extrapolation from the largest measured count
            m = max(result["pipeline_fast"])
            small = min(result["pipeline_fast"])
            per_label = (result["pipeline_fast"][m]["latency_s"] - result["pipeline_fast"][small]["latency_s"]) / (m - small)
            lat = result["pipeline_fast"][m]["latency_s"] + per_label * (n - m)
            result["pipeline_fast"][n] = {"latency_s": lat, "images_per_s_batch1": 1 / lat, "images": 0,
                                          "extrapolated_from": [small, m]}
            log(f"pipeline[{fast}] {n} labels: {1000 * lat:.0f} ms/img EXTRAPOLATED linearly from {small} and {m}")
    result["pipeline_fp32"], p_pipe32 = pipeline_benchmark(model_dir, paths, label_counts[:1], torch.float32, few)
    result["agreement_fp32"] = agreement({k: v for k, v in p_ours32.items() if k in p_pipe32}, p_pipe32)
    result["agreement_fast"] = agreement({k: v for k, v in p_ours.items() if k in p_pipe}, p_pipe)
    log(f"agreement fp32: {result['agreement_fp32']}, {fast}: {result['agreement_fast']}")
    # end to end through the CLI, warm index cache, largest label set
    labels_file = out / f"labels-{label_counts[-1]}.txt"
    labels_file.write_text("\n".join(make_labels(label_counts[-1])) + "\n")
    from snapsight.cli import main as cli_main

    buf = io.StringIO()
    argv = ["classify", str(out / "images"), "--labels-file", str(labels_file), "--templates", PROMPT,
            "--model", str(model_dir), "--cache-dir", str(cache_dir), "--no-progress", "--format", "json",
            "--precision", fast]
    with contextlib.redirect_stdout(buf):
        t_cli, code = timed(lambda: cli_main(argv))
    result["cli_warm_largest"] = {"wall_s": t_cli, "exit": code, "images": n_images, "labels": label_counts[-1]}
    log(f"CLI (model load + cached index + {n_images} images, {label_counts[-1]} labels): {t_cli:.1f}s")
    result["load_avg_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    print(render_markdown(result, label_counts))
    return 0


def render_markdown(r: dict, label_counts: list[int]) -> str:
    fast = r["precision"]
    lines = [f"cpu: {r['cpu_line']}; both sides at {fast}, the fastest precision on this CPU", "",
             f"| labels | snapsight {fast} ms/img (batch 1) | snapsight {fast} img/s (batch 32) | pipeline {fast} "
             f"ms/img | pipeline {fast} img/s (best) | speed-up (img/s) | index build / cached load |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in label_counts:
        s = r["snapsight_fast"][n]
        p = r["pipeline_fast"][n]
        best_p = max(p.get("images_per_s_batch32", 0), p["images_per_s_batch1"])
        star = "*" if "extrapolated_from" in p else ""
        lines.append(f"| {n:,} | {1000 * s['latency_s']:.1f} | {s['images_per_s']:.1f} | "
                     f"{1000 * p['latency_s']:.0f}{star} | {best_p:.2f}{star} | {s['images_per_s'] / best_p:.0f}x | "
                     f"{s['index_build_s']:.1f} s / {s['index_cached_load_s']:.2f} s |")
    enc = r.get("encoder")
    if enc:
        lines += ["", "| image tower (ViT-B/32) | img/s | GFLOP/s | % of matmul |", "|---|---:|---:|---:|"]
        for k, v in enc.items():
            if isinstance(v, dict) and "images_per_s" in v:
                frac = f"{100 * v['fraction_of_matmul']:.0f}%" if "fraction_of_matmul" in v else ""
                lines.append(f"| {k} | {v['images_per_s']:.1f} | {v['gflops']:.0f} | {frac} |")
        mm = enc["matmul_gflops"]
        lines.append(f"\nmatmul 4096x4096: fp32 {mm['fp32']:.0f} GFLOP/s, bf16 {mm['bf16']:.0f} GFLOP/s; "
                     f"{enc['flops_per_image'] / 1e9:.2f} GFLOP per image")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
