"""On the device: ONNX exports (fp32, int8) without torch, next to snapsight's torch path and the Hugging Face pipeline.

For the default model and for a ViT-B/32 with random weights (a Hugging Face ``CLIPModel`` folder; no download is
possible here), in one run:

1. size on disk of each export;
2. image tower images/s at batch 1 and 32: torch fp32, torch bf16 (only where the CPU has native bf16), ONNX fp32,
   ONNX int8 dynamic and int8 static QDQ (calibrated on typical images);
3. process start to JSON (``python -m snapsight classify ... --format json``) for 1 and 16 images at 1,000 labels
   (builtin:imagenet-1k) with a warm label cache: torch path, ONNX fp32, ONNX int8; for ViT-B/32 next to
   ``transformers.pipeline("zero-shot-image-classification")`` in its own fresh process on the same weights, at its
   fastest precision on this CPU. The pipeline re-encodes every label for every image, so it runs 1 and 2 images
   and its 16-image time is extrapolated linearly from them (said so in the table);
4. Fashion-MNIST test accuracy of the default model (all 10,000 images; each class's frozen test wordings,
   TEST_WORDINGS, with the default templates): torch fp32, ONNX fp32, int8 dynamic, int8 static.

Run (writes JSON and markdown under --out; about 10 minutes on 2 cores)::

    nice -n 5 .venv/bin/python benchmarks/ondevice.py --out runs/ondevice
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
N_LABELS_SPEC = "builtin:imagenet-1k"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*.onnx")) / 1e6


def run_timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed: {proc.stderr[-2000:]}")
    json.loads(proc.stdout)  # the answer is complete JSON
    return dt


def cli_start_to_json(model: str | None, images: list[Path], env: dict, repeats: int) -> float:
    """Best of ``repeats`` wall times of a fresh `snapsight classify` process (after one warm-up run that fills the
    label cache)."""
    cmd = [sys.executable, "-m", "snapsight", "classify", *map(str, images), "--labels", N_LABELS_SPEC,
           "--templates", "none", "--format", "json", "--no-progress", "--top-k", "5"] + (["--model", model] if model else [])
    run_timed(cmd, env)
    return min(run_timed(cmd, env) for _ in range(repeats))


PIPELINE_SCRIPT = """
import json, sys, torch
from transformers import pipeline
from transformers.utils import logging as hf_logging
hf_logging.set_verbosity_error(); hf_logging.disable_progress_bar()
from snapsight.labels import builtin_label_set
labels = builtin_label_set("imagenet-1k").names
pipe = pipeline("zero-shot-image-classification", model=sys.argv[1], device="cpu", dtype=getattr(torch, sys.argv[2]))
out = [pipe(p, candidate_labels=labels, hypothesis_template="a photo of a {}.")[:5] for p in sys.argv[3:]]
print(json.dumps(out))
"""


def pipeline_start_to_json(model_dir: Path, images: list[Path], dtype: str, env: dict) -> float:
    return run_timed([sys.executable, "-c", PIPELINE_SCRIPT, str(model_dir), dtype, *map(str, images)], env)


def images_per_s(fn, batch: np.ndarray, seconds: float) -> float:
    fn(batch)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        fn(batch)
        n += len(batch)
    return n / (time.perf_counter() - t0)


def throughput(model: str | None, exports: dict[str, Path], images, seconds: float) -> dict:
    """Image tower images/s at batch 1 and 32: torch (fp32; bf16 where native) and each export."""
    from snapsight.ondevice import OnnxZeroShotClassifier
    from snapsight.ondevice.preprocess import preprocess_batch
    from snapsight.runtime import cpu_has_native_bf16
    from snapsight.zeroshot import ZeroShotClassifier

    rows: dict = {}
    precisions = ["fp32"] + (["bf16"] if cpu_has_native_bf16() else [])
    for precision in precisions:
        clf = ZeroShotClassifier.load(model, device="cpu", precision=precision, cache_dir="")
        pixels = clf.bundle.preprocess_batch(images[:32]).to(clf.dtype)

        def run(x, clf=clf):
            with torch.inference_mode():
                clf.model.encode_image(x)

        rows[f"torch {precision}"] = {b: images_per_s(run, pixels[:b], seconds) for b in (1, 32)}
        log(f"  torch {precision}: {rows[f'torch {precision}']}")
        del clf
    for name, path in exports.items():
        onnx_clf = OnnxZeroShotClassifier.load(path)
        sess = onnx_clf._image.session
        pixels = preprocess_batch(images[:32], onnx_clf.preprocessing)
        rows[f"onnx {name}"] = {b: images_per_s(lambda x, s=sess: s.run(None, {"pixels": x}), pixels[:b], seconds)
                                for b in (1, 32)}
        log(f"  onnx {name}: {rows[f'onnx {name}']}")
    return rows


def fashion_mnist_accuracy(exports: dict[str, Path], limit: int) -> dict:
    """Default model, Fashion-MNIST test set, each class = mean of its frozen test wordings x default templates."""
    from PIL import Image

    from snapsight.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
    from snapsight.default_model.wordings import TEST_WORDINGS
    from snapsight.labels import resolve_templates
    from snapsight.ondevice import OnnxZeroShotClassifier
    from snapsight.ondevice.scoring import mean_prompt_embeddings
    from snapsight.zeroshot import ZeroShotClassifier

    x, y = load_fashion_mnist("test")
    x, y = x[:limit], y[:limit]
    images = [Image.fromarray(a).convert("RGB") for a in x]
    tmpl = resolve_templates("default")
    prompts, owners = [], []
    for c, name in enumerate(FASHION_MNIST_CLASSES):
        for w in TEST_WORDINGS[name]:
            for t in tmpl:
                prompts.append(t.replace("{}", w))
                owners.append(c)
    out = {}
    clf = ZeroShotClassifier.load(None, device="cpu", precision="fp32", cache_dir="")
    labels = mean_prompt_embeddings(clf.encode_text(prompts).numpy(), owners, len(FASHION_MNIST_CLASSES))
    out["torch fp32"] = float(((clf.encode_images(images, batch_size=256).numpy() @ labels.T).argmax(1) == y).mean())
    for name, path in exports.items():
        onnx_clf = OnnxZeroShotClassifier.load(path)
        labels = mean_prompt_embeddings(onnx_clf.encode_text(prompts), owners, len(FASHION_MNIST_CLASSES))
        out[f"onnx {name}"] = float(((onnx_clf.encode_images(images, batch_size=256) @ labels.T).argmax(1) == y).mean())
    log(f"  Fashion-MNIST accuracy ({len(y)} test images): {out}")
    return out


def export_all(model: str | None, out: Path, calibration: Path, reuse: bool = False) -> dict[str, Path]:
    from snapsight.export import export_zeroshot

    paths = {}
    for name, kw in (("fp32", {}), ("int8 dynamic", {"quantize": "int8", "int8_method": "dynamic"}),
                     ("int8 static", {"quantize": "int8", "int8_method": "static", "calibration": calibration})):
        target = out / name.replace(" ", "-")
        t0 = time.perf_counter()
        if not (reuse and (target / "snapsight_export.json").is_file()):  # a rebuilt model must be exported again
            shutil.rmtree(target, ignore_errors=True)
            export_zeroshot(model, target, **kw)
        manifest = json.loads((target / "snapsight_export.json").read_text())
        log(f"  export {name}: {time.perf_counter() - t0:.0f}s, {folder_mb(target):.1f} MB, parity {manifest['parity']}")
        paths[name] = target
    return paths


def write_images(folder: Path, images) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = folder / f"img_{i:03d}.png"
        if not p.is_file():
            im.save(p)
        paths.append(p)
    return paths


def main() -> int:
    import onnxruntime

    from snapsight.runtime import cpu_has_native_bf16, describe_cpu

    print(f"cpu: {describe_cpu()}; onnxruntime {onnxruntime.__version__}", flush=True)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/ondevice")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing window per throughput cell")
    ap.add_argument("--repeats", type=int, default=2, help="timed CLI runs per cell (best is kept)")
    ap.add_argument("--fmnist-limit", type=int, default=10_000)
    ap.add_argument("--models", default="default,vit-b-32")
    ap.add_argument("--reuse-exports", action="store_true", help="keep exports of an earlier run (same models only)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from zeroshot_vs_hf import build_model_dir, make_images

    from snapsight.data.fashion_mnist import load_fashion_mnist
    from snapsight.data.images import open_image

    env = dict(os.environ, SNAPSIGHT_CACHE=str((out / "cache").resolve()), PYTHONWARNINGS="ignore")
    photos = make_images(out, 32)
    photo_images = [open_image(p) for p in photos]
    fx, _ = load_fashion_mnist("train")
    from PIL import Image

    fm_images = [Image.fromarray(a).convert("RGB") for a in fx[:256]]
    fm_calib = write_images(out / "calibration-fashion-mnist", fm_images)[0].parent
    fm_paths = write_images(out / "fashion-mnist-16", fm_images[:16])
    pipe_dtype = "bfloat16" if cpu_has_native_bf16() else "float32"
    result: dict = {"cpu": describe_cpu(), "onnxruntime": onnxruntime.__version__, "load_avg_start": os.getloadavg(),
                    "pipeline_dtype": pipe_dtype, "labels": N_LABELS_SPEC, "models": {}}
    for which in args.models.split(","):
        log(f"== {which}")
        if which == "default":
            model, images, paths, calib = None, fm_images[:32], fm_paths, fm_calib
        else:
            model_dir = build_model_dir(out, quick=False)
            model, images, paths, calib = str(model_dir), photo_images, photos[:16], photos[0].parent
        exports = export_all(model, out / f"export-{which}", calib, reuse=args.reuse_exports)
        r: dict = {"size_mb": {k: folder_mb(v) for k, v in exports.items()},
                   "parity": {k: json.loads((v / "snapsight_export.json").read_text())["parity"]
                              for k, v in exports.items()}}
        log("  throughput")
        r["images_per_s"] = throughput(model, exports, images, args.seconds)
        log("  process start to JSON")
        cells = {"torch (auto precision)": model, **{f"onnx {k}": str(v) for k, v in exports.items()}}
        r["start_to_json_s"] = {}
        for name, m in cells.items():
            r["start_to_json_s"][name] = {n: cli_start_to_json(m, paths[:n], env, args.repeats) for n in (1, 16)}
            log(f"  {name}: {r['start_to_json_s'][name]}")
        if which != "default":
            t1 = pipeline_start_to_json(Path(model), paths[:1], pipe_dtype, env)
            t2 = pipeline_start_to_json(Path(model), paths[:2], pipe_dtype, env)
            r["pipeline_start_to_json_s"] = {"1": t1, "2": t2, "16 (extrapolated)": t1 + 15 * (t2 - t1)}
            log(f"  pipeline {pipe_dtype}: {r['pipeline_start_to_json_s']}")
        if which == "default":
            r["fashion_mnist_accuracy"] = fashion_mnist_accuracy(exports, args.fmnist_limit)
        result["models"][which] = r
        (out / "ondevice.json").write_text(json.dumps(result, indent=2, default=str))
    result["load_avg_end"] = os.getloadavg()
    (out / "ondevice.json").write_text(json.dumps(result, indent=2, default=str))
    md = tables(result)
    (out / "ondevice.md").write_text(md)
    print(md)
    return 0


def tables(r: dict) -> str:
    lines = [(f"cpu: {r['cpu']}; onnxruntime {r['onnxruntime']}; load average {r['load_avg_start']} -> "
              f"{r.get('load_avg_end')}"), ""]
    for which, m in r["models"].items():
        fp32 = m["size_mb"]["fp32"]
        lines += [f"### {which}", "", "| image tower | size MB (of fp32) | img/s batch 1 | img/s batch 32 |",
                  "|---|---|---|---|"]
        for name, ips in m["images_per_s"].items():
            key = name.replace("onnx ", "")
            size = f"{m['size_mb'][key]:.1f} ({100 * m['size_mb'][key] / fp32:.0f}%)" if key in m["size_mb"] else ""
            lines.append(f"| {name} | {size} | {ips[1]:.1f} | {ips[32]:.1f} |")
        lines += ["", f"| process start to JSON, {r['labels']} (cached) | 1 image | 16 images | per image (16) |",
                  "|---|---|---|---|"]
        for name, t in m["start_to_json_s"].items():
            lines.append(f"| {name} | {t[1]:.2f} s | {t[16]:.2f} s | {t[16] / 16:.3f} s |")
        if "pipeline_start_to_json_s" in m:
            p = m["pipeline_start_to_json_s"]
            per = p["16 (extrapolated)"] / 16
            lines.append(f"| HF pipeline ({r['pipeline_dtype']}) | {p['1']:.2f} s | {p['16 (extrapolated)']:.1f} s "
                         f"(extrapolated from 1 and 2 images) | {per:.2f} s |")
            for name, t in m["start_to_json_s"].items():
                lines.append(f"\n{name}: {per / (t[16] / 16):.1f}x the pipeline per image (16 images, start-up "
                             "included)")
        if "fashion_mnist_accuracy" in m:
            acc = ", ".join(f"{k} {100 * v:.2f}%" for k, v in m["fashion_mnist_accuracy"].items())
            lines.append(f"\nFashion-MNIST test accuracy (frozen test wordings): {acc}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
