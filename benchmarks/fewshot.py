"""Few-shot on top of zero-shot: the Tip-Adapter cache against zero-shot and a linear probe on the same shots.

Fashion-MNIST test (10,000 images), the offline default model (fp32), each class's zero-shot weights the mean of its
frozen test wordings (``TEST_WORDINGS``) x the default templates (the 90.0% setting of docs/benchmarks.md). For
K = 1, 2, 4, 8, 16 examples per class drawn from the training set (5 seeds; the K shots of a seed are the first K
of its 16, so the sets are nested), top-1 of:

- ``zero-shot``            the text classifier alone (no examples)
- ``adapter``              zero-shot + the example cache, alpha/beta by leave-one-out on the K shots
                           (at K = 1, where leave-one-out has nothing to score, beta 5.5 and the smallest
                           alpha that classifies every shot as its own label)
- ``adapter + Tip-F``      the same with the keys fine-tuned (``--finetune-steps``), weights searched again
- ``linear probe``         snapsight's standardised L-BFGS probe on the same K shots' image embeddings, its weight
                           decay picked on the test labels (an upper bound for the probe: it sees the test set)

Image embeddings are computed once and cached under ``--work``. Then the time to adapt 10 classes x 16 shots through
the public API (``ZeroShotClassifier.with_examples`` embedding the 160 images and building the FAISS cache, plus the
leave-one-out fit), beside the linear probe's fit on the same 160 features, measured in the same run. Run::

    python -m benchmarks.fewshot --work runs/fewshot

``--wordings first`` makes zero-shot from only the first test wording of each class ("t-shirts", "corduroys",
"cashmere", ...), the harder case of one everyday word per label. Prints the ``cpu:`` line and a markdown table, and
writes ``WORK/fewshot-WORDINGS.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from snapsight.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from snapsight.data.labeled import load_labeled
from snapsight.default_model.wordings import TEST_WORDINGS
from snapsight.labels import resolve_templates
from snapsight.ondevice.scoring import mean_prompt_embeddings
from snapsight.probe.heads import train_linear_probe
from snapsight.runtime import describe_cpu
from snapsight.zeroshot.adapter import fit_cache, select_shots
from snapsight.zeroshot.classify import ZeroShotClassifier

SHOTS = (1, 2, 4, 8, 16)


def log(msg: str) -> None:
    print(msg, flush=True)


def test_wording_weights(clf: ZeroShotClassifier, wordings: str = "all") -> np.ndarray:
    """``(10, D)``: each class the normalised mean of its frozen test wordings (``all`` four, or only the ``first``,
    one everyday word per class as a user types it) x the default templates."""
    prompts, owners = [], []
    for c, name in enumerate(FASHION_MNIST_CLASSES):
        for w in TEST_WORDINGS[name][: 1 if wordings == "first" else None]:
            for t in resolve_templates("default"):
                prompts.append(t.replace("{}", w))
                owners.append(c)
    return mean_prompt_embeddings(clf.encode_text(prompts).numpy(), owners, len(FASHION_MNIST_CLASSES))


def embed(clf: ZeroShotClassifier, images: np.ndarray, what: str) -> np.ndarray:
    out = []
    for start in range(0, len(images), 1000):
        chunk = [Image.fromarray(a).convert("RGB") for a in images[start:start + 1000]]
        out.append(clf.encode_images(chunk, batch_size=256).numpy())
        log(f"  embedded {min(start + 1000, len(images))}/{len(images)} {what} images")
    return np.concatenate(out)


def features(clf: ZeroShotClassifier, work: Path, train_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Test embeddings and the embeddings of ``train_idx``, cached in ``work`` under the model's fingerprint."""
    key = str(clf.bundle.info.get("fingerprint") or clf.bundle.info.get("name")).replace("/", "_")[:40]
    path = work / f"features-{key}-{len(train_idx)}.npz"
    if path.is_file():
        log(f"features from {path}")
        return dict(np.load(path))
    test_x, test_y = load_fashion_mnist("test")
    train_x, train_y = load_fashion_mnist("train")
    out = {"test": embed(clf, test_x, "test"), "test_y": test_y.astype(np.int64),
           "train": embed(clf, train_x[train_idx], "training"), "train_y": train_y[train_idx].astype(np.int64),
           "train_idx": train_idx}
    work.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def top1(scores: torch.Tensor, y: torch.Tensor) -> float:
    return float((scores.argmax(1) == y).float().mean())


def run(work: Path, seeds: int, finetune_steps: int, wordings: str = "all") -> dict:
    clf = ZeroShotClassifier.load(None, device="cpu", precision="fp32", cache_dir="")
    s = clf.logit_scale
    train_y_all = load_fashion_mnist("train")[1]
    draws = {seed: select_shots(train_y_all, max(SHOTS), seed) for seed in range(seeds)}
    pool = np.unique(np.concatenate(list(draws.values())))
    feats = features(clf, work, pool)
    where = {int(i): j for j, i in enumerate(feats["train_idx"])}
    test = torch.from_numpy(feats["test"])
    test_y = torch.from_numpy(feats["test_y"])
    weights = torch.from_numpy(test_wording_weights(clf, wordings))
    zs_test = test @ weights.T
    names = list(FASHION_MNIST_CLASSES)
    zs_acc = top1(zs_test, test_y)
    log(f"zero-shot (test wordings: {wordings}): {100 * zs_acc:.2f}%")
    rows: dict[int, dict[str, list]] = {}
    for k in SHOTS:
        acc = {"adapter": [], "adapter + Tip-F": [], "linear probe": [], "alpha": [], "beta": [], "chosen_by": []}
        for seed, drawn in draws.items():
            # the first k of each class's 16 (select_shots returns indices sorted, so order by a seeded shuffle)
            rng = np.random.default_rng(seed)
            idx = []
            for c in range(len(names)):
                of_c = drawn[train_y_all[drawn] == c]
                idx.extend(rng.permutation(of_c)[:k].tolist())
            rows_ = [where[i] for i in idx]
            keys = torch.from_numpy(feats["train"][rows_])
            y = torch.from_numpy(feats["train_y"][rows_])
            ex_names = [names[int(c)] for c in y]
            fit = fit_cache(keys, ex_names, names, keys @ weights.T, s)
            acc["adapter"].append(top1(zs_test + fit.scores(test), test_y))
            acc["alpha"].append(fit.alpha)
            acc["beta"].append(fit.beta)
            acc["chosen_by"].append(fit.chosen_by)
            tuned = fit_cache(keys, ex_names, names, keys @ weights.T, s, finetune_steps=finetune_steps)
            acc["adapter + Tip-F"].append(top1(zs_test + tuned.scores(test), test_y))
            head, _ = train_linear_probe(keys, y, test, test_y, len(names))
            with torch.no_grad():
                acc["linear probe"].append(top1(head(test), test_y))
        rows[k] = acc
        log(f"K={k}: " + ", ".join(f"{m} {100 * np.mean(acc[m]):.2f}% (worst {100 * np.min(acc[m]):.2f}%)"
                                   for m in ("adapter", "adapter + Tip-F", "linear probe"))
            + f"; alpha {acc['alpha']}, beta {acc['beta']}")
    timing = adapt_time(clf, feats, finetune_steps)
    return {"zero_shot": zs_acc, "rows": {str(k): v for k, v in rows.items()}, "timing": timing, "seeds": seeds,
            "finetune_steps": finetune_steps, "logit_scale": s, "wordings": wordings}


def adapt_time(clf: ZeroShotClassifier, feats: dict, finetune_steps: int, repeats: int = 3) -> dict:
    """Seconds to adapt 10 classes x 16 shots through the public API (embedding + FAISS cache + leave-one-out
    fit; the disk cache off so every repeat embeds), with Tip-F, and the linear probe's fit on the same features."""
    shots = load_labeled("fashion-mnist:train")
    shots = shots.subset(select_shots(shots.labels, 16, seed=0), tag="bench")
    label_set, index = clf.label_index(list(FASHION_MNIST_CLASSES), "default")
    out: dict[str, list[float]] = {"adapter": [], "adapter + Tip-F": [], "linear probe (same features)": []}
    for _ in range(repeats):
        for name, steps in (("adapter", 0), ("adapter + Tip-F", finetune_steps)):
            t0 = time.perf_counter()
            fs = clf.with_examples(shots, finetune_steps=steps)
            fs.cache_adapter.fit(label_set, index, clf.logit_scale)
            out[name].append(time.perf_counter() - t0)
        keys = fs.cache_adapter.cache.keys
        y = torch.from_numpy(shots.labels)
        t0 = time.perf_counter()
        train_linear_probe(keys, y, keys, y, len(FASHION_MNIST_CLASSES))
        out["linear probe (same features)"].append(time.perf_counter() - t0)
    log("adapt 10 classes x 16 shots, seconds (median of 3): "
        + ", ".join(f"{k} {np.median(v):.2f}" for k, v in out.items()))
    return {k: float(np.median(v)) for k, v in out.items()}


def table(res: dict) -> str:
    lines = ["| K shots | zero-shot | adapter | adapter + Tip-F | linear probe (wd on test) | alpha / beta chosen |",
             "|---:|---:|---:|---:|---:|---|"]
    for k, acc in res["rows"].items():
        cells = [f"{100 * np.mean(acc[m]):.2f} ± {100 * np.std(acc[m]):.2f} (worst {100 * np.min(acc[m]):.2f})"
                 for m in ("adapter", "adapter + Tip-F", "linear probe")]
        ab = sorted({f"{a:g}/{b:g}" for a, b in zip(acc["alpha"], acc["beta"])})
        lines.append(f"| {k} | {100 * res['zero_shot']:.2f} | " + " | ".join(cells) + f" | {', '.join(ab)} |")
    t = res["timing"]
    lines.append("")
    lines.append("Adapt 10 classes x 16 shots (median of 3, seconds): "
                 + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    return "\n".join(lines)


def oracle(work: Path, seeds: int, wordings: str, shots=(1, 2, 4)) -> None:
    """The cache adapter's best accuracy over a wide alpha/beta grid chosen on the **test labels** (an upper bound
    no method can claim): whether any weights could beat the same-shot linear probe at small K."""
    clf = ZeroShotClassifier.load(None, device="cpu", precision="fp32", cache_dir="")
    train_y_all = load_fashion_mnist("train")[1]
    draws = {seed: select_shots(train_y_all, max(SHOTS), seed) for seed in range(seeds)}
    feats = features(clf, work, np.unique(np.concatenate(list(draws.values()))))
    where = {int(i): j for j, i in enumerate(feats["train_idx"])}
    test, test_y = torch.from_numpy(feats["test"]), torch.from_numpy(feats["test_y"])
    zs_test = test @ torch.from_numpy(test_wording_weights(clf, wordings)).T
    for k in shots:
        accs: dict[tuple[float, float], list[float]] = {}
        for seed, drawn in draws.items():
            rng = np.random.default_rng(seed)  # the same shots as run() draws
            idx = [i for c in range(len(FASHION_MNIST_CLASSES))
                   for i in rng.permutation(drawn[train_y_all[drawn] == c])[:k].tolist()]
            keys = torch.from_numpy(feats["train"][[where[i] for i in idx]])
            values = torch.nn.functional.one_hot(torch.from_numpy(feats["train_y"][[where[i] for i in idx]]),
                                                 len(FASHION_MNIST_CLASSES)).float()
            affinity = test @ keys.T
            for alpha in (0.5, 1, 2, 4, 8, 16, 32, 64):
                for beta in (1, 3, 5.5, 9, 15, 25):
                    scores = zs_test + alpha / 100 * torch.exp(-beta * (1 - affinity)) @ values
                    accs.setdefault((alpha, beta), []).append(top1(scores, test_y))
        (alpha, beta), best = max(accs.items(), key=lambda kv: np.mean(kv[1]))
        log(f"oracle ({wordings} wordings) K={k}: {100 * np.mean(best):.2f}% at alpha {alpha}, beta {beta}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/fewshot", help="folder for cached embeddings and the results JSON")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--finetune-steps", type=int, default=100, help="Tip-F steps")
    ap.add_argument("--wordings", choices=("all", "first"), default="all",
                    help="zero-shot from all four frozen test wordings per class, or only the first of each")
    ap.add_argument("--oracle", action="store_true",
                    help="only the adapter's best accuracy at K = 1, 2, 4 with weights chosen on the test labels")
    args = ap.parse_args()
    log(f"cpu: {describe_cpu()}")
    torch.manual_seed(0)
    if args.oracle:
        oracle(Path(args.work), args.seeds, args.wordings)
        return
    res = run(Path(args.work), args.seeds, args.finetune_steps, args.wordings)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    (Path(args.work) / f"fewshot-{args.wordings}.json").write_text(json.dumps(res, indent=2))
    log(table(res))


if __name__ == "__main__":
    main()
