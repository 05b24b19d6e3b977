"""Building under DDP: two CPU processes (gloo), each embedding its shard, give the index one process builds."""
from __future__ import annotations

import json
import os
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from tests.search.conftest import IDENTITY, PixelEmbedder

pytestmark = pytest.mark.slow


def _worker(rank: int, world: int, port: int, photos: str, out: str, clip_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from snapsight.search import build_index, index_folders
    from snapsight.train import distributed as du

    # A short timeout: a collective that only one process enters fails the test instead of hanging it.
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    embed = PixelEmbedder()
    report = build_index([photos], Path(out) / "pixels", embed, IDENTITY, chunk_size=2, progress=False)
    clip = index_folders([photos], Path(out) / "clip", model=clip_dir, precision="fp32", chunk_size=2, batch_size=3,
                         progress=False)
    Path(out, f"rank{rank}.json").write_text(json.dumps(
        {"seen": embed.seen, "embedded": report.embedded, "total": report.total, "clip_embedded": clip.embedded}))
    du.cleanup_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(photos, tmp_path, tiny_open_clip_dir):
    from snapsight.search import StoredIndex, build_index, index_folders

    ddp = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), str(photos), str(ddp), str(tiny_open_clip_dir)), nprocs=2, join=True)
    ranks = [json.loads((ddp / f"rank{r}.json").read_text()) for r in range(2)]
    # each process embedded its own half: together every image once
    assert [r["seen"] for r in ranks] == [5, 5]
    assert all(r["embedded"] == 10 and r["clip_embedded"] == 10 for r in ranks)
    assert ranks[0]["total"] == 10

    build_index([photos], tmp_path / "one", PixelEmbedder(), IDENTITY, progress=False)
    a, b = StoredIndex.load(ddp / "pixels"), StoredIndex.load(tmp_path / "one")
    assert a.files == b.files and a.manifest == b.manifest
    np.testing.assert_array_equal(a.vectors, b.vectors)

    index_folders([photos], tmp_path / "clip-one", model=str(tiny_open_clip_dir), precision="fp32", progress=False)
    a, b = StoredIndex.load(ddp / "clip"), StoredIndex.load(tmp_path / "clip-one")
    assert a.files == b.files and a.model == b.model and len(a.files) == 10
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)


def test_torchrun_index_command_equals_one_process(photos, tmp_path, tiny_open_clip_dir):
    """`torchrun --nproc_per_node 2 -m snapsight index ...`: the command starts the process group itself."""
    import subprocess
    import sys

    from snapsight.search import StoredIndex

    args = [str(photos), "--model", str(tiny_open_clip_dir), "--precision", "fp32", "--device", "cpu",
            "--no-progress", "--chunk-size", "2"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "snapsight", "index", *args, "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("indexed 10 images") == 1  # rank 0 reports, once
    from snapsight.cli import main

    assert main(["index", *args, "--out", str(tmp_path / "one")]) == 0
    a, b = StoredIndex.load(tmp_path / "two"), StoredIndex.load(tmp_path / "one")
    assert a.files == b.files and a.model == b.model
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
