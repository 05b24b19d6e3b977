"""``snapsight pretrain``: SimCLR self-supervised pretraining on unlabeled images."""
from __future__ import annotations

import argparse
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

HELP = "self-supervised SimCLR pretraining on a folder of unlabeled images (or a dataset) -> image encoder"

log = logging.getLogger("snapsight.pretrain")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML recipe (e.g. configs/simclr-fashion-mnist.yaml); default: chosen from the data")
    p.add_argument("--data", help="image folder, saved Hugging Face dataset folder, Fashion-MNIST folder, or 'fashion-mnist'")
    p.add_argument("--out", help="run directory (checkpoints, metrics, exported encoder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.lr=0.5 --set augment.blur=on (repeatable)")
    p.add_argument("--epochs", type=int, help="passes over the data (train.epochs)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (train.max_steps)")
    p.add_argument("--max-minutes", type=float, help="stop cleanly after this much wall time (train.max_minutes)")
    p.add_argument("--batch-size", type=int, help="global batch size (train.batch_size)")
    p.add_argument("--backbone", help="encoder name, e.g. small_cnn, cifar_resnet18, resnet50, timm:<name> (model.backbone)")
    p.add_argument("--image-size", type=int, help="side of the views the encoder sees (model.image_size)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")


def _flag_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    pairs = [("data.source", args.data), ("out", args.out), ("train.epochs", args.epochs),
             ("train.max_steps", args.max_steps), ("train.max_minutes", args.max_minutes),
             ("train.batch_size", args.batch_size), ("model.backbone", args.backbone),
             ("model.image_size", args.image_size), ("train.device", args.device)]
    return [(k, v) for k, v in pairs if v is not None]


def default_config(kind: str, image_size: int | None, on_cuda: bool) -> dict[str, Any]:
    """The recipe used without ``--config``: the Fashion-MNIST recipe for Fashion-MNIST, otherwise a small
    CNN at 64 px on a CPU (trains in minutes) or a ResNet-18 at 96 px on a GPU."""
    from dataclasses import asdict

    from ..ssl.augment import AugmentConfig
    from ..ssl.simclr import FASHION_MNIST_MEAN, FASHION_MNIST_STD

    if kind == "fashion-mnist":
        size = image_size or 28
        model = {"backbone": "small_cnn", "backbone_kwargs": {"widths": [16, 32, 64, 128], "pool": 2, "stages": 2},
                 "image_size": size,
                 "mean": list(FASHION_MNIST_MEAN), "std": list(FASHION_MNIST_STD), "temperature": 0.2}
        train = {"epochs": 30, "batch_size": 512, "warmup_epochs": 2, "precision": "bf16", "lr": 1.2,
                 "lr_scaling": "sqrt"}
    else:
        size = image_size or (96 if on_cuda else 64)
        model = {"backbone": "resnet18" if on_cuda and size >= 96 else "small_cnn", "image_size": size}
        train = {"epochs": 100, "batch_size": 256, "warmup_epochs": 10}
    augment = asdict(AugmentConfig.recommended(size, grayscale=kind == "fashion-mnist"))
    return {"model": model, "train": train, "augment": augment}


@contextmanager
def _undo_failed_start(out: Path, enabled: bool = True) -> Iterator[None]:
    """On an exception before training made progress (no new checkpoint, no metrics logged), put ``out``
    back as it was: remove it if this call created it, else remove only the entries this call added and
    restore ``config.yaml``. A failure after progress keeps everything (the metrics explain it)."""
    from ..train.loop import latest_checkpoint

    existed = out.is_dir()
    before = {p.name for p in out.iterdir()} if existed else set()
    config = out / "config.yaml"
    old_config = config.read_bytes() if config.is_file() else None
    old_ckpt = latest_checkpoint(out) if existed else None
    try:
        yield
    except BaseException:
        metrics = out / "metrics.jsonl"
        progressed = latest_checkpoint(out) != old_ckpt or (
            "metrics.jsonl" not in before and metrics.is_file() and metrics.stat().st_size > 0)
        if enabled and not progressed:
            if not existed:
                shutil.rmtree(out, ignore_errors=True)
            elif out.is_dir():
                for p in out.iterdir():
                    if p.name in before:
                        continue
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                if old_config is not None:
                    config.write_bytes(old_config)
        raise


def run(args: argparse.Namespace) -> int:
    import torch

    from ..config import load_config, read_yaml, save_config
    from ..data.sources import detect_kind, open_source
    from ..errors import SnapsightError
    from ..runtime import default_num_workers, seed_everything
    from ..ssl.simclr import PretrainConfig, SimCLRTask
    from ..train import distributed as du
    from ..train.loop import fit, setup_device
    from ..train.monitor import KNNMonitor

    overrides = _flag_overrides(args) + list(args.overrides)
    config_path = args.config
    if args.resume and not config_path and args.out and (Path(args.out) / "config.yaml").is_file():
        config_path = str(Path(args.out) / "config.yaml")  # resume with exactly the saved recipe
    # First pass: which data and image size, to choose defaults that suit them.
    first = load_config(PretrainConfig, config_path, overrides)
    if not first.data.source:
        raise SnapsightError("no data given: pass --data (an image folder, a saved Hugging Face dataset, "
                             "or 'fashion-mnist')")
    kind = detect_kind(first.data.source) if first.data.kind == "auto" else first.data.kind
    user_size = first.model.image_size if (config_path and "image_size" in read_yaml(config_path).get("model", {})) \
        or args.image_size or any(str(o).startswith("model.image_size") for o in args.overrides) else None
    on_cuda = first.train.device.startswith("cuda") or (first.train.device == "auto" and torch.cuda.is_available())
    base = default_config(kind, user_size, on_cuda)
    recipe = (read_yaml(config_path).get("model", {}) if config_path else {}).get("backbone", base["model"]["backbone"])
    if args.backbone and args.backbone != recipe and not any(
            str(o).startswith("model.backbone_kwargs") for o in args.overrides):
        # --backbone replaces the recipe's network: its arguments (e.g. small_cnn widths) do not carry over.
        base["model"].pop("backbone_kwargs", None)
        overrides.insert(len(overrides) - len(args.overrides), ("model.backbone_kwargs", {}))
    cfg = load_config(PretrainConfig, config_path, overrides, base=base)

    device = setup_device(cfg.train)
    rank, world = du.get_rank(), du.get_world_size()
    main = rank == 0
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise SnapsightError(f"--out {out} is a file; pass a folder for the run")
    workers = default_num_workers() if cfg.data.num_workers < 0 else cfg.data.num_workers
    source = open_source(cfg.data.source, kind=kind, split=cfg.data.split,
                         load_size=cfg.data.load_size or cfg.model.image_size, streaming=cfg.data.streaming,
                         cache_gb=cfg.data.cache_gb, num_workers=workers, image_column=cfg.data.image_column,
                         label_column=cfg.data.label_column, max_images=cfg.data.max_images,
                         progress=main and cfg.train.progress)
    if main:
        log.info("%s", source.describe())
    if source.num_images < cfg.train.batch_size:
        new = max(world * 2, source.num_images // world * world)
        if source.num_images < new:
            raise SnapsightError(f"{source.name}: only {source.num_images} usable image(s); SimCLR needs at least "
                                 f"{new} (two per process)")
        log.warning("batch size %d > %d images: using %d", cfg.train.batch_size, source.num_images, new)
        cfg.train.batch_size = new

    knn = None
    if cfg.data.knn not in (False, "off") and source.has_labels:
        bank = source.labeled_sample(cfg.data.knn_bank_size, seed=cfg.train.seed)
        if kind == "fashion-mnist":
            query = open_source(cfg.data.source, kind=kind, split="test").labeled_sample(cfg.data.knn_query_size,
                                                                                         seed=cfg.train.seed)
        else:
            query = source.labeled_sample(cfg.data.knn_query_size, seed=cfg.train.seed,
                                          exclude=cfg.data.knn_bank_size)
        if bank is not None and query is not None and len(query[0]):
            knn = KNNMonitor(*bank, *query, num_classes=len(source.class_names or []) or None)

    seed_everything(cfg.train.seed)
    task = SimCLRTask.from_config(cfg.model, cfg.augment, export_meta={"data": source.name, "run_dir": str(out)})
    loader = source.loader(cfg.train.batch_size, seed=cfg.train.seed, rank=rank, world_size=world,
                           num_workers=workers)
    from ..config import to_dict

    # OUT is touched only now that the data, model and loader exist, and a start that still fails (inside
    # fit: resume problems, a first step that cannot run) is undone, so no half-made run is left behind.
    with _undo_failed_start(out, enabled=main):
        if main:
            out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
        result = fit(task, loader, cfg.train, out, knn=knn, resume=args.resume, run_meta=to_dict(cfg))
    if len(source.skipped) and main:
        log.warning("%s", source.skipped.summary())
    du.cleanup_distributed()
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
