"""In-place optimizer steps on 1e6 float32 parameters: pydl's one-pass kernels vs numpy in-place
expressions of the same update."""

import math

import numpy as np
import pytest

from pydl import kernels as K

N = 1_000_000
LR, MOMENTUM = 0.01, 0.9
BETA1, BETA2, EPS, STEP = 0.9, 0.999, 1e-8, 10


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    p = rng.standard_normal(N).astype(np.float32)
    g = rng.standard_normal(N).astype(np.float32)
    return p, g, np.zeros(N, np.float32), np.zeros(N, np.float32), np.empty(N, np.float32)


def numpy_sgd(p, g, buf):
    buf *= MOMENTUM
    buf += g
    p -= LR * buf


def numpy_adam(p, g, m, v, tmp):
    step_size = LR / (1 - BETA1**STEP)
    bc2_sqrt = math.sqrt(1 - BETA2**STEP)
    m *= BETA1
    np.multiply(g, 1 - BETA1, out=tmp)
    m += tmp
    v *= BETA2
    np.multiply(g, g, out=tmp)
    tmp *= 1 - BETA2
    v += tmp
    np.sqrt(v, out=tmp)
    tmp /= bc2_sqrt
    tmp += EPS
    np.divide(m, tmp, out=tmp)
    tmp *= step_size
    p -= tmp


@pytest.mark.parametrize("impl", ["pydl", "numpy"])
def test_sgd_momentum(benchmark, threads, impl, arrays):
    p, g, buf, _, _ = arrays
    benchmark.group = f"sgd_momentum_1e6[{threads}t]"
    if impl == "pydl":
        benchmark(lambda: K.sgd_update(p, g, buf, lr=LR, momentum=MOMENTUM))
    else:
        benchmark(numpy_sgd, p, g, buf)


@pytest.mark.parametrize("impl", ["pydl", "numpy"])
def test_adam(benchmark, threads, impl, arrays):
    p, g, m, v, tmp = arrays
    benchmark.group = f"adam_1e6[{threads}t]"
    if impl == "pydl":
        kw = dict(step=STEP, lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS)
        benchmark(lambda: K.adam_update(p, g, m, v, **kw))
    else:
        benchmark(numpy_adam, p, g, m, v, tmp)


MLP_SHAPES = [(512, 784), (512,), (256, 512), (256,), (10, 256), (10,)]  # 784-512-256-10


@pytest.mark.parametrize("impl", ["pydl_multi", "pydl_per_parameter", "numpy"])
def test_adam_mlp_step(benchmark, threads, impl):
    """One Adam update of a 784-512-256-10 MLP: the all-or-nothing multi kernel (gradient scan
    first) against one unchecked kernel call per parameter; their difference is the price of the
    check (compare it with bench_training_step's batch-32 step of the same MLP)."""
    rng = np.random.default_rng(0)
    ps = [rng.standard_normal(s).astype(np.float32) for s in MLP_SHAPES]
    gs = [rng.standard_normal(s).astype(np.float32) for s in MLP_SHAPES]
    ms = [np.zeros(s, np.float32) for s in MLP_SHAPES]
    vs = [np.zeros(s, np.float32) for s in MLP_SHAPES]
    benchmark.group = f"adam_mlp_784_512_256_10[{threads}t]"
    kw = dict(lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS)
    if impl == "pydl_multi":
        benchmark(lambda: K.adam_update_multi(ps, gs, ms, vs, steps=STEP, **kw))
    elif impl == "pydl_per_parameter":
        benchmark(lambda: [K.adam_update(p, g, m, v, step=STEP, **kw)
                           for p, g, m, v in zip(ps, gs, ms, vs)])
    else:
        tmps = [np.empty(s, np.float32) for s in MLP_SHAPES]
        benchmark(lambda: [numpy_adam(p, g, m, v, t) for p, g, m, v, t in
                           zip(ps, gs, ms, vs, tmps)])
