"""Activation kernels vs the shortest idiomatic numpy expression, float32, 1e4 and 1e6 elements.

pydl writes into a preallocated ``out=`` array, as a training step that reuses its buffers does.
The allocating form (``out=None``) measured the same within noise here (relu, 1 thread: 0.63 vs
0.67 us at 1e4, 65 vs 65 us at 1e6) because numpy's allocator hands back the block just freed;
in a real step with many live arrays expect the page faults of a fresh 4 MB buffer at 1e6 on top.
numpy's expressions allocate one temporary per operation.
Softmax runs over the rows of a (rows, 1000) array.
"""

import numpy as np
import pytest

from pydl import kernels as K

SLOPE, ALPHA = 0.01, 1.0
SIZES = {"1e4": 10_000, "1e6": 1_000_000}
COLS = 1000  # softmax row length


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# name -> (numpy forward, numpy backward from (dy, y), pydl forward, pydl backward)
CASES = {
    "relu": (
        lambda x: np.maximum(x, 0),
        lambda dy, y: dy * (y > 0),
        lambda x, out: K.relu(x, out=out),
        lambda dy, y, out: K.relu_backward(dy, y, out=out),
    ),
    "leaky_relu": (
        lambda x: np.where(x > 0, x, SLOPE * x),
        lambda dy, y: dy * np.where(y > 0, 1, SLOPE),
        lambda x, out: K.leaky_relu(x, SLOPE, out=out),
        lambda dy, y, out: K.leaky_relu_backward(dy, y, SLOPE, out=out),
    ),
    "elu": (
        lambda x: np.where(x > 0, x, ALPHA * np.expm1(x)),
        lambda dy, y: dy * np.where(y > 0, 1, y + ALPHA),
        lambda x, out: K.elu(x, ALPHA, out=out),
        lambda dy, y, out: K.elu_backward(dy, y, ALPHA, out=out),
    ),
    "sigmoid": (
        lambda x: 1 / (1 + np.exp(-x)),
        lambda dy, y: dy * y * (1 - y),
        lambda x, out: K.sigmoid(x, out=out),
        lambda dy, y, out: K.sigmoid_backward(dy, y, out=out),
    ),
    "tanh": (
        np.tanh,
        lambda dy, y: dy * (1 - y * y),
        lambda x, out: K.tanh(x, out=out),
        lambda dy, y, out: K.tanh_backward(dy, y, out=out),
    ),
    "softmax": (
        _np_softmax,
        lambda dy, y: y * (dy - (dy * y).sum(-1, keepdims=True)),
        lambda x, out: K.softmax(x, out=out),
        lambda dy, y, out: K.softmax_backward(dy, y, out=out),
    ),
}


@pytest.mark.parametrize("impl", ["pydl", "numpy"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
@pytest.mark.parametrize("name", list(CASES))
def test_activation(benchmark, threads, name, direction, size, impl):
    benchmark.group = f"{name}-{direction}-{size}[{threads}t]"
    n = SIZES[size]
    shape = (n // COLS, COLS) if name == "softmax" else (n,)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    np_fwd, np_bwd, pd_fwd, pd_bwd = CASES[name]
    y = np_fwd(x).astype(np.float32)
    out = np.empty_like(x)
    if impl == "numpy":
        if direction == "fwd":
            benchmark(np_fwd, x)
        else:
            benchmark(np_bwd, dy, y)
    elif direction == "fwd":
        benchmark(pd_fwd, x, out)
    else:
        benchmark(pd_bwd, dy, y, out)
