"""Load test of the demo's ``/classify`` API: 1, 4 and 16 concurrent gradio_client clients.

Starts the demo in a child process (``snapsight demo`` code path, 127.0.0.1, a free port), then for each
level runs N client threads, each with its own ``gradio_client.Client``, sending classify requests
(one image, six labels) back to back for a bounded time. Reports p50/p95 latency, requests/s, errors and
the server's mean micro-batch size (how many requests shared a forward pass). ``--unbatched`` adds a
16-client run against a server started with ``--max-batch-size 1``, to show what batching buys.

    python -m benchmarks.demo_load --model tiny                     # tiny random CLIP built on the fly
    python -m benchmarks.demo_load --model random:ViT-B-32 --unbatched  # ViT-B/32's compute, random weights
    python -m benchmarks.demo_load                                  # the offline default model
    python -m benchmarks.demo_load --model ViT-B-32 --pretrained laion2b_s34b_b79k --seconds 30

Client threads and server share this machine's CPUs, so absolute figures are lower bounds for a real
deployment; the ratios between levels are the point.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "snapsight" / "assets" / "examples" / "cat.jpg"
LABELS = "cat, dog, pizza, sunset, rocket, coffee"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_child(model: str | None, pretrained: str | None, port: int, max_batch_size: int, stats_file: str) -> None:
    """Child process: serve the demo and write the batcher's counters to ``stats_file`` every 0.5 s."""
    from snapsight.demo.app import DemoConfig, serve

    # the same 32 requests in flight either way: only the merging into one forward pass differs
    cfg = DemoConfig(model=model, pretrained=pretrained, port=port, max_batch_size=max_batch_size, concurrency_limit=32)
    app, demo, url = serve(cfg, block=False, quiet=True)
    print(f"READY {url}", flush=True)
    parent = os.getppid()
    while os.getppid() == parent:  # stop when the benchmark that started us is gone
        s = app.batcher.stats
        tmp = stats_file + ".tmp"
        Path(tmp).write_text(json.dumps({"batches": s.batches, "items": s.items, "largest": s.largest}))
        os.replace(tmp, stats_file)
        time.sleep(0.5)


class Server:
    def __init__(self, model, pretrained, max_batch_size, workdir):
        self.port = _free_port()
        self.stats_file = str(Path(workdir) / f"stats-{self.port}.json")
        cmd = [sys.executable, "-m", "benchmarks.demo_load", "--serve", "--port", str(self.port),
               "--max-batch-size", str(max_batch_size), "--stats-file", self.stats_file]
        if model:
            cmd += ["--model", model]
        if pretrained:
            cmd += ["--pretrained", pretrained]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        self.url = None
        deadline = time.time() + 300
        for line in self.proc.stdout:
            if line.startswith("READY "):
                self.url = line.split()[1]
                break
            if time.time() > deadline:
                break
        if self.url is None:
            self.close()
            raise RuntimeError("demo server did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # keep the pipe drained
        with urllib.request.urlopen(self.url, timeout=30):
            pass

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def stats(self) -> dict:
        try:
            return json.loads(Path(self.stats_file).read_text())
        except (OSError, ValueError):
            return {"batches": 0, "items": 0, "largest": 0}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_level(url: str, clients: int, seconds: float, server: Server) -> dict:
    from gradio_client import Client, handle_file

    conns = [Client(url, verbose=False) for _ in range(clients)]
    image = handle_file(str(IMAGE))
    for c in conns[:1]:
        c.predict(image, LABELS, api_name="/classify")  # warm-up: label index, first forward
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(c):
        start_barrier.wait()
        while time.perf_counter() < stop_at[0]:
            t = time.perf_counter()
            try:
                out = c.predict(image, LABELS, api_name="/classify")
                ok = bool(out.get("confidences"))
                err = None if ok else "empty result"
            except Exception as e:  # noqa: BLE001 - every failure counts as an error
                err = f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t
            with lock:
                (errors.append(err) if err else latencies.append(dt))

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    before = server.stats()
    server_cpu0, client_cpu0 = server.cpu_seconds(), _own_cpu_seconds()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start_barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server_cpu, client_cpu = server.cpu_seconds() - server_cpu0, _own_cpu_seconds() - client_cpu0
    time.sleep(0.6)
    after = server.stats()
    lat = sorted(latencies)

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    batches = after["batches"] - before["batches"]
    items = after["items"] - before["items"]
    return {
        "clients": clients, "requests": len(lat), "errors": len(errors), "seconds": round(wall, 1),
        "req_per_s": round(len(lat) / wall, 2), "p50_ms": round(pct(0.5), 1), "p95_ms": round(pct(0.95), 1),
        "mean_batch": round(items / batches, 2) if batches else 0.0, "first_error": errors[0] if errors else None,
        "server_cpu_ms_per_req": round(1000 * server_cpu / max(1, len(lat)), 1),
        "client_cpu_ms_per_req": round(1000 * client_cpu / max(1, len(lat)), 1),
    }


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _table(rows: list[dict]) -> str:
    head = ("| server | clients | requests | req/s | p50 ms | p95 ms | errors | mean batch | server CPU ms/req "
            "| client CPU ms/req |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [f"| {r['server']} | {r['clients']} | {r['requests']} | {r['req_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
             f"{r['errors']} | {r['mean_batch']} | {r['server_cpu_ms_per_req']} | {r['client_cpu_ms_per_req']} |"
             for r in rows]
    return "\n".join([head] + lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="'tiny' (random tiny CLIP), 'random:ViT-B-32' (an open_clip architecture, random "
                   "weights), an open_clip name (with --pretrained) or a folder; default: the offline default model")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--levels", default="1,4,16", help="client counts (default 1,4,16)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per level (default 20)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--unbatched", action="store_true", help="also run the largest level with --max-batch-size 1")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--workdir", default=None, help="keep generated random models here (reused across runs)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--stats-file", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks that stop the server

    if args.serve:
        serve_child(args.model, args.pretrained, args.port, args.max_batch_size, args.stats_file)
        return 0
    workdir = tempfile.mkdtemp(prefix="demo-load-")
    model = args.model
    if model == "tiny" or (model or "").startswith("random:"):
        sys.path.insert(0, str(REPO))
        from tests.demo.tiny_clip import make_random_clip_dir, make_tiny_clip_dir

        cache = Path(args.workdir or workdir)
        if model == "tiny":
            folder = make_tiny_clip_dir(cache / "tiny-clip")
        else:
            name = model.split(":", 1)[1]
            folder = make_random_clip_dir(cache / f"random-{name}", name)
        model = f"local-dir:{folder}"
    levels = [int(x) for x in args.levels.split(",")]
    plan = [(args.max_batch_size, levels)]
    if args.unbatched:
        plan.append((1, [max(levels)]))
    rows = []
    for mbs, lv in plan:
        server = Server(model, args.pretrained, mbs, workdir)
        try:
            for n in lv:
                r = run_level(server.url, n, args.seconds, server)
                r["server"] = "batched" if mbs > 1 else "unbatched (max batch 1)"
                rows.append(r)
                print(json.dumps(r), flush=True)
        finally:
            server.close()
    print()
    print(f"model: {args.model or 'offline default'}; {args.seconds:.0f} s per level; cpus: {os.cpu_count()}")
    print(_table(rows))
    by = {(r["server"], r["clients"]): r for r in rows}
    one, top = by.get(("batched", min(levels))), by.get(("batched", max(levels)))
    if one and top and one["req_per_s"]:
        print(f"\nreq/s at {max(levels)} clients vs {min(levels)}: {top['req_per_s'] / one['req_per_s']:.2f}x; "
              f"errors total: {sum(r['errors'] for r in rows)}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": args.model, "seconds": args.seconds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
