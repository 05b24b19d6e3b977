"""Session-wide set-up shared by every test folder."""
from __future__ import annotations

import os
import shutil
import tempfile

_made: list[str] = []


def pytest_configure(config):
    # Many tests give snapsight a cache of their own; the joined all-mpnet-base-v2 (440 MB, the default model's
    # text tower) is shared by all of them, and by the CLI subprocesses they start, through this variable.
    if not os.environ.get("SNAPSIGHT_TEXT_ENCODERS"):
        _made.append(tempfile.mkdtemp(prefix="snapsight-text-encoders-"))
        os.environ["SNAPSIGHT_TEXT_ENCODERS"] = _made[-1]


def pytest_unconfigure(config):
    for d in _made:
        shutil.rmtree(d, ignore_errors=True)
