"""Load test of the demo's ``/classify`` API: 1, 4 and 16 concurrent gradio_client clients.

Starts the demo in a child process (``snapsight demo`` code path, 127.0.0.1, a free port), then for each
level spawns N client processes, each with its own ``gradio_client.Client``; they connect and send one
warm-up request, wait at a shared barrier, then send classify requests (one image, six labels) back to back
for a bounded time. Process start-up and warm-up are outside the timed window. Reports p50/p95 latency,
requests/s, errors, the server's mean micro-batch size (how many requests shared a forward pass), server and
client CPU per request and how many of the machine's cores were busy. ``--unbatched`` adds a 16-client run
against a server started with ``--max-batch-size 1``, to show what batching buys.

    python -m benchmarks.demo_load --model tiny                     # tiny random CLIP built on the fly
    python -m benchmarks.demo_load --model random:ViT-B-32 --unbatched  # ViT-B/32's compute, random weights
    python -m benchmarks.demo_load                                  # the offline default model
    python -m benchmarks.demo_load --model ViT-B-32 --pretrained laion2b_s34b_b79k --seconds 30

Why processes: real users are separate browsers; 16 client threads in one process share one GIL, so the
load generator, not the server, would be measured. Why ``ssl_verify=False``: gradio_client makes a fresh
``httpx`` client for each upload, queue join and event stream (three per request), and with verification on
each one loads the CA bundle (~17 ms of CPU) even for plain ``http://``; the demo is served over plain HTTP
on 127.0.0.1, so that context is never used. ``--ssl-verify`` restores gradio_client's default.

The clients and the server share this machine's CPUs, so absolute figures are lower bounds for a real
deployment; the ratios between levels are the point.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
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
        Path(tmp).write_text(json.dumps({"batches": s.batches, "items": s.items, "largest": s.largest,
                                         "sizes": dict(s.sizes)}))
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
            return {"batches": 0, "items": 0, "largest": 0, "sizes": {}}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def client_process(url: str, ssl_verify: bool, ready, go, start_at, seconds: float, results) -> None:
    """One load client (run in its own process): connect and warm up, wait for ``go``, then send /classify
    requests back to back until ``start_at + seconds``; put a summary dict on ``results``.

    ``ready``/``go``/``start_at``/``results`` are a Barrier, an Event, a shared double (``time.monotonic()``,
    one clock for every process on Linux) and a Queue, so start-up and warm-up stay outside the timed window.
    """
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no telemetry thread per client
    setup_error = None
    try:
        from gradio_client import Client, handle_file

        client = Client(url, verbose=False, ssl_verify=ssl_verify, analytics_enabled=False)
        image = handle_file(str(IMAGE))
        client.predict(image, LABELS, api_name="/classify")  # warm-up: connection, label index, first forward
    except Exception as e:  # noqa: BLE001 - reported as this client's error, never hangs the others
        setup_error = f"{type(e).__name__}: {e}"
    ready.wait()
    go.wait()
    out = {"pid": os.getpid(), "latencies": [], "errors": 0, "first_error": setup_error, "cpu_s": 0.0,
           "last_end": time.monotonic()}
    if setup_error:
        out["errors"] = 1
        results.put(out)
        return
    stop_at = start_at.value + seconds
    cpu0 = time.process_time()  # this process, all its threads (gradio_client uses several)
    while time.monotonic() < stop_at:
        t = time.monotonic()
        try:
            result = client.predict(image, LABELS, api_name="/classify")
            err = None if result.get("confidences") else "empty result"
        except Exception as e:  # noqa: BLE001 - every failure counts as an error
            err = f"{type(e).__name__}: {e}"
        end = time.monotonic()
        if err:
            out["errors"] += 1
            out["first_error"] = out["first_error"] or err
        else:
            out["latencies"].append(end - t)
        out["last_end"] = end
    out["cpu_s"] = time.process_time() - cpu0
    results.put(out)
    client.close()


def _machine_busy_seconds() -> float:
    """CPU-seconds all cores of this machine have been busy (not idle / iowait) since boot (Linux /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_level(url: str, clients: int, seconds: float, server: Server, ssl_verify: bool = False) -> dict:
    """``clients`` client processes (spawned, connected and warmed up before the clock starts) for ``seconds``."""
    ctx = mp.get_context("spawn")
    ready, go, start_at, results = ctx.Barrier(clients + 1), ctx.Event(), ctx.Value("d", 0.0), ctx.Queue()
    procs = [ctx.Process(target=client_process, args=(url, ssl_verify, ready, go, start_at, seconds, results),
                         daemon=True) for _ in range(clients)]
    for p in procs:
        p.start()
    try:
        ready.wait(timeout=300)  # a client that cannot start breaks the barrier
        time.sleep(0.6)  # let the server's stats file catch up with the warm-up requests
        before = server.stats()
        server_cpu0, busy0 = server.cpu_seconds(), _machine_busy_seconds()
        t0 = start_at.value = time.monotonic()
        go.set()
        print(f"# {clients} client processes ready; measuring for {seconds:g} s", file=sys.stderr, flush=True)
        outs = [results.get(timeout=seconds + 300) for _ in procs]
        server_cpu, busy = server.cpu_seconds() - server_cpu0, _machine_busy_seconds() - busy0
        time.sleep(0.6)
        after = server.stats()
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    row = summarize(outs, t0, before, after)
    n = max(1, row["requests"])
    wall = max(o["last_end"] for o in outs) - t0
    row["server_cpu_ms_per_req"] = round(1000 * server_cpu / n, 1)
    row["busy_cores"] = round(busy / wall, 2) if wall > 0 else float("nan")
    # cores busy beyond what the server and the clients used: other processes (the figures are then not
    # an idle machine's; with autogroup scheduling, `nice` does not keep another session's job out of the way)
    own = (server_cpu + sum(o["cpu_s"] for o in outs)) / wall if wall > 0 else float("nan")
    row["other_cores"] = round(max(0.0, row["busy_cores"] - own), 2)
    return row


def summarize(outs: list[dict], t0: float, before: dict, after: dict) -> dict:
    """Merge the client processes' summaries (and the server's batch counters) into one table row."""
    lat = sorted(x for o in outs for x in o["latencies"])
    errors = sum(o["errors"] for o in outs)
    wall = max(o["last_end"] for o in outs) - t0

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    batches = after["batches"] - before["batches"]
    items = after["items"] - before["items"]
    sizes = {int(k): v - before.get("sizes", {}).get(k, 0) for k, v in after.get("sizes", {}).items()}
    return {
        "clients": len(outs), "client_processes": len({o["pid"] for o in outs}), "requests": len(lat),
        "errors": errors, "seconds": round(wall, 1),
        "req_per_s": round(len(lat) / wall, 2) if wall > 0 else 0.0, "p50_ms": round(pct(0.5), 1),
        "p95_ms": round(pct(0.95), 1), "mean_batch": round(items / batches, 2) if batches else 0.0,
        "first_error": next((o["first_error"] for o in outs if o["first_error"]), None),
        "client_cpu_ms_per_req": round(1000 * sum(o["cpu_s"] for o in outs) / max(1, len(lat)), 1),
        "batch_sizes": {k: n for k, n in sorted(sizes.items()) if n},  # forward passes per batch size
    }


def _table(rows: list[dict]) -> str:
    head = ("| server | clients | requests | req/s | p50 ms | p95 ms | errors | mean batch | server CPU ms/req "
            "| client CPU ms/req | busy cores | other cores |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [f"| {r['server']} | {r['clients']} | {r['requests']} | {r['req_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
             f"{r['errors']} | {r['mean_batch']} | {r['server_cpu_ms_per_req']} | {r['client_cpu_ms_per_req']} | "
             f"{r['busy_cores']} | {r['other_cores']} |" for r in rows]
    return "\n".join([head] + lines)


def main(argv=None) -> int:
    from snapsight.runtime import describe_cpu

    print(f"cpu: {describe_cpu()}", flush=True)  # figures depend on it: name it beside them
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="'tiny' (random tiny CLIP), 'random:ViT-B-32' (an open_clip architecture, random "
                   "weights), an open_clip name (with --pretrained) or a folder; default: the offline default model")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--levels", default="1,4,16", help="client counts (default 1,4,16)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per level (default 20)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--unbatched", action="store_true", help="also run the largest level with --max-batch-size 1")
    p.add_argument("--ssl-verify", action="store_true", help="gradio_client's default TLS setup for every HTTP "
                   "call (~17 ms of client CPU each, three per request; unused on plain http)")
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
                r = run_level(server.url, n, args.seconds, server, args.ssl_verify)
                r["server"] = "batched" if mbs > 1 else "unbatched (max batch 1)"
                rows.append(r)
                print(json.dumps(r), flush=True)
        finally:
            server.close()
    print()
    print(f"model: {args.model or 'offline default'}; {args.seconds:.0f} s per level; one process per client "
          f"(ssl_verify={args.ssl_verify}); clients and server share this machine's {os.cpu_count()} CPU cores")
    print(_table(rows))
    by = {(r["server"], r["clients"]): r for r in rows}
    one, top = by.get(("batched", min(levels))), by.get(("batched", max(levels)))
    print()
    if one and top and one is not top and one["req_per_s"]:
        print(f"req/s at {max(levels)} clients vs {min(levels)}: {top['req_per_s'] / one['req_per_s']:.2f}x")
    unbatched = by.get(("unbatched (max batch 1)", max(levels)))
    if top and unbatched and unbatched["req_per_s"]:
        print(f"req/s at {max(levels)} clients, batched vs unbatched: {top['req_per_s'] / unbatched['req_per_s']:.2f}x")
    print(f"errors total: {sum(r['errors'] for r in rows)}")
    busy_elsewhere = max(r["other_cores"] for r in rows)
    if busy_elsewhere > 0.25:
        print(f"WARNING: other processes kept up to {busy_elsewhere} cores busy during a level; "
              "these are not an idle machine's figures")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": args.model, "seconds": args.seconds, "ssl_verify": args.ssl_verify,
                                                 "cpus": os.cpu_count(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
