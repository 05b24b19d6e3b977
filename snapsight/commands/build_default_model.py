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
    p.add_argument("--pretrain-minutes", type=float, default=13.0, help="wall-time budget of SimCLR pretraining")
    p.add_argument("--pretrain-epochs", type=int, default=1, help="SimCLR epochs (the budget may stop it earlier)")
    p.add_argument("--pretrain-steps", type=int, default=1500,
                   help="SimCLR schedule length in steps (0: --pretrain-epochs decides)")
    p.add_argument("--pretrain-batch-size", type=int, default=512, help="SimCLR batch size")
    p.add_argument("--align-minutes", type=float, default=12.0, help="wall-time cap of the alignment stage")
    p.add_argument("--align-steps", type=int, default=2500, help="alignment steps of 256 pairs (the schedule's length)")
    p.add_argument("--text-proj-identity", type=float, default=0.0,
                   help="> 0: learn a 384x384 text projection that starts at the identity, penalised by this "
                        "times ||W - I||^2 (MiniLM itself stays frozen)")
    p.add_argument("--text-unlocked-layers", type=int, default=0,
                   help="let the last N MiniLM layers train (partial LiT; the asset then carries them, fp16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue interrupted stages in --work")


def run(args: argparse.Namespace) -> int:
    from ..default_model.build import build_default_model
    from ..models.default import default_model_dir

    summary = build_default_model(
        args.work, args.out, encoder=args.encoder, pretrain_minutes=args.pretrain_minutes,
        pretrain_epochs=args.pretrain_epochs, pretrain_steps=args.pretrain_steps,
        pretrain_batch_size=args.pretrain_batch_size, align_minutes=args.align_minutes, align_steps=args.align_steps,
        text_proj_identity=args.text_proj_identity, text_unlocked_layers=args.text_unlocked_layers,
        device=args.device, seed=args.seed, resume=args.resume)
    print(json.dumps(summary, indent=2, default=str))
    if args.out is None:
        print(f"default model ready: {default_model_dir()}")
    return 0
