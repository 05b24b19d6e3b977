"""``snapsight probe``: train a classifier on a pretrained encoder with a few labels (linear, kNN, fine-tune)."""
from __future__ import annotations

import argparse
from pathlib import Path

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
    pretrained tag, or a path that is not an encoder. Reads at most small JSON files (no weights, no data),
    so a typo is reported before the labeled data is loaded and decoded."""
    from ..errors import SnapsightError

    text = str(spec)
    if text.startswith("random:"):
        from ..backbones import list_backbones

        name, _, size = text[len("random:"):].partition("@")
        if size and not (size.isdigit() and int(size) > 0):
            raise SnapsightError(f"--encoder {text}: the image size after '@' must be a positive integer")
        if name.startswith("timm:"):
            import timm

            if name[len("timm:"):] not in timm.list_models():
                raise SnapsightError(f"--encoder {text}: unknown timm model '{name[len('timm:'):]}' "
                                     "(see timm.list_models())")
        elif name not in list_backbones():
            raise SnapsightError(f"--encoder {text}: unknown backbone '{name}'; known: {', '.join(list_backbones())}")
        return
    from ..models.encoders import _parse_clip_spec, _refuse_wrong_kind

    if text.startswith("clip:"):
        _parse_clip_spec(text)  # only clip:default is known
        from ..models.default import default_model_dir

        default_model_dir()  # raises with how to build the weights when they are missing
        return
    if text.startswith("local-dir:"):
        folder = Path(text[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise SnapsightError(f"--encoder {text}: {folder} is not an open_clip folder (open_clip_config.json "
                                 "missing)")
        return
    if text.startswith("openclip:"):
        _check_openclip_spec(text)
        return
    path = Path(text).expanduser()
    if any((folder / "open_clip_config.json").is_file() for folder in (path, path / "model")):
        return  # an open_clip folder or a `snapsight align` run
    _refuse_wrong_kind(path)  # missing, a bare file, a classifier: the loader's own sentences
    from ..artifacts.encoder import find_encoder_dir

    find_encoder_dir(path)  # one sentence when the folder holds no snapsight encoder


def _check_openclip_spec(text: str) -> None:
    """``openclip:NAME[:PRETRAINED]``: a known open_clip model and, when given, a known tag or an existing file."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    from ..errors import SnapsightError
    from ..models.encoders import _parse_clip_spec

    name, pretrained = _parse_clip_spec(text)
    if Path(name).expanduser().exists():
        return  # a config file or folder: resolved by the loader
    if name.replace("/", "-") not in open_clip.list_models() and name.count("/") == 1 \
            and not name.startswith((".", "/", "~")):
        return  # a Hugging Face Hub id: only the loader can tell whether it is available
    name = name.replace("/", "-")
    if name not in open_clip.list_models():
        raise SnapsightError(f"--encoder {text}: '{name}' is not an open_clip model name; see "
                             "`python -c \"import open_clip; print(open_clip.list_models())\"`")
    if not pretrained:
        tags = list_pretrained_tags_by_model(name)
        raise SnapsightError(f"--encoder {text}: open_clip model '{name}' needs weights: "
                             f"openclip:{name}:<tag> ({', '.join(tags[:6]) or 'no tag known'}) or a weights file")
    if not Path(pretrained).expanduser().is_file() and not get_pretrained_cfg(name, pretrained):
        tags = list_pretrained_tags_by_model(name)
        known = ", ".join(tags[:8]) + (", ..." if len(tags) > 8 else "") if tags else "none known"
        raise SnapsightError(f"--encoder {text}: '{pretrained}' is neither a pretrained tag of {name} ({known}) "
                             "nor a file")


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
