"""``snapsight build-default-model``: build the offline default zero-shot model end to end."""
from __future__ import annotations

import argparse
import json

HELP = "build the offline default zero-shot model from Fashion-MNIST + colour emoji (pretrain -> align)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", default="runs/default-model", help="run directory for the stages (default runs/default-model)")
    p.add_argument("--out", help="where the compact model goes (default: snapsight/assets/default-model, or the "
                                 "user cache when the package folder is read-only)")
    p.add_argument("--encoder", help="skip pretraining and start from this `snapsight pretrain` run (timm/resnet backbone)")
    p.add_argument("--pretrain-minutes", type=float, default=6.0, help="wall-time budget of SimCLR pretraining")
    p.add_argument("--pretrain-epochs", type=int, default=1, help="SimCLR epochs (the budget may stop it earlier)")
    p.add_argument("--align-minutes", type=float, default=10.0, help="wall-time cap of the alignment stage")
    p.add_argument("--align-steps", type=int, default=300, help="alignment steps of 256 pairs (the schedule's length)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue interrupted stages in --work")


def run(args: argparse.Namespace) -> int:
    from ..default_model import build_default_model, default_model_dir

    summary = build_default_model(
        args.work, args.out, encoder=args.encoder, pretrain_minutes=args.pretrain_minutes,
        pretrain_epochs=args.pretrain_epochs, align_minutes=args.align_minutes, align_steps=args.align_steps,
        device=args.device, seed=args.seed, resume=args.resume)
    print(json.dumps(summary, indent=2, default=str))
    if args.out is None:
        print(f"default model ready: {default_model_dir()}")
    return 0
