"""pydl.kernels conv_forward / conv_backward vs PyTorch (float64) and a numpy einsum oracle."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import pydl
from pydl import kernels as K

TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def torch_conv(x, w, b, nd, **kw):
    """PyTorch's output and gradients (dy = given) for the same convolution, in float64."""
    X = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    W = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    B = None if b is None else torch.tensor(b, dtype=torch.float64, requires_grad=True)
    return X, W, B, (TF.conv1d if nd == 1 else TF.conv2d)(X, W, B, **kw)


def random_config(rng, nd):
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in = groups * int(rng.integers(1, 4))
    c_out = groups * int(rng.integers(1, 4))
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    s = tuple(int(v) for v in rng.integers(1, 4, nd))
    d = tuple(int(v) for v in rng.integers(1, 3, nd))
    p = tuple(int(rng.integers(0, kk)) for kk in k)
    size = tuple(int(d[i] * (k[i] - 1) + 1 + rng.integers(0, 9)) for i in range(nd))
    n = int(rng.choice([1, 2, 5]))
    return dict(n=n, c_in=c_in, c_out=c_out, k=k, stride=s, dilation=d, padding=p,
                groups=groups, size=size)


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", range(12))
def test_matches_torch_random_configs(isa, nd, seed):
    rng = np.random.default_rng(seed + 100 * nd)
    c = random_config(rng, nd)
    x = rng.standard_normal((c["n"], c["c_in"]) + c["size"])
    w = rng.standard_normal((c["c_out"], c["c_in"] // c["groups"]) + c["k"])
    b = rng.standard_normal(c["c_out"]) if seed % 2 else None
    kw = dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
              groups=c["groups"])
    y = K.conv_forward(x, w, b, **kw)
    X, W, B, Y = torch_conv(x, w, b, nd, **kw)
    np.testing.assert_allclose(y, Y.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    Y.backward(torch.tensor(dy))
    dx, dw, db = K.conv_backward(dy, x, w, need_bias_grad=b is not None, **kw)
    np.testing.assert_allclose(dx, X.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, W.grad.numpy(), rtol=1e-12, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(db, B.grad.numpy(), rtol=1e-12, atol=1e-12)
    else:
        assert db is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_einsum_oracle_and_layer_shapes(isa, dtype, rng):
    # A Conv2d at the 8x8 digits shape, checked against a direct numpy einsum.
    x = rng.standard_normal((7, 3, 8, 8)).astype(dtype)
    w = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    y = K.conv_forward(x, w, b, padding=1)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # n c h w p q
    ref = np.einsum("nchwpq,ocpq->nohw", win, w.astype(np.float64)) + b[None, :, None, None]
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref, **TOL[dtype])


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_padding_incl_even_kernels(isa, k, dilation, rng):
    x = rng.standard_normal((2, 3, 11))
    w = rng.standard_normal((4, 3, k))
    y = K.conv_forward(x, w, padding="same", dilation=dilation)
    X, W, _, Y = torch_conv(x, w, None, 1, padding="same", dilation=dilation)
    assert y.shape == (2, 4, 11)
    np.testing.assert_allclose(y, Y.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    Y.backward(torch.tensor(dy))
    dx, dw, _ = K.conv_backward(dy, x, w, padding="same", dilation=dilation)
    np.testing.assert_allclose(dx, X.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, W.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_pointwise_in_place_path_and_big_tiles(isa, rng):
    # 1x1 stride-1 convolutions read x in place; 32x32 with 32 channels uses several im2col tiles.
    for shape, wshape, pad in [((3, 8, 6, 5), (4, 8, 1, 1), 0), ((2, 32, 32, 32), (16, 32, 3, 3), 1)]:
        x = rng.standard_normal(shape)
        w = rng.standard_normal(wshape)
        X, W, _, Y = torch_conv(x, w, None, 2, padding=pad)
        np.testing.assert_allclose(K.conv_forward(x, w, padding=pad), Y.detach().numpy(),
                                   rtol=1e-11, atol=1e-11)
        dy = rng.standard_normal(Y.shape)
        Y.backward(torch.tensor(dy))
        dx, dw, db = K.conv_backward(dy, x, w, padding=pad)
        np.testing.assert_allclose(dx, X.grad.numpy(), rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(dw, W.grad.numpy(), rtol=1e-11, atol=1e-10)
        np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_isas_agree_with_reference(rng):
    from pydl import _core
    x = rng.standard_normal((4, 6, 9, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    dy = rng.standard_normal((4, 4, 5, 6)).astype(np.float32)
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 1), groups=2)
    prev = _core.isa()
    results = {}
    try:
        for isa in _core.supported_isas():
            _core._set_isa(isa)
            results[isa] = (K.conv_forward(x, w, **kw),) + K.conv_backward(dy, x, w, **kw)
    finally:
        _core._set_isa(prev)
    for isa, res in results.items():
        for a, b in zip(res, results["generic"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_bit_identical_for_any_thread_count(isa, rng):
    x = rng.standard_normal((33, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    dy = rng.standard_normal((33, 24, 12, 12)).astype(np.float32)
    prev = pydl.get_num_threads()
    out = []
    try:
        for t in (1, 2, 3):
            pydl.set_num_threads(t)
            out.append((K.conv_forward(x, w, b, padding=1),) + K.conv_backward(dy, x, w, padding=1))
    finally:
        pydl.set_num_threads(prev)
    for res in out[1:]:
        for a, b_ in zip(res, out[0]):
            assert np.array_equal(a, b_)


def test_strided_inputs_and_dtypes(rng):
    x = rng.standard_normal((3, 4, 10, 12))[:, :, ::2, ::2]
    w = rng.standard_normal((2, 4, 3, 3))
    np.testing.assert_allclose(K.conv_forward(x, w), K.conv_forward(np.ascontiguousarray(x), w))
    with pytest.raises(TypeError, match="weight"):
        K.conv_forward(x, w.astype(np.float32))
    with pytest.raises(TypeError):
        K.conv_forward(x.astype(np.int64), w)


def test_bad_inputs():
    x = np.zeros((2, 4, 5, 5))
    w = np.zeros((6, 4, 3, 3))
    with pytest.raises(ValueError, match=r"x of shape \(2, 4, 5, 5\) has 4 channels.*\(6, 2, 3, 3\)"):
        K.conv_forward(x, np.zeros((6, 2, 3, 3)))
    with pytest.raises(ValueError, match="groups = 3 must divide"):
        K.conv_forward(np.zeros((2, 6, 5, 5)), np.zeros((4, 2, 3, 3)), groups=3)
    with pytest.raises(ValueError, match="larger than the padded input"):
        K.conv_forward(x, np.zeros((6, 4, 7, 7)))
    with pytest.raises(ValueError, match=r"\(N, C, L\) or \(N, C, H, W\)"):
        K.conv_forward(np.zeros((4, 5, 5)).reshape(1, 1, 4, 5, 5), w)
    with pytest.raises(ValueError, match="weight must have 4 dimensions"):
        K.conv_forward(x, np.zeros((6, 4, 3)))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        K.conv_forward(x, w, stride=0)
    with pytest.raises(ValueError, match="2 entries"):
        K.conv_forward(x, w, padding=(1, 1, 1))
    with pytest.raises(TypeError, match="stride must be an int"):
        K.conv_forward(x, w, stride=1.5)
    with pytest.raises(ValueError, match="same.*stride 1"):
        K.conv_forward(x, w, padding="same", stride=2)
    with pytest.raises(ValueError, match="valid"):
        K.conv_forward(x, w, padding="full")
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        K.conv_forward(x, w, np.zeros(5))
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(2, 6, 3, 3\)"):
        K.conv_backward(np.zeros((2, 6, 4, 4)), x, w)


def test_empty_batch(isa):
    x = np.zeros((0, 2, 5))
    w = np.ones((3, 2, 2))
    assert K.conv_forward(x, w).shape == (0, 3, 4)
    dx, dw, db = K.conv_backward(np.zeros((0, 3, 4)), x, w)
    assert dx.shape == x.shape and not dw.any() and not db.any()


@pytest.mark.parametrize("nd,size,k,stride,pad", [(2, 8, 3, 1, 1), (2, 5, 2, 2, 0), (1, 40, 5, 1, 0),
                                                  (1, 17, 3, 2, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_outputs_batched_per_gemm_match_one_sample_at_a_time(isa, threads, nd, size, k,
                                                                   stride, pad, dtype, rng):
    # Small outputs put several samples' columns in one GEMM (forward and data gradient): each
    # element must get exactly the bits of the product computed for its sample alone, and torch's
    # values. 37 samples: batches of several, and a ragged last one.
    n, c_in, c_out = 37, 5, 7
    x = rng.standard_normal((n, c_in) + (size,) * nd).astype(dtype)
    w = rng.standard_normal((c_out, c_in) + (k,) * nd).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    kw = dict(stride=stride, padding=pad)
    y = K.conv_forward(x, w, b, **kw)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = K.conv_backward(dy, x, w, need_weight_grad=False, need_bias_grad=False, **kw)[0]
    for i in range(n):
        yi = K.conv_forward(x[i:i + 1], w, b, **kw)
        dxi = K.conv_backward(dy[i:i + 1], x[i:i + 1], w, need_weight_grad=False,
                              need_bias_grad=False, **kw)[0]
        assert yi.tobytes() == y[i:i + 1].tobytes(), i
        assert dxi.tobytes() == dx[i:i + 1].tobytes(), i
    X, W, B, Y = torch_conv(x, w, b, nd, **kw)
    Y.backward(torch.tensor(dy, dtype=torch.float64))
    np.testing.assert_allclose(y, Y.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dx, X.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_writes_into_given_arrays(isa, dtype, rng):
    # The engine's replay hands conv_backward the arrays to write (kept dx, lent gradient
    # buffers). Oracle: the same call without them, bit for bit; the arrays' old contents (NaN)
    # must not leak in (they are overwritten, not accumulated).
    x = rng.standard_normal((3, 4, 9, 7)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    geom = dict(stride=(2, 1), padding=1, groups=2)
    dy = rng.standard_normal(K.conv_forward(x, w, None, **geom).shape).astype(dtype)
    ref = K.conv_backward(dy, x, w, **geom)
    for need in [(True, True, True), (True, False, False), (False, False, True),
                 (False, True, False)]:
        outs = [np.full(a.shape, np.nan, dtype) if n else None for a, n in zip(ref, need)]
        got = K.conv_backward(dy, x, w, **geom, need_input_grad=need[0],
                              need_weight_grad=need[1], need_bias_grad=need[2],
                              dx_out=outs[0], dw_out=outs[1], db_out=outs[2])
        for r, o, g, n in zip(ref, outs, got, need):
            if n:
                assert g is o and g.tobytes() == r.tobytes()
            else:
                assert g is None


def test_backward_refuses_bad_out_arrays(rng):
    x = rng.standard_normal((2, 3, 10)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="dx_out"):
        K.conv_backward(dy, x, w, dx_out=np.empty((2, 3, 9), np.float32))
    with pytest.raises(TypeError, match="dw_out"):
        K.conv_backward(dy, x, w, dw_out=np.empty((4, 3, 3), np.float64))
    with pytest.raises(ValueError, match="db_out"):
        K.conv_backward(dy, x, w, db_out=np.empty(8, np.float32)[::2])
    with pytest.raises(ValueError, match="dx_out overlaps the memory of x"):
        K.conv_backward(dy, x, w, dx_out=x)
    buf = np.empty(4 * 3 * 3 + 4, np.float32)
    with pytest.raises(ValueError, match="db_out overlaps the memory of dw_out"):
        K.conv_backward(dy, x, w, dw_out=buf[:36].reshape(4, 3, 3), db_out=buf[34:38])
    before = x.copy()
    with pytest.raises(ValueError):
        K.conv_backward(dy, x, w, dx_out=np.empty((1,), np.float32))
    assert x.tobytes() == before.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpadded_rows_of_every_width_match_torch(isa, dtype, rng):
    # Output rows 1..11 values wide, unpadded and padded, stride 1: the im2col / col2im paths
    # that move whole vectors over short rows (their tails overwritten by the next rows, or
    # added as -0.0) must give torch's values for every width against every vector width.
    for size in range(3, 14):
        for k, d, p in [(3, 1, 0), (3, 2, 0), (2, 1, 0), (1, 1, 0), (3, 1, 1), (2, 1, 1)]:
            if d * (k - 1) + 1 > size + 2 * p:
                continue
            x = rng.standard_normal((3, 2, size, size + 1)).astype(dtype)
            w = rng.standard_normal((4, 2, k, k)).astype(dtype)
            y = K.conv_forward(x, w, None, padding=p, dilation=d)
            X, W, _, Y = torch_conv(x, w, None, 2, padding=p, dilation=d)
            msg = f"size={size} k={k} dilation={d} padding={p}"
            np.testing.assert_allclose(y, Y.detach().numpy(), **TOL[dtype], err_msg=msg)
            dy = rng.standard_normal(y.shape).astype(dtype)
            Y.backward(torch.tensor(dy, dtype=torch.float64))
            dx, dw, _ = K.conv_backward(dy, x, w, padding=p, dilation=d, need_bias_grad=False)
            np.testing.assert_allclose(dx, X.grad.numpy(), **TOL[dtype], err_msg=msg)
            np.testing.assert_allclose(dw, W.grad.numpy(), **TOL[dtype], err_msg=msg)
