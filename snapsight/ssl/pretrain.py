"""SimCLR pretraining as two library calls: resolve the recipe, then run it.

    cfg = load_pretrain_config(data="~/photos", overrides=["train.epochs=5"])
    result = run_pretrain(cfg)   # -> FitResult; cfg.out holds config.yaml, checkpoints/, metrics, encoder/

The recipes are the packaged YAML files (``snapsight/recipes/simclr-*.yaml``, linked from ``configs/``); no
recipe values live in code. Without a named recipe the one that suits the data is used:

- ``simclr-fashion-mnist``: Fashion-MNIST, a narrow small CNN at the native 28 px;
- ``simclr-folder``: any other data on a CPU (or views under 96 px), a small CNN at 64 px;
- ``simclr-folder-gpu``: any other data on a GPU, a ResNet-18 at 96 px.

A named recipe is read over that same data-suited recipe, so a short YAML file may change just a few keys;
the packaged recipes spell out every value they depend on. The one computed value is the augmentation:
when the image size differs from the base recipe's, augmentation the named recipe does not spell is the
one :meth:`AugmentConfig.recommended` gives for the new size.
"""
from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from ..artifacts.encoder import ENCODER_SUBDIR
from ..artifacts.files import read_json
from ..config import load_config, parse_override, read_yaml, save_config, to_dict
from ..data.sources import detect_kind, open_source
from ..errors import SnapsightError
from ..runtime import default_num_workers, seed_everything
from ..train import distributed as du
from ..train.callbacks import Callback
from ..train.checkpoints import latest_checkpoint
from ..train.loop import FitResult, fit, setup_device
from ..train.monitor import KNNMonitor
from .augment import AugmentConfig
from .simclr import PretrainConfig, SimCLRTask

log = logging.getLogger("snapsight.pretrain")

# A ResNet-18 pays off on a GPU from 96 px views up; smaller views keep the small CNN of the CPU recipe.
GPU_RECIPE_MIN_SIZE = 96

# What fixes the length of the schedule: a completed run resumed with these unchanged has nothing left to do.
SCHEDULE_KEYS = (("train", "epochs"), ("train", "max_steps"), ("train", "steps_per_epoch"),
                 ("train", "batch_size"), ("data", "source"), ("data", "split"), ("data", "max_images"))


def default_recipe(kind: str, on_cuda: bool, image_size: int | None = None) -> str:
    """The packaged recipe used without ``--config``: for data of ``kind`` (``detect_kind``), on a GPU or not,
    at the image size the user asked for (None: the recipe's own)."""
    if kind == "fashion-mnist":
        return "simclr-fashion-mnist"
    if on_cuda and (image_size is None or image_size >= GPU_RECIPE_MIN_SIZE):
        return "simclr-folder-gpu"
    return "simclr-folder"


def load_pretrain_config(
    config: str | Path | None = None,
    overrides: Iterable[str | tuple[str, Any]] = (),
    data: str | Path | None = None,
) -> PretrainConfig:
    """The resolved SimCLR config: the recipe that suits the data, the named recipe ``config`` (a packaged
    name such as ``"simclr-folder"`` or a YAML path) over it, then ``overrides`` (``"key=value"`` or
    ``(key, value)``). ``data`` is a shorthand for the override ``data.source``.

    Raises :class:`~snapsight.errors.SnapsightError` when no data is given or the data path does not exist,
    :class:`~snapsight.errors.ConfigError` for an unknown key or a value of the wrong type or range.
    """
    pairs = [parse_override(o) if isinstance(o, str) else tuple(o) for o in overrides]
    if data is not None:
        pairs.insert(0, ("data.source", str(data)))
    first = load_config(PretrainConfig, config, pairs)  # which data, device and image size
    if not first.data.source:
        raise SnapsightError("no data given: pass --data (an image folder, a saved Hugging Face dataset, "
                             "or 'fashion-mnist')")
    kind = detect_kind(first.data.source) if first.data.kind == "auto" else first.data.kind
    named = read_yaml(config) if config is not None else {}
    keys = {key for key, _ in pairs}
    size_given = "model.image_size" in keys or "image_size" in named.get("model", {})
    device = first.train.device
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    size = first.model.image_size
    base = read_yaml(default_recipe(kind, on_cuda, size if size_given else None))
    if size != base["model"]["image_size"] and size_given:
        base["augment"] = asdict(AugmentConfig.recommended(size, grayscale=kind == "fashion-mnist"))
    # A backbone's arguments (e.g. small_cnn widths) belong to it: a layer that names another backbone does not
    # inherit the arguments of the one below.
    recipe_backbone = named.get("model", {}).get("backbone", base["model"]["backbone"])
    if recipe_backbone != base["model"]["backbone"]:
        base["model"].pop("backbone_kwargs", None)
    chosen = [value for key, value in pairs if key == "model.backbone"]
    if chosen and chosen[-1] != recipe_backbone and not any(k.startswith("model.backbone_kwargs") for k in keys):
        pairs.append(("model.backbone_kwargs", {}))
    return load_config(PretrainConfig, config, pairs, base=base)


def completed_run(cfg: PretrainConfig) -> FitResult | None:
    """The result of the run in ``cfg.out`` when it already completed the schedule ``cfg`` asks for (its
    ``train_state.json`` says ``completed`` and the saved config has the same schedule), else None."""
    out = Path(cfg.out)
    state_path, saved_path = out / "train_state.json", out / "config.yaml"
    if not (state_path.is_file() and saved_path.is_file()):
        return None
    state, saved, now = read_json(state_path), read_yaml(saved_path), to_dict(cfg)
    if state.get("status") != "completed":
        return None
    if any(saved.get(section, {}).get(key) != now[section][key] for section, key in SCHEDULE_KEYS):
        return None
    encoder = out / ENCODER_SUBDIR
    return FitResult(step=int(state["step"]), epoch=int(state.get("epoch", 0)), interrupted=False, out_dir=out,
                     loss=state.get("loss"), knn_acc=state.get("knn_acc"),
                     train_seconds=float(state.get("train_seconds", 0.0)),
                     export_path=encoder if encoder.is_dir() else None)


def run_pretrain(cfg: PretrainConfig, resume: bool = False, callbacks: Sequence[Callback] = ()) -> FitResult:
    """Train SimCLR as ``cfg`` says, into ``cfg.out``: open the data, build the kNN monitor, the task and the
    loader, then :func:`~snapsight.train.loop.fit`. With ``resume`` the run continues from its last
    checkpoint; a run that already completed this schedule is returned as it is (see :func:`completed_run`).
    ``callbacks`` go to ``fit`` (e.g. :class:`~snapsight.train.callbacks.Snapshots` for a benchmark).

    A start that fails before training made progress leaves ``cfg.out`` as it was. Under ``torchrun`` every
    process calls this; the process group is closed on return.
    """
    if resume and (done := completed_run(cfg)) is not None:
        return done
    kind = detect_kind(cfg.data.source) if cfg.data.kind == "auto" else cfg.data.kind
    setup_device(cfg.train)
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
    if cfg.data.knn_enabled and source.has_labels:
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

    # OUT is touched only now that the data, model and loader exist, and a start that still fails (inside
    # fit: resume problems, a first step that cannot run) is undone, so no half-made run is left behind.
    with undo_failed_start(out, enabled=main):
        if main:
            out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
        result = fit(task, loader, cfg.train, out, knn=knn, resume=resume, run_meta=to_dict(cfg),
                     callbacks=list(callbacks))
    if len(source.skipped) and main:
        log.warning("%s", source.skipped.summary())
    du.cleanup_distributed()
    return result


@contextmanager
def undo_failed_start(out: Path, enabled: bool = True) -> Iterator[None]:
    """On an exception before training made progress (no new checkpoint, no metrics logged), put ``out``
    back as it was: remove it if this call created it, else remove only the entries this call added and
    restore ``config.yaml``. A failure after progress keeps everything (the metrics explain it)."""
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
