"""``snapsight evaluate``: a trust report of a zero-shot model or a probe classifier on labeled data."""
from __future__ import annotations

import argparse
import sys

HELP = ("how far to trust a classifier: accuracy per class and group, calibration, corruptions, adversarial and "
        "typographic attacks, cost, heatmap faithfulness (report.json + report.html)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..evaluate.checks import CHECKS, IMAGE_GROUPS  # torch-free: building the CLI's parser must not load torch

    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="zero-shot CLIP model (any classify --model form; default: the offline "
                                       "default model)")
    which.add_argument("--classifier", help="probe classifier folder (snapsight probe --out)")
    p.add_argument("--pretrained", help="open_clip pretrained tag or weights file (with an open_clip --model name)")
    p.add_argument("--labels", help="zero-shot labels (default: the data's class names); every class of the data "
                                    "must be among them")
    p.add_argument("--templates", help="prompt templates: none, default or clip80 (zero-shot)")
    p.add_argument("--data", required=True, help="labeled data: class folders, .csv/.jsonl (path,label,...), "
                                                  "a Hugging Face save_to_disk folder[:split], fashion-mnist:test")
    p.add_argument("--group", help="audit accuracy per group: a column of the data (CSV/JSONL/HF), or "
                                   f"{', '.join(IMAGE_GROUPS)} (images cut into --group-bins equal-count bins)")
    p.add_argument("--group-bins", type=int, default=3, help="bins for image:brightness (default 3)")
    p.add_argument("--checks", default="all", help=f"comma-separated subset of {','.join(CHECKS)} (default all)")
    p.add_argument("--limit", type=int, help="evaluate a seeded random subset of this many images")
    p.add_argument("--attack-limit", type=int, help="attack only this many of the images (default all)")
    p.add_argument("--saliency-limit", type=int, default=100, help="images for the heatmap check (default 100)")
    p.add_argument("--target-precision", type=float, default=0.9,
                   help="the 'none of these' threshold is chosen for this precision (default 0.9)")
    p.add_argument("--eps", default="1,2,4", help="attack radii in 1/255 pixel units (default 1,2,4)")
    p.add_argument("--pgd-steps", type=int, default=10, help="PGD iterations (default 10)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="weights precision (default fp32: a 1/255 perturbation is below bf16's resolution)")
    p.add_argument("--seed", type=int, default=0, help="seed for the subset, noise and random baselines")
    p.add_argument("--out", required=True, help="report folder (report.json, report.html, threshold.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _config(args: argparse.Namespace):
    from ..errors import SnapsightError
    from ..evaluate.checks import CHECKS
    from ..evaluate.run import EvaluateConfig

    checks = CHECKS if args.checks.strip() == "all" else tuple(c.strip() for c in args.checks.split(",") if c.strip())
    try:
        eps = tuple(float(e) / 255.0 for e in args.eps.split(",") if e.strip())
    except ValueError as e:
        raise SnapsightError(f"--eps takes comma-separated numbers of 1/255 steps, e.g. 1,2,4; got {args.eps!r}") from e
    for flag in ("batch_size", "pgd_steps", "saliency_limit"):
        if getattr(args, flag) < 1:
            raise SnapsightError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.attack_limit is not None and args.attack_limit < 1:
        raise SnapsightError(f"--attack-limit must be at least 1, got {args.attack_limit}")
    return EvaluateConfig(checks=checks, limit=args.limit, group=args.group, group_bins=args.group_bins,
                          target_precision=args.target_precision, eps=eps, pgd_steps=args.pgd_steps,
                          attack_limit=args.attack_limit, saliency_limit=args.saliency_limit,
                          batch_size=args.batch_size, seed=args.seed)


def _model(args: argparse.Namespace, class_names: list[str]):
    from ..errors import SnapsightError
    from ..evaluate.model import from_probe, from_zero_shot

    if args.classifier:
        if args.labels or args.templates or args.pretrained:
            raise SnapsightError("--labels, --templates and --pretrained are for zero-shot models; a probe classifier "
                                 "has its own classes")
        from ..probe.classifier import load_classifier

        return from_probe(load_classifier(args.classifier, device=args.device), args.classifier)
    from ..evaluate.report import DEFAULT_MODEL_SPEC
    from ..zeroshot.classify import ZeroShotClassifier

    clf = ZeroShotClassifier.load(args.model, args.pretrained, device=args.device, precision=args.precision)
    return from_zero_shot(clf, args.labels or class_names, args.templates, name=args.model or DEFAULT_MODEL_SPEC)


def run(args: argparse.Namespace) -> int:
    from ..data.labeled import load_labeled
    from ..evaluate.report import summary_lines, write_report
    from ..evaluate.run import check_group, evaluate

    cfg = _config(args)
    data = load_labeled(args.data)
    check_group(data, cfg.group)  # before the model loads
    model = _model(args, list(data.class_names))
    report = evaluate(model, data, cfg, progress=not args.no_progress)
    out = write_report(report, args.out)
    for skipped in report["data"]["skipped"]:
        print(f"skipped {skipped}", file=sys.stderr)
    print("\n".join(summary_lines(report)))
    print(f"report: {out / 'report.html'}")
    return 0
