"""Small-batch inference of a 64-256-256-10 MLP (ReLU), float32, 1 thread, batch 1 and 32.

Side by side, each taking a numpy batch and giving a numpy array:

- ``pydl-no_grad``: ``with pydl.no_grad(): model(x)`` on a model in eval mode;
- ``pydl-predict``: ``Trainer.predict(x)``;
- ``numpy``: the same forward written with numpy (``x @ W.T + b``, ``np.maximum``);
- ``torch``: the same weights in ``torch.nn.Sequential`` under ``torch.inference_mode()``;
- ``onnxruntime``: the model exported with ``pydl.onnx.export``, run with one intra-op thread.

Issue 14's targets: pydl at batch 1 <= 5 us and <= 0.5x onnxruntime; at batch 32 <= 0.8x
onnxruntime; p99 within 2x of the median.

Two ways to run it:

- ``python -m pytest benches/bench_inference.py`` (pytest-benchmark; groups ``mlp-b1``,
  ``mlp-b32``; each entry's ``extra_info`` also holds its p99 in microseconds);
- ``PYTHONPATH=. python benches/bench_inference.py [--calls N] [--blocks B]``: times every call
  on its own and alternates the implementations in blocks (fairer on a busy machine), then prints
  median and p99 per implementation and the ratios to onnxruntime.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pytest

import pydl
from pydl import nn

SIZES = (64, 256, 256, 10)
BATCHES = (1, 32)


def make_model():
    pydl.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10)).eval()


def make_input(batch):
    return np.random.default_rng(1).standard_normal((batch, SIZES[0])).astype(np.float32)


def pydl_no_grad(model):
    def run(x):
        with pydl.no_grad():
            return model(x).data
    return run


def pydl_predict(model):
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
                                 pydl.optim.SGD(model.parameters(), lr=0.1))
    return trainer.predict


def numpy_forward(model):
    layers = [(m.weight.data.T.copy(), m.bias.data) for m in model if isinstance(m, nn.Linear)]

    def run(x):
        for i, (wt, b) in enumerate(layers):
            x = x @ wt
            x += b
            if i < len(layers) - 1:
                np.maximum(x, 0, out=x)
        return x
    return run


def torch_forward(model):
    import torch
    torch.set_num_threads(1)
    tmodel = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                 torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                 torch.nn.Linear(256, 10)).eval()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})

    def run(x):
        with torch.inference_mode():
            return tmodel(torch.from_numpy(x)).numpy()
    return run


def onnxruntime_forward(model, directory):
    import onnxruntime as ort
    path = os.path.join(directory, "mlp.onnx")
    pydl.onnx.export(model, path, (None, SIZES[0]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(x):
        return session.run(None, {"input": x})[0]
    return run


def implementations(model, directory):
    """Return {name: fn(x) -> ndarray} for every implementation whose package is installed."""
    impls = {"pydl-no_grad": pydl_no_grad(model), "pydl-predict": pydl_predict(model),
             "numpy": numpy_forward(model)}
    for name, make in (("torch", torch_forward),
                       ("onnxruntime", lambda m: onnxruntime_forward(m, directory))):
        try:
            impls[name] = make(model)
        except ImportError:
            pass
    return impls


def check_agreement(impls, x):
    expected = impls["numpy"](x)
    for name, fn in impls.items():
        np.testing.assert_allclose(fn(x), expected, rtol=1e-4, atol=1e-5, err_msg=name)


# --- pytest-benchmark -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup():
    previous = pydl.get_num_threads()
    pydl.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    limits = threadpool_limits(limits=1) if threadpool_limits is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model()
        impls = implementations(model, tmp)
        check_agreement(impls, make_input(7))
        yield impls
    if limits is not None:
        limits.restore_original_limits()
    pydl.set_num_threads(previous)


@pytest.mark.parametrize("impl", ["pydl-no_grad", "pydl-predict", "numpy", "torch",
                                  "onnxruntime"])
@pytest.mark.parametrize("batch", BATCHES)
def test_mlp_inference(benchmark, setup, impl, batch):
    if impl not in setup:
        pytest.skip(f"{impl} is not installed")
    fn, x = setup[impl], make_input(batch)
    benchmark.group = f"mlp-b{batch}"
    benchmark.pedantic(fn, args=(x,), rounds=2000, iterations=1, warmup_rounds=200)
    if benchmark.stats is None:  # --benchmark-disable: the body ran once, nothing was timed
        return
    data = np.asarray(benchmark.stats.stats.data)
    benchmark.extra_info["p99_us"] = float(np.percentile(data, 99) * 1e6)
    benchmark.extra_info["median_us"] = float(np.median(data) * 1e6)


# --- standalone: alternating blocks, per-call times -----------------------------------------

def measure(impls, x, calls, blocks):
    """Time each call; alternate the implementations block by block; return {name: seconds[]}."""
    times = {name: [] for name in impls}
    for fn in impls.values():  # warm up caches, allocators and lazy initialisation
        for _ in range(50):
            fn(x)
    clock = time.perf_counter_ns
    for _ in range(blocks):
        for name, fn in impls.items():
            out = times[name]
            for _ in range(calls // blocks):
                t0 = clock()
                fn(x)
                out.append(clock() - t0)
    return {name: np.asarray(t) * 1e-9 for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per implementation")
    parser.add_argument("--blocks", type=int, default=20, help="alternation blocks")
    args = parser.parse_args(argv)
    pydl.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1)
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model()
        impls = implementations(model, tmp)
        check_agreement(impls, make_input(7))
        print(f"64-256-256-10 MLP, float32, 1 thread, {args.calls} calls each in {args.blocks} "
              f"alternating blocks; isa {pydl.cpu_info()['isa']}")
        print(f"{'batch':>5} {'implementation':<14} {'median us':>10} {'p99 us':>9} "
              f"{'p99/median':>10} {'median / onnxruntime':>21}")
        for batch in BATCHES:
            t = measure(impls, make_input(batch), args.calls, args.blocks)
            ref = np.median(t["onnxruntime"]) if "onnxruntime" in t else None
            for name, s in t.items():
                med, p99 = np.median(s) * 1e6, np.percentile(s, 99) * 1e6
                ratio = f"{med / (ref * 1e6):.2f}x" if ref else "-"
                print(f"{batch:>5} {name:<14} {med:>10.1f} {p99:>9.1f} {p99 / med:>10.2f} "
                      f"{ratio:>21}")


if __name__ == "__main__":
    sys.exit(main())
