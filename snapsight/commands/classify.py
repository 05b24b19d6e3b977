"""``snapsight classify``: zero-shot (free-text labels) or probe-classifier predictions for image files."""
from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from ..errors import ImageError, SnapsightError

HELP = "classify images with free-text labels (CLIP zero-shot) or a trained probe classifier"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--labels", help='labels: "cat, sunset, pizza", one per line, or builtin:imagenet-1k / cifar-10 / '
                   "cifar-100 / fashion-mnist")
    p.add_argument("--labels-file", help="text file, one label per line (optional synonyms: 'cat: kitty | kitten')")
    p.add_argument("--model", help="open_clip name, hf-hub:ID, Hugging Face id, local weights/folder, or a probe "
                   "classifier folder (default: the project's default model)")
    p.add_argument("--pretrained", help="open_clip pretrained tag or weights file (with an open_clip --model name)")
    p.add_argument("--top-k", type=int, help="labels shown per image (default 5)")
    p.add_argument("--templates", help="prompt templates: none, default or clip80")
    p.add_argument("--expand", choices=("none", "wordnet"),
                   help="wordnet: add each label's WordNet synonyms and hypernym (sense chosen among the other "
                        "labels) to its prompts (needs apt-get install wordnet-base)")
    p.add_argument("--threshold", type=_threshold_arg,
                   help='cosine similarity below which the answer is "none of these", or auto: the one a trust '
                        "report chose for its target precision (with --report DIR, from snapsight evaluate)")
    p.add_argument("--report", help="trust report folder (snapsight evaluate --out) that --threshold auto reads")
    p.add_argument("--multi-label", action="store_true", default=None,
                   help="score each label independently (images with several things in them)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    p.add_argument("--batch-size", type=int, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="model weights precision (default auto)")
    p.add_argument("--config", help="YAML config (see configs/zeroshot.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--cache-dir", help='label-index cache folder ("" disables the cache)')
    p.add_argument("--examples", help="labeled example images added to zero-shot (Tip-Adapter cache): class folders, "
                   "CSV/JSONL of path,label, a saved Hugging Face dataset or fashion-mnist:train")
    p.add_argument("--shots", type=int, help="use at most this many examples per label (drawn with --seed)")
    p.add_argument("--seed", type=int, help="seed for drawing --shots (default 0)")
    p.add_argument("--alpha", type=float, help="weight of the examples against zero-shot (default: chosen by "
                   "leave-one-out on the examples)")
    p.add_argument("--beta", type=float, help="sharpness of the examples' similarity (default: leave-one-out)")
    p.add_argument("--finetune-steps", type=int, help="also fine-tune the cached examples for this many steps "
                   "(Tip-F; e.g. 100, seconds on a CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def collect_images(specs: list[str]) -> tuple[list[Path], list[str]]:
    """Expand files, folders (recursive) and glob patterns; returns ``(paths, problems)``."""
    from ..data.images import IMAGE_EXTENSIONS, iter_image_files

    paths: list[Path] = []
    problems: list[str] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = list(iter_image_files(path))
            if not found:
                problems.append(f"{spec}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths.extend(found)
        elif path.exists():
            paths.append(path)
        elif any(ch in spec for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                problems.append(f"{spec}: no file matches")
            paths.extend(files)
        else:
            problems.append(f"{spec}: file not found")
    seen: set[Path] = set()
    unique = [p for p in paths if not (p in seen or seen.add(p))]
    return unique, problems


def _batches(paths: list[Path], size: int, skipped: list[str]) -> Iterator[tuple[list[Path], list[Any]]]:
    """Open images batch by batch; unreadable ones are recorded in ``skipped`` and left out."""
    from ..data.images import open_image

    names: list[Path] = []
    images: list[Any] = []
    for path in paths:
        try:
            images.append(open_image(path))
            names.append(path)
        except ImageError as e:
            skipped.append(str(e))
            continue
        if len(images) == size:
            yield names, images
            names, images = [], []
    if images:
        yield names, images


def _load_config(args: argparse.Namespace):
    from ..config import load_config
    from ..ondevice.scoring import ZeroShotConfig  # torch-free: the export route must not import torch

    overrides: list[Any] = list(args.set)
    for flag, key in (("templates", "templates"), ("top_k", "top_k"), ("threshold", "threshold"),
                      ("multi_label", "multi_label"), ("batch_size", "batch_size"), ("precision", "precision"),
                      ("cache_dir", "cache_dir")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append((key, value))
    return load_config(ZeroShotConfig, args.config, overrides=overrides)


def _is_probe_classifier(model: str | None) -> bool:
    """True when ``model`` is a probe classifier folder (contract 2) or an exported one."""
    from ..artifacts.spec import detect

    if model is None:
        return False
    kind = detect(model)
    return kind == "classifier" or (kind == "export" and _export_task(model) == "classifier")


# Zero-shot settings that mean nothing to a trained classifier: (flag, config key or None).
_ZERO_SHOT_ONLY = (("--labels", None), ("--labels-file", None), ("--pretrained", None), ("--templates", "templates"),
                   ("--expand", None), ("--examples", None),
                   ("--threshold", "threshold"), ("--multi-label", "multi_label"),
                   (None, "multi_label_min_prob"))


def _refuse_zero_shot_options(args: argparse.Namespace, cfg: Any) -> None:
    """A probe classifier has its own classes, a softmax over them and no text side: refuse the zero-shot
    options (set by flag, --set or --config) instead of silently ignoring them."""
    from ..ondevice.scoring import ZeroShotConfig

    default = ZeroShotConfig()
    given = []
    for flag, key in _ZERO_SHOT_ONLY:
        dest = flag[2:].replace("-", "_") if flag else None
        if (dest and getattr(args, dest, None) not in (None, False)) or \
                (key and getattr(cfg, key) != getattr(default, key)):
            given.append(flag or key)
    if given:
        raise SnapsightError(
            f"--model {args.model} is a trained classifier with its own classes, so {', '.join(given)} "
            f"{'does' if len(given) == 1 else 'do'} not apply (they are for zero-shot CLIP models); drop "
            f"{'it' if len(given) == 1 else 'them'}")


def _threshold_arg(text: str) -> float | str:
    """``--threshold``: a number, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def _resolve_auto_threshold(args: argparse.Namespace) -> None:
    """``--threshold auto``: the threshold the trust report in ``--report DIR`` chose (``snapsight evaluate``)."""
    if args.threshold != "auto":
        if getattr(args, "report", None):
            raise SnapsightError("--report is read only with --threshold auto; drop it or add --threshold auto")
        return
    if not getattr(args, "report", None):
        raise SnapsightError("--threshold auto takes the threshold a trust report chose: add --report DIR "
                             "(written by `snapsight evaluate --out DIR`)")
    from ..evaluate.report import DEFAULT_MODEL_SPEC, read_threshold

    chosen = read_threshold(args.report)
    args.threshold = float(chosen["threshold"])
    print(f"note: threshold {args.threshold:.4f} from {args.report}: {100 * chosen['precision']:.1f}% precision at "
          f"{100 * chosen['coverage']:.1f}% coverage on {chosen['data']}", file=sys.stderr)
    if chosen.get("model") != (args.model or DEFAULT_MODEL_SPEC):
        print(f"warning: the report measured {chosen.get('model')}, not {args.model or DEFAULT_MODEL_SPEC}; a cosine "
              "threshold belongs to the model it was measured on", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    _resolve_auto_threshold(args)
    cfg = _load_config(args)
    if cfg.top_k < 1:
        raise SnapsightError(f"--top-k must be at least 1, got {cfg.top_k}")
    if cfg.batch_size < 1:
        raise SnapsightError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.text_batch_size < 1:  # range(0, n, 0) raised a ValueError traceback
        raise SnapsightError(f"text_batch_size must be at least 1, got {cfg.text_batch_size}")
    _check_numbers(cfg)
    _check_example_options(args, cfg)
    if _is_probe_classifier(args.model):  # before any image is looked at or the classifier is loaded
        _refuse_zero_shot_options(args, cfg)
    paths, problems = collect_images(args.images)
    if not paths:  # the error line names the problems; no warnings repeating them first
        raise SnapsightError("no images to classify: " + "; ".join(problems) if problems else "no images given")
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)

    if _is_probe_classifier(args.model):
        probe = _load_probe(args, cfg)
        predict = lambda imgs: _probe_results(probe, imgs, cfg.top_k)  # noqa: E731
    else:
        if not args.labels and not args.labels_file:
            raise SnapsightError('zero-shot classification needs labels: --labels "cat, sunset, pizza" or --labels-file FILE')
        from ..labels import load_label_set, resolve_templates

        label_set = load_label_set(args.labels, args.labels_file)
        if args.expand == "wordnet":
            from ..zeroshot.expand import expand_labels_wordnet

            label_set = expand_labels_wordnet(label_set)
        resolve_templates(cfg.templates)  # a bad template is one error line before the model loads
        if args.top_k is not None and args.top_k > len(label_set):
            raise SnapsightError(f"--top-k must be from 1 to the number of labels ({len(label_set)}), got {args.top_k}")
        if args.model is None:  # the same note the demo shows for its offline default model
            print(f"note: {DEFAULT_MODEL_NOTE}", file=sys.stderr)
        clf = _load_zero_shot(args, cfg)
        label_set, index = clf.label_index(label_set, cfg.templates)
        for note in clf.notes:
            print(f"note: {note}", file=sys.stderr)
        if args.examples:
            clf = _with_examples(args, cfg, clf, label_set, index)

        def predict(imgs):
            emb = clf.encode_images(imgs, batch_size=cfg.batch_size)
            return clf.annotate_familiarity(clf.classify_embeddings(emb, label_set, index), imgs, cfg.batch_size)

    skipped: list[str] = []
    rows: list[tuple[str, Any]] = []
    bar = tqdm(total=len(paths), unit="img", disable=True if args.no_progress else None, file=sys.stderr)
    for names, images in _batches(paths, cfg.batch_size, skipped):
        for name, result in zip(names, predict(images)):
            result.image = str(name)
            rows.append((str(name), result))
        bar.update(len(names))
    bar.update(len(paths) - bar.n)
    bar.close()
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    if not rows:
        raise SnapsightError(f"none of the {len(paths)} images could be read")
    explained = None
    if cfg.multi_label and not _is_probe_classifier(args.model):
        from ..ondevice.scoring import multi_label_explanation

        explained = multi_label_explanation(clf.logit_scale, clf.logit_bias, cfg.multi_label_min_prob, cfg.threshold)
        if args.format != "table":
            print(f"note: {explained}", file=sys.stderr)
    sys.stdout.write(format_results(rows, args.format, cfg.threshold, explained))
    if skipped:
        print(f"{len(skipped)} of {len(paths)} images skipped (unreadable)", file=sys.stderr)
    return 0


DEFAULT_MODEL_NOTE = ("the offline default model knows Fashion-MNIST clothes, emoji and Tux Paint stamps, and flags "
                      "images unlike them as unfamiliar; "
                      "for real photos use --model ViT-B-32 --pretrained laion2b_s34b_b79k")


def _check_numbers(cfg: Any) -> None:
    """Threshold and multi-label probability: finite numbers in their ranges (NaN compares false everywhere)."""
    import math

    if cfg.threshold is not None and not (math.isfinite(cfg.threshold) and -1.0 <= cfg.threshold <= 1.0):
        raise SnapsightError(f"--threshold is a cosine similarity: a number from -1 to 1, got {cfg.threshold}")
    if not (math.isfinite(cfg.multi_label_min_prob) and 0.0 <= cfg.multi_label_min_prob <= 1.0):
        raise SnapsightError(f"multi_label_min_prob must be a number from 0 to 1, got {cfg.multi_label_min_prob}")


def _export_task(model: str) -> str | None:
    """``zeroshot`` or ``classifier`` for an export folder (``snapsight export``), read from its manifest."""
    from ..artifacts.export import EXPORT_MANIFEST
    from ..artifacts.files import read_json

    return read_json(Path(model).expanduser() / EXPORT_MANIFEST).get("task")


def _refuse_torch_options(args: argparse.Namespace, cfg: Any) -> None:
    """An export runs on the CPU at the precision it was exported with (fp32 or int8)."""
    if args.precision not in (None, "auto") or cfg.precision != "auto":
        raise SnapsightError(f"--model {args.model} is an ONNX export, which runs at the precision it was exported "
                             "with (fp32 or int8); drop --precision or export again with --quantize int8")
    if args.device not in ("auto", "cpu"):
        raise SnapsightError(f"--model {args.model} is an ONNX export, which runs on the CPU; drop --device")


def _load_probe(args: argparse.Namespace, cfg: Any) -> Any:
    """The probe classifier: an exported one through onnxruntime (no torch), else the torch one."""
    from ..artifacts.spec import detect

    if detect(args.model) == "export":
        from ..ondevice import OnnxProbeClassifier

        _refuse_torch_options(args, cfg)
        return OnnxProbeClassifier.load(args.model)
    from ..probe.classifier import load_classifier

    return load_classifier(args.model, device=args.device)


def _load_zero_shot(args: argparse.Namespace, cfg: Any) -> Any:
    """The zero-shot classifier: an export through onnxruntime (no torch), else the torch one."""
    from ..artifacts.spec import detect

    if args.model is not None and detect(args.model) == "export":
        from ..ondevice import OnnxZeroShotClassifier

        _refuse_torch_options(args, cfg)
        if args.pretrained:
            raise SnapsightError(f"--model {args.model} is an ONNX export with its own weights; drop --pretrained")
        return OnnxZeroShotClassifier.load(args.model, config=cfg)
    from ..zeroshot.classify import ZeroShotClassifier

    return ZeroShotClassifier.load(args.model, args.pretrained, device=args.device, config=cfg)


_EXAMPLE_OPTIONS = ("shots", "seed", "alpha", "beta", "finetune_steps")


def _check_example_options(args: argparse.Namespace, cfg: Any) -> None:
    """The few-shot flags mean something only with --examples, and only for single-label classification."""
    given = [f"--{k.replace('_', '-')}" for k in _EXAMPLE_OPTIONS if getattr(args, k, None) is not None]
    if given and not getattr(args, "examples", None):
        raise SnapsightError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --examples SOURCE")
    if getattr(args, "examples", None) and cfg.multi_label:
        raise SnapsightError("--examples works with single-label classification; drop --multi-label or --examples")


def _with_examples(args: argparse.Namespace, cfg: Any, clf: Any, label_set: Any, index: Any) -> Any:
    """The zero-shot classifier with the examples' cache, fitted to the labels now (so that an example label that
    is not among them is one error before any image is classified), with a note on the weights chosen."""
    if not hasattr(clf, "with_examples"):
        raise SnapsightError(f"--examples needs a PyTorch CLIP model; --model {args.model} is an ONNX export")
    clf = clf.with_examples(args.examples, shots=args.shots, seed=args.seed or 0, alpha=args.alpha, beta=args.beta,
                            finetune_steps=args.finetune_steps or 0, progress=not args.no_progress)
    for note in clf.notes:
        print(f"note: {note}", file=sys.stderr)
    fit = clf.cache_adapter.fit(label_set, index, clf.logit_scale)
    how = {"leave-one-out": "chosen by leave-one-out", "given": "given",
           "fitted": "one example per label: alpha the smallest that gets every example right"}[fit.chosen_by]
    if fit.loo_accuracy is not None:
        how += (f": {100 * fit.loo_accuracy:.1f}% of the examples right with the cache, "
                f"{100 * fit.loo_zero_shot_accuracy:.1f}% zero-shot")
    tuned = f", keys fine-tuned for {fit.finetune_steps} steps" if fit.finetune_steps else ""
    print(f"note: {len(clf.cache_adapter)} example(s) in the cache{tuned}; alpha {fit.alpha:g}, beta {fit.beta:g} "
          f"({how})", file=sys.stderr)
    return clf


def _probe_results(probe, images, top_k: int):
    from ..ondevice.scoring import ZeroShotResult

    out = []
    for preds in probe.predict(images, top_k=top_k):
        out.append(ZeroShotResult(labels=[p[0] for p in preds], probs=[float(p[1]) for p in preds], scores=[]))
    return out


def format_results(rows: list[tuple[str, Any]], fmt: str, threshold: float | None = None,
                   explanation: str | None = None) -> str:
    """Render ``(image name, ZeroShotResult)`` rows as a text table, JSON or CSV (``explanation``: a line put
    above the table, e.g. what multi-label scores mean)."""
    if fmt == "json":
        return json.dumps([r.to_dict() | {"image": name} for name, r in rows], ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["image", "rank", "label", "prob", "cosine", "none_of_these", "present", "familiarity", "unfamiliar"])
        for name, r in rows:
            fam = ("", "") if r.familiarity is None else (f"{r.familiarity:.4f}", int(r.unfamiliar))
            for i, label in enumerate(r.labels):
                score = f"{r.scores[i]:.6f}" if i < len(r.scores) else ""
                present = "" if r.present is None else int(r.present[i])
                w.writerow([name, i + 1, label, f"{r.probs[i]:.6f}", score, int(r.none_of_these), present, *fam])
        return buf.getvalue()
    lines: list[str] = [f"({explanation})"] if explanation else []
    for name, r in rows:
        lines.append(name)
        if r.unfamiliar:
            lines.append(f"  (unfamiliar image: nothing like it was in the model's training data, familiarity "
                         f"{r.familiarity:+.3f}; the answer below is a guess)")
        width = max((len(label) for label in r.labels), default=0)
        for i, label in enumerate(r.labels):
            mark = ""
            if r.present is not None:
                mark = "  [present]" if r.present[i] else ""
            score = f"  cos {r.scores[i]:+.3f}" if i < len(r.scores) else ""
            lines.append(f"  {i + 1:>2}. {label:<{width}}  {100 * r.probs[i]:6.2f}%{score}{mark}")
        if r.none_of_these:
            if r.multi_label:
                lines.append("  -> none of these (no label is more likely than a generic photo)")
            else:
                best = r.scores[0] if r.scores else float("nan")
                lines.append(f"  -> none of these (best cosine {best:.3f} is below the threshold {threshold})")
    return "\n".join(lines) + "\n"
