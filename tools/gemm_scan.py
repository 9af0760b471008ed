"""Time float32 GEMM in pydl, numpy (its BLAS) and PyTorch side by side; print a Markdown table.

Usage:
    python tools/gemm_scan.py [--threads 1,2] [--rounds 7] [--shapes square,mlp,skinny]
                              [--only 1024x1024x1024,...] [--peak-ghz 3.0]

Every shape is timed in alternating blocks (pydl, numpy, torch, pydl, numpy, torch, ...) and each
library keeps its best block, so a burst of load from other processes hurts all three alike and
rarely the best one. A block runs the product enough times to last about 20 ms; the time per call
is that block's mean. Threads are set for all three libraries (pydl.set_num_threads, threadpoolctl
for numpy's BLAS, torch.set_num_threads).

The table gives microseconds per call, GFLOP/s, pydl's speed relative to numpy and torch (> 1:
pydl is faster), pydl's 2-thread scaling and its share of the CPU's peak: cores x flops/cycle x
clock. The flops/cycle come from the instruction set pydl runs (AVX2: 2 FMA pipes x 8 floats x 2;
AVX-512: x 16 floats, which on a CPU that splits 512-bit operations is the same 32 as AVX2: pass
--flops-per-cycle to say so); the clock is the highest "cpu MHz" of /proc/cpuinfo unless
--peak-ghz gives it (a boosting CPU runs faster than /proc/cpuinfo says under a VM).

Run it on a quiet machine for the README table: with other processes running, the 2-thread
columns in particular are not meaningful (--clock thread makes the 1-thread rows usable there).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pydl  # noqa: E402
from pydl.kernels import matmul  # noqa: E402

try:
    import torch
except ImportError:
    torch = None
try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

SQUARE = [256, 512, 1024, 2048]
# (m, k, n, trans_a, trans_b, label) of op(A) (m x k) @ op(B) (k x n).
MLP = [
    (32, 784, 512, False, True, "fwd x@W.T b32"),
    (128, 784, 512, False, True, "fwd x@W.T b128"),
    (512, 784, 512, False, True, "fwd x@W.T b512"),
    (512, 512, 256, False, True, "fwd x@W.T 512x512x256"),
    (512, 512, 784, False, False, "dx=dy@W b512"),
    (512, 512, 784, True, False, "dW=dy.T@x b512"),
    (512, 128, 784, True, False, "dW=dy.T@x b128"),
    (512, 32, 784, True, False, "dW=dy.T@x b32"),
]
SKINNY = [
    (1, 256, 256, False, True, "batch-1 1x256x256"),
    (1, 64, 256, False, True, "batch-1 1x64x256"),
    (8, 784, 512, False, True, "batch-8 8x784x512"),
    (32, 256, 10, False, True, "head b32 ->10"),
    (512, 256, 10, False, True, "head b512 ->10"),
    (32, 512, 10, False, True, "head b32 512->10"),
]


def shapes(kinds, only):
    out = []
    if only:
        for s in only.split(","):
            m, k, n = (int(v) for v in s.lower().split("x"))
            out.append((m, k, n, False, False, f"{m}x{k}x{n}"))
        return out
    if "square" in kinds:
        out += [(n, n, n, False, False, f"square {n}") for n in SQUARE]
    if "mlp" in kinds:
        out += MLP
    if "skinny" in kinds:
        out += SKINNY
    return out


def operands(m, k, n, ta, tb):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    return a, b


def callables(m, k, n, ta, tb):
    a, b = operands(m, k, n, ta, tb)
    opa, opb = (a.T if ta else a), (b.T if tb else b)
    fns = {
        "pydl": lambda: matmul(a, b, trans_a=ta, trans_b=tb),
        "numpy": lambda: opa @ opb,
    }
    if torch is not None:
        ta_, tb_ = torch.from_numpy(opa), torch.from_numpy(opb)
        fns["torch"] = lambda: torch.mm(ta_, tb_)
    return fns


def block_time(fn, reps, clock):
    t0 = clock()
    for _ in range(reps):
        fn()
    return (clock() - t0) / reps


def time_all(fns, rounds, clock=time.perf_counter, block_s=0.02):
    reps = {}
    for name, fn in fns.items():
        fn()
        t = block_time(fn, 1, time.perf_counter)
        reps[name] = max(1, int(block_s / max(t, 1e-7)))
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], block_time(fn, reps[name], clock))
    return best


class Threads:
    def __init__(self, n):
        self.n = n
        self.ctx = None

    def __enter__(self):
        pydl.set_num_threads(self.n)
        if torch is not None:
            torch.set_num_threads(self.n)
        if threadpool_limits is not None:
            self.ctx = threadpool_limits(limits=self.n)
            self.ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def clock_ghz():
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        return max(mhz) / 1000.0 if mhz else None
    except OSError:
        return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--shapes", default="square,mlp,skinny")
    p.add_argument("--only", default="")
    p.add_argument("--peak-ghz", type=float, default=None)
    p.add_argument("--flops-per-cycle", type=float, default=None)
    p.add_argument("--clock", choices=["wall", "thread"], default="wall",
                   help="thread: time 1-thread rows by the calling thread's CPU time (all three "
                        "libraries compute in the caller at 1 thread), which a busy machine "
                        "barely disturbs; 2-thread rows stay wall-clock")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    info = pydl.cpu_info()
    ghz = args.peak_ghz or clock_ghz()
    fpc = args.flops_per_cycle or (64.0 if info["isa"] == "avx512" else 32.0)
    print(f"pydl {info}")
    print(f"numpy {np.__version__}, torch {torch.__version__ if torch else 'absent'}; "
          f"peak per core {fpc:g} flop/cycle x {ghz} GHz")
    cols = ["shape", "thr", "pydl us", "numpy us", "torch us", "pydl GF/s", "vs numpy",
            "vs torch", "% peak", "pydl 2t/1t"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for m, k, n, ta, tb, label in shapes(args.shapes, args.only):
        fns = callables(m, k, n, ta, tb)
        flops = 2.0 * m * n * k
        one = None
        for t in threads:
            with Threads(t):
                clock = time.thread_time if (args.clock == "thread" and t == 1) else time.perf_counter
                best = time_all(fns, args.rounds, clock)
            gf = flops / best["pydl"] / 1e9
            peak = (fpc * ghz * t) if ghz else None
            tor = best.get("torch")
            scaling = f"{one / best['pydl']:.2f}" if (one is not None and t == 2) else ""
            if t == 1:
                one = best["pydl"]
            row = [label, str(t), f"{best['pydl'] * 1e6:.1f}", f"{best['numpy'] * 1e6:.1f}",
                   f"{tor * 1e6:.1f}" if tor else "-", f"{gf:.1f}",
                   f"{best['numpy'] / best['pydl']:.2f}",
                   f"{tor / best['pydl']:.2f}" if tor else "-",
                   f"{100 * gf / peak:.0f}%" if peak else "-", scaling]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
