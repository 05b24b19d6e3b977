"""`snapsight demo` end to end: the real command in a child process prints its URL, serves /classify, stops on Ctrl+C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.demo.conftest import free_port, write_photo

REPO = Path(__file__).resolve().parents[2]


def test_demo_command_serves_and_stops(tiny_clip_dir, zeroshot_api, tmp_path):
    from gradio_client import Client, handle_file

    port = free_port()
    env = dict(os.environ, SNAPSIGHT_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "snapsight", "demo", "--model", f"local-dir:{tiny_clip_dir}", "--port", str(port),
         "--device", "cpu"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url, lines, deadline = None, [], time.time() + 240
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "running at " in line:
                url = line.split("running at ", 1)[1].split()[0]
        assert url == f"http://127.0.0.1:{port}/", "".join(lines)
        result = Client(url, verbose=False).predict(
            handle_file(str(write_photo(tmp_path / "x.png"))), "cat, dog", api_name="/classify")
        assert {c["label"] for c in result["confidences"]} == {"cat", "dog"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_missing_default_model_is_one_clear_line(capsys, monkeypatch, tmp_path):
    """A machine without the default weights (no package asset, no user build) gets one clear line."""
    from snapsight.models import default as default_asset

    monkeypatch.delenv("SNAPSIGHT_DEFAULT_MODEL_ASSET", raising=False)
    monkeypatch.setattr(default_asset, "ASSET_DIR", tmp_path / "no-asset")
    monkeypatch.setattr(default_asset, "built_asset_dir", lambda: tmp_path / "no-build")
    from snapsight.cli import main

    assert main(["demo", "--port", str(free_port())]) == 2  # fails while loading, before serving anything
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "build-default-model" in err[0]


@pytest.mark.parametrize("argv, message", [
    (["--port", "99999"], "--port must be between"),  # was gradio's OverflowError traceback
    (["--max-file-size", "huge"], "--max-file-size takes a number"),  # was a ValueError traceback
    (["--max-batch-size", "0"], "--max-batch-size must be at least 1"),  # was the batcher's ValueError
])
def test_bad_serving_flags_are_one_clear_line(capsys, argv, message):
    from snapsight.cli import main

    assert main(["demo", *argv]) == 2  # refused before any model loads
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_port_in_use_is_one_clear_line(capsys, tiny_clip_dir):
    import socket

    from snapsight.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["demo", "--model", f"local-dir:{tiny_clip_dir}", "--port", str(port)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "pick another --port" in err[0]
