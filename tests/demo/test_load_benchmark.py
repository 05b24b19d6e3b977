"""benchmarks/demo_load.py: each load client is its own process, and the per-level summary adds up."""
from __future__ import annotations

import time


def test_summary_merges_the_client_processes():
    from benchmarks.demo_load import summarize

    outs = [
        {"pid": 11, "latencies": [0.1, 0.3], "errors": 0, "first_error": None, "cpu_s": 0.02, "last_end": 12.0},
        {"pid": 12, "latencies": [0.2], "errors": 1, "first_error": "QueueError: full", "cpu_s": 0.01,
         "last_end": 11.0},
    ]
    row = summarize(outs, t0=10.0, before={"batches": 5, "items": 5}, after={"batches": 7, "items": 8})
    assert row["clients"] == 2 and row["client_processes"] == 2
    assert row["requests"] == 3 and row["errors"] == 1 and row["first_error"] == "QueueError: full"
    assert row["req_per_s"] == 1.5  # 3 answers over the 2 s until the last one came back
    assert row["p50_ms"] == 200.0 and row["p95_ms"] == 300.0
    assert row["mean_batch"] == 1.5  # 3 items in 2 forward passes during the level
    assert row["client_cpu_ms_per_req"] == 10.0


def test_each_client_runs_in_its_own_process(demo_server):
    """Clients as threads of one process share one GIL and measure the load generator, not the server."""
    from benchmarks import demo_load

    url, app, _ = demo_server

    class InProcessServer:  # the session's demo runs in this test process
        def stats(self):
            s = app.batcher.stats
            return {"batches": s.batches, "items": s.items, "largest": s.largest}

        def cpu_seconds(self):
            return time.process_time()

    row = demo_load.run_level(url, clients=2, seconds=2.0, server=InProcessServer())
    assert row["clients"] == 2 and row["client_processes"] == 2
    assert row["errors"] == 0, row["first_error"]
    assert row["requests"] > 0 and row["mean_batch"] >= 1.0
    assert row["client_cpu_ms_per_req"] > 0  # measured in the client processes, not here
