"""Build the offline default model end to end: SimCLR pretraining -> text-locked alignment -> compact asset.

``snapsight build-default-model`` runs :func:`build_default_model`; both stages are library calls on packaged
recipes: :func:`snapsight.ssl.pretrain.run_pretrain` on ``simclr-default-model`` and
:func:`snapsight.align.run_alignment` on ``align-default``, the build's options applied as overrides.
See docs/default-model.md for the exact command and the figures it gave.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..align import AlignConfig, load_align_config, run_alignment
from ..data.captions import ConcatPairs, class_captions, emoji_pairs, labeled_pairs, repeat_pairs, stamp_pairs
from ..data.labeled import load_fashion_mnist_labeled
from ..data.wordnet import load_wordnet
from ..errors import SnapsightError
from ..models.default import ASSET_DIR, DEFAULT_MODEL_NAME, built_asset_dir, write_default_asset
from ..ssl.pretrain import load_pretrain_config, run_pretrain
from ..ssl.simclr import PretrainConfig
from .reference import write_asset_reference
from .wordings import (
    EMOJI_TEMPLATES,
    FMNIST_TEMPLATES,
    TRAIN_WORDINGS,
    check_heldout_wordings,
    emoji_with_wordnet,
    fmnist_wordnet_wordings,
    heldout_phrases,
    stamp_captions,
    training_emoji,
    training_stamps,
)

PRETRAIN_RECIPE = "simclr-default-model"
ALIGN_RECIPE = "align-default"
DEFAULT_PAIRS_NAME = "default-model pairs"  # cfg.pairs names them; the pairs themselves come from default_pairs()


def default_pairs(holdout_classes: Sequence[str] = (), emoji_repeat: int = 16, max_fmnist: int = 0,
                  seed: int = 0, stamp_repeat: int = 16, wordnet: bool = True):
    """Training pairs of the default model: Fashion-MNIST train images captioned with :data:`TRAIN_WORDINGS`
    (widened with WordNet hyponyms, :func:`fmnist_wordnet_wordings`) x templates (classes in ``holdout_classes``
    left out entirely), the training emoji (names widened with WordNet synonyms) and the training Tux Paint stamps
    (descriptions, names, WordNet words of their chosen sense), each of the last two repeated ``emoji_repeat`` /
    ``stamp_repeat`` times per epoch so they are not drowned by 60k garments. ``wordnet=False`` builds the
    captions without WordNet (then ``wordnet-base`` need not be installed).

    Every training caption is checked against the held-out wordings before any image is loaded. Returns
    ``(pairs, info)``; ``info`` names the held-out emoji, stamps and classes.
    """
    heldout = heldout_phrases()
    wn = load_wordnet() if wordnet else None
    emoji_train, emoji_held = training_emoji(heldout)
    stamps_train, stamps_held = training_stamps(heldout) if stamp_repeat > 0 else ([], [])
    wordings = dict(TRAIN_WORDINGS)
    if wn is not None:
        extra = fmnist_wordnet_wordings(wn, heldout)
        wordings = {c: tuple(ws) + extra.get(c, ()) for c, ws in wordings.items()}
        emoji_train = emoji_with_wordnet(emoji_train, wn, heldout)
    stamp_caps = [stamp_captions(st, wn, heldout) for st in stamps_train]
    captions = [c for caps in class_captions(list(wordings), FMNIST_TEMPLATES, wordings) for c in caps]
    captions += [t.format(n) for e in emoji_train for n in e.names for t in EMOJI_TEMPLATES]
    captions += [c for caps in stamp_caps for c in caps]
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
    parts = [labeled_pairs(fm, FMNIST_TEMPLATES, wordings)]
    em_pairs = emoji_pairs(emoji_train, EMOJI_TEMPLATES, size=64)
    parts.append(repeat_pairs(em_pairs, emoji_repeat))
    if stamps_train:
        parts.append(repeat_pairs(stamp_pairs(stamps_train, stamp_caps, size=64), stamp_repeat))
    pairs = ConcatPairs(parts)
    info = {"fashion_mnist_images": len(parts[0]), "emoji_train": len(em_pairs),
            "emoji_held_out": [e.name for e in emoji_held], "emoji_repeat": emoji_repeat,
            "stamps_train": len(stamps_train), "stamps_held_out": [st.key for st in stamps_held],
            "stamp_repeat": stamp_repeat, "wordnet": wn is not None,
            "fmnist_wordnet_wordings": sum(len(ws) for ws in wordings.values()) - sum(
                len(ws) for ws in TRAIN_WORDINGS.values()),
            "held_out_classes": list(holdout_classes)}
    return pairs, info


def default_align_config(encoder: str, *, steps: int | None = None, max_minutes: float | None = None,
                         device: str | None = None, seed: int | None = None,
                         overrides: Sequence[tuple[str, Any]] = ()) -> AlignConfig:
    """The packaged ``align-default`` recipe starting from ``encoder``; a given ``steps`` also sets the warm-up
    to a twentieth of it, ``None`` keeps the recipe's value. ``overrides`` go last (e.g. ``("lock", "none")``)."""
    sets: list[tuple[str, Any]] = [("image_encoder", encoder), ("pairs", [DEFAULT_PAIRS_NAME])]
    if steps is not None:
        sets += [("train.max_steps", steps), ("train.warmup_steps", max(1, steps // 20))]
    sets += [(k, v) for k, v in (("train.max_minutes", max_minutes), ("train.device", device),
                                 ("train.seed", seed)) if v is not None]
    return load_align_config(ALIGN_RECIPE, sets + list(overrides))


def default_pretrain_config(work_dir: str | Path, *, minutes: float | None = None, epochs: int = 1,
                            steps: int | None = None, batch_size: int | None = None, device: str | None = None,
                            seed: int | None = None) -> PretrainConfig:
    """The packaged ``simclr-default-model`` recipe writing to ``work_dir/pretrain``. ``steps`` > 0 sets the
    schedule's length (warm-up: a tenth of it); ``steps`` 0 lets ``epochs`` decide (warm-up: half an epoch);
    ``None`` keeps the recipe's values."""
    sets: list[tuple[str, Any]] = [("out", str(Path(work_dir) / "pretrain"))]
    if steps:
        sets += [("train.epochs", 1000), ("train.max_steps", steps), ("train.warmup_steps", max(1, steps // 10))]
    elif steps == 0:
        sets += [("train.epochs", epochs), ("train.max_steps", 0), ("train.warmup_steps", 0),
                 ("train.warmup_epochs", 0.5)]
    sets += [(k, v) for k, v in (("train.max_minutes", minutes), ("train.batch_size", batch_size),
                                 ("train.device", device), ("train.seed", seed)) if v is not None]
    return load_pretrain_config(PRETRAIN_RECIPE, overrides=sets)


def build_default_model(
    work_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    encoder: str | None = None,
    pretrain_minutes: float | None = None,
    pretrain_epochs: int = 1,
    pretrain_steps: int | None = None,
    pretrain_batch_size: int | None = None,
    align_minutes: float | None = None,
    align_steps: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Build the default model end to end: SimCLR pretraining (skipped when ``encoder`` is given) -> text-locked
    alignment on :func:`default_pairs` -> compact asset in ``out_dir`` (default: the package asset folder,
    or the user cache when that is not writable) -> its "unfamiliar image" reference
    (:mod:`snapsight.default_model.reference`). Returns a summary dict.

    Options left at ``None`` keep the packaged recipes' values (see :func:`default_pretrain_config` and
    :func:`default_align_config`)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    summary: dict[str, Any] = {"work_dir": str(work_dir)}
    if encoder is None:
        cfg = default_pretrain_config(work_dir, minutes=pretrain_minutes, epochs=pretrain_epochs,
                                      steps=pretrain_steps, batch_size=pretrain_batch_size, device=device, seed=seed)
        run_dir = Path(cfg.out)
        if not (run_dir / "encoder" / "config.json").is_file():
            result = run_pretrain(cfg, resume=resume and (run_dir / "checkpoints").is_dir())
            if result.interrupted:
                raise SnapsightError(f"pretraining was interrupted at step {result.step}; continue with "
                                     f"`snapsight build-default-model --work {work_dir} --resume`")
        encoder = str(run_dir)
        summary["pretrain_recipe"] = PRETRAIN_RECIPE
    summary["encoder"] = encoder
    summary["pretrain_seconds"] = round(time.time() - t0, 1)
    t1 = time.time()
    cfg = default_align_config(encoder, steps=align_steps, max_minutes=align_minutes, device=device, seed=seed)
    pairs, pair_info = default_pairs(seed=cfg.train.seed)
    result = run_alignment(cfg, work_dir / "align", pairs=pairs, resume=resume and (work_dir / "align").is_dir(),
                           extra_meta={"name": DEFAULT_MODEL_NAME, "pairs_info": pair_info})
    summary.update(align_recipe=ALIGN_RECIPE, align_seconds=round(time.time() - t1, 1), align_steps=result.step,
                   align_loss=result.loss, pairs=pair_info | {"emoji_held_out": len(pair_info["emoji_held_out"]),
                                                              "stamps_held_out": len(pair_info["stamps_held_out"])})
    if result.export_path is None or result.interrupted:
        raise SnapsightError(f"alignment was interrupted at step {result.step}; continue with "
                             f"`snapsight build-default-model --work {work_dir} --resume`")
    if out_dir is None:
        out_dir = ASSET_DIR if os.access(ASSET_DIR.parent, os.W_OK) else built_asset_dir()
    provenance = {"trained_on": "Fashion-MNIST train (60k, captions from TRAIN_WORDINGS and WordNet hyponyms x "
                                f"templates) + {pair_info['emoji_train']} Noto colour emoji with their Unicode names "
                                f"and WordNet synonyms + {pair_info['stamps_train']} Tux Paint stamps with their "
                                "descriptions and WordNet words",
                  "build": summary, "held_out_emoji": pair_info["emoji_held_out"],
                  "held_out_stamps": pair_info["stamps_held_out"]}
    write_default_asset(result.export_path, out_dir, provenance, text_encoder=cfg.text_encoder)
    t2 = time.time()
    ref = write_asset_reference(out_dir, work_dir, seed=cfg.train.seed)
    summary.update(asset_dir=str(out_dir), reference_seconds=round(time.time() - t2, 1),
                   reference_vectors=len(ref.features), unfamiliar_thresholds=dict(zip(ref.source_names, ref.thresholds.round(4).tolist())))
    summary["total_seconds"] = round(time.time() - t0, 1)
    return summary
