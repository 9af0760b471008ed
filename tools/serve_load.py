"""Load-test examples/serve.py: requests per second and latency percentiles.

Starts the server on a free loopback port (a 64-256-256-10 MLP unless ``--model`` names a file
written by ``pydl.save_model``), then ``--clients`` threads each keep one HTTP/1.1 connection open
and send ``POST /predict`` requests of ``--batch`` random samples back to back for ``--duration``
seconds. Every answer must be 200 with one output row per sample. Prints one line per client count:
requests/s, samples/s and the latency median, p90, p99 and maximum in milliseconds (time from
sending a request to reading its whole answer, as the client sees it).

Run: ``python tools/serve_load.py --clients 1 4 --duration 5``. The clients run in the same
machine as the server, so on a small machine they compete with it for the cores.
"""

import argparse
import http.client
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SERVE = ROOT / "examples" / "serve.py"


def start_server(model_path, threads):
    """Start examples/serve.py on a free port; return (process, host, port)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(SERVE), str(model_path), "--port", "0",
                             "--threads", str(threads)],
                            stdout=subprocess.PIPE, text=True, env=env)
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        line = ""
    if not line.startswith("serving on http://"):
        proc.kill()
        raise SystemExit(f"the server did not start (it printed {line!r})")
    host, port = line.split("//")[1].strip().rsplit(":", 1)
    return proc, host, int(port)


def client(host, port, body, n_rows, stop_at, latencies, errors):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            latencies.append(time.perf_counter() - t0)
            if r.status != 200 or len(json.loads(data)["outputs"]) != n_rows:
                errors.append(f"{r.status}: {data[:200]!r}")
                return
    except OSError as e:
        errors.append(repr(e))
    finally:
        conn.close()


def run(host, port, n_features, batch, clients, duration):
    """Load the server with ``clients`` connections; return a dict of the measurements."""
    rng = np.random.default_rng(0)
    # bytes, so that http.client sends headers and body in one write (see serve.py on Nagle)
    body = json.dumps({"inputs": rng.standard_normal((batch, n_features)).tolist()}).encode()
    per_client = [[] for _ in range(clients)]
    errors = []
    stop_at = time.perf_counter() + duration
    threads = [threading.Thread(target=client, args=(host, port, body, batch, stop_at, lat,
                                                     errors))
               for lat in per_client]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"requests failed: {errors[:3]}")
    lat = np.array([x for lats in per_client for x in lats]) * 1e3
    return {"clients": clients, "requests": len(lat), "rps": len(lat) / elapsed,
            "samples_per_s": len(lat) * batch / elapsed,
            "p50": np.percentile(lat, 50), "p90": np.percentile(lat, 90),
            "p99": np.percentile(lat, 99), "max": lat.max()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a pydl.save_model file (default: a 64-256-256-10 MLP)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4],
                        help="concurrent connections; several values run one after another")
    parser.add_argument("--batch", type=int, default=1, help="samples per request (default 1)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="the server's kernel threads (default 1)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import pydl
    from pydl import nn

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            pydl.manual_seed(0)
            path = os.path.join(tmp, "mlp.npz")
            pydl.save_model(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256),
                                          nn.ReLU(), nn.Linear(256, 10)), path)
        n_features = next(m for m in pydl.load_model(path).modules()
                          if isinstance(m, nn.Linear)).in_features
        proc, host, port = start_server(path, args.threads)
        try:
            print(f"batch {args.batch}, server kernel threads {args.threads}, "
                  f"{args.duration:g} s per run, CPU count {os.cpu_count()}")
            print(f"{'clients':>7} {'requests':>8} {'req/s':>8} {'samples/s':>9} "
                  f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}")
            for clients in args.clients:
                r = run(host, port, n_features, args.batch, clients, args.duration)
                print(f"{r['clients']:>7} {r['requests']:>8} {r['rps']:>8.0f} "
                      f"{r['samples_per_s']:>9.0f} {r['p50']:>7.2f} {r['p90']:>7.2f} "
                      f"{r['p99']:>7.2f} {r['max']:>7.2f}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
