"""``snapsight`` command line: thin argparse subcommands that parse, build a config and call the library.

Each subcommand lives in ``snapsight/commands/<name>.py`` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Errors meant for the user
(:class:`~snapsight.errors.SnapsightError`) print as one ``error:`` line and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import SnapsightError

# subcommand name -> module under snapsight.commands
COMMANDS = {
    "pretrain": "pretrain",
    "probe": "probe",
    "classify": "classify",
    "align": "align",
    "build-default-model": "build_default_model",
    "demo": "demo",
    "export": "export",
    "evaluate": "evaluate",
    "index": "index",
    "search": "search",
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="snapsight", description="Image classification: pretrain, probe, zero-shot, demo.")
    parser.add_argument("--version", action="version", version=f"snapsight {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"snapsight.commands.{module_name}")
        except ModuleNotFoundError as e:
            if e.name == f"snapsight.commands.{module_name}":
                continue  # not built yet
            raise
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Our own progress messages at INFO; third-party libraries (open_clip, httpx, ...) only from WARNING
    # unless --verbose.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("snapsight").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except SnapsightError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
