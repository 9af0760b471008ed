"""softmax_cross_entropy forward+backward: pydl's fused kernel vs the numpy expression."""

import numpy as np
import pytest

from pydl import kernels as K

SHAPES = [(32, 10), (512, 10), (512, 1000)]


def numpy_softmax_cross_entropy(x, y):
    """Mean loss and gradient: log-softmax via max/exp/sum/log, grad = (softmax - onehot) / N."""
    n = x.shape[0]
    rows = np.arange(n)
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) - z[rows, y]))
    d = e / s
    d[rows, y] -= 1.0
    d /= n
    return loss, d


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("impl", ["pydl", "numpy"])
def test_softmax_cross_entropy(benchmark, threads, impl, shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    y = rng.integers(0, shape[1], shape[0])
    fn = K.softmax_cross_entropy if impl == "pydl" else numpy_softmax_cross_entropy
    loss, d = fn(x, y)
    want_loss, want_d = numpy_softmax_cross_entropy(x.astype(np.float64), y)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(d, want_d, rtol=1e-4, atol=1e-6)
    benchmark.group = f"softmax_cross_entropy_{shape[0]}x{shape[1]}[{threads}t]"
    benchmark(fn, x, y)


def numpy_bce_with_logits(x, t):
    """Mean loss and gradient: softplus via logaddexp, grad = (sigmoid - t) / N."""
    loss = float(np.mean(np.logaddexp(0, x) - x * t))
    return loss, (1 / (1 + np.exp(-x)) - t) / x.size


BCE_SIZES = {"1e4": 10_000, "1e6": 1_000_000}


@pytest.mark.parametrize("size", list(BCE_SIZES))
@pytest.mark.parametrize("impl", ["pydl", "numpy"])
def test_bce_with_logits(benchmark, threads, impl, size):
    rng = np.random.default_rng(0)
    n = BCE_SIZES[size]
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    t = rng.random(n).astype(np.float32)
    fn = K.bce_with_logits if impl == "pydl" else numpy_bce_with_logits
    loss, d = fn(x, t)
    want_loss, want_d = numpy_bce_with_logits(x.astype(np.float64), t.astype(np.float64))
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(d, want_d, rtol=1e-4, atol=1e-10)
    benchmark.group = f"bce_with_logits_{size}[{threads}t]"
    benchmark(fn, x, t)
