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

``--compare`` also builds references in memory from other features (the embeddings; the statistics of fewer or
more trunk stages) on the same images and the same split, to show why the shipped features were chosen.

Run::

    python benchmarks/familiarity_eval.py [--compare]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from snapsight.default_model.reference import REFERENCE_CENTROIDS, familiarity_images
from snapsight.runtime import describe_cpu
from snapsight.zeroshot import ZeroShotClassifier
from snapsight.zeroshot.familiarity import auroc, build_reference

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
    out: dict[str, Any] = {"not_flagged": {}}
    familiar = []
    for src, parts in feats.items():
        s = ref.scores(parts["evaluation"])
        familiar.append(s)
        out["not_flagged"][src] = {"rate": float((s >= 0).mean()), "images": len(s)}
    pooled = np.concatenate(familiar)
    photo = ref.scores(photo_feats)
    out["photos_flagged"] = float((photo < 0).mean())
    out["auroc"] = auroc(pooled, photo)
    out["photo_scores"] = photo.round(4).tolist()
    return out


def main(argv: list[str] | None = None) -> int:
    print(f"cpu: {describe_cpu()}", flush=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder with a reference (default: the offline default model)")
    ap.add_argument("--compare", action="store_true", help="also score other feature choices, built in memory")
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
    results["seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print_tables(results)
    return 0


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
    print(f"\n({r['seconds']:.0f} s)")


if __name__ == "__main__":
    raise SystemExit(main())
