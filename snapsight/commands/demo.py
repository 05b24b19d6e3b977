"""``snapsight demo``: serve the web demo (zero-shot + classifier tabs) on this machine."""
from __future__ import annotations

import argparse
import re

HELP = "start the web demo (upload images, type labels); local only unless --host says otherwise"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="zero-shot model: open_clip name (ViT-B-32), local-dir:PATH, a folder, or an ONNX export "
                        "folder (snapsight export; runs without torch, no heatmap); "
                        "default: the offline default model (snapsight build-default-model)")
    p.add_argument("--pretrained", default=None, help="open_clip pretrained tag for --model, e.g. laion2b_s34b_b79k")
    p.add_argument("--classifier", default=None, help="folder of a classifier saved by `snapsight probe` (Classifier tab)")
    p.add_argument("--index", default=None,
                   help="image index written by `snapsight index` (Search tab; its model is loaded too)")
    p.add_argument("--report", default=None,
                   help="trust report folder written by `snapsight evaluate --out` (Report tab)")
    p.add_argument("--threshold", default=None,
                   help="where the 'none of these' slider starts: a cosine, or auto: the one --report chose")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to your network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link (off by default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--max-file-size", default="10mb", help="largest upload accepted, e.g. 10mb (default 10mb)")
    p.add_argument("--max-pixels", type=int, default=None, help="largest image in pixels (default 64,000,000)")
    p.add_argument("--max-batch-size", type=int, default=32,
                   help="concurrent classify requests merged into one forward pass, at most (default 32)")
    p.add_argument("--queue-size", type=int, default=256, help="waiting requests beyond this are refused (default 256)")
    limits = p.add_argument_group("limits per request (see README, 'Limits')")
    limits.add_argument("--max-labels", type=int, default=1000, help="labels in one request (default 1000)")
    limits.add_argument("--max-prompts", type=int, default=8000,
                        help="labels x templates embedded for one request (default 8000: builtin:imagenet-1k with the "
                             "default templates; 1.5-2.5 min of the default model's text tower on 2 cores)")
    limits.add_argument("--label-chunk-ms", type=float, default=50.0,
                        help="a new label set is embedded in chunks of about this long, taking turns with image "
                             "batches (default 50)")
    limits.add_argument("--max-decodes", type=int, default=1,
                        help="images over 4 MP decoded at once; smaller ones never wait (default 1)")
    limits.add_argument("--max-upload-total", default="100mb",
                        help="all files of one upload request together, e.g. 100mb (default 100mb)")
    limits.add_argument("--upload-max-age", type=int, default=900,
                        help="seconds an uploaded file is kept before it is deleted (default 900)")


def _check_args(args: argparse.Namespace) -> None:
    """User mistakes that gradio would otherwise report as a traceback, after the model has loaded."""
    from ..errors import SnapsightError

    if not 1 <= args.port <= 65535:
        raise SnapsightError(f"--port must be between 1 and 65535, got {args.port}")
    for flag in ("max_batch_size", "queue_size", "max_labels", "max_prompts", "max_decodes", "upload_max_age"):
        if getattr(args, flag) < 1:
            raise SnapsightError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise SnapsightError(f"--max-pixels must be at least 1, got {args.max_pixels}")
    for flag in ("max_file_size", "max_upload_total"):
        value = getattr(args, flag)
        if not re.fullmatch(r"\s*\d+\s*(b|kb|mb|gb|tb)\s*", str(value), flags=re.IGNORECASE):
            raise SnapsightError(f"--{flag.replace('_', '-')} takes a number and a unit (b, kb, mb, gb, tb), "
                                 f"e.g. 10mb; got '{value}'")
    if not (args.label_chunk_ms > 0 and args.label_chunk_ms < 60_000):
        raise SnapsightError(f"--label-chunk-ms must be a number of milliseconds above 0, got {args.label_chunk_ms}")


def _start_threshold(args: argparse.Namespace) -> float | None:
    """``--threshold``: a number from 0 to 1 (the slider's range), or ``auto``: the threshold of ``--report``."""
    from ..errors import SnapsightError

    if args.threshold is None:
        return None
    if str(args.threshold).strip().lower() == "auto":
        if not args.report:
            raise SnapsightError("--threshold auto takes the threshold a trust report chose: add --report DIR")
        from ..evaluate.report import read_threshold

        value = float(read_threshold(args.report)["threshold"])
    else:
        try:
            value = float(args.threshold)
        except ValueError:
            raise SnapsightError(f"--threshold takes a number from 0 to 1 or auto, got {args.threshold!r}") from None
    if not 0.0 <= value <= 1.0:
        raise SnapsightError(f"the demo's threshold slider runs from 0 to 1; {value:.4f} is outside it")
    return value


def run(args: argparse.Namespace) -> int:
    from ..demo.app import DemoConfig, build_demo
    from ..errors import SnapsightError

    _check_args(args)

    cfg = DemoConfig(
        model=args.model, pretrained=args.pretrained, classifier=args.classifier, index=args.index, device=args.device,
        host=args.host, port=args.port, share=args.share, max_file_size=args.max_file_size,
        max_batch_size=args.max_batch_size, queue_size=args.queue_size, max_labels=args.max_labels,
        max_prompts=args.max_prompts, label_chunk_ms=args.label_chunk_ms, max_decodes=args.max_decodes,
        max_upload_total=args.max_upload_total, upload_max_age_s=args.upload_max_age,
    )
    if args.max_pixels:
        cfg.max_pixels = args.max_pixels
    cfg.report, cfg.threshold = args.report, _start_threshold(args)
    which = "the offline default model" if cfg.model is None else cfg.model + (f" ({cfg.pretrained})" if cfg.pretrained else "")
    print(f"loading {which} ...", flush=True)
    app, demo = build_demo(cfg)  # loads the start model: a missing one fails here with its own message
    try:
        demo, url = app.launch(demo, block=False, quiet=True)
    except OSError as e:  # gradio: the port is taken ("Cannot find empty port ...")
        reason = str(e).splitlines()[0].split(". ")[0].rstrip(".") if str(e) else type(e).__name__
        raise SnapsightError(f"cannot serve on {cfg.host}:{cfg.port} ({reason}); pick another --port or --host") from e
    print(f"snapsight demo running at {url}  (Ctrl+C to stop)", flush=True)
    if cfg.model is None:
        from .classify import DEFAULT_MODEL_NOTE

        print(f"note: {DEFAULT_MODEL_NOTE}", flush=True)
    try:
        demo.block_thread()
    finally:
        demo.close()
    return 0
