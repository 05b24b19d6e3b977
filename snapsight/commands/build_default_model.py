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
    # Unset options keep the values of the packaged recipes simclr-default-model and align-default.
    p.add_argument("--pretrain-minutes", type=float, help="wall-time budget of SimCLR pretraining (recipe: 13)")
    p.add_argument("--pretrain-epochs", type=int, default=1,
                   help="SimCLR epochs when --pretrain-steps is 0 (the budget may stop it earlier)")
    p.add_argument("--pretrain-steps", type=int,
                   help="SimCLR schedule length in steps (recipe: 1500; 0: --pretrain-epochs decides)")
    p.add_argument("--pretrain-batch-size", type=int, help="SimCLR batch size (recipe: 512)")
    p.add_argument("--align-minutes", type=float, help="wall-time cap of the alignment stage (recipe: 12)")
    p.add_argument("--align-steps", type=int, help="alignment steps of 256 pairs, the schedule's length (recipe: 2500)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--seed", type=int, help="seed of both stages (default 0)")
    p.add_argument("--resume", action="store_true", help="continue interrupted stages in --work")


def run(args: argparse.Namespace) -> int:
    from ..default_model.build import build_default_model
    from ..models.default import default_model_dir

    summary = build_default_model(
        args.work, args.out, encoder=args.encoder, pretrain_minutes=args.pretrain_minutes,
        pretrain_epochs=args.pretrain_epochs, pretrain_steps=args.pretrain_steps,
        pretrain_batch_size=args.pretrain_batch_size, align_minutes=args.align_minutes, align_steps=args.align_steps,
        device=args.device, seed=args.seed, resume=args.resume)
    print(json.dumps(summary, indent=2, default=str))
    if args.out is None:
        print(f"default model ready: {default_model_dir()}")
    return 0
