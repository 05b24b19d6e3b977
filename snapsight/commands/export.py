"""``snapsight export``: a zero-shot model or a probe classifier as an ONNX folder that runs without torch."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "export a zero-shot model or a probe classifier to ONNX (fp32 or int8) for classification without PyTorch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="zero-shot CLIP model, as for classify (default: the project's default model)")
    which.add_argument("--classifier", help="folder of a classifier saved by `snapsight probe`")
    p.add_argument("--pretrained", help="open_clip pretrained tag or weights file (with an open_clip --model name)")
    p.add_argument("--labels", help="labels to prebuild the label index for (as for classify; optional)")
    p.add_argument("--labels-file", help="text file, one label per line (optional)")
    p.add_argument("--templates", default="default", help="prompt templates of the prebuilt index: none, default "
                   "or clip80 (default: default)")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format (onnx)")
    p.add_argument("--quantize", choices=("int8",), help="int8 graphs (about a quarter of the size)")
    p.add_argument("--int8-method", default="auto", choices=("auto", "dynamic", "static"),
                   help="image tower int8: dynamic (no data; MatMuls only), static QDQ (every op; needs "
                        "--calibration), or auto (default): static for a convolutional tower when --calibration "
                        "is given, else dynamic, as measured faster (docs/ondevice.md)")
    p.add_argument("--calibration", help="folder of typical images for --int8-method static")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--out", required=True, help="output folder (created; an older export there is replaced)")


def run(args: argparse.Namespace) -> int:
    from ..errors import SnapsightError
    from ..export import export_classifier, export_zeroshot

    if args.classifier:
        given = [f for f, v in (("--pretrained", args.pretrained), ("--labels", args.labels),
                                ("--labels-file", args.labels_file)) if v]
        if given:
            raise SnapsightError(f"--classifier exports a trained classifier with its own classes, so {', '.join(given)} "
                                 "does not apply")
        out = export_classifier(args.classifier, args.out, quantize=args.quantize, int8_method=args.int8_method,
                                calibration=args.calibration, opset=args.opset)
    else:
        out = export_zeroshot(args.model, args.out, pretrained=args.pretrained, labels=args.labels,
                              labels_file=args.labels_file, templates=args.templates, quantize=args.quantize,
                              int8_method=args.int8_method, calibration=args.calibration, opset=args.opset)
    manifest = json.loads((Path(out) / "snapsight_export.json").read_text(encoding="utf-8"))
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    print(f"wrote {out} ({manifest['precision']}, {size / 1e6:.1f} MB)")
    print("parity with the torch model: " + json.dumps(manifest.get("parity", {})))
    print(f"classify with: snapsight classify IMAGES --model {out}" + (' --labels "..."' if not args.classifier else ""))
    return 0
