"""Trainer.fit of issue 10's four models beside PyTorch (and numpy), in alternating epochs.

Usage:
    python benches/fit_scan.py [--rounds 9] [--threads 1,2] [--batches 32,512] [--models a,b]

``benches/bench_training.py`` times each implementation in its own block of epochs, one after
the other; on a shared machine a burst of load from other processes then lands on one library's
block and moves a ratio by 30% or more between runs. Here each case builds all implementations
first (the same models, data, losses and optimizers as ``bench_training.test_train_models``),
warms each up with one epoch, then runs one epoch of each in turn (pydl, torch, numpy, pydl,
torch, numpy, ...) for ``--rounds`` rounds. A burst hits all of them alike, and each keeps its
best epoch (as tools/gemm_scan.py does for GEMM); the table also gives the median epoch and the
range of the per-round ratio pydl/torch.

"numpy" is the hand-written step of ``bench_training.NumpyMLP``; it exists for the mlp-ce-sgd
model only (the other models have no numpy version). Threads are set for all three libraries.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_training as bt  # noqa: E402
import pydl  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None


def epochs_of(model_name, batch, torch, n=None):
    """Return {impl: zero-argument function running one epoch} for one case."""
    sizes, total = bt.WORKLOADS["mnist1d"]
    x, labels = bt.dataset("mnist1d")
    if n is not None:
        x, labels = x[:n], labels[:n]
    model, loss, opt, kind = bt._build("pydl", model_name, sizes)
    y = bt._targets(kind, labels, sizes[-1])
    trainer = pydl.train.Trainer(model, loss, opt)
    impls = {"pydl": lambda: trainer.fit(x, y, epochs=1, batch_size=batch, verbose=0)}
    if torch is not None:
        tmodel, tloss, topt, _ = bt._build("torch", model_name, sizes)
        impls["torch"] = bt._torch_loop(torch, tmodel, tloss, topt, x, y, batch)
    if model_name == "mlp-ce-sgd":
        mlp = bt.NumpyMLP(sizes, batch)
        impls["numpy"] = lambda: mlp.epoch(x, labels)
    return impls


def scan_case(impls, rounds):
    """Warm every implementation up once, then time `rounds` alternating epochs of each."""
    for run in impls.values():
        run()
    times = {name: [] for name in impls}
    for _ in range(rounds):
        for name, run in impls.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def run(rounds=9, threads=(1, 2), batches=(32, 512), models=bt.MODELS, n=None, out=print):
    try:
        import torch
    except ImportError:
        torch = None
    samples = n or bt.WORKLOADS["mnist1d"][1]
    out("| case | pydl samples/s | torch samples/s | numpy samples/s | pydl/torch (best) "
        "| pydl/torch per round | pydl/numpy (best) | pydl median / torch median |")
    out("|---|---:|---:|---:|---:|---:|---:|---:|")
    results = {}
    for t in threads:
        previous = pydl.get_num_threads()
        pydl.set_num_threads(t)
        torch_previous = torch.get_num_threads() if torch is not None else None
        if torch is not None:
            torch.set_num_threads(t)
        limits = threadpool_limits(limits=t) if threadpool_limits is not None else None
        try:
            for model_name in models:
                for batch in batches:
                    times = scan_case(epochs_of(model_name, batch, torch, n), rounds)
                    results[(model_name, batch, t)] = times
                    out(row(f"{model_name} b{batch} [{t}t]", times, samples))
        finally:
            if limits is not None:
                limits.restore_original_limits()
            if torch is not None:
                torch.set_num_threads(torch_previous)
            pydl.set_num_threads(previous)
    return results


def row(case, times, samples):
    rate = {name: samples / min(ts) for name, ts in times.items()}

    def fmt(name):
        return f"{rate[name] / 1e3:.1f}k" if name in rate else "-"

    cells = [case, fmt("pydl"), fmt("torch"), fmt("numpy")]
    if "torch" in times:
        per_round = [b / a for a, b in zip(times["pydl"], times["torch"])]
        cells += [f"{rate['pydl'] / rate['torch']:.2f}x",
                  f"{min(per_round):.2f}-{max(per_round):.2f}x"]
    else:
        cells += ["-", "-"]
    cells.append(f"{rate['pydl'] / rate['numpy']:.2f}x" if "numpy" in rate else "-")
    cells.append(f"{np.median(times['torch']) / np.median(times['pydl']):.2f}x"
                 if "torch" in times else "-")
    return "| " + " | ".join(cells) + " |"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batches", default="32,512")
    parser.add_argument("--models", default=",".join(bt.MODELS))
    args = parser.parse_args(argv)
    models = args.models.split(",")
    unknown = sorted(set(models) - set(bt.MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(bt.MODELS)}")
    run(rounds=args.rounds, threads=[int(t) for t in args.threads.split(",")],
        batches=[int(b) for b in args.batches.split(",")], models=models)


if __name__ == "__main__":
    main()
