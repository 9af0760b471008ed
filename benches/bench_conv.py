"""Convolution, pooling and batch norm, forward + backward: pydl vs PyTorch vs numpy, float32.

Shapes from the layers issue: Conv1d on MNIST-1D-like inputs (L = 40, C 1->32 and 32->32,
k 3/5, stride 1/2) and Conv2d on 8x8 digits (C 3->32) and 32x32 images (C 32->64, k 3), at batch
32 and 256; max pooling 2x2 and batch norm at the Conv2d output shapes. Each measurement is one
forward and the backward w.r.t. the input and the parameters. numpy's version is the shortest
one: sliding_window_view + tensordot (it materialises the unfolded input, as im2col does).

Run: ``python -m pytest benches/bench_conv.py --benchmark-only``.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from pydl import kernels as K

CONV = {  # name -> (N-independent shape: (C_in, spatial), (C_out, kernel), stride)
    "c1d-1to32-k5": ((1, (40,)), (32, (5,)), 1),
    "c1d-32to32-k3-s2": ((32, (40,)), (32, (3,)), 2),
    "c2d-8x8-3to32": ((3, (8, 8)), (32, (3, 3)), 1),
    "c2d-32x32-32to64": ((32, (32, 32)), (64, (3, 3)), 1),
}
BATCHES = [32, 256]


def _np_conv_fwd_bwd(x, w, dy, stride):
    """numpy: unfold, tensordot; backward by the same unfolded view (valid padding)."""
    nd = x.ndim - 2
    k = w.shape[2:]
    axes = tuple(range(2, 2 + nd))
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=axes)
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, stride) for _ in range(nd))]
    # win: (N, C, *out, *k); y: (N, O, *out)
    y = np.tensordot(win, w, axes=([1] + list(range(2 + nd, 2 + 2 * nd)),
                                   [1] + list(range(2, 2 + nd))))
    y = np.moveaxis(y, -1, 1)
    dw = np.tensordot(dy, win, axes=([0] + list(range(2, 2 + nd)),
                                     [0] + list(range(2, 2 + nd))))
    dcol = np.tensordot(dy, w, axes=([1], [0]))  # (N, *out, C, *k)
    dx = np.zeros_like(x)
    for idx in np.ndindex(*k):
        sl = (slice(None), slice(None)) + tuple(
            slice(i, i + stride * (o - 1) + 1, stride) for i, o in zip(idx, dy.shape[2:]))
        dx[sl] += np.moveaxis(dcol[(Ellipsis,) + idx], -1, 1)
    return y, dx, dw


@pytest.mark.parametrize("impl", ["pydl", "torch", "numpy"])
@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("name", list(CONV))
def test_conv_fwd_bwd(benchmark, threads, name, n, impl):
    (cin, size), (cout, k), stride = CONV[name]
    benchmark.group = f"conv-{name}-N{n}[{threads}t]"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, cin) + size).astype(np.float32)
    w = (rng.standard_normal((cout, cin) + k) * 0.1).astype(np.float32)
    b = np.zeros(cout, np.float32)
    y = K.conv_forward(x, w, b, stride=stride)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    if impl == "pydl":
        def run():
            K.conv_forward(x, w, b, stride=stride)
            return K.conv_backward(dy, x, w, stride=stride)
    elif impl == "torch":
        torch.set_num_threads(threads)
        conv = TF.conv1d if len(size) == 1 else TF.conv2d
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        dyt = torch.tensor(dy)

        def run():
            xt.grad = wt.grad = bt.grad = None
            conv(xt, wt, bt, stride=stride).backward(dyt)
    else:
        def run():
            return _np_conv_fwd_bwd(x, w, dy, stride)
    benchmark(run)


@pytest.mark.parametrize("impl", ["pydl", "torch"])
@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("op", ["maxpool2", "batchnorm"])
def test_pool_and_batch_norm(benchmark, threads, op, n, impl):
    benchmark.group = f"{op}-N{n}x32x8x8[{threads}t]"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 32, 8, 8)).astype(np.float32)
    dy2 = rng.standard_normal((n, 32, 4, 4)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w, bb = np.ones(32, np.float32), np.zeros(32, np.float32)
    rm, rv = np.zeros(32, np.float32), np.ones(32, np.float32)
    if impl == "pydl":
        if op == "maxpool2":
            def run():
                _, idx = K.max_pool_forward(x, 2)
                return K.max_pool_backward(dy2, idx, x.shape)
        else:
            def run():
                _, m, s = K.batch_norm_forward(x, w, bb, rm, rv)
                return K.batch_norm_backward(dy, x, m, s, w)
    else:
        torch.set_num_threads(threads)
        xt = torch.tensor(x, requires_grad=True)
        wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(bb, requires_grad=True)
        rmt, rvt = torch.tensor(rm), torch.tensor(rv)
        g = torch.tensor(dy2 if op == "maxpool2" else dy)

        def run():
            xt.grad = wt.grad = bt.grad = None
            if op == "maxpool2":
                TF.max_pool2d(xt, 2).backward(g)
            else:
                TF.batch_norm(xt, rmt, rvt, wt, bt, training=True).backward(g)
    benchmark(run)
