"""How well the default model's "unfamiliar image" flag separates its training sources from photos it never saw.

Measures, with the shipped reference (``reference_features.safetensors`` in the model folder) and the classifier's
own precision (``auto``, as ``snapsight classify`` runs):

1. held-out images of the training sources, the *evaluation* halves (never used to choose the thresholds): the
   odd-indexed Fashion-MNIST test images (5,000), every other held-out emoji and held-out stamp: the share NOT
   flagged (target >= 95%);
2. scikit-image's sample photographs (never seen in training, never used for the thresholds): the share flagged
   (target >= 80%); its drawings and synthetic images (a logo, a horse silhouette, a colour wheel) are listed apart;
3. the AUROC of familiarity between 1 and the photos of 2;
4. the issue's first check: nine samples against nine labels, how many are named right and how many flagged.
5. with `--export DIR`: the same figures on the device path of an ONNX export (fp32 or int8) of the model.

``--compare`` also builds references in memory from other features (the embeddings; the statistics of fewer or
more trunk stages) on the same images and the same split, to show why the shipped features were chosen.

Run::

    python benchmarks/familiarity_eval.py [--compare] [--export runs/export/default --export runs/export/default-int8]
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from snapsight.default_model.reference import REFERENCE_CENTROIDS, familiarity_images
from snapsight.ondevice import OnnxZeroShotClassifier
from snapsight.ondevice.familiarity import CALIBRATION_QUANTILE, auroc, build_reference, normalise, spherical_kmeans
from snapsight.runtime import describe_cpu
from snapsight.zeroshot import ZeroShotClassifier

# scikit-image's sample photographs, and the pictures among its samples that are drawings or synthetic
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "hubble_deep_field", "immunohistochemistry",
          "retina", "moon", "page", "coins", "brick", "grass", "gravel", "text", "clock", "microaneurysms", "cell")
NOT_PHOTOS = ("logo", "horse", "colorwheel")
# The check as a new user would try it: nine samples and the label each should get.
NINE = {"chelsea": "cat", "cat": "cat", "coffee": "cup of coffee", "rocket": "rocket", "astronaut": "astronaut",
        "horse": "horse", "hubble_deep_field": "galaxy", "camera": "camera", "immunohistochemistry": "microscope slide"}


def skimage_images(names) -> tuple[list[str], list[Image.Image]]:
    from skimage import data

    kept, images = [], []
    for n in names:
        try:
            a = getattr(data, n)()
        except Exception:  # noqa: BLE001 - a sample that needs an optional download is skipped, and named
            print(f"(skipped scikit-image sample {n}: not available offline)")
            continue
        if a.dtype != np.uint8:
            a = (255 * (a.astype(np.float64) / max(1e-9, float(a.max())))).astype(np.uint8)
        kept.append(n)
        images.append(Image.fromarray(a).convert("RGB"))
    return kept, images


def flag_figures(ref, feats: dict[str, dict[str, np.ndarray]], photo_feats: np.ndarray) -> dict[str, Any]:
    return score_figures({src: ref.scores(parts["evaluation"]) for src, parts in feats.items()},
                         ref.scores(photo_feats))


def score_figures(held_out: dict[str, np.ndarray], photo: np.ndarray) -> dict[str, Any]:
    """Flag rates and AUROC from familiarity scores of each source's evaluation images and of the photographs."""
    out: dict[str, Any] = {"not_flagged": {}}
    for src, s in held_out.items():
        out["not_flagged"][src] = {"rate": float((s >= 0).mean()), "images": len(s)}
    pooled = np.concatenate(list(held_out.values()))
    out["photos_flagged"] = float((photo < 0).mean())
    out["auroc"] = auroc(pooled, photo)
    out["photo_scores"] = photo.round(4).tolist()
    return out


def main(argv: list[str] | None = None) -> int:
    print(f"cpu: {describe_cpu()}", flush=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder with a reference (default: the offline default model)")
    ap.add_argument("--compare", action="store_true", help="also score other feature choices, built in memory")
    ap.add_argument("--export", action="append", default=[], metavar="DIR",
                    help="also measure the flag of an ONNX export of the model (`snapsight export`), on the device "
                         "path; repeatable")
    ap.add_argument("--out", default="runs/familiarity_eval.json")
    args = ap.parse_args(argv)
    t0 = time.time()
    clf = ZeroShotClassifier.load(args.model, device="cpu")
    ref = clf.familiarity
    if ref is None:
        raise SystemExit("error: the model carries no reference_features.safetensors")
    images = familiarity_images()
    photo_names, photos = skimage_images(PHOTOS)
    other_names, others = skimage_images(NOT_PHOTOS)
    layers = ref.layers
    parts = ("train", "calibration", "evaluation") if args.compare else ("evaluation",)
    feats = {s: {p: clf.image_features(images[s][p], layers, batch_size=256) for p in parts} for s in images}
    results: dict[str, Any] = {"model": clf.model_info.get("name"), "precision": clf.model_info.get("precision"),
                               "layers": list(layers), "thresholds": dict(zip(ref.source_names,
                                                                               ref.thresholds.round(4).tolist()))}
    results["shipped"] = flag_figures(ref, feats, clf.image_features(photos, layers))
    results["shipped"]["photos"] = photo_names
    other = ref.scores(clf.image_features(others, layers))
    results["not_photos"] = {n: {"familiarity": round(float(v), 4), "flagged": bool(v < 0)}
                             for n, v in zip(other_names, other)}
    nine_names, nine = skimage_images(NINE)
    answers = clf.classify(nine, "cat, dog, cup of coffee, rocket, astronaut, horse, galaxy, camera, microscope slide")
    results["nine"] = {n: {"answer": a.labels[0], "prob": round(a.probs[0], 3), "right": a.labels[0] == NINE[n],
                           "unfamiliar": a.unfamiliar} for n, a in zip(nine_names, answers)}
    if args.compare:
        variants = {"embeddings": (), "trunk stages 1-2": layers[:2], "trunk stages 1-3 (shipped)": layers[:3],
                    "trunk stages 1-4": tuple(layers[:3]) + ("visual.trunk.layer4",)}
        results["compare"] = {}
        for name, lay in variants.items():
            f = {s: {p: clf.image_features(images[s][p], lay, batch_size=256) for p in parts} for s in images}
            r = build_reference({s: f[s]["train"] for s in f}, {s: f[s]["calibration"] for s in f},
                                REFERENCE_CENTROIDS, layers=lay)
            results["compare"][name] = flag_figures(r, f, clf.image_features(photos, lay))
            if lay == tuple(layers):
                results["compare"][f"{name}, thresholds from cross-fitted training images"] = flag_figures(
                    crossfit_thresholds(r, f), f, clf.image_features(photos, lay))
    for folder in args.export:
        dev = OnnxZeroShotClassifier.load(folder)
        if dev.familiarity is None:
            raise SystemExit(f"error: the export {folder} carries no familiarity reference")
        fig = score_figures({s: dev.familiarity_scores(images[s]["evaluation"]) for s in images},
                            dev.familiarity_scores(photos))
        m = dev.export.manifest
        method = f" {m['int8_method']}" if m.get("int8_method") else ""
        results.setdefault("exports", {})[f"ONNX {m['precision']}{method} ({Path(folder).name})"] = fig
    results["seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print_tables(results)
    return 0


def crossfit_thresholds(ref, feats: dict[str, dict[str, np.ndarray]], folds: int = 5, seed: int = 0):
    """``ref`` with the emoji and stamp thresholds re-chosen on many more held-out cosines: each training image
    scored against centroids built without its fold (at the same density), pooled with the calibration images.
    Shows whether the few calibration images (38 stamps) set the threshold too strictly."""
    ref = copy.deepcopy(ref)
    for i, src in enumerate(ref.source_names):
        if src == "fashion-mnist":  # 5,000 calibration images already
            continue
        x = normalise(feats[src]["train"])
        fold = np.random.default_rng(seed).permutation(len(x)) % folds
        cos = np.empty(len(x), np.float32)
        for k in range(folds):
            c = spherical_kmeans(x[fold != k], max(1, round(REFERENCE_CENTROIDS[src] * (folds - 1) / folds)), seed=seed)
            cos[fold == k] = (x[fold == k] @ c.T).max(1)
        pool = np.concatenate([cos, ref.source_cosines(feats[src]["calibration"])[:, i]])
        ref.thresholds[i] = np.quantile(pool, CALIBRATION_QUANTILE)
    return ref


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def print_tables(r: dict[str, Any]) -> None:
    s = r["shipped"]
    print(f"\n### Unfamiliar-image flag ({r['model']}, {r['precision']}; features: channel statistics of "
          f"{', '.join(r['layers']) or 'the embeddings'}; thresholds {r['thresholds']})\n")
    print("| images | flagged unfamiliar | target |\n|---|---:|---|")
    for src, v in s["not_flagged"].items():
        print(f"| held-out {src} (evaluation half, {v['images']}) | {pct(1 - v['rate'])} | <= 5% |")
    print(f"| scikit-image photographs ({len(s['photos'])}) | **{pct(s['photos_flagged'])}** | >= 80% |")
    print(f"\nAUROC (held-out in-domain vs photographs): **{s['auroc']:.3f}**")
    print("photographs not flagged: " + (", ".join(n for n, v in zip(s["photos"], s["photo_scores"]) if v >= 0)
                                         or "none"))
    print("drawings / synthetic samples: " + ", ".join(
        f"{n} {'flagged' if v['flagged'] else 'not flagged'}" for n, v in r["not_photos"].items()))
    nine = r["nine"]
    print(f"\nthe issue's nine samples: {sum(v['right'] for v in nine.values())} of {len(nine)} named right, "
          f"{sum(bool(v['unfamiliar']) for v in nine.values())} flagged unfamiliar: " + ", ".join(
              f"{n} -> {v['answer']} {pct(v['prob'])}{' (unfamiliar)' if v['unfamiliar'] else ''}"
              for n, v in nine.items()))
    if "compare" in r:
        print("\n| features (reference built the same way) | held-out flagged (FM / emoji / stamps) | photos flagged "
              "| AUROC |\n|---|---|---:|---:|")
        for name, v in r["compare"].items():
            nf = v["not_flagged"]
            print(f"| {name} | {' / '.join(pct(1 - nf[k]['rate']) for k in nf)} | {pct(v['photos_flagged'])} | "
                  f"{v['auroc']:.3f} |")
    if "exports" in r:
        rows = {f"torch, {r['precision']}": s, **r["exports"]}
        print("\n| path | held-out flagged (FM / emoji / stamps) | photos flagged | AUROC |\n|---|---|---:|---:|")
        for name, v in rows.items():
            nf = v["not_flagged"]
            print(f"| {name} | {' / '.join(pct(1 - nf[k]['rate']) for k in nf)} | {pct(v['photos_flagged'])} | "
                  f"{v['auroc']:.3f} |")
    print(f"\n({r['seconds']:.0f} s)")


if __name__ == "__main__":
    raise SystemExit(main())
