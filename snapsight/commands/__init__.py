"""CLI subcommands, one module each (see :mod:`snapsight.cli`)."""
