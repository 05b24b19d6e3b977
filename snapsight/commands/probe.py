"""``snapsight probe``: train a classifier on a pretrained encoder with a few labels (linear, kNN, fine-tune)."""
from __future__ import annotations

import argparse

HELP = "train a classifier on a pretrained encoder (linear probe, kNN or fine-tune) and report per-class results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (e.g. configs/probe.yaml); flags and --set override it")
    p.add_argument("--encoder", help="pretrain run dir, encoder dir, random:<backbone>@<size>, "
                                      "openclip:<model>[:<pretrained>], local-dir:<open_clip dir>")
    p.add_argument("--train", help="labeled data: class-per-folder dir, .csv/.jsonl of path,label, "
                                    "HF save_to_disk dir[:split], fashion-mnist:train")
    p.add_argument("--val", help="labeled validation data (model selection); default: hold out 10%% of --train")
    p.add_argument("--test", help="optional labeled test data, reported separately")
    p.add_argument("--mode", choices=["linear", "finetune", "knn"], help="linear probe (default), end-to-end fine-tune, or kNN")
    p.add_argument("--labels-fraction", type=float, help="use this share of the training labels (e.g. 0.01), stratified per class")
    p.add_argument("--out", help="output classifier directory (default runs/probe)")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--seed", type=int, help="seed for subsets, splits and training")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set linear.max_iter=100 --set finetune.epochs=5")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def check_encoder_spec(spec: str) -> None:
    """Fail fast, with one sentence, on an ``--encoder`` that cannot load: an unknown backbone, CLIP model or
    pretrained tag, missing default-model weights, or a path that is not an encoder. Reads at most small JSON
    files and open_clip's name registry (no weights, no data), so a typo is reported before the labeled data is
    loaded and decoded. A Hub id is left to the loader: only a download can tell whether it exists."""
    from ..artifacts.spec import parse_model_spec

    parsed = parse_model_spec(spec, role="encoder")
    if parsed.kind == "random":
        from ..backbones import check_backbone_name

        check_backbone_name(parsed.name)
    elif parsed.kind == "default":
        from ..models.default import default_model_dir

        default_model_dir()  # raises with how to build the weights when they are missing


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..probe.run import ProbeConfig, run_probe

    flags = [("encoder", args.encoder), ("train", args.train), ("val", args.val), ("test", args.test),
             ("mode", args.mode), ("labels_fraction", args.labels_fraction), ("out", args.out),
             ("device", args.device), ("seed", args.seed)]
    overrides = [(k, v) for k, v in flags if v is not None]
    if args.no_cache:
        overrides.append(("use_cache", False))
    cfg = load_config(ProbeConfig, args.config, overrides=overrides + list(args.overrides))
    if cfg.encoder:  # before run_probe loads the data (a missing --encoder is reported there)
        check_encoder_spec(cfg.encoder)
    run_probe(cfg, progress=not args.quiet)
    return 0
