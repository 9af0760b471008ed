"""pydl.kernels pooling (max, average, adaptive average; 1-d and 2-d) vs PyTorch in float64."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import pydl
from pydl import kernels as K


def torch_pool(kind, x, nd, *args, **kw):
    X = torch.tensor(x, requires_grad=True)
    fn = {("max", 1): TF.max_pool1d, ("max", 2): TF.max_pool2d, ("avg", 1): TF.avg_pool1d,
          ("avg", 2): TF.avg_pool2d, ("ada", 1): TF.adaptive_avg_pool1d,
          ("ada", 2): TF.adaptive_avg_pool2d}[(kind, nd)]
    return X, fn(X, *args, **kw)


def random_window(rng, nd):
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    s = tuple(int(v) for v in rng.integers(1, 4, nd))
    p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    size = tuple(int(k[i] + rng.integers(0, 8)) for i in range(nd))
    return k, s, p, size


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", range(10))
def test_window_pooling_matches_torch(isa, kind, nd, seed):
    rng = np.random.default_rng(seed + 10 * nd)
    k, s, p, size = random_window(rng, nd)
    n, c = int(rng.choice([1, 3])), int(rng.integers(1, 4))
    x = rng.standard_normal((n, c) + size)
    stride = None if seed % 3 == 0 else s
    X, Y = torch_pool(kind, x, nd, k, stride if stride is not None else k, p)
    dy = rng.standard_normal(tuple(Y.shape))
    Y.backward(torch.tensor(dy))
    if kind == "max":
        y, idx = K.max_pool_forward(x, k, stride, p)
        dx = K.max_pool_backward(dy, idx, x.shape)
        assert idx.dtype == np.int64
    else:
        y = K.avg_pool_forward(x, k, stride, p)
        dx = K.avg_pool_backward(dy, x.shape, k, stride, p)
    np.testing.assert_allclose(y, Y.detach().numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, X.grad.numpy(), rtol=1e-13, atol=1e-13)


def reference_max_pool2d(x, k, s, p):
    """Plain loops: the first maximum of each window in row-major order, a NaN (the first) wins."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    y = np.empty((n, c, oh, ow), x.dtype)
    idx = np.empty((n, c, oh, ow), np.int64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    best = None
                    for ih in range(max(i * s[0] - p[0], 0), min(i * s[0] - p[0] + k[0], h)):
                        for iw in range(max(j * s[1] - p[1], 0), min(j * s[1] - p[1] + k[1], w)):
                            v = x[a, b, ih, iw]
                            if best is None or v > best[0] or (np.isnan(v) and not np.isnan(best[0])):
                                best = (v, ih * w + iw)
                    y[a, b, i, j], idx[a, b, i, j] = best
    return y, idx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [((2, 2), (2, 2), (0, 0), (8, 8)), ((3, 3), (2, 2), (1, 1), (9, 40)),
                                  ((2, 3), (1, 1), (0, 1), (5, 37)), ((3, 2), (3, 3), (1, 0), (11, 50)),
                                  ((2, 2), (2, 2), (0, 0), (6, 70)), ((1, 4), (2, 4), (0, 2), (4, 33))])
def test_max_pool_ties_and_nans_match_plain_loops(isa, dtype, case, rng):
    # Values from {0, 1, 2} (ties in almost every window, as after a ReLU) with a few NaNs: the
    # vectorised scans must pick the same element as the plain row-major scan, narrow rows (lanes
    # over several rows) and wide rows (lanes along one row) alike.
    k, s, p, size = case
    x = rng.integers(0, 3, (2, 3) + size).astype(dtype)
    x[rng.random(x.shape) < 0.03] = np.nan
    y, idx = K.max_pool_forward(x, k, s, p)
    ry, ridx = reference_max_pool2d(x, k, s, p)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ridx)


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("out", [1, 2, 3, 5, 7])
def test_adaptive_avg_matches_torch(isa, nd, out, rng):
    size = (7, 5)[:nd] if nd == 2 else (11,)
    x = rng.standard_normal((2, 3) + size)
    osz = (out,) * nd
    X, Y = torch_pool("ada", x, nd, osz)
    dy = rng.standard_normal(tuple(Y.shape))
    Y.backward(torch.tensor(dy))
    y = K.adaptive_avg_pool_forward(x, osz if nd == 2 else out)
    dx = K.adaptive_avg_pool_backward(dy, x.shape)
    np.testing.assert_allclose(y, Y.detach().numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, X.grad.numpy(), rtol=1e-13, atol=1e-13)


def test_numpy_oracle_float32(rng):
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    y, _ = K.max_pool_forward(x, 2)
    ref = x.reshape(4, 3, 4, 2, 4, 2).max(axis=(3, 5))
    assert y.dtype == np.float32 and np.array_equal(y, ref)
    np.testing.assert_allclose(K.avg_pool_forward(x, 2), x.reshape(4, 3, 4, 2, 4, 2).mean(axis=(3, 5)),
                               rtol=1e-6)
    np.testing.assert_allclose(K.adaptive_avg_pool_forward(x, 1)[..., 0, 0],
                               x.mean(axis=(2, 3)), rtol=1e-5)


def test_max_pool_nan_and_ties():
    x = np.array([[[1.0, np.nan, 0.5, 2.0, 2.0, 1.0]]])
    y, idx = K.max_pool_forward(x, 2)
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 2.0 and y[0, 0, 2] == 2.0
    assert idx[0, 0, 2] == 4  # first of the tied maxima in window [4, 6)


def test_bit_identical_for_any_thread_count(isa, rng):
    x = rng.standard_normal((16, 32, 32, 32)).astype(np.float32)
    prev = pydl.get_num_threads()
    res = []
    try:
        for t in (1, 2):
            pydl.set_num_threads(t)
            y, idx = K.max_pool_forward(x, 3, 2, 1)
            res.append((y, K.max_pool_backward(y, idx, x.shape), K.avg_pool_forward(x, 3, 2, 1),
                        K.adaptive_avg_pool_forward(x, (3, 5))))
    finally:
        pydl.set_num_threads(prev)
    for a, b in zip(*res):
        assert np.array_equal(a, b)


def test_bad_inputs():
    x = np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError, match="at most half the kernel"):
        K.max_pool_forward(x, 2, 1, 2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        K.avg_pool_forward(x, 7)
    with pytest.raises(ValueError, match=r"\(N, C, L\) or \(N, C, H, W\), got shape \(5, 5\)"):
        K.max_pool_forward(np.zeros((5, 5)), 2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        K.avg_pool_forward(x, 0)
    with pytest.raises(TypeError):
        K.max_pool_forward(x.astype(np.int32), 2)
    with pytest.raises(ValueError, match="output_size must be >= 1"):
        K.adaptive_avg_pool_forward(x, 0)
    y, idx = K.max_pool_forward(x, 2)
    with pytest.raises(ValueError, match="dy must have shape"):
        K.avg_pool_backward(np.zeros((2, 3, 3, 3)), x.shape, 2)
    with pytest.raises(ValueError, match="out of range"):
        K.max_pool_backward(y, idx + 100, x.shape)
    with pytest.raises(ValueError, match="does not match input_shape"):
        K.adaptive_avg_pool_backward(np.zeros((2, 4, 1, 1)), x.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_writes_into_a_given_array(isa, dtype, rng):
    # Oracle: the same call without `out`, bit for bit; NaN in `out` beforehand must not leak.
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    y, idx = K.max_pool_forward(x, 3, 2, 1)
    dy = rng.standard_normal(y.shape).astype(dtype)
    calls = {
        "max": lambda **o: K.max_pool_backward(dy, idx, x.shape, **o),
        "max-int32-idx": lambda **o: K.max_pool_backward(dy, idx.astype(np.int32), x.shape, **o),
        "max-strided-idx": lambda **o: K.max_pool_backward(
            dy, np.repeat(idx, 2, axis=-1)[..., ::2], x.shape, **o),
        "avg": lambda **o: K.avg_pool_backward(dy, x.shape, 3, 2, 1, **o),
        "adaptive": lambda **o: K.adaptive_avg_pool_backward(dy, x.shape, **o),
    }
    for name, call in calls.items():
        ref = call()
        out = np.full(x.shape, np.nan, dtype)
        got = call(out=out)
        assert got is out and got.tobytes() == ref.tobytes(), name


def test_backward_refuses_bad_out_arrays(rng):
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    y, idx = K.max_pool_forward(x, 2)
    with pytest.raises(ValueError, match="out"):
        K.max_pool_backward(y, idx, x.shape, out=np.empty((1, 2, 6, 5), np.float32))
    with pytest.raises(TypeError, match="out"):
        K.avg_pool_backward(y, x.shape, 2, out=np.empty(x.shape, np.float64))
    with pytest.raises(ValueError, match="overlaps"):
        K.adaptive_avg_pool_backward(y, (1, 2, 3, 3), out=y)
    bad = idx.copy()
    bad[0, 1, 2, 0] = 36  # outside the 6x6 plane: named, nothing written
    out = np.zeros(x.shape, np.float32)
    with pytest.raises(ValueError, match="indices has value 36 at flat position"):
        K.max_pool_backward(y, bad, x.shape, out=out)
    assert not out.any()
