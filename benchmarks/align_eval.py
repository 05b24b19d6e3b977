"""What the offline default zero-shot model can and cannot do, in one run.

Measures, each beside chance and beside a linear probe on the same image encoder:

1. Fashion-MNIST test (10,000 images), zero-shot with prompt wordings that never occur in any training
   caption, wrapped in the zero-shot prompts ("a photo of a {}.", ...) that classify uses: the ensemble of
   all held-out wordings, and one wording per class as a user would type it (mean / worst / best over
   draws), plus the training wordings for reference. Two held-out lists: the development list
   (snapsight.default_model.EVAL_WORDINGS: "sneakers", "pants", "sweater", ...) that recipes were tuned on,
   and the frozen test list (TEST_WORDINGS), written down before that tuning and scored once at the end.
2. Held-out emoji and Tux Paint stamps (never shown in training): retrieval of each one's name among all emoji /
   stamp names; the held-out stamps' topic folder named zero-shot among topic words.
3. Classes held out of alignment entirely: a second model aligned without some Fashion-MNIST classes,
   scored 10-way on the test images of those classes.
4. LiT lock modes (image / text / none) from the same SSL encoder on a small equal wall-time budget.

Run (after `snapsight build-default-model`)::

    python benchmarks/align_eval.py --work runs/align/eval

While tuning a recipe, score only the development list and skip the slow parts::

    python benchmarks/align_eval.py --model RUN/model --dev-only --quick --skip-holdout --skip-locks

Prints markdown tables and writes ``WORK/align_eval.json`` (``align_eval-dev.json`` with ``--dev-only``).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from snapsight.align import run_alignment
from snapsight.artifacts.clip_dir import find_clip_dir, load_clip_dir
from snapsight.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from snapsight.default_model import build, wordings
from snapsight.models import default as default_asset
from snapsight.runtime import describe_cpu
from snapsight.zeroshot.prompts import TEMPLATE_SETS, image_embeddings, text_embeddings

log = logging.getLogger("align_eval")


def eval_templates() -> list[str]:
    return list(TEMPLATE_SETS["default"])


# ------------------------------------------------------------------------------------------------ data


def fmnist_tensors(split: str, preprocess, limit: int = 0, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    from PIL import Image

    images, labels = load_fashion_mnist(split)
    idx = np.arange(len(labels))
    if limit and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    x = torch.stack([preprocess(Image.fromarray(images[i], mode="L").convert("RGB")) for i in idx])
    return x, labels[idx]


@torch.no_grad()
def trunk_features(model, x: torch.Tensor, batch: int = 512) -> np.ndarray:
    return torch.cat([model.visual.trunk(x[i:i + batch]).float() for i in range(0, len(x), batch)]).numpy()


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(train_x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs may stop at max_iter; the accuracy is what we report
        clf = LogisticRegression(max_iter=300, C=1.0).fit(sc.transform(train_x), train_y)
    return float((clf.predict(sc.transform(test_x)) == test_y).mean())


# ------------------------------------------------------------------------------------------------ zero-shot


def zero_shot_acc(model, tok, img_emb: torch.Tensor, labels: np.ndarray, wordings: Sequence[Sequence[str]],
                  templates: Sequence[str]) -> tuple[float, np.ndarray]:
    txt = text_embeddings(model, tok, wordings, templates)
    pred = (img_emb @ txt.T).argmax(1).numpy()
    per_class = np.array([(pred[labels == c] == c).mean() for c in range(len(wordings))])
    return float((pred == labels).mean()), per_class


def single_wording_draws(sims: np.ndarray, labels: np.ndarray, counts: Sequence[int], draws: int,
                         seed: int = 0) -> list[float]:
    """Accuracy of ``draws`` random one-wording-per-class choices; ``sims`` is ``(N, total wordings)`` with the
    wordings of class 0 first, then class 1, ... (``counts[c]`` of them)."""
    starts = np.cumsum([0] + list(counts))
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(draws):
        cols = [starts[c] + rng.integers(0, counts[c]) for c in range(len(counts))]
        accs.append(float((sims[:, cols].argmax(1) == labels).mean()))
    return accs


def heldout_zero_shot(model, tok, img_emb, labels, templates, heldout: dict[str, Sequence[str]], draws: int = 200,
                      seed: int = 0) -> dict[str, Any]:
    """Zero-shot with one held-out wording list: all wordings ensembled, one wording per class (mean/worst/best
    over ``draws`` random choices), the same without templates, and each wording's recall of its class."""
    classes = list(FASHION_MNIST_CLASSES)
    out: dict[str, Any] = {}
    out["ensemble"], per_class = zero_shot_acc(model, tok, img_emb, labels, [heldout[c] for c in classes], templates)
    out["ensemble_per_class"] = dict(zip(classes, per_class.round(4).tolist()))
    # One wording per class, as a user types it: embed every (class, wording) once, then draw combinations.
    flat = [(c, w) for c in range(len(classes)) for w in heldout[classes[c]]]
    counts = [len(heldout[c]) for c in classes]
    sims = (img_emb @ text_embeddings(model, tok, [[w] for _, w in flat], templates).T).numpy()  # (N, wordings)
    accs = single_wording_draws(sims, labels, counts, draws, seed)
    out["single_wording"] = {"mean": float(np.mean(accs)), "min": float(np.min(accs)), "max": float(np.max(accs)),
                             "draws": draws}
    # Per-wording recall: this wording for its class, the other classes at their first held-out wording.
    starts = np.cumsum([0] + counts)
    per_wording = {}
    for j, (c, w) in enumerate(flat):
        cols = [starts[k] for k in range(len(classes))]
        cols[c] = j
        pred = sims[:, cols].argmax(1)
        per_wording[f"{classes[c]}: {w}"] = round(float((pred[labels == c] == c).mean()), 4)
    out["wording_recall"] = per_wording
    # The bare wording without any template (what a user's label is when templates="none").
    bare = (img_emb @ text_embeddings(model, tok, [[w] for _, w in flat], ["{}"]).T).numpy()
    out["single_wording_bare"] = float(np.mean(single_wording_draws(bare, labels, counts, draws, seed)))
    return out


def expanded_single_wording(model, tok, img_emb, labels, templates, heldout: dict[str, Sequence[str]],
                            draws: int = 200, seed: int = 0) -> dict[str, Any]:
    """One held-out wording per class as a user types it, with ``--expand wordnet``: each draw's ten labels are
    expanded together (the senses are chosen among them), as ``snapsight classify --expand wordnet`` does. The
    same draws as :func:`single_wording_draws` (same seed), so on/off compare draw for draw."""
    from snapsight.labels import Label, LabelSet
    from snapsight.zeroshot.expand import expand_labels_wordnet

    classes = list(FASHION_MNIST_CLASSES)
    counts = [len(heldout[c]) for c in classes]
    rng = np.random.default_rng(seed)
    cache: dict[tuple[str, ...], torch.Tensor] = {}
    accs, added = [], {}
    for _ in range(draws):
        picks = [heldout[classes[c]][rng.integers(0, counts[c])] for c in range(len(classes))]
        expanded = expand_labels_wordnet(LabelSet([Label(w, (w,)) for w in picks]))
        names = [tuple(lab.names) for lab in expanded.labels]
        for n in names:
            if n not in cache:
                cache[n] = text_embeddings(model, tok, [list(n)], templates)[0]
            if len(n) > 1:
                added[n[0]] = list(n[1:])
        txt = torch.stack([cache[n] for n in names])
        accs.append(float(((img_emb @ txt.T).argmax(1).numpy() == labels).mean()))
    return {"mean": float(np.mean(accs)), "min": float(np.min(accs)), "max": float(np.max(accs)), "draws": draws,
            "expansions_seen": added}


def fmnist_zero_shot(model, tok, img_emb, labels, templates, draws: int = 200, seed: int = 0,
                     test: bool = True, expand: bool = False) -> dict[str, Any]:
    """Seen wordings, class names, the development held-out list (EVAL_WORDINGS) and, unless ``test`` is
    False, the frozen test list (TEST_WORDINGS); with ``expand``, one wording per class also with
    ``--expand wordnet``."""
    classes = list(FASHION_MNIST_CLASSES)
    out: dict[str, Any] = {}
    out["seen_wordings_ensemble"], _ = zero_shot_acc(model, tok, img_emb, labels,
                                                     [wordings.TRAIN_WORDINGS[c] for c in classes], templates)
    out["plain_class_names"], _ = zero_shot_acc(model, tok, img_emb, labels, [[c] for c in classes], templates)
    out["dev"] = heldout_zero_shot(model, tok, img_emb, labels, templates, wordings.EVAL_WORDINGS, draws, seed)
    if test:
        out["test"] = heldout_zero_shot(model, tok, img_emb, labels, templates, wordings.TEST_WORDINGS, draws, seed)
    if expand:
        for key, lists in (("dev", wordings.EVAL_WORDINGS), ("test", wordings.TEST_WORDINGS)):
            if key in out:
                out[key]["single_wording_expanded"] = expanded_single_wording(
                    model, tok, img_emb, labels, templates, lists, draws, seed)
    return out


# ------------------------------------------------------------------------------------------------ emoji


def emoji_eval(model, preprocess, tok, held_names: Sequence[str], probe: bool = True) -> dict[str, Any]:
    from snapsight.data.emoji import render_emoji

    train_e, held_e = wordings.training_emoji()
    everything = train_e + held_e
    held_set = set(held_names) if held_names else {e.name for e in held_e}
    renders = [render_emoji(e) for e in everything]
    x = torch.stack([preprocess(im) for im in renders])
    img = image_embeddings(model, x)
    txt = text_embeddings(model, tok, [[e.name] for e in everything], ["{}"])
    sims = img @ txt.T
    ranks = (sims > sims.diagonal().unsqueeze(1)).sum(1).numpy()  # 0 = correct name ranked first
    is_held = np.array([e.name in held_set for e in everything])
    n = len(everything)
    out = {"names": n, "held_out": int(is_held.sum()), "chance_top1": 1 / n, "chance_top5": 5 / n}
    for tag, mask in (("held_out", is_held), ("trained", ~is_held)):
        out[f"{tag}_top1"] = float((ranks[mask] < 1).mean())
        out[f"{tag}_top5"] = float((ranks[mask] < 5).mean())
    if probe:
        out["probe_top1_all"] = emoji_probe(model, preprocess, renders, x)
    return out


STAMP_TOPIC_WORDS = {  # how a user would name each Tux Paint topic folder
    "animals": "an animal", "cartoon": "a cartoon character", "clothes": "clothes", "food": "food",
    "hobbies": "a hobby", "household": "a household object", "medical": "medical equipment",
    "military": "military equipment", "naturalforces": "a force of nature", "people": "a person",
    "plants": "a plant", "seasonal": "a holiday decoration", "space": "outer space", "sports": "sports",
    "symbols": "a symbol", "town": "a town", "vehicles": "a vehicle",
}


def stamp_eval(model, preprocess, tok, held_keys: Sequence[str]) -> dict[str, Any]:
    """Tux Paint stamps: retrieval of each stamp's name among all stamp names (held out / trained), and the
    held-out stamps' topic named zero-shot among :data:`STAMP_TOPIC_WORDS` with the default prompts."""
    from PIL import Image

    from snapsight.data.stamps import render_stamp

    train_s, held_s = wordings.training_stamps()
    everything = train_s + held_s
    held_set = set(held_keys) if held_keys else {s.key for s in held_s}
    names = sorted({s.name for s in everything})
    x = torch.stack([preprocess(render_stamp(s).resize((64, 64), Image.BICUBIC)) for s in everything])
    img = image_embeddings(model, x)
    txt = text_embeddings(model, tok, [[n] for n in names], ["{}"])
    sims = img @ txt.T
    correct = torch.tensor([names.index(s.name) for s in everything])
    ranks = (sims > sims.gather(1, correct[:, None])).sum(1).numpy()
    is_held = np.array([s.key in held_set for s in everything])
    out: dict[str, Any] = {"names": len(names), "held_out": int(is_held.sum()), "chance_top1": 1 / len(names),
                           "chance_top5": 5 / len(names)}
    for tag, mask in (("held_out", is_held), ("trained", ~is_held)):
        out[f"{tag}_top1"] = float((ranks[mask] < 1).mean())
        out[f"{tag}_top5"] = float((ranks[mask] < 5).mean())
    topics = sorted(STAMP_TOPIC_WORDS)
    ttxt = text_embeddings(model, tok, [[STAMP_TOPIC_WORDS[t]] for t in topics], eval_templates())
    pred = (img[is_held] @ ttxt.T).argmax(1).numpy()
    truth = np.array([topics.index(s.topic) for s in everything if s.key in held_set])
    out["held_out_topic_top1"] = float((pred == truth).mean())
    out["topics"] = len(topics)
    out["topic_chance"] = float(max(np.bincount(truth)) / len(truth))  # always answering the commonest topic
    return out


def emoji_probe(model, preprocess, renders, clean_x: torch.Tensor, copies: int = 6, seed: int = 0) -> float:
    """Linear probe on the image trunk: trained on augmented renders of every emoji (its label = its index),
    tested on the clean renders: what the encoder can tell apart when labels are given."""
    from torchvision.transforms import RandomResizedCrop

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    aug = RandomResizedCrop(renders[0].size[0], scale=(0.6, 1.0), ratio=(0.8, 1.25))
    xs, ys = [], []
    for k in range(copies):
        xs.append(torch.stack([preprocess(aug(im)) for im in renders]))
        ys.append(torch.arange(len(renders)))
    with torch.no_grad():
        tr = torch.from_numpy(trunk_features(model, torch.cat(xs)))
        te = torch.from_numpy(trunk_features(model, clean_x))
    mu, sd = tr.mean(0), tr.std(0) + 1e-6
    tr, te = (tr - mu) / sd, (te - mu) / sd
    y = torch.cat(ys)
    lin = torch.nn.Linear(tr.shape[1], len(renders))
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(lin(tr), y).backward()
        opt.step()
    del g
    return float((lin(te).argmax(1) == torch.arange(len(renders))).float().mean())


# ------------------------------------------------------------------------------------------------ extra models


def align_variant(encoder: str, out_dir: Path, lock: str = "text", holdout: Sequence[str] = (), steps: int = 150,
                  minutes: float = 5.0, seed: int = 0, batch_size: int = 256) -> Path:
    """Train (or reuse) an aligned model with the default recipe but another lock / held-out classes."""
    model_dir = out_dir / "model"
    if (model_dir / "open_clip_config.json").is_file():
        return model_dir
    pairs, info = build.default_pairs(holdout_classes=holdout, seed=seed)
    cfg = build.default_align_config(encoder, steps=steps, max_minutes=minutes, device="cpu", seed=seed,
                                     overrides=[("lock", lock), ("train.batch_size", batch_size)])
    cfg.train.progress = False
    result = run_alignment(cfg, out_dir, pairs=pairs, extra_meta={"pairs_info": info | {
        "emoji_held_out": info["emoji_held_out"]}})
    (out_dir / "fit.json").write_text(json.dumps({"steps": result.step, "seconds": result.train_seconds,
                                                  "loss": result.loss}))
    return model_dir


def fit_info(run_dir: Path) -> dict[str, Any]:
    p = run_dir / "fit.json"
    return json.loads(p.read_text()) if p.is_file() else {}


# ------------------------------------------------------------------------------------------------ main


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    print(f"cpu: {describe_cpu()}", flush=True)  # figures depend on it: name it beside them
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="aligned model folder (default: the offline default model)")
    ap.add_argument("--encoder", default="runs/default-model/pretrain",
                    help="the SimCLR encoder the model started from (probe baseline, extra models)")
    ap.add_argument("--work", default="runs/align/eval")
    ap.add_argument("--probe-train", type=int, default=10000, help="Fashion-MNIST train images for the linear probes")
    ap.add_argument("--holdout-classes", default="Sandal,Bag")
    ap.add_argument("--holdout-steps", type=int, default=150)
    ap.add_argument("--holdout-minutes", type=float, default=6.0)
    ap.add_argument("--lock-steps", type=int, default=30)
    ap.add_argument("--lock-minutes", type=float, default=5.0)
    ap.add_argument("--lock-batch", type=int, default=64)
    ap.add_argument("--only-train-variants", action="store_true", help="train the extra models, then stop")
    ap.add_argument("--skip-holdout", action="store_true")
    ap.add_argument("--skip-locks", action="store_true")
    ap.add_argument("--dev-only", action="store_true",
                    help="score only the development wordings (EVAL_WORDINGS): for tuning; TEST_WORDINGS is scored once")
    ap.add_argument("--quick", action="store_true", help="skip the linear probes and the emoji evaluation")
    ap.add_argument("--label", default="", help="a name for this run in the printed tables")
    ap.add_argument("--expand", action="store_true",
                    help="also score one wording per class with --expand wordnet (needs wordnet-base)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.manual_seed(0)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.only_train_variants:
        holdout = [c.strip() for c in args.holdout_classes.split(",") if c.strip()]
        if not args.skip_holdout:
            align_variant(args.encoder, work / ("holdout-" + "-".join(h.lower().replace("/", "") for h in holdout)),
                          holdout=holdout, steps=args.holdout_steps, minutes=args.holdout_minutes)
        if not args.skip_locks:
            for lock in ("text", "image", "none"):
                align_variant(args.encoder, work / f"lock-{lock}", lock=lock, steps=args.lock_steps,
                              minutes=args.lock_minutes, batch_size=args.lock_batch)
        return 0
    model_dir = find_clip_dir(args.model) if args.model else default_asset.default_model_dir()
    meta = json.loads((model_dir / "snapsight_align.json").read_text())
    held_names = meta.get("held_out_emoji") or meta.get("pairs_info", {}).get("emoji_held_out") or []
    templates = eval_templates()
    results: dict[str, Any] = {"model": str(model_dir), "label": args.label, "templates": templates}

    model, preprocess, tok = load_clip_dir(model_dir)
    test_x, test_y = fmnist_tensors("test", preprocess)
    train_x, train_y = (None, None) if args.quick else fmnist_tensors("train", preprocess, limit=args.probe_train)
    img = image_embeddings(model, test_x)
    fm = fmnist_zero_shot(model, tok, img, test_y, templates, test=not args.dev_only, expand=args.expand)
    if not args.quick:
        fm["linear_probe_aligned_trunk"] = linear_probe(trunk_features(model, train_x), train_y,
                                                       trunk_features(model, test_x), test_y)
        from snapsight.backbones import load_encoder

        enc, _, _ = load_encoder(args.encoder)
        with torch.no_grad():
            f_tr = torch.cat([enc(train_x[i:i + 512]) for i in range(0, len(train_x), 512)]).numpy()
            f_te = torch.cat([enc(test_x[i:i + 512]) for i in range(0, len(test_x), 512)]).numpy()
        fm["linear_probe_ssl_encoder"] = linear_probe(f_tr, train_y, f_te, test_y)
    fm["chance"] = 0.1
    results["fashion_mnist"] = fm
    log.info("fashion-mnist done (%.0f s)", time.time() - t0)
    if not args.quick:
        results["emoji"] = emoji_eval(model, preprocess, tok, held_names)
        log.info("emoji done (%.0f s)", time.time() - t0)
        held_stamps = meta.get("held_out_stamps") or meta.get("pairs_info", {}).get("stamps_held_out") or []
        results["stamps"] = stamp_eval(model, preprocess, tok, held_stamps)
        log.info("stamps done (%.0f s)", time.time() - t0)

    if not args.skip_holdout:
        holdout = [c.strip() for c in args.holdout_classes.split(",") if c.strip()]
        run = work / ("holdout-" + "-".join(h.lower().replace("/", "") for h in holdout))
        hdir = align_variant(args.encoder, run, holdout=holdout, steps=args.holdout_steps, minutes=args.holdout_minutes)
        hm, hpre, htok = load_clip_dir(hdir)
        himg = image_embeddings(hm, test_x)
        classes = list(FASHION_MNIST_CLASSES)
        res: dict[str, Any] = {"held_out": holdout, **fit_info(run)}
        for tag, words in (("class_wordings", [wordings.TRAIN_WORDINGS[c] for c in classes]),
                           ("unseen_wordings", [wordings.EVAL_WORDINGS[c] for c in classes])):  # dev list
            acc, per_class = zero_shot_acc(hm, htok, himg, test_y, words, templates)
            hidx = [classes.index(c) for c in holdout]
            res[tag] = {"overall": acc, "held_out_classes": float(per_class[hidx].mean()),
                        "trained_classes": float(np.delete(per_class, hidx).mean()),
                        "per_held_out_class": {c: float(per_class[classes.index(c)]) for c in holdout}}
        res["linear_probe_same_encoder_all_classes"] = linear_probe(
            trunk_features(hm, train_x), train_y, trunk_features(hm, test_x), test_y)
        res["chance"] = 0.1
        results["held_out_classes"] = res
        log.info("held-out classes done (%.0f s)", time.time() - t0)

    if not args.skip_locks:
        locks = {}
        for lock in ("text", "image", "none"):
            run = work / f"lock-{lock}"
            ldir = align_variant(args.encoder, run, lock=lock, steps=args.lock_steps, minutes=args.lock_minutes,
                                 batch_size=args.lock_batch)
            lm, lpre, ltok = load_clip_dir(ldir)
            limg = image_embeddings(lm, test_x)
            z = fmnist_zero_shot(lm, ltok, limg, test_y, templates, draws=50, test=False)
            e = emoji_eval(lm, lpre, ltok, held_names, probe=False)
            locks[lock] = {**fit_info(run), "seen_wordings": z["seen_wordings_ensemble"],
                           "unseen_ensemble": z["dev"]["ensemble"],
                           "unseen_single_mean": z["dev"]["single_wording"]["mean"],
                           "emoji_held_out_top5": e["held_out_top5"]}
            log.info("lock=%s done (%.0f s)", lock, time.time() - t0)
        results["lock_modes"] = locks
    results["seconds"] = round(time.time() - t0, 1)
    (work / f"align_eval{'-dev' if args.dev_only else ''}.json").write_text(json.dumps(results, indent=2))
    print_tables(results)
    return 0


def print_tables(r: dict[str, Any]) -> None:
    fm = r["fashion_mnist"]
    print(f"\n### Fashion-MNIST test (10,000 images), zero-shot{' -- ' + r['label'] if r.get('label') else ''}\n")
    print("| prompts | top-1 |\n|---|---|")
    for key, name in (("dev", "development wordings (EVAL_WORDINGS, tuned on)"),
                      ("test", "test wordings (TEST_WORDINGS, frozen, scored once)")):
        if key not in fm:
            continue
        h = fm[key]
        sw = h["single_wording"]
        print(f"| {name}, one per class (mean of {sw['draws']} draws; worst {pct(sw['min'])}, best {pct(sw['max'])})"
              f" | **{pct(sw['mean'])}** |")
        if "single_wording_expanded" in h:
            ex = h["single_wording_expanded"]
            print(f"| {name}, one per class, --expand wordnet (mean of {ex['draws']} draws; worst {pct(ex['min'])}, "
                  f"best {pct(ex['max'])}) | **{pct(ex['mean'])}** |")
        print(f"| {name}, one per class, bare word without template (mean) | {pct(h['single_wording_bare'])} |")
        print(f"| {name}, all 4 per class ensembled | {pct(h['ensemble'])} |")
    print(f"| training wordings (seen) | {pct(fm['seen_wordings_ensemble'])} |")
    print(f"| Fashion-MNIST's own class names | {pct(fm['plain_class_names'])} |")
    if "linear_probe_aligned_trunk" in fm:
        print(f"| linear probe, aligned image trunk (10k labels) | {pct(fm['linear_probe_aligned_trunk'])} |")
        print(f"| linear probe, SimCLR encoder before alignment | {pct(fm['linear_probe_ssl_encoder'])} |")
    print("| chance | 10.0% |")
    for key in ("dev", "test"):
        if key in fm:
            worst = sorted(fm[key]["wording_recall"].items(), key=lambda kv: kv[1])[:6]
            print(f"\nweakest {key} wordings (recall of their class): " +
                  ", ".join(f"{k} {pct(v)}" for k, v in worst))
    if "emoji" not in r:
        print(f"\n({r['seconds']:.0f} s)")
        return
    e = r["emoji"]
    print(f"\n### Emoji: name retrieval among all {e['names']} names\n")
    print("| emoji | top-1 | top-5 |\n|---|---|---|")
    print(f"| held out of training ({e['held_out']}) | {pct(e['held_out_top1'])} | {pct(e['held_out_top5'])} |")
    print(f"| seen in training | {pct(e['trained_top1'])} | {pct(e['trained_top5'])} |")
    if "probe_top1_all" in e:
        print(f"| linear probe on the image trunk (all emoji, labels given) | {pct(e['probe_top1_all'])} | |")
    print(f"| chance | {pct(e['chance_top1'])} | {pct(e['chance_top5'])} |")
    if "stamps" in r:
        st = r["stamps"]
        print(f"\n### Tux Paint stamps: name retrieval among all {st['names']} names\n")
        print("| stamps | top-1 | top-5 |\n|---|---|---|")
        print(f"| held out of training ({st['held_out']}) | {pct(st['held_out_top1'])} | {pct(st['held_out_top5'])} |")
        print(f"| seen in training | {pct(st['trained_top1'])} | {pct(st['trained_top5'])} |")
        print(f"| chance | {pct(st['chance_top1'])} | {pct(st['chance_top5'])} |")
        print(f"\nheld-out stamps' topic named among {st['topics']} topic words: {pct(st['held_out_topic_top1'])} "
              f"(always the commonest topic: {pct(st['topic_chance'])})")
    if "held_out_classes" in r:
        h = r["held_out_classes"]
        print(f"\n### Classes held out of alignment ({', '.join(h['held_out'])}), 10-way zero-shot\n")
        print("| prompts | held-out classes | trained classes | all |\n|---|---|---|---|")
        for tag in ("class_wordings", "unseen_wordings"):  # unseen = the development list
            v = h[tag]
            print(f"| {tag.replace('_', ' ')} | {pct(v['held_out_classes'])} | {pct(v['trained_classes'])} | "
                  f"{pct(v['overall'])} |")
        print(f"| linear probe (all 10 classes labeled) | | | {pct(h['linear_probe_same_encoder_all_classes'])} |")
        print("| chance | 10.0% | 10.0% | 10.0% |")
    if "lock_modes" in r:
        print("\n### Lock modes (LiT), same SimCLR encoder, equal small budget\n")
        print("| lock | steps | Fashion-MNIST unseen (single / ensemble) | seen wordings | held-out emoji top-5 |")
        print("|---|---|---|---|---|")
        for k, v in r["lock_modes"].items():
            print(f"| {k} | {v.get('steps', '?')} | {pct(v['unseen_single_mean'])} / {pct(v['unseen_ensemble'])} | "
                  f"{pct(v['seen_wordings'])} | {pct(v['emoji_held_out_top5'])} |")
    print(f"\n({r['seconds']:.0f} s)")


if __name__ == "__main__":
    raise SystemExit(main())
