"""``snapsight align``: CLIP-style alignment of a pretrained image encoder with a text encoder."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "align a pretrained image encoder with a text encoder on image-text pairs -> open_clip model folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML recipe: a file or a packaged recipe name (align, align-default)")
    p.add_argument("--image-encoder", help="`snapsight pretrain` run directory or encoder folder "
                                           "(or random:timm:resnet10t@32 for a baseline)")
    p.add_argument("--text-encoder", help="minilm (bundled all-MiniLM-L6-v2, the default), mpnet (bundled all-mpnet-base-v2, the default model's) or a Hugging Face model folder")
    p.add_argument("--pairs", action="append", metavar="DATA",
                   help="image-text pairs: .csv/.tsv/.jsonl (image,caption), images with sidecar .txt captions, a "
                        "saved Hugging Face dataset, class-labeled data (labeled:SPEC, class folders, fashion-mnist) "
                        "or 'emoji'; repeat to combine sources")
    p.add_argument("--lock", choices=["image", "text", "none"],
                   help="tower kept frozen: image (LiT: tune the text side), text (tune the image side), none")
    p.add_argument("--synonyms", help="class-labeled data: file of 'class: wording | wording' lines for varied captions")
    p.add_argument("--out", help="run directory; the aligned model is written to OUT/model (default runs/align)")
    p.add_argument("--epochs", type=int, help="passes over the pairs (train.epochs)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (train.max_steps)")
    p.add_argument("--max-minutes", type=float, help="stop cleanly after this much wall time (train.max_minutes)")
    p.add_argument("--batch-size", type=int, help="global batch size (train.batch_size)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set text_proj=linear --set train.lr=1e-4 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")


def _flag_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    pairs = [("image_encoder", args.image_encoder), ("text_encoder", args.text_encoder), ("pairs", args.pairs),
             ("lock", args.lock), ("synonyms", args.synonyms), ("train.epochs", args.epochs),
             ("train.max_steps", args.max_steps), ("train.max_minutes", args.max_minutes),
             ("train.batch_size", args.batch_size), ("train.device", args.device)]
    return [(k, v) for k, v in pairs if v is not None]


def run(args: argparse.Namespace) -> int:
    from ..align import load_align_config, run_alignment
    from ..train import distributed as du

    out = Path(args.out or "runs/align")
    config_path = args.config
    if args.resume and not config_path and (out / "config.yaml").is_file():
        config_path = str(out / "config.yaml")  # resume with exactly the saved recipe
    cfg = load_align_config(config_path, _flag_overrides(args) + list(args.overrides))
    result = run_alignment(cfg, out, resume=args.resume)
    du.cleanup_distributed()
    if du.is_main_process():
        loss = f"loss {result.loss:.4f}" if result.loss is not None else "no loss logged"
        print(f"{'stopped' if result.interrupted else 'done'}: step {result.step}, {loss}, "
              f"{result.train_seconds / 60:.1f} min")
        if result.export_path:
            print(f"aligned model saved in {result.export_path}; load it with "
                  f"open_clip.create_model_and_transforms('local-dir:{result.export_path}') or "
                  f"snapsight classify --model {result.export_path}")
        if result.interrupted:
            print(f"continue with: snapsight align --out {out} --resume")
    return 130 if result.interrupted else 0
