"""GEMM benchmarks: pydl vs numpy (its BLAS) vs PyTorch, side by side (float32 unless named).

Each group "<case>[<threads>t]" holds a "pydl", a "numpy" and (when PyTorch is installed) a
"torch" entry computing the same product on the same arrays; `extra_info["flops"]` (2*m*n*k) lets
a report turn times into GFLOP/s. The `threads` fixture (conftest.py) sets pydl's and numpy's
thread counts; torch's is set here. Cases: square 256..2048, the MLP layer shapes (forward x @ W.T,
dx = dy @ W, dW = dy.T @ x at batch 32/128/512, and a 512x512x256 layer), the skinny shapes
(batch-1 and batch-8 inference, the 10-output classifier head), few-row x @ W.T at batch 1, 4,
8, 32 for four weight shapes in float32 and float64, and a fused linear + relu.

For a quiet-machine README table with alternating timing blocks and % of peak, use
tools/gemm_scan.py instead.
"""

import numpy as np
import pytest

from pydl.kernels import linear, matmul

try:
    import torch
except ImportError:
    torch = None

IMPLS = ["pydl", "numpy"] + (["torch"] if torch is not None else [])
SQUARE = [256, 512, 1024, 2048]
BATCHES = [32, 128, 512]
IN_FEATURES, OUT_FEATURES = 784, 512


def _arrays(*shapes, dtype=np.float32):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _run(benchmark, impl, threads, a, b, trans_a=False, trans_b=False):
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    if impl == "pydl":
        benchmark(lambda: matmul(a, b, trans_a=trans_a, trans_b=trans_b))
    elif impl == "numpy":
        benchmark(lambda: opa @ opb)
    else:
        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(opa), torch.from_numpy(opb)
        benchmark(lambda: torch.mm(ta, tb))


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
    _run(benchmark, impl, threads, a, b)


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
    _run(benchmark, impl, threads, a, b, trans_a, trans_b)


# (label, m, k, n, trans_b): op(A) m x k @ op(B) k x n with B stored as a weight (n x k) when
# trans_b, as a linear layer reads it.
SHAPES = [("mlp-512x512x256", 512, 512, 256, True), ("batch1-1x256x256", 1, 256, 256, True),
          ("batch1-1x64x256", 1, 64, 256, True), ("batch8-8x784x512", 8, 784, 512, True),
          ("head-b32-256to10", 32, 256, 10, True), ("head-b512-256to10", 512, 256, 10, True),
          ("head-b32-512to10", 32, 512, 10, True)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("label, m, k, n, trans_b", SHAPES, ids=[s[0] for s in SHAPES])
def test_shapes(benchmark, threads, impl, label, m, k, n, trans_b):
    a, b = _arrays((m, k), (n, k) if trans_b else (k, n))
    benchmark.group = f"gemm-{label}[{threads}t]"
    benchmark.extra_info["flops"] = 2 * m * n * k
    _run(benchmark, impl, threads, a, b, False, trans_b)


# Few-row x @ W.T (a linear layer's forward at serving batch sizes), W stored (n, k) row-major:
# the never-packing row kernel reading W across its rows. (m, n, k) for each W and batch 1-32.
FEW_ROW_WEIGHTS = [(256, 256), (256, 64), (10, 256), (512, 784)]
FEW_ROW_BATCHES = [1, 4, 8, 32]
FEW_ROW_CASES = [(m, n, k, dtype) for dtype in (np.float32, np.float64)
                 for n, k in FEW_ROW_WEIGHTS for m in FEW_ROW_BATCHES]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("m, n, k, dtype", FEW_ROW_CASES,
                         ids=[f"{np.dtype(d).name}-{m}x{k}-W{n}x{k}" for m, n, k, d in FEW_ROW_CASES])
def test_few_rows_x_wt(benchmark, threads, impl, m, n, k, dtype):
    x, w = _arrays((m, k), (n, k), dtype=dtype)
    benchmark.group = f"xWT-{np.dtype(dtype).name}-m{m}-W{n}x{k}[{threads}t]"
    benchmark.extra_info["flops"] = 2 * m * n * k
    _run(benchmark, impl, threads, x, w, False, True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", BATCHES)
def test_linear_relu(benchmark, threads, impl, batch):
    x, w, b = _arrays((batch, IN_FEATURES), (OUT_FEATURES, IN_FEATURES), (OUT_FEATURES,))
    benchmark.group = f"linear-relu-b{batch}[{threads}t]"
    benchmark.extra_info["flops"] = 2 * batch * IN_FEATURES * OUT_FEATURES
    if impl == "pydl":
        benchmark(linear, x, w, b, "relu")
    elif impl == "numpy":
        benchmark(lambda: np.maximum(x @ w.T + b, 0))
    else:
        torch.set_num_threads(threads)
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        benchmark(lambda: torch.relu(torch.nn.functional.linear(tx, tw, tb)))
