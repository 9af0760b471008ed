"""L2 penalty value + gradient accumulation: pydl against the plain numpy expressions."""

import numpy as np
import pytest

from pydl import kernels as K

WD = 5e-4


@pytest.mark.parametrize("impl", ["pydl", "numpy"])
def test_l2_penalty_value_and_grad(benchmark, threads, impl):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(1_000_000).astype(np.float32)
    grad = rng.standard_normal(w.shape).astype(np.float32)
    benchmark.group = f"l2-penalty-1e6[{threads}t]"
    if impl == "pydl":

        def step():
            value = K.l2_penalty(w, WD)
            K.l2_penalty_backward(grad, w, WD)
            return value

    else:

        def step():
            value = WD * np.sum(w * w)
            grad.__iadd__(2 * WD * w)
            return value

    benchmark(step)
