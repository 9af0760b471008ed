"""End-to-end CNN training throughput: pydl's Trainer.fit beside the same PyTorch loop.

Models (issue 11), both with mean softmax cross-entropy and Adam (lr 1e-3), float32:
- "conv1d": Conv1d(25, 32, 5) - ReLU - Conv1d(32, 32, 5) - ReLU - Conv1d(32, 32, 3) - ReLU -
  Flatten - Linear(32 * 30, 10) on length-40 inputs with 25 channels; 4,000 synthetic samples
  (fixed-seed standard normal inputs, random labels);
- "conv2d": the ``python -m pydl --cnn`` network without its dropout: Conv2d(1, 16, 3, padding=1)
  - BatchNorm2d - ReLU - Conv2d(16, 32, 3, padding=1) - BatchNorm2d - ReLU - MaxPool2d(2) -
  Flatten - Linear(512, 10), on the 1797 embedded 8x8 digits.
Batch 32 and 256, 1 and 2 threads. One warm-up epoch, then each timed round is one epoch
(PYDL_BENCH_ROUNDS, default 1); extra_info["samples"] holds the samples per round, so
``python benches/report.py benches/bench_training_cnn.py`` prints samples/s and the ratios.

- "pydl": ``pydl.train.Trainer(model, CrossEntropyLoss(), Adam(...)).fit(x, y, epochs=1,
  batch_size=b, verbose=0)`` (recorded once, replayed by pydl.engine);
- "torch": the usual PyTorch loop (randperm, index, zero_grad, forward, loss, backward, step,
  ``loss.item()``) with ``torch.set_num_threads`` at the thread count.
There is no numpy version: a hand-written numpy CNN step is not the shortest numpy program of
anything a user would run.

Quick run without pytest-benchmark: ``python benches/bench_training_cnn.py [rounds]`` alternates
pydl and torch epochs (best of ``rounds``, default 3) and prints the ratio per configuration.
"""

import os
import sys
import time

import numpy as np
import pytest

import pydl
from pydl import nn

MODELS = ("conv1d", "conv2d")
BATCHES = (32, 256)
ROUNDS = int(os.environ.get("PYDL_BENCH_ROUNDS", "1"))
LR = 1e-3

_DATA = {}


def dataset(name):
    """Return the (x, y) of a model's workload (float32 inputs, int64 labels)."""
    if name not in _DATA:
        if name == "conv1d":
            rng = np.random.default_rng(0)
            _DATA[name] = (rng.standard_normal((4000, 25, 40), dtype=np.float32),
                           rng.integers(0, 10, 4000))
        else:
            x, y = pydl.datasets.load_digits(return_X_y=True)
            _DATA[name] = ((x / np.float32(16.0)).reshape(-1, 1, 8, 8), y)
    return _DATA[name]


def build(lib, name):
    """Return (model, loss, optimizer) in pydl (``lib="pydl"``) or torch, seeded."""
    if lib == "torch":
        import torch

        torch.manual_seed(0)
        mod, losses, optim = torch.nn, torch.nn, torch.optim
    else:
        pydl.manual_seed(0)
        mod, losses, optim = nn, pydl.losses, pydl.optim
    if name == "conv1d":
        model = mod.Sequential(mod.Conv1d(25, 32, 5), mod.ReLU(), mod.Conv1d(32, 32, 5),
                               mod.ReLU(), mod.Conv1d(32, 32, 3), mod.ReLU(), mod.Flatten(),
                               mod.Linear(32 * 30, 10))
    else:
        model = mod.Sequential(mod.Conv2d(1, 16, 3, padding=1), mod.BatchNorm2d(16), mod.ReLU(),
                               mod.Conv2d(16, 32, 3, padding=1), mod.BatchNorm2d(32), mod.ReLU(),
                               mod.MaxPool2d(2), mod.Flatten(), mod.Linear(32 * 4 * 4, 10))
    return model, losses.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=LR)


def epoch_fn(lib, name, batch):
    """Return a function that trains ``name`` for one epoch with ``lib`` ("pydl" or "torch")."""
    x, y = dataset(name)
    model, loss, opt = build(lib, name)
    if lib == "pydl":
        trainer = pydl.train.Trainer(model, loss, opt)
        return lambda: trainer.fit(x, y, epochs=1, batch_size=batch, verbose=0)
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()

    def epoch():
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            out = loss(model(xt[idx]), yt[idx])
            out.backward()
            opt.step()
            out.item()

    return epoch


@pytest.mark.parametrize("impl", ["pydl", "torch"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", MODELS)
def test_train_cnn(benchmark, threads, name, batch, impl):
    benchmark.group = f"fit-{name}-b{batch}[{threads}t]"
    benchmark.extra_info["samples"] = len(dataset(name)[1])
    if impl == "pydl":
        benchmark.pedantic(epoch_fn("pydl", name, batch), rounds=ROUNDS, iterations=1,
                           warmup_rounds=1)
        return
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        benchmark.pedantic(epoch_fn("torch", name, batch), rounds=ROUNDS, iterations=1,
                           warmup_rounds=1)
    finally:
        torch.set_num_threads(previous)


def main(rounds):
    """Alternate pydl and torch epochs per configuration; print best-of times and the ratio."""
    import torch

    print(f"{'model':>7} {'batch':>5} {'threads':>7} | {'pydl ms':>8} {'torch ms':>8} | "
          f"pydl speed-up (torch / pydl time), best of {rounds} alternating epochs")
    for name in MODELS:
        for batch in BATCHES:
            for threads in (1, 2):
                pydl.set_num_threads(threads)
                torch.set_num_threads(threads)
                fns = {lib: epoch_fn(lib, name, batch) for lib in ("pydl", "torch")}
                best = {lib: float("inf") for lib in fns}
                for fn in fns.values():  # warm-up: recording, allocation, oneDNN primitives
                    fn()
                for _ in range(rounds):
                    for lib, fn in fns.items():
                        start = time.perf_counter()
                        fn()
                        best[lib] = min(best[lib], time.perf_counter() - start)
                print(f"{name:>7} {batch:>5} {threads:>7} | {best['pydl'] * 1e3:8.1f} "
                      f"{best['torch'] * 1e3:8.1f} | {best['torch'] / best['pydl']:.2f}x",
                      flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
