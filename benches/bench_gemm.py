"""GEMM benchmarks: pydl vs numpy (OpenBLAS) on square float32 products and MLP layer shapes.

Each group "<case>[<threads>t]" holds a "pydl" and a "numpy" entry computing the same product on
the same arrays; `extra_info["flops"]` (2*m*n*k) lets a report turn times into GFLOP/s.
"""

import numpy as np
import pytest

from pydl.kernels import linear, matmul

IMPLS = ["pydl", "numpy"]
SQUARE = [128, 256, 512, 1024, 2048]
BATCHES = [32, 128, 512]
IN_FEATURES, OUT_FEATURES = 784, 512


def _arrays(*shapes, dtype=np.float32):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# float32 at every square size; float64 where the tuning target names it.
SQUARE_CASES = [("gemm", np.float32, n) for n in SQUARE] + [
    ("dgemm", np.float64, n) for n in (512, 1024)
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("prefix, dtype, n", SQUARE_CASES, ids=lambda v: getattr(v, "__name__", v))
def test_square(benchmark, threads, impl, prefix, dtype, n):
    a, b = _arrays((n, n), (n, n), dtype=dtype)
    benchmark.group = f"{prefix}-square-{n}[{threads}t]"
    benchmark.extra_info["flops"] = 2 * n**3
    if impl == "pydl":
        benchmark(matmul, a, b)
    else:
        benchmark(np.matmul, a, b)


# (name, shape of a, shape of b, trans_a, trans_b) for one MLP layer 784 -> 512 at a batch size:
# forward x @ w.T, and the backward products dx = dy @ w and dw = dy.T @ x.
def _mlp_case(kind, batch):
    if kind == "fwd":
        return (batch, IN_FEATURES), (OUT_FEATURES, IN_FEATURES), False, True
    if kind == "dx":
        return (batch, OUT_FEATURES), (OUT_FEATURES, IN_FEATURES), False, False
    return (batch, OUT_FEATURES), (batch, IN_FEATURES), True, False


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["fwd", "dx", "dw"])
@pytest.mark.parametrize("batch", BATCHES)
def test_mlp(benchmark, threads, impl, kind, batch):
    shape_a, shape_b, trans_a, trans_b = _mlp_case(kind, batch)
    a, b = _arrays(shape_a, shape_b)
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    benchmark.group = f"gemm-mlp-b{batch}-{kind}[{threads}t]"
    benchmark.extra_info["flops"] = 2 * opa.shape[0] * opa.shape[1] * opb.shape[1]
    if impl == "pydl":
        benchmark(lambda: matmul(a, b, trans_a=trans_a, trans_b=trans_b))
    else:
        benchmark(lambda: opa @ opb)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", BATCHES)
def test_linear_relu(benchmark, threads, impl, batch):
    x, w, b = _arrays((batch, IN_FEATURES), (OUT_FEATURES, IN_FEATURES), (OUT_FEATURES,))
    benchmark.group = f"linear-relu-b{batch}[{threads}t]"
    benchmark.extra_info["flops"] = 2 * batch * IN_FEATURES * OUT_FEATURES
    if impl == "pydl":
        benchmark(linear, x, w, b, "relu")
    else:
        benchmark(lambda: np.maximum(x @ w.T + b, 0))
