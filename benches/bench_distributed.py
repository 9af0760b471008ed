"""Data-parallel training over MPI: samples/s of Trainer.fit, allreduce time per step, scaling.

Workload: the 784-512-256-10 MLP (ReLU, float32, mean softmax cross-entropy, SGD with momentum
0.9), synthetic standard normal inputs and random labels, the same on every rank, at GLOBAL batch
128 and 512 (per-rank batch = global / processes). Configurations, each launched with mpiexec:

- 1 process x 2 threads (pydl's threaded kernels),
- 2 processes x 1 thread (``pydl.distributed``, one rank per core),
- 1 process x 1 thread (the baseline for scaling efficiency).

Every worker trains one warm-up epoch, then EPOCHS timed epochs of STEPS steps; the time spent in
the gradient averaging (``pydl.distributed.average_gradients``, which includes waiting for the
slower rank) is accumulated in place; afterwards the bare Allreduce of the gradient buffer
(2.1 MB) is timed alone. Configurations alternate, ``--repeats`` times; the best of each is kept.

    python benches/bench_distributed.py [--repeats 3] [--steps 20]

prints a Markdown table, then the expected multi-node scaling of a node like this one (one
process x 2 threads) from the ring-allreduce formula (``--paper MS128 MS512`` prints only that,
for other per-step compute times). ``python -m pytest benches`` runs a smoke test (2 processes,
2 steps).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

SIZES = (784, 512, 256, 10)
CONFIGS = [(1, 2), (2, 1), (1, 1)]  # (processes, threads per process)
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def worker(global_batch, steps, epochs):
    """Train under the current MPI world; rank 0 prints one JSON line of measurements."""
    import pydl
    import pydl.distributed as dist
    from pydl import nn

    dist.init()
    world = dist.world_size()
    pydl.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(SIZES) - 2 else [])
    model = nn.Sequential(*layers)
    opt = pydl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), opt)
    rng = np.random.default_rng(0)
    n = global_batch * steps
    x = rng.standard_normal((n, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], n)

    spent = [0.0]
    average = dist.average_gradients

    def timed_average(optimizer):
        t = time.perf_counter()
        average(optimizer)
        spent[0] += time.perf_counter() - t

    trainer.fit(x, y, epochs=1, batch_size=global_batch // world, verbose=0)  # warm-up
    dist.average_gradients = timed_average  # the Trainer calls it through the module
    dist.barrier()
    start = time.perf_counter()
    trainer.fit(x, y, epochs=epochs, batch_size=global_batch // world, verbose=0)
    elapsed = time.perf_counter() - start
    dist.average_gradients = average

    buf = np.zeros(sum(p.data.size for p in model.parameters()), np.float32)
    bare = 0.0
    if world > 1:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        comm.Barrier()
        reps = 20
        t = time.perf_counter()
        for _ in range(reps):
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        bare = (time.perf_counter() - t) / reps
    if dist.rank() == 0:
        total_steps = steps * epochs
        print(json.dumps({"samples_per_s": n * epochs / elapsed,
                          "step_ms": 1e3 * elapsed / total_steps,
                          "allreduce_ms": 1e3 * spent[0] / total_steps,
                          "bare_allreduce_ms": 1e3 * bare,
                          "gradient_mb": buf.nbytes / 1e6}), flush=True)


def launch(processes, threads, global_batch, steps, epochs, timeout=600):
    """Run one configuration under mpiexec; return the worker's measurements (a dict)."""
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise RuntimeError('mpiexec not found: pip install "pydl[mpi]"')
    env = dict(os.environ, PYDL_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "")
                                                  .split(os.pathsep) if p])
    cmd = [mpiexec, "-n", str(processes), sys.executable, os.path.abspath(__file__), "--worker",
           "--batch", str(global_batch), "--steps", str(steps), "--epochs", str(epochs)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(repeats, steps, epochs):
    best = {}
    for _ in range(repeats):
        for batch in (128, 512):
            for procs, threads in CONFIGS:
                res = launch(procs, threads, batch, steps, epochs)
                key = (batch, procs, threads)
                if key not in best or res["samples_per_s"] > best[key]["samples_per_s"]:
                    best[key] = res
    print("| global batch | processes x threads | samples/s | ms/step | allreduce ms/step "
          "(share) | bare Allreduce ms | vs 1x1 | vs 1x2 |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in (128, 512):
        one = best[(batch, 1, 1)]["samples_per_s"]
        two_threads = best[(batch, 1, 2)]["samples_per_s"]
        for procs, threads in CONFIGS:
            r = best[(batch, procs, threads)]
            share = r["allreduce_ms"] / r["step_ms"]
            print(f"| {batch} | {procs} x {threads} | {r['samples_per_s']:.0f} | "
                  f"{r['step_ms']:.2f} | {r['allreduce_ms']:.2f} ({100 * share:.1f}%) | "
                  f"{r['bare_allreduce_ms']:.2f} | {r['samples_per_s'] / one:.2f}x "
                  f"(efficiency {100 * r['samples_per_s'] / (one * procs * threads):.0f}%) | "
                  f"{r['samples_per_s'] / two_threads:.2f}x |")
    print()
    paper_table({b: best[(b, 1, 2)]["step_ms"] for b in (128, 512)})


GRADIENT_BYTES = 4 * 535818  # the MLP's float32 gradients
LATENCY_S = 10e-6  # per message of the ring (a typical MPI-over-Ethernet latency)


def ring_allreduce_s(world, bandwidth_gbit):
    """Ring allreduce time: 2(W-1)/W * bytes / bandwidth, plus 2(W-1) message latencies."""
    return (2 * (world - 1) / world * GRADIENT_BYTES / (bandwidth_gbit * 1e9 / 8)
            + 2 * (world - 1) * LATENCY_S)


def paper_table(step_ms):
    """Print expected weak-scaling efficiency (each node keeps its batch) for 2/8/64 nodes.

    Args:
        step_ms: {global batch of one node: its compute time per step in ms}.

    Without overlap a step costs compute + allreduce; with per-bucket Iallreduce overlapped with
    backward (about 2/3 of the step), only the part of the allreduce longer than backward shows.
    """
    print("| node batch (compute/step) | Gbit/s | allreduce 2 / 8 / 64 nodes (ms) | "
          "efficiency 2 / 8 / 64 | with overlap 2 / 8 / 64 |")
    print("|---|---|---|---|---|")
    for batch, ms in step_ms.items():
        compute = ms / 1e3
        for gbit in (10, 25, 100):
            times = [ring_allreduce_s(w, gbit) for w in (2, 8, 64)]
            plain = [compute / (compute + t) for t in times]
            overlap = [compute / (compute + max(0.0, t - 2 * compute / 3)) for t in times]
            print(f"| {batch} ({ms:.2f} ms) | {gbit} | "
                  + " / ".join(f"{1e3 * t:.2f}" for t in times) + " | "
                  + " / ".join(f"{100 * e:.0f}%" for e in plain) + " | "
                  + " / ".join(f"{100 * e:.0f}%" for e in overlap) + " |")


def test_distributed_training_smoke():
    """Two processes train two steps of the benchmark model and report finite numbers."""
    res = launch(2, 1, 128, steps=2, epochs=1, timeout=120)
    assert res["samples_per_s"] > 0 and np.isfinite(res["allreduce_ms"])
    assert abs(res["gradient_mb"] - 4 * 535818 / 1e6) < 1e-9


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=512, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds (best kept)")
    parser.add_argument("--paper", nargs=2, type=float, metavar=("MS128", "MS512"),
                        help="only print the scaling table for these per-step compute times")
    args = parser.parse_args()
    if args.paper:
        paper_table({128: args.paper[0], 512: args.paper[1]})
    elif args.worker:
        worker(args.batch, args.steps, args.epochs)
    else:
        main(args.repeats, args.steps, args.epochs)
