"""``snapsight build-default-model``: build the offline default zero-shot model end to end."""
from __future__ import annotations

import argparse
import json

HELP = ("build the offline default zero-shot model from Fashion-MNIST, colour emoji and Tux Paint stamps "
        "(pretrain -> align -> unfamiliar-image reference)")


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
    p.add_argument("--reference-only", action="store_true",
                   help="only (re)compute the unfamiliar-image reference of the existing model in --out (default: "
                        "the shipped asset), assembling it in --work")


def run(args: argparse.Namespace) -> int:
    from ..default_model.build import build_default_model
    from ..models.default import default_model_dir

    if args.reference_only:
        return _reference_only(args)
    summary = build_default_model(
        args.work, args.out, encoder=args.encoder, pretrain_minutes=args.pretrain_minutes,
        pretrain_epochs=args.pretrain_epochs, pretrain_steps=args.pretrain_steps,
        pretrain_batch_size=args.pretrain_batch_size, align_minutes=args.align_minutes, align_steps=args.align_steps,
        device=args.device, seed=args.seed, resume=args.resume)
    print(json.dumps(summary, indent=2, default=str))
    if args.out is None:
        print(f"default model ready: {default_model_dir()}")
    return 0


def _reference_only(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..default_model.reference import write_asset_reference
    from ..errors import SnapsightError
    from ..models.default import ASSET_CONFIG, find_default_asset

    asset = Path(args.out) if args.out else find_default_asset()
    if asset is None or not (asset / ASSET_CONFIG).is_file():
        raise SnapsightError(f"no default-model asset in {asset or 'the package or user cache'}: build it first")
    ref = write_asset_reference(asset, args.work, seed=args.seed or 0)
    print(json.dumps({"asset_dir": str(asset), "reference_vectors": len(ref.features),
                      **ref.info}, indent=2))
    return 0
