"""SimCLR on Fashion-MNIST: linear-probe accuracy against wall-clock pretraining budget.

One run, side by side:
  (a) logistic regression on raw pixels,
  (b) the same linear probe on a randomly initialised encoder (same architecture),
  (c) the linear probe on the SimCLR encoder exported at each snapshot (default 10 and 20 minutes) and at
      the end of the run (default 30 minutes).
Pretraining uses the 60k training images only (labels are used by the online kNN monitor, never by the
loss). The probe is scikit-learn's multinomial logistic regression on standardised frozen features,
trained on the 60k training labels and scored on the 10k test images.

Snapshots are exports from the *same* run, taken while its learning rate is still high; they are what a
run stopped at that time gives, not what a run scheduled for that budget would give. The number of epochs
is chosen from a short throughput calibration so the cosine schedule ends near the budget.

    .venv/bin/python benchmarks/ssl_fashion_mnist.py --budget-minutes 30 --out runs/ssl/fmnist-bench

Writes OUT/benchmark/{results.json, table.md, accuracy_vs_time.png}; OUT itself is a normal
``snapsight pretrain`` run directory (``--encoder OUT`` works everywhere).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def calibrate(config: str, threads: int, steps: int = 8) -> float:
    """Training images/s of the config's SimCLR step on this machine right now."""
    from snapsight.config import load_config
    from snapsight.data.fashion_mnist import load_fashion_mnist
    from snapsight.runtime import autocast_dtype
    from snapsight.ssl.simclr import PretrainConfig, SimCLRTask
    from snapsight.train.optim import build_optimizer, default_param_groups

    torch.set_num_threads(threads)
    cfg = load_config(PretrainConfig, config)
    images = torch.from_numpy(load_fashion_mnist("train")[0][:cfg.train.batch_size].copy()).unsqueeze(1)
    task = SimCLRTask.from_config(cfg.model, cfg.augment)
    opt = build_optimizer(default_param_groups(task, 0.0), cfg.train)
    # the precision the training loop will use (auto: bf16 only where this CPU computes it natively)
    precision = cfg.train.precision
    amp = autocast_dtype(torch.device("cpu")) if precision == "auto" else {"bf16": torch.bfloat16}.get(precision)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            loss = task.training_step({"images": images})["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return cfg.train.batch_size / float(np.median(times))


@torch.no_grad()
def encode(model: torch.nn.Module, images: np.ndarray, mean, std, size: int, batch: int = 1000) -> np.ndarray:
    model.eval()
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), batch):
        x = torch.tensor(images[i:i + batch]).float().div(255).unsqueeze(1)
        if x.shape[-1] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        x = (x.expand(-1, 3, -1, -1) - m) / s
        out.append(model(x).float())
    return torch.cat(out).numpy()


def linear_probe(train_x, train_y, test_x, test_y, max_iter: int = 1000) -> tuple[float, float]:
    """Standardise, fit multinomial logistic regression (L-BFGS); return (test accuracy, seconds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=max_iter, C=1.0)
    clf.fit(scaler.transform(train_x), train_y)
    acc = float((clf.predict(scaler.transform(test_x)) == test_y).mean())
    return acc, time.perf_counter() - t0


def main() -> None:
    from snapsight.runtime import describe_cpu

    print(f"cpu: {describe_cpu()}", flush=True)  # figures depend on it: name it beside them
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/simclr-fashion-mnist.yaml")
    ap.add_argument("--out", default="runs/ssl/fmnist-bench")
    ap.add_argument("--budget-minutes", type=float, default=30.0, help="pretraining wall-clock budget")
    ap.add_argument("--snapshots", default="10,20", help="also probe exports taken at these minutes")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy CPU)")
    ap.add_argument("--epochs", type=int, default=0, help="fix the epochs instead of calibrating")
    ap.add_argument("--skip-pretrain", action="store_true", help="only evaluate an existing --out run")
    ap.add_argument("--skip-baselines", action="store_true",
                    help="with --skip-pretrain: probe only the SimCLR encoders (the baselines do not change)")
    ap.add_argument("--pretrain-only", action="store_true",
                    help="stop after pretraining (evaluate later with --skip-pretrain, e.g. when the CPU is free)")
    args = ap.parse_args()

    from snapsight.backbones import create_backbone, load_encoder
    from snapsight.config import load_config
    from snapsight.data.fashion_mnist import load_fashion_mnist
    from snapsight.runtime import cpu_features
    from snapsight.ssl.pretrain import load_pretrain_config, run_pretrain
    from snapsight.ssl.simclr import PretrainConfig
    from snapsight.train.callbacks import Snapshots

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    bench = out / "benchmark"
    snapshots = [float(s) for s in args.snapshots.split(",") if s.strip()]
    cfg = load_config(PretrainConfig, args.config)
    previous = out / "benchmark" / "results.json"
    results: dict = json.loads(previous.read_text()) if args.skip_pretrain and previous.is_file() else {}
    results.update({"config": args.config, "threads": args.threads, "cpu_count": os.cpu_count(),
                     "cpu_features": cpu_features(), "budget_minutes": args.budget_minutes})
    results["load_average_at_" + ("probes" if args.skip_pretrain else "start")] = os.getloadavg()

    if not args.skip_pretrain:
        epochs = args.epochs
        if not epochs:
            ips = calibrate(args.config, args.threads)
            # ~88% of the budget for training steps: the rest goes to kNN, checkpoints and exports.
            epochs = max(1, int(args.budget_minutes * 60 * 0.88 * ips / 60000))
            results["calibrated_images_per_s"] = round(ips, 1)
            print(f"calibration: {ips:.0f} images/s -> {epochs} epochs in {args.budget_minutes:g} min", flush=True)
        results["epochs"] = epochs
        t0 = time.perf_counter()
        run_cfg = load_pretrain_config(args.config, overrides=[
            ("out", str(out)), ("train.epochs", epochs), ("train.max_minutes", args.budget_minutes),
            ("train.num_threads", args.threads), ("train.progress", False), ("train.log_every", 20),
            ("data.knn_bank_size", 2000), ("data.knn_query_size", 500)])
        run_pretrain(run_cfg, callbacks=[Snapshots(snapshots)])
        results["pretrain_wall_s"] = round(time.perf_counter() - t0, 1)
        results["load_average_after_pretraining"] = os.getloadavg()  # (1, 5, 15 min): ~2 means a busy 2-core CPU
        if args.pretrain_only:
            bench.mkdir(parents=True, exist_ok=True)
            (bench / "results.json").write_text(json.dumps(results, indent=2))
            print(f"pretrained; evaluate with --skip-pretrain --out {out}")
            return

    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    rows = []

    if args.skip_baselines:  # reuse the baselines of this --out's earlier evaluation
        rows = [r for r in results.get("rows", []) if r["model"].startswith(("(a)", "(b)"))]
        if len(rows) != 2:
            raise SystemExit("--skip-baselines needs an earlier evaluation in OUT/benchmark/results.json")
    else:
        acc, secs = linear_probe(train_x.reshape(len(train_x), -1).astype(np.float32) / 255, train_y,
                                 test_x.reshape(len(test_x), -1).astype(np.float32) / 255, test_y)
        rows.append({"model": "(a) logistic regression on raw pixels", "minutes": 0, "test_acc": acc})
        print(f"raw pixels: {100 * acc:.2f}% ({secs:.0f} s)", flush=True)

        torch.manual_seed(0)
        random_model = create_backbone(cfg.model.backbone, image_size=cfg.model.image_size, **cfg.model.backbone_kwargs)
        feats = [encode(random_model, x, cfg.model.mean, cfg.model.std, cfg.model.image_size) for x in (train_x, test_x)]
        acc, secs = linear_probe(feats[0], train_y, feats[1], test_y)
        rows.append({"model": f"(b) probe on random-init {cfg.model.backbone} {cfg.model.backbone_kwargs.get('widths', '')}",
                     "minutes": 0, "test_acc": acc})
        print(f"random encoder: {100 * acc:.2f}% ({secs:.0f} s)", flush=True)

    encoders = []
    for m in snapshots:
        snap = out / "snapshots" / f"{m:g}min"
        if (snap / "encoder").is_dir():
            info = json.loads((snap / "snapshot.json").read_text())
            encoders.append((snap, info["elapsed_s"] / 60, info["epoch"], info["step"]))
    state = json.loads((out / "train_state.json").read_text())
    encoders.append((out, state["train_seconds"] / 60, state["epoch"], state["step"]))
    for path, minutes, epoch, step in encoders:
        model, prep, _ = load_encoder(path)
        feats = [encode(model, x, prep.mean, prep.std, prep.image_size) for x in (train_x, test_x)]
        acc, secs = linear_probe(feats[0], train_y, feats[1], test_y)
        rows.append({"model": f"(c) probe on SimCLR encoder after {minutes:.1f} min (epoch {epoch}, step {step})",
                     "minutes": round(minutes, 2), "epoch": epoch, "step": step, "test_acc": acc})
        print(f"SimCLR @ {minutes:.1f} min: {100 * acc:.2f}% ({secs:.0f} s)", flush=True)

    results["rows"] = rows
    results["final_status"] = state
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| model | pretraining wall time | linear-probe test accuracy |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['minutes']:.1f} min | {100 * r['test_acc']:.2f}% |")
    table = "\n".join(lines)
    (bench / "table.md").write_text(table + "\n")
    print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ssl = [r for r in rows if r["model"].startswith("(c)")]
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    ax.plot([r["minutes"] for r in ssl], [100 * r["test_acc"] for r in ssl], "o-", label="SimCLR + linear probe")
    ax.axhline(100 * rows[0]["test_acc"], color="gray", ls="--", label="raw pixels + logistic regression")
    ax.axhline(100 * rows[1]["test_acc"], color="tab:red", ls=":", label="random-init encoder + linear probe")
    ax.set_xlabel("pretraining wall-clock minutes (one run, this 2-core CPU; load average in results.json)")
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(bench / "accuracy_vs_time.png")
    print(f"wrote {bench}/table.md, results.json, accuracy_vs_time.png")


if __name__ == "__main__":
    main()
