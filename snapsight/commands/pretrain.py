"""``snapsight pretrain``: SimCLR self-supervised pretraining on unlabeled images."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

HELP = "self-supervised SimCLR pretraining on a folder of unlabeled images (or a dataset) -> image encoder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="recipe: a packaged name (simclr-fashion-mnist, simclr-folder, simclr-folder-gpu, "
                   "simclr-default-model) or a YAML file; default: the packaged recipe that suits the data")
    p.add_argument("--data", help="image folder, saved Hugging Face dataset folder, Fashion-MNIST folder, "
                   "or 'fashion-mnist'")
    p.add_argument("--out", help="run directory (checkpoints, metrics, exported encoder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.lr=0.5 --set augment.blur=on (repeatable)")
    p.add_argument("--epochs", type=int, help="passes over the data (train.epochs)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (train.max_steps)")
    p.add_argument("--max-minutes", type=float, help="stop cleanly after this much wall time (train.max_minutes)")
    p.add_argument("--batch-size", type=int, help="global batch size (train.batch_size)")
    p.add_argument("--backbone", help="encoder name, e.g. small_cnn, cifar_resnet18, resnet50, timm:<name> "
                   "(model.backbone)")
    p.add_argument("--image-size", type=int, help="side of the views the encoder sees (model.image_size)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")


def _flag_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    pairs = [("data.source", args.data), ("out", args.out), ("train.epochs", args.epochs),
             ("train.max_steps", args.max_steps), ("train.max_minutes", args.max_minutes),
             ("train.batch_size", args.batch_size), ("model.backbone", args.backbone),
             ("model.image_size", args.image_size), ("train.device", args.device)]
    return [(k, v) for k, v in pairs if v is not None]


def run(args: argparse.Namespace) -> int:
    from ..ssl.pretrain import completed_run, load_pretrain_config, run_pretrain

    config = args.config
    if args.resume and not config and args.out and (Path(args.out) / "config.yaml").is_file():
        config = str(Path(args.out) / "config.yaml")  # resume with exactly the saved recipe
    cfg = load_pretrain_config(config, _flag_overrides(args) + list(args.overrides))
    # run_pretrain closes the process group, so torchrun's RANK says which process prints.
    main = int(os.environ.get("RANK", "0")) == 0
    out = Path(cfg.out)
    if args.resume and (done := completed_run(cfg)) is not None:
        if main:
            knn_text = f", online kNN accuracy {100 * done.knn_acc:.2f}%" if done.knn_acc is not None else ""
            print(f"{out}: the run is complete (step {done.step}{knn_text}), nothing to resume; "
                  "a longer --epochs or --max-steps trains it further")
        return 0
    result = run_pretrain(cfg, resume=args.resume)
    if main:
        knn_text = f", online kNN accuracy {100 * result.knn_acc:.2f}%" if result.knn_acc is not None else ""
        loss_text = f"loss {result.loss:.4f}" if result.loss is not None else "no loss logged"
        print(f"{'stopped' if result.interrupted else 'done'}: step {result.step}, epoch {result.epoch}, {loss_text}"
              f"{knn_text}, {result.train_seconds / 60:.1f} min")
        if result.export_path:
            print(f"encoder saved in {result.export_path}; use it with --encoder {out}")
        if result.interrupted:
            print(f"continue with: snapsight pretrain --out {out} --resume")
    return 130 if result.interrupted else 0
