"""End-to-end training throughput: one epoch, pydl's Trainer.fit beside numpy and PyTorch.

Workloads (synthetic data: fixed-seed standard normal inputs, random labels, float32):
- "mnist1d": 40 -> 256 -> 256 -> 10, 4,000 samples;
- "mnist":   784 -> 512 -> 256 -> 10, 20,000 samples;
both with ReLU and Dropout(0.2) after each hidden layer, mean softmax cross-entropy and SGD with
momentum 0.9 and weight decay 5e-4 (PyTorch's rule), on shuffled mini-batches of 32, 128 and 512.

Each implementation trains one warm-up epoch, then the timed rounds are one full epoch each
(PYDL_BENCH_ROUNDS, default 1). extra_info["samples"] holds the samples per round, so
``python benches/report.py benches/bench_training.py`` prints samples/s and the ratios.

- "pydl": the user path, ``pydl.train.Trainer(model, CrossEntropyLoss(), SGD(...)).fit(x, y,
  epochs=1, batch_size=b, verbose=0)`` with the default metrics (accuracy);
- "numpy": the same step written by hand (in place where numpy allows, flat parameter buffers
  so the update is a few whole-buffer operations);
- "torch": the usual PyTorch loop (randperm, index, zero_grad, forward, loss, backward, step),
  with ``torch.set_num_threads`` set to the thread count; torch comes with the test extra.

``test_train_models`` covers the four models of issue 10 on the "mnist1d" data (40 -> 256 -> 256
-> 10, 4,000 samples), batch 32 and 512, pydl's Trainer.fit (recorded once, replayed after by
pydl.engine) beside the same PyTorch loop:
- "mlp-ce-sgd": the MLP above (ReLU, dropout 0.2) + cross-entropy + SGD momentum 0.9 (its numpy
  version is ``test_train_epoch``'s);
- "mlp-mse-adam": the MLP (no dropout) + MSE on 10 regression targets + Adam;
- "residual-ce-adamw": a custom Module ``out(h + relu(block(h)))`` with ``h = relu(inp(x))`` +
  cross-entropy + AdamW;
- "frozen-bce-adam": the MLP with its first Linear frozen + BCE-with-logits on 10 binary targets
  + Adam.
"""

import os

import numpy as np
import pytest

import pydl
from pydl import nn

WORKLOADS = {
    "mnist1d": ((40, 256, 256, 10), 4000),
    "mnist": ((784, 512, 256, 10), 20000),
}
P_DROP = 0.2
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
ROUNDS = int(os.environ.get("PYDL_BENCH_ROUNDS", "1"))

_DATA = {}


def dataset(workload):
    """Return the (x, y) of a workload: standard normal float32 inputs, random int64 labels."""
    if workload not in _DATA:
        sizes, n = WORKLOADS[workload]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, sizes[0]), dtype=np.float32)
        y = rng.integers(0, sizes[-1], n)
        _DATA[workload] = (x, y)
    return _DATA[workload]


def flops_per_sample(sizes):
    """GEMM flops per sample, forward + backward: 2*in*out for y, dx and dW (no dx at layer 0)."""
    total = 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        total += 2 * a * b * (2 if i == 0 else 3)
    return total


def pydl_epoch_fn(sizes, x, y, batch):
    pydl.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), nn.Dropout(P_DROP)]
    model = nn.Sequential(*layers)
    opt = pydl.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), opt)

    def epoch():
        trainer.fit(x, y, epochs=1, batch_size=batch, verbose=0)

    return epoch


class NumpyMLP:
    """The same MLP, step and shuffling in plain numpy."""

    def __init__(self, sizes, batch):
        rng = np.random.default_rng(0)
        self.rng = rng
        self.batch = batch
        layers = list(zip(sizes[:-1], sizes[1:]))
        total = sum(b * a + b for a, b in layers)
        # All parameters (and their gradients and momentum buffers) live in one flat buffer each,
        # so the SGD update is a handful of whole-buffer operations.
        self.flat = np.empty(total, np.float32)
        self.gflat = np.empty(total, np.float32)
        self.vflat = np.zeros(total, np.float32)
        self.params, self.grads = [], []
        offset = 0
        for a, b in layers:
            bound = 1.0 / np.sqrt(a)
            for shape in ((b, a), (b,)):
                size = int(np.prod(shape))
                p = self.flat[offset:offset + size].reshape(shape)
                p[...] = rng.uniform(-bound, bound, shape)
                self.params.append(p)
                self.grads.append(self.gflat[offset:offset + size].reshape(shape))
                offset += size
        self.first = True
        self.scale = np.float32(1.0 / (1.0 - P_DROP))

    def epoch(self, x, y):
        n = len(x)
        order = self.rng.permutation(n)
        total = 0.0
        for start in range(0, n, self.batch):
            idx = order[start:start + self.batch]
            total += self.step(x[idx], y[idx]) * len(idx)
        return total / n

    def step(self, x, y):
        n = x.shape[0]
        ws, bs = self.params[0::2], self.params[1::2]
        gws, gbs = self.grads[0::2], self.grads[1::2]
        last = len(ws) - 1
        # forward: hidden layers are relu then dropout, in place
        acts = [x]
        h = x
        for i, (w, b) in enumerate(zip(ws, bs)):
            z = h @ w.T
            z += b
            if i < last:
                np.maximum(z, 0, out=z)
                z *= self.rng.random(z.shape, dtype=np.float32) >= P_DROP
                z *= self.scale
                acts.append(z)
            h = z
        # mean softmax cross-entropy; its gradient overwrites the probabilities
        h -= h.max(axis=1, keepdims=True)
        np.exp(h, out=h)
        h /= h.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = -np.log(h[rows, y]).mean()
        h[rows, y] -= 1.0
        h *= np.float32(1.0 / n)
        d = h
        # backward: after dropout a unit is nonzero exactly when relu and the mask both kept it,
        # so one comparison gives both masks; dW goes straight into the flat gradient buffer
        for i in range(last, -1, -1):
            np.matmul(d.T, acts[i], out=gws[i])
            np.sum(d, axis=0, out=gbs[i])
            if i > 0:
                d = d @ ws[i]
                d *= acts[i] > 0
                d *= self.scale
        # SGD, momentum 0.9, coupled weight decay, PyTorch's rule (first buffer = the gradient)
        g = self.gflat
        g += WEIGHT_DECAY * self.flat
        if self.first:
            self.vflat[...] = g
            self.first = False
        else:
            self.vflat *= MOMENTUM
            self.vflat += g
        self.flat -= LR * self.vflat
        return float(loss)


def torch_epoch_fn(torch, sizes, x, y, batch):
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [torch.nn.ReLU(), torch.nn.Dropout(P_DROP)]
    model = torch.nn.Sequential(*layers)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    cross_entropy = torch.nn.functional.cross_entropy
    n = len(x)

    def epoch():
        order = torch.randperm(n)
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad()
            loss = cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / n

    return epoch


@pytest.mark.parametrize("impl", ["pydl", "numpy", "torch"])
@pytest.mark.parametrize("batch", [32, 128, 512])
@pytest.mark.parametrize("workload", ["mnist1d", "mnist"])
def test_train_epoch(benchmark, threads, workload, batch, impl):
    sizes, n = WORKLOADS[workload]
    x, y = dataset(workload)
    benchmark.group = f"train-{workload}-b{batch}[{threads}t]"
    benchmark.extra_info["samples"] = n
    benchmark.extra_info["flops"] = n * flops_per_sample(sizes)
    if impl == "pydl":
        epoch = pydl_epoch_fn(sizes, x, y, batch)
    elif impl == "numpy":
        mlp = NumpyMLP(sizes, batch)

        def epoch():
            mlp.epoch(x, y)
    else:
        import torch
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            epoch = torch_epoch_fn(torch, sizes, x, y, batch)
            benchmark.pedantic(epoch, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        finally:
            torch.set_num_threads(previous)
        return
    benchmark.pedantic(epoch, rounds=ROUNDS, iterations=1, warmup_rounds=1)


# --- the four models of issue 10 -----------------------------------------------------------------
MODELS = ("mlp-ce-sgd", "mlp-mse-adam", "residual-ce-adamw", "frozen-bce-adam")


def _targets(kind, y, n_out):
    rng = np.random.default_rng(1)
    if kind == "mse":
        return rng.standard_normal((len(y), n_out), dtype=np.float32)
    if kind == "bce":
        return (rng.random((len(y), n_out)) < 0.5).astype(np.float32)
    return y


def _mlp(mod, sizes, drop):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(mod.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [mod.ReLU()] + ([mod.Dropout(drop)] if drop else [])
    return mod.Sequential(*layers)


def _residual(mod, relu, sizes):
    a, h, _, c = sizes

    class Residual(mod.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.block, self.out = mod.Linear(a, h), mod.Linear(h, h), mod.Linear(h, c)

        def forward(self, x):
            h = relu(self.inp(x))
            return self.out(h + relu(self.block(h)))

    return Residual()


def _build(lib, name, sizes):
    """Return (model, loss, optimizer, target kind) of one model, in pydl or torch."""
    if lib == "torch":
        import torch

        torch.manual_seed(0)
        mod, losses, optim, relu = torch.nn, torch.nn, torch.optim, torch.relu
    else:
        pydl.manual_seed(0)
        mod, losses, optim, relu = nn, pydl.losses, pydl.optim, pydl.functional.relu
    if name == "mlp-ce-sgd":
        model = _mlp(mod, sizes, P_DROP)
        return model, losses.CrossEntropyLoss(), optim.SGD(
            model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY), "ce"
    if name == "mlp-mse-adam":
        model = _mlp(mod, sizes, 0.0)
        return model, losses.MSELoss(), optim.Adam(model.parameters(), lr=1e-3), "mse"
    if name == "residual-ce-adamw":
        model = _residual(mod, relu, sizes)
        return model, losses.CrossEntropyLoss(), optim.AdamW(model.parameters(), lr=1e-3), "ce"
    model = _mlp(mod, sizes, 0.0)
    for p in model[0].parameters():
        p.requires_grad = False
    params = [p for p in model.parameters() if p.requires_grad]
    return model, losses.BCEWithLogitsLoss(), optim.Adam(params, lr=1e-3), "bce"


def _torch_loop(torch, model, loss_fn, opt, x, y, batch):
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = len(x)

    def epoch():
        order = torch.randperm(n)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            loss.item()

    return epoch


@pytest.mark.parametrize("impl", ["pydl", "torch"])
@pytest.mark.parametrize("batch", [32, 512])
@pytest.mark.parametrize("model_name", MODELS)
def test_train_models(benchmark, threads, model_name, batch, impl):
    sizes, n = WORKLOADS["mnist1d"]
    x, labels = dataset("mnist1d")
    benchmark.group = f"fit-{model_name}-b{batch}[{threads}t]"
    benchmark.extra_info["samples"] = n
    if impl == "pydl":
        model, loss, opt, kind = _build("pydl", model_name, sizes)
        y = _targets(kind, labels, sizes[-1])
        trainer = pydl.train.Trainer(model, loss, opt)

        def epoch():
            trainer.fit(x, y, epochs=1, batch_size=batch, verbose=0)

        benchmark.pedantic(epoch, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        return
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, loss, opt, kind = _build("torch", model_name, sizes)
        y = _targets(kind, labels, sizes[-1])
        epoch = _torch_loop(torch, model, loss, opt, x, y, batch)
        benchmark.pedantic(epoch, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    finally:
        torch.set_num_threads(previous)


def test_fit_scan_table_runs():
    # benches/fit_scan.py (alternating epochs of pydl, torch and numpy) on a few samples: the
    # script the README's Trainer.fit table comes from keeps working.
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fit_scan.py")
    spec = importlib.util.spec_from_file_location("fit_scan", path)
    fit_scan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit_scan)
    lines = []
    results = fit_scan.run(rounds=1, threads=(1,), batches=(32,), models=("mlp-ce-sgd",), n=64,
                           out=lines.append)
    times = results[("mlp-ce-sgd", 32, 1)]
    assert set(times) == {"pydl", "torch", "numpy"} and all(len(t) == 1 for t in times.values())
    assert lines[2].startswith("| mlp-ce-sgd b32 [1t] |")
