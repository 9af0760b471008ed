"""Dropout forward (mask + apply) and backward: pydl against the plain numpy expressions."""

import numpy as np
import pytest

from pydl import kernels as K

P = 0.2
SIZES = {"1e4": 10_000, "1e6": 1_000_000}


@pytest.mark.parametrize("impl", ["pydl", "numpy"])
@pytest.mark.parametrize("size", list(SIZES))
def test_dropout_forward(benchmark, threads, impl, size):
    x = np.random.default_rng(0).standard_normal(SIZES[size]).astype(np.float32)
    benchmark.group = f"dropout-fwd-{size}[{threads}t]"
    if impl == "pydl":
        benchmark(lambda: K.dropout(x, P, seed=1234, step=1))
    else:
        rng = np.random.default_rng()
        benchmark(lambda: (rng.random(x.shape) >= P) * x / (1 - P))


@pytest.mark.parametrize("impl", ["pydl", "numpy"])
@pytest.mark.parametrize("size", list(SIZES))
def test_dropout_backward(benchmark, threads, impl, size):
    dy = np.random.default_rng(0).standard_normal(SIZES[size]).astype(np.float32)
    mask = K.dropout_mask(dy.shape, P, seed=1234)
    benchmark.group = f"dropout-bwd-{size}[{threads}t]"
    if impl == "pydl":
        benchmark(lambda: K.dropout_backward(dy, mask, P))
    else:
        benchmark(lambda: dy * mask / (1 - P))
