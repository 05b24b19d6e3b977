"""Build the offline default model end to end: SimCLR pretraining -> text-locked alignment -> compact asset.

``snapsight build-default-model`` runs :func:`build_default_model`; both stages are library calls
(:func:`snapsight.ssl.run_pretrain`, :func:`snapsight.align.run_alignment`) on the packaged recipes.
See docs/default-model.md for the exact command and the figures it gave.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..align.run import load_align_config, run_alignment
from ..cli import main as cli_main
from ..data.captions import ConcatPairs, class_captions, emoji_pairs, labeled_pairs, repeat_pairs
from ..data.labeled import load_fashion_mnist_labeled
from ..errors import SnapsightError
from ..models.default import ASSET_DIR, DEFAULT_MODEL_NAME, built_asset_dir, write_default_asset
from .wordings import (
    EMOJI_TEMPLATES,
    FMNIST_TEMPLATES,
    TRAIN_WORDINGS,
    check_heldout_wordings,
    heldout_phrases,
    training_emoji,
)


def default_pairs(holdout_classes: Sequence[str] = (), emoji_repeat: int = 16, max_fmnist: int = 0,
                  seed: int = 0):
    """Training pairs of the default model: Fashion-MNIST train images captioned with
    :data:`TRAIN_WORDINGS` x templates (classes in ``holdout_classes`` left out entirely), plus the
    training emoji (repeated ``emoji_repeat`` times per epoch so they are not drowned by 60k garments).

    Returns ``(pairs, info)``; ``info`` names the held-out emoji and classes.
    """
    import numpy as np


    emoji_train, emoji_held = training_emoji(heldout_phrases())
    captions = [c for caps in class_captions(list(TRAIN_WORDINGS), FMNIST_TEMPLATES, TRAIN_WORDINGS) for c in caps]
    captions += [t.format(n) for e in emoji_train for n in e.names for t in EMOJI_TEMPLATES]
    clash = check_heldout_wordings(sorted(set(captions)))
    if clash:  # checked on the exact caption strings, before any image is loaded
        raise SnapsightError(f"held-out wording '{clash[0][0]}' occurs in training caption '{clash[0][1]}'")
    fm = load_fashion_mnist_labeled("train")
    unknown = set(holdout_classes) - set(fm.class_names)
    if unknown:
        raise SnapsightError(f"unknown Fashion-MNIST classes to hold out: {sorted(unknown)}")
    keep = np.flatnonzero(~np.isin(np.asarray(fm.class_names)[fm.labels], list(holdout_classes)))
    if max_fmnist and len(keep) > max_fmnist:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_fmnist, replace=False))
    fm = fm.subset(keep, tag="align")
    fm_pairs = labeled_pairs(fm, FMNIST_TEMPLATES, TRAIN_WORDINGS)
    em_pairs = emoji_pairs(emoji_train, EMOJI_TEMPLATES, size=64)
    pairs = ConcatPairs([fm_pairs, repeat_pairs(em_pairs, emoji_repeat)])
    info = {"fashion_mnist_images": len(fm_pairs), "emoji_train": len(em_pairs),
            "emoji_held_out": [e.name for e in emoji_held], "emoji_repeat": emoji_repeat,
            "held_out_classes": list(holdout_classes)}
    return pairs, info


def default_align_config(encoder: str, lock: str = "text", text_proj: str = "none", steps: int = 300,
                         max_minutes: float = 0.0, batch_size: int = 256, device: str = "auto", seed: int = 0,
                         lr: float = 1e-3, text_proj_identity: float = 0.0, text_unlocked_layers: int = 0):
    """The alignment recipe of the default model (configs/align-default.yaml spells out the same values).

    ``text_proj_identity`` > 0 adds a 384x384 text projection that starts at the identity and is pulled back
    towards it (the text transformer itself stays frozen, so the compact asset still omits it)."""

    if text_proj_identity > 0:
        text_proj = "linear"
    return load_align_config(None, [
        ("image_encoder", encoder), ("text_encoder", "minilm"), ("lock", lock), ("text_proj", text_proj),
        ("text_proj_identity", float(text_proj_identity)), ("embed_dim", 384 if text_proj_identity > 0 else 0),
        ("text_unlocked_layers", int(text_unlocked_layers)),
        ("pairs", ["default-model pairs"]), ("train.epochs", 100), ("train.max_steps", steps), ("train.batch_size", batch_size),
        ("train.lr", lr), ("train.max_minutes", max_minutes), ("train.device", device), ("train.seed", seed),
        ("train.warmup_steps", max(1, steps // 20)), ("train.checkpoint_minutes", 5.0), ("train.log_every", 20),
        # bf16 autocast on a CPU is ~1.3x faster for the image tower; the locked text features stay fp32.
        ("train.precision", "auto" if _cuda() and device != "cpu" else "bf16"),
    ])


def pretrain_args(work_dir: Path, minutes: float, epochs: int, device: str, seed: int, steps: int = 0,
                  batch_size: int = 256) -> list[str]:
    """The ``snapsight pretrain`` command line the build runs (SimCLR, ResNet-10-T at 32 px, the Fashion-MNIST
    recipe of ``snapsight pretrain``). ``steps`` > 0 sets the schedule's length (warm-up: a tenth of it)."""
    args = ["pretrain", "--data", "fashion-mnist", "--backbone", "timm:resnet10t", "--image-size", "32",
            "--out", str(work_dir / "pretrain"), "--epochs", str(1000 if steps > 0 else epochs),
            "--max-minutes", str(minutes),
            "--batch-size", str(batch_size), "--device", device, "--set", f"train.seed={seed}",
            "--set", "model.backbone_kwargs={}"]  # the Fashion-MNIST recipe's small-CNN widths do not apply
    if steps > 0:
        args += ["--max-steps", str(steps), "--set", f"train.warmup_steps={max(1, steps // 10)}"]
    else:
        args += ["--set", "train.warmup_epochs=0.5"]
    return args + ["--set", "train.precision=bf16" if device in ("cpu", "auto") and not _cuda()
                   else "train.precision=auto"]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def build_default_model(
    work_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    encoder: str | None = None,
    pretrain_minutes: float = 13.0,
    pretrain_epochs: int = 1,
    pretrain_steps: int = 1500,
    pretrain_batch_size: int = 512,
    align_minutes: float = 12.0,
    align_steps: int = 2500,
    text_proj_identity: float = 0.0,
    text_unlocked_layers: int = 0,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
) -> dict[str, Any]:
    """Build the default model end to end: SimCLR pretraining (skipped when ``encoder`` is given) -> text-locked
    alignment on :func:`default_pairs` -> compact asset in ``out_dir`` (default: the package asset folder,
    or the user cache when that is not writable). Returns a summary dict."""
    import shlex
    import time


    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    summary: dict[str, Any] = {"work_dir": str(work_dir)}
    if encoder is None:
        args = pretrain_args(work_dir, pretrain_minutes, pretrain_epochs, device, seed, pretrain_steps,
                             pretrain_batch_size)
        if resume and (work_dir / "pretrain" / "checkpoints").is_dir():
            args.append("--resume")
        if not (work_dir / "pretrain" / "encoder" / "config.json").is_file():
            code = cli_main(args)
            if code not in (0,):
                raise SnapsightError(f"the pretraining stage failed (exit {code}): snapsight {shlex.join(args)}")
        encoder = str(work_dir / "pretrain")
        summary["pretrain_command"] = "snapsight " + shlex.join(args)
    summary["encoder"] = encoder
    summary["pretrain_seconds"] = round(time.time() - t0, 1)
    t1 = time.time()
    pairs, pair_info = default_pairs(seed=seed)
    cfg = default_align_config(encoder, steps=align_steps, max_minutes=align_minutes, device=device, seed=seed,
                               text_proj_identity=text_proj_identity, text_unlocked_layers=text_unlocked_layers)
    result = run_alignment(cfg, work_dir / "align", pairs=pairs, resume=resume and (work_dir / "align").is_dir(),
                           extra_meta={"name": DEFAULT_MODEL_NAME, "pairs_info": pair_info})
    summary.update(align_seconds=round(time.time() - t1, 1), align_steps=result.step, align_loss=result.loss,
                   pairs=pair_info | {"emoji_held_out": len(pair_info["emoji_held_out"])})
    if result.export_path is None or result.interrupted:
        raise SnapsightError(f"alignment was interrupted at step {result.step}; continue with "
                             f"`snapsight build-default-model --work {work_dir} --resume`")
    if out_dir is None:
        out_dir = ASSET_DIR if os.access(ASSET_DIR.parent, os.W_OK) else built_asset_dir()
    provenance = {"trained_on": "Fashion-MNIST train (60k, captions from TRAIN_WORDINGS x templates) + "
                                f"{pair_info['emoji_train']} Noto colour emoji with their Unicode names",
                  "build": summary, "held_out_emoji": pair_info["emoji_held_out"]}
    write_default_asset(result.export_path, out_dir, provenance)
    summary["asset_dir"] = str(out_dir)
    summary["total_seconds"] = round(time.time() - t0, 1)
    return summary
