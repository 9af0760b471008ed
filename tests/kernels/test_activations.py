"""Activation kernels against float64 numpy, analytic derivatives and central differences."""

import math

import numpy as np
import pytest

import pydl
from pydl import kernels as K

DTYPES = [np.float32, np.float64]
# Relative tolerance against a float64 reference: a few ulp of the dtype.
RTOL = {np.float32: 2e-6, np.float64: 1e-14}
# Absolute floor for results in the subnormal range, where relative error is meaningless.
ATOL = {np.float32: 1e-37, np.float64: 1e-300}

# Exactly representable in float32, so the float64 references use the very same parameters.
SLOPE, ALPHA = 0.125, 0.75


def _sigmoid64(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# name -> (pydl kwargs, float64 forward f(x), float64 derivative f'(x) written in terms of y)
ACTS = {
    "relu": ({}, lambda x: np.maximum(x, 0.0), lambda y: (y > 0).astype(np.float64)),
    "leaky_relu": (
        {"negative_slope": SLOPE},
        lambda x: np.where(x > 0, x, SLOPE * x),
        lambda y: np.where(y > 0, 1.0, SLOPE),
    ),
    "elu": (
        {"alpha": ALPHA},
        lambda x: np.where(x > 0, x, ALPHA * np.expm1(np.minimum(x, 0.0))),
        lambda y: np.where(y > 0, 1.0, y + ALPHA),
    ),
    "sigmoid": ({}, _sigmoid64, lambda y: y * (1.0 - y)),
    "tanh": ({}, np.tanh, lambda y: (1.0 - y) * (1.0 + y)),
}
NAMES = list(ACTS)


def fwd(name, x, **kw):
    return getattr(K, name)(x, **ACTS[name][0], **kw)


def bwd(name, dy, y, **kw):
    return getattr(K, name + "_backward")(dy, y, **ACTS[name][0], **kw)


def sample(rng, shape, dtype, scale=4.0):
    x = rng.standard_normal(shape) * scale
    return x.astype(dtype)


def assert_close(got, want, dtype, rtol_ulps=1.0):
    np.testing.assert_allclose(
        got.astype(np.float64), want, rtol=RTOL[dtype] * rtol_ulps, atol=ATOL[dtype]
    )


# --- element-wise forward / backward ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(1,), (7,), (812,), (33, 29)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_numpy(isa, name, dtype, shape, rng):
    x = sample(rng, shape, dtype)
    y = fwd(name, x)
    assert y.dtype == dtype and y.shape == x.shape and y.flags.c_contiguous
    assert_close(y, ACTS[name][1](x.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_forward_wide_range(isa, name, dtype):
    # Every exponent the dtype has, both signs: exercises the exp range reduction end to end,
    # including overflow to +-1/0 and subnormal sigmoid results.
    big = 100.0 if dtype == np.float32 else 800.0
    x = np.concatenate(
        [np.linspace(-big, big, 20011), np.geomspace(1e-30, 50, 3001), -np.geomspace(1e-30, 50, 3001)]
    ).astype(dtype)
    assert_close(fwd(name, x), ACTS[name][1](x.astype(np.float64)), dtype, rtol_ulps=1.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_forward_large_2d(isa, name, dtype, rng):
    x = sample(rng, (1029, 917), dtype)
    assert_close(fwd(name, x), ACTS[name][1](x.astype(np.float64)), dtype)


@pytest.mark.parametrize("shape", [(1,), (7,), (812,), (1029, 917)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_analytic(isa, name, dtype, shape, rng):
    x = sample(rng, shape, dtype)
    y = ACTS[name][1](x.astype(np.float64)).astype(dtype)
    dy = sample(rng, shape, dtype, scale=1.0)
    dx = bwd(name, dy, y)
    assert dx.dtype == dtype and dx.shape == shape
    want = dy.astype(np.float64) * ACTS[name][2](y.astype(np.float64))
    np.testing.assert_allclose(dx.astype(np.float64), want, rtol=3 * RTOL[dtype], atol=ATOL[dtype])


@pytest.mark.parametrize("name", NAMES)
def test_backward_central_differences(isa, name, rng):
    x = rng.standard_normal(64) * 3
    x = x[np.abs(x) > 1e-2]  # away from the kinks of relu/leaky_relu/elu
    dy = rng.standard_normal(x.shape)
    h = 1e-6
    f = ACTS[name][1]
    numeric = dy * (f(x + h) - f(x - h)) / (2 * h)
    dx = bwd(name, dy, fwd(name, x))
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_strided_inputs(isa, name, rng):
    a = sample(rng, (40, 30), np.float32)
    for view in (a[::2], a.T, a[:, ::3]):
        np.testing.assert_array_equal(fwd(name, view), fwd(name, np.ascontiguousarray(view)))
    dy = sample(rng, (30, 40), np.float32)
    y = fwd(name, a)
    got = bwd(name, dy.T, y[::1])
    np.testing.assert_array_equal(got, bwd(name, np.ascontiguousarray(dy.T), y))
    assert got.flags.c_contiguous


@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (0, 5, 2)])
@pytest.mark.parametrize("name", NAMES)
def test_empty_and_0d(isa, name, shape):
    x = np.full(shape, -0.5, np.float64)
    y = fwd(name, x)
    assert y.shape == shape and y.dtype == np.float64
    np.testing.assert_allclose(y, ACTS[name][1](x), rtol=1e-14)
    dx = bwd(name, np.ones(shape), y)
    assert dx.shape == shape
    np.testing.assert_allclose(dx, ACTS[name][2](y), rtol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_nan_propagates(isa, name, dtype):
    # NaN at every lane position of a vector and in the masked tail.
    n = 37
    x = np.linspace(-3, 3, n).astype(dtype)
    for i in (0, 5, 16, n - 1):
        xi = x.copy()
        xi[i] = np.nan
        y = fwd(name, xi)
        assert np.isnan(y[i]) and np.isfinite(np.delete(y, i)).all()
        ones = np.ones_like(xi)
        assert np.isnan(bwd(name, ones, y)[i])  # NaN in y
        dyi = ones.copy()
        dyi[i] = np.nan
        assert np.isnan(bwd(name, dyi, fwd(name, x))[i])  # NaN in dy


@pytest.mark.parametrize("dtype", DTYPES)
def test_infinities(isa, dtype):
    x = np.array([np.inf, -np.inf], dtype)
    one = np.ones(2, dtype)
    y = K.sigmoid(x)
    np.testing.assert_array_equal(y, [1.0, 0.0])
    np.testing.assert_array_equal(K.sigmoid_backward(one, y), [0.0, 0.0])
    y = K.tanh(x)
    np.testing.assert_array_equal(y, [1.0, -1.0])
    np.testing.assert_array_equal(K.tanh_backward(one, y), [0.0, 0.0])
    y = K.elu(x, alpha=ALPHA)
    np.testing.assert_allclose(y, [np.inf, -ALPHA], rtol=RTOL[dtype])
    np.testing.assert_allclose(K.elu_backward(one, y, alpha=ALPHA), [1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(K.relu(x), [np.inf, 0.0])
    np.testing.assert_array_equal(K.leaky_relu(x, SLOPE), [np.inf, -np.inf])


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_arguments_relative_accuracy(isa, dtype):
    tiny = np.array([1e-5, -1e-5, 1e-12, 3e-30, -7e-20], dtype)
    t64 = tiny.astype(np.float64)
    assert_close(K.tanh(tiny), np.tanh(t64), dtype, rtol_ulps=1.5)
    assert_close(K.elu(tiny, alpha=ALPHA), ACTS["elu"][1](t64), dtype, rtol_ulps=1.5)
    neg = np.array([-30.0, -60.0, -80.0], dtype)  # sigmoid ~ e^x, far below 1 - eps
    assert_close(K.sigmoid(neg), _sigmoid64(neg.astype(np.float64)), dtype, rtol_ulps=1.5)


def test_tanh_float32_ulp_error(isa):
    # The float32 tanh is a rational approximation (activations_impl.hpp): pin its documented
    # bound (4.9 ulp, exhaustively measured) well inside the general tolerance above.
    x = np.concatenate([np.linspace(0, 10, 200_001), np.geomspace(1e-8, 10, 100_001)])
    x = np.concatenate([x, -x]).astype(np.float32)
    y = K.tanh(x).astype(np.float64)
    want = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert (np.abs(y - want) / ulp).max() <= 5.0
    assert np.abs(y).max() <= 1.0


def test_kinks_documented_values(isa):
    zero = np.zeros(3)
    one = np.ones(3)
    np.testing.assert_array_equal(K.relu_backward(one, K.relu(zero)), 0.0)  # relu'(0) = 0
    np.testing.assert_array_equal(K.leaky_relu_backward(one, K.leaky_relu(zero, 0.2), 0.2), 0.2)
    y = K.elu(zero, alpha=ALPHA)  # the alpha branch: value 0, derivative alpha
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_array_equal(K.elu_backward(one, y, alpha=ALPHA), ALPHA)


# --- softmax / log_softmax -------------------------------------------------------------------


def softmax64(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def log_softmax64(x, axis=-1):
    z = x - x.max(axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis, keepdims=True))


def assert_softmax_close(x, y, ly, dtype):
    x64 = x.astype(np.float64)
    eps = np.finfo(dtype).eps
    # Rounding x - max costs |x - max| * eps relative in exp(x - max), and the row sum's rounding
    # error grows like sqrt(cols) * eps (the generic kernel sums sequentially).
    spread = np.abs(x64 - x64.max(-1, keepdims=True)) + np.sqrt(x.shape[-1])
    np.testing.assert_array_less(
        np.abs(y - softmax64(x64)), 4 * eps * spread * softmax64(x64) + ATOL[dtype]
    )
    np.testing.assert_array_less(np.abs(ly - log_softmax64(x64)), 4 * eps * spread)


@pytest.mark.parametrize("shape", [(1,), (7,), (5, 812), (3, 4, 33), (1029, 917)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_matches_numpy(isa, threads, dtype, shape, rng):
    x = sample(rng, shape, dtype, scale=3.0)
    y, ly = K.softmax(x), K.log_softmax(x)
    assert y.dtype == dtype and y.shape == shape and ly.shape == shape
    assert_softmax_close(x, y, ly, dtype)
    np.testing.assert_allclose(y.sum(-1, dtype=np.float64), 1.0, rtol=4 * shape[-1] * RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mag", [1e4, 1e10, 1e20])
def test_softmax_extreme_logits(isa, dtype, mag):
    x = np.array([[mag, -mag, 0.0, 1.0], [-mag, -mag, -mag + mag / 4, -mag]], dtype)
    y, ly = K.softmax(x), K.log_softmax(x)
    assert np.isfinite(y).all() and np.isfinite(ly).all()
    np.testing.assert_array_equal(y, [[1, 0, 0, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(ly[:, [0, 2]][[0, 1], [0, 1]], [0.0, 0.0])
    assert_softmax_close(x, y, ly, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_shift_invariant(isa, dtype, rng):
    # Multiples of 1/8 plus 1e4 are exact in float32, so the shift itself adds no rounding.
    x = (rng.integers(-80, 80, (6, 45)) / 8).astype(dtype)
    for fn in (K.softmax, K.log_softmax):
        base = fn(x)
        shifted = fn(x + dtype(1e4))
        np.testing.assert_allclose(shifted, base, rtol=RTOL[dtype], atol=1e-30)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_special_rows(isa, dtype):
    inf, nan = np.inf, np.nan
    x = np.array(
        [[1.0, 2.0, 3.0], [inf, 1.0, 2.0], [nan, 1.0, 2.0], [-inf, 0.0, 1.0], [-inf] * 3], dtype
    )
    with np.errstate(invalid="ignore"):
        want = softmax64(x.astype(np.float64))
        lwant = log_softmax64(x.astype(np.float64))
    np.testing.assert_allclose(K.softmax(x), want, rtol=2 * RTOL[dtype])
    np.testing.assert_allclose(K.log_softmax(x), lwant, rtol=4 * RTOL[dtype])
    assert np.isnan(K.softmax(x)[1:3]).all() and np.isnan(K.softmax(x)[4]).all()


@pytest.mark.parametrize("shape", [(1,), (7,), (9, 812)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_backward_matches_analytic(isa, dtype, shape, rng):
    x = sample(rng, shape, dtype, scale=2.0)
    dy = sample(rng, shape, dtype, scale=1.0)
    y = K.softmax(x).astype(np.float64)
    d64 = dy.astype(np.float64)
    want = y * (d64 - (d64 * y).sum(-1, keepdims=True))
    got = K.softmax_backward(dy, y.astype(dtype))
    atol = 8 * shape[-1] * RTOL[dtype] * np.abs(y).max()
    np.testing.assert_allclose(got, want, rtol=8 * RTOL[dtype], atol=atol)
    ly = K.log_softmax(x)
    want = d64 - np.exp(ly.astype(np.float64)) * d64.sum(-1, keepdims=True)
    got = K.log_softmax_backward(dy, ly)
    atol = 8 * shape[-1] * RTOL[dtype] * np.abs(d64).max()
    np.testing.assert_allclose(got, want, rtol=8 * RTOL[dtype], atol=atol)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_backward_central_differences(isa, log, rng):
    x = rng.standard_normal((3, 5))
    w = rng.standard_normal((3, 5))  # loss = sum(w * f(x)), so dloss/dy = w
    f, fb = (log_softmax64, K.log_softmax_backward) if log else (softmax64, K.softmax_backward)
    h = 1e-6
    numeric = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        numeric[idx] = (np.sum(w * f(xp)) - np.sum(w * f(xm))) / (2 * h)
    y = K.log_softmax(x) if log else K.softmax(x)
    np.testing.assert_allclose(fb(w, y), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("axis", [0, 1, -3])
def test_softmax_axis(isa, axis, rng):
    x = rng.standard_normal((4, 6, 5))
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(K.softmax(x, axis), softmax64(x, axis), rtol=1e-14)
    ly = K.log_softmax(x, axis=axis)
    np.testing.assert_allclose(ly, log_softmax64(x, axis), rtol=1e-13)
    y = K.softmax(x, axis)
    want = y * (dy - (dy * y).sum(axis, keepdims=True))
    np.testing.assert_allclose(K.softmax_backward(dy, y, axis), want, rtol=1e-12, atol=1e-15)
    want = dy - np.exp(ly) * dy.sum(axis, keepdims=True)
    np.testing.assert_allclose(K.log_softmax_backward(dy, ly, axis), want, rtol=1e-12, atol=1e-15)
    out = np.full_like(x, np.nan)
    assert K.softmax(x, axis, out=out) is out
    np.testing.assert_allclose(out, softmax64(x, axis), rtol=1e-14)
    out = np.full_like(x, np.nan)
    K.log_softmax_backward(dy, ly, axis, out=out)
    np.testing.assert_allclose(out, dy - np.exp(ly) * dy.sum(axis, keepdims=True), rtol=1e-12)
    # A transposed input with a non-last axis.
    xt = x.T
    np.testing.assert_allclose(K.softmax(xt, axis), softmax64(xt, axis), rtol=1e-14)


def test_softmax_bad_axis():
    x = np.zeros((2, 3))
    for fn in (K.softmax, K.log_softmax):
        with pytest.raises(ValueError, match="axis 2 is out of bounds"):
            fn(x, axis=2)
        with pytest.raises(ValueError, match="axis -3"):
            fn(x, axis=-3)
        with pytest.raises(ValueError, match="axis"):
            fn(np.ones(()), axis=-1)
    with pytest.raises(ValueError, match="axis"):
        K.softmax_backward(x, x, axis=5)
    with pytest.raises(TypeError):
        K.softmax(x, axis=1.0)


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 3)])
def test_softmax_empty(isa, shape):
    x = np.zeros(shape, np.float32)
    assert K.softmax(x).shape == shape
    assert K.log_softmax(x, axis=0).shape == shape
    assert K.softmax_backward(x, x).shape == shape


# --- out=, in-place, validation --------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES + ["softmax", "log_softmax"])
def test_out_and_in_place(isa, name, rng):
    x = sample(rng, (5, 19), np.float32)
    f = (lambda a, **kw: getattr(K, name)(a, **kw)) if name.endswith("softmax") else (
        lambda a, **kw: fwd(name, a, **kw)
    )
    want = f(x.copy())
    out = np.empty_like(x)
    assert f(x, out=out) is out
    np.testing.assert_array_equal(out, want)
    xi = x.copy()
    assert f(xi, out=xi) is xi  # in place
    np.testing.assert_array_equal(xi, want)
    # out partly overlapping the input: the input is read as if before any write.
    buf = np.concatenate([x.ravel(), np.zeros(3, np.float32)])
    src, dst = buf[:-3].reshape(x.shape), buf[3:].reshape(x.shape)
    f(src, out=dst)
    np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize("name", NAMES)
def test_backward_in_place(isa, name, rng):
    x = sample(rng, (300,), np.float64)
    y = fwd(name, x)
    dy = sample(rng, (300,), np.float64)
    want = bwd(name, dy, y)
    d2 = dy.copy()
    assert bwd(name, d2, y, out=d2) is d2
    np.testing.assert_array_equal(d2, want)
    y2 = y.copy()
    bwd(name, dy, y2, out=y2)
    np.testing.assert_array_equal(y2, want)


def test_out_errors():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        K.relu(x, out=np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="float64"):
        K.sigmoid(x, out=np.zeros((3, 4), np.float64))
    ro = np.zeros((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        K.tanh(x, out=ro)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.softmax(x, out=np.zeros((4, 3), np.float32).T)
    with pytest.raises(ValueError, match="read-only"):
        K.relu_backward(x, x, out=ro)
    with pytest.raises(TypeError, match="ndarray"):
        K.relu(x, out=[0.0] * 12)


@pytest.mark.parametrize("name", NAMES + ["softmax", "log_softmax"])
def test_type_errors(name):
    f = getattr(K, name)
    b = getattr(K, name + "_backward")
    with pytest.raises(TypeError, match="ndarray"):
        f([1.0, 2.0])
    with pytest.raises(TypeError, match="float32 or float64"):
        f(np.arange(4))
    with pytest.raises(TypeError, match="float32 or float64"):
        f(np.zeros(3, np.float16))
    a32, a64 = np.zeros(4, np.float32), np.zeros(4, np.float64)
    with pytest.raises(TypeError, match="dy and y.*float32 and float64"):
        b(a32, a64)
    with pytest.raises(TypeError, match="ndarray"):
        b(a32, [0.0] * 4)
    with pytest.raises(ValueError, match=r"dy and y.*\(4,\) and \(5,\)"):
        b(a32, np.zeros(5, np.float32))


@pytest.mark.parametrize("fname,pname", [("leaky_relu", "negative_slope"), ("elu", "alpha")])
@pytest.mark.parametrize("bad", [-0.01, -1.0, np.nan, np.inf])
def test_bad_parameters(fname, pname, bad):
    x = np.zeros(3)
    with pytest.raises(ValueError, match=f"{pname}.*>= 0.*computed from the output"):
        getattr(K, fname)(x, **{pname: bad})
    with pytest.raises(ValueError, match=pname):
        getattr(K, fname + "_backward")(x, x, **{pname: bad})


# --- threads and ISAs ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_bit_identical(isa, threads, dtype, rng):
    x = sample(rng, (1 << 19) + 7, dtype)
    dy = sample(rng, x.shape, dtype)
    xs = sample(rng, (301, 999), dtype)
    dys = sample(rng, xs.shape, dtype)

    def run():
        res = []
        for name in NAMES:
            y = fwd(name, x)
            res += [y, bwd(name, dy, y)]
        for log in (False, True):
            y = K.log_softmax(xs) if log else K.softmax(xs)
            b = K.log_softmax_backward if log else K.softmax_backward
            res += [y, b(dys, y)]
        return res

    got = run()
    pydl.set_num_threads(1)
    for a, b in zip(got, run()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_matches_reference(isa, dtype, rng):
    # The generic kernels are the reference: every ISA stays within a few ulp of them.
    from pydl import _core

    x = sample(rng, (7, 1001), dtype)
    got = {n: fwd(n, x) for n in NAMES}
    got["softmax"], got["log_softmax"] = K.softmax(x), K.log_softmax(x)
    prev = _core.isa()
    _core._set_isa("generic")
    try:
        ref = {n: fwd(n, x) for n in NAMES}
        ref["softmax"], ref["log_softmax"] = K.softmax(x), K.log_softmax(x)
    finally:
        _core._set_isa(prev)
    for n in got:
        np.testing.assert_allclose(got[n], ref[n], rtol=8 * RTOL[dtype], atol=1e-5 * (dtype == np.float32) + 1e-13, err_msg=n)


# --- GELU / SiLU: backward from the INPUT x, oracles float64 PyTorch and libm --------------------

torch = pytest.importorskip("torch")

# name -> (pydl kwargs, torch float64 function)
INPUT_ACTS = {
    "gelu": ({}, lambda t: torch.nn.functional.gelu(t)),
    "gelu_tanh": (
        {"approximate": "tanh"},
        lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
    ),
    "silu": ({}, torch.nn.functional.silu),
}
INPUT_NAMES = list(INPUT_ACTS)


def ifwd(name, x, **kw):
    return getattr(K, name.replace("_tanh", ""))(x, **INPUT_ACTS[name][0], **kw)


def ibwd(name, dy, x, **kw):
    return getattr(K, name.replace("_tanh", "") + "_backward")(dy, x, **INPUT_ACTS[name][0], **kw)


def torch_fwd_bwd(name, x, dy):
    t = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    y = INPUT_ACTS[name][1](t)
    (g,) = torch.autograd.grad(y, t, torch.tensor(np.asarray(dy, np.float64)))
    return y.detach().numpy(), g.numpy()


def gelu_libm(x):
    # x Phi(x) through libm's erfc: accurate in the negative tail, where torch's 1 + erf cancels.
    return np.array([v * 0.5 * math.erfc(-v / math.sqrt(2.0)) for v in np.ravel(x)])


@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 17, 1001])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", INPUT_NAMES)
def test_input_acts_match_torch(isa, name, dtype, n, rng):
    x = sample(rng, (n,), dtype, scale=3.0)
    dy = sample(rng, (n,), dtype, scale=1.0)
    y, dx = ifwd(name, x), ibwd(name, dy, x)
    assert y.dtype == dx.dtype == dtype and y.shape == dx.shape == (n,)
    ty, tdx = torch_fwd_bwd(name, x, dy)
    # torch's float64 1 + erf / 1 + tanh loses digits for x < 0: an absolute floor of a few
    # float64 ulp of |x| covers that, the relative part the dtype's rounding (float32 gelu_tanh
    # and silu are evaluated in float32: the error of t(x) is scaled by |t| in the tail).
    scale = np.abs(x.astype(np.float64)) + 1.0
    rt = {np.float32: 3e-6 if name == "gelu" else 4e-5, np.float64: 1e-14}[dtype]
    np.testing.assert_allclose(y, ty, rtol=rt, atol=4e-16 * scale.max())
    np.testing.assert_allclose(dx, tdx, rtol=rt, atol=1e-15 + rt * np.abs(dy).max())


@pytest.mark.parametrize("name", INPUT_NAMES)
def test_input_acts_central_differences(isa, name, rng):
    x = np.concatenate([rng.standard_normal(61) * 3, [-9.0, -6.5, 0.0, 5.0, 12.0]])
    dy = rng.standard_normal(x.shape)
    h = 1e-6
    numeric = dy * (ifwd(name, x + h) - ifwd(name, x - h)) / (2 * h)
    np.testing.assert_allclose(ibwd(name, dy, x), numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_negative_tail_relative_accuracy(isa, dtype):
    # Far below the point where 0.5 x (1 + erf(x / sqrt2)) cancels to 0: x Phi(x) stays accurate
    # relative to itself down to the underflow threshold of the dtype.
    lo = -12.0 if dtype == np.float32 else -37.0
    x = np.linspace(lo, -1.0, 2001).astype(dtype)
    want = gelu_libm(x.astype(np.float64))
    got = K.gelu(x).astype(np.float64)
    assert (got < 0).all()
    # libm's erfc(-x / sqrt2) itself carries the rounding of x / sqrt2, amplified by ~x^2 / 2 ulp.
    rtol = 2e-6 if dtype == np.float32 else 4e-16 * (1 + lo * lo / 2)
    np.testing.assert_allclose(got, want, rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_erf_against_libm(isa, dtype, rng):
    from pydl import _core

    # Every binade from the smallest subnormal up, both signs, plus dense coverage of the range
    # where erf/erfc change: the erfc tail is checked down to its underflow.
    tiny = np.finfo(dtype).smallest_subnormal
    mag = np.concatenate(
        [
            np.geomspace(tiny, 30.0, 20_001, dtype=np.float64),
            rng.uniform(0.0, 30.0, 20_000),
            [0.0, 0.75, 6.75, 28.75, np.inf],
        ]
    ).astype(dtype)
    x = np.concatenate([mag, -mag])
    x64 = x.astype(np.float64)
    for complement, f in ((False, math.erf), (True, math.erfc)):
        got = _core._erf(x, complement).astype(np.float64)
        want = np.array([f(v) for v in x64])
        normal = np.abs(want) >= np.finfo(dtype).tiny
        ulp = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
        err = np.abs(got - want) / ulp
        # float32 is evaluated in float64 and rounded once; float64 measured <= 2 / 4 ulp.
        bound = 1.0 if dtype == np.float32 else (3.0 if not complement else 6.0)
        assert err[normal].max() <= bound, (complement, x[normal][np.argmax(err[normal])])
        assert (np.abs(got - want)[~normal] <= 2 * tiny).all()
    assert np.isnan(_core._erf(np.array([np.nan], dtype))).all()
    assert np.isnan(_core._erf(np.array([np.nan], dtype), True)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", INPUT_NAMES)
def test_input_acts_special_values(isa, name, dtype):
    x = np.array([np.inf, -np.inf, -0.0, 0.0, np.nan], dtype)
    y = ifwd(name, x)
    np.testing.assert_array_equal(y[:4], [np.inf, 0.0, 0.0, 0.0])
    assert np.signbit(y[1]) and np.signbit(y[2]) and not np.signbit(y[3])
    assert np.isnan(y[4])
    dx = ibwd(name, np.ones_like(x), x)
    np.testing.assert_array_equal(dx[:4], [1.0, 0.0, 0.5, 0.5])
    assert np.isnan(dx[4])
    # NaN at every lane position of a vector and in the masked tail, through x and through dy.
    n = 37
    xs = np.linspace(-3, 3, n).astype(dtype)
    for i in (0, 5, 16, n - 1):
        xi = xs.copy()
        xi[i] = np.nan
        assert np.isnan(ifwd(name, xi)[i]) and np.isfinite(np.delete(ifwd(name, xi), i)).all()
        assert np.isnan(ibwd(name, np.ones_like(xi), xi)[i])
        dyi = np.ones_like(xs)
        dyi[i] = np.nan
        assert np.isnan(ibwd(name, dyi, xs)[i])


@pytest.mark.parametrize("name", INPUT_NAMES)
def test_input_acts_strided_empty_out(isa, name, rng):
    a = sample(rng, (40, 30), np.float32)
    for view in (a[::2], a.T, a[:, ::3]):
        np.testing.assert_array_equal(ifwd(name, view), ifwd(name, np.ascontiguousarray(view)))
    dy = sample(rng, (30, 40), np.float32)
    got = ibwd(name, dy.T, a[::1])
    np.testing.assert_array_equal(got, ibwd(name, np.ascontiguousarray(dy.T), a))
    for shape in [(), (0,), (3, 0)]:
        x = np.full(shape, -0.5)
        assert ifwd(name, x).shape == shape and ibwd(name, np.ones(shape), x).shape == shape
    want_y, want_dx = ifwd(name, a), ibwd(name, np.ones_like(a), a)
    xi = a.copy()
    assert ifwd(name, xi, out=xi) is xi
    np.testing.assert_array_equal(xi, want_y)
    xi = a.copy()
    assert ibwd(name, np.ones_like(a), xi, out=xi) is xi  # in place over x
    np.testing.assert_array_equal(xi, want_dx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_input_acts_simd_matches_reference(isa, dtype, rng):
    from pydl import _core

    x = np.concatenate([sample(rng, (1001,), dtype), np.linspace(-45, 45, 999).astype(dtype)])
    dy = sample(rng, x.shape, dtype, scale=1.0)
    got = [f(n, *a) for n in INPUT_NAMES for f, a in ((ifwd, (x,)), (ibwd, (dy, x)))]
    got.append(_core._erf(x))
    prev = _core.isa()
    _core._set_isa("generic")
    try:
        ref = [f(n, *a) for n in INPUT_NAMES for f, a in ((ifwd, (x,)), (ibwd, (dy, x)))]
        ref.append(_core._erf(x))
    finally:
        _core._set_isa(prev)
    rt = {np.float32: 4e-5, np.float64: 1e-13}[dtype]
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=rt, atol=1e-14 if dtype == np.float64 else 1e-6)


def test_input_acts_errors():
    x = np.zeros(4)
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'tan'"):
        K.gelu(x, "tan")
    with pytest.raises(TypeError, match="gelu_backward: approximate must be a str"):
        K.gelu_backward(x, x, approximate=None)
    with pytest.raises(TypeError, match="dy and x.*float64 and float32"):
        K.silu_backward(x, x.astype(np.float32))
    with pytest.raises(ValueError, match=r"dy and x.*\(4,\) and \(5,\)"):
        K.gelu_backward(x, np.zeros(5))
    with pytest.raises(TypeError, match="float32 or float64"):
        K.silu(np.arange(3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", INPUT_NAMES)
def test_fused_linear_keeps_preactivation(isa, threads, name, dtype, rng):
    # activation(x @ w.T + b) in one pass, with the pre-activation kept for the backward.
    x = sample(rng, (37, 53), dtype, scale=1.0)
    w = sample(rng, (29, 53), dtype, scale=0.3)
    b = sample(rng, (29,), dtype, scale=1.0)
    pre = np.empty((37, 29), dtype)
    y = K.linear(x, w, b, name, preact=pre)
    z = K.matmul(x, w, trans_b=True) + b
    np.testing.assert_array_equal(pre, z)
    np.testing.assert_array_equal(y, ifwd(name, z))
    z64 = x.astype(np.float64) @ w.astype(np.float64).T + b
    ty, _ = torch_fwd_bwd(name, z64, np.ones_like(z64))
    np.testing.assert_allclose(y, ty, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)
    # Without preact the values are the same; preact also works without an activation.
    np.testing.assert_array_equal(K.linear(x, w, b, name), y)
    pre2 = np.empty_like(pre)
    np.testing.assert_array_equal(K.linear(x, w, b, preact=pre2), z)
    np.testing.assert_array_equal(pre2, z)


def test_fused_linear_preact_errors():
    x, w = np.ones((4, 3)), np.ones((5, 3))
    with pytest.raises(ValueError, match=r"preact.*\(4, 5\)"):
        K.linear(x, w, activation="gelu", preact=np.empty((5, 4)))
    with pytest.raises(TypeError, match="float32"):
        K.linear(x, w, activation="silu", preact=np.empty((4, 5), np.float32))
    out = np.empty((4, 5))
    with pytest.raises(ValueError, match="preact.*out"):
        K.linear(x, w, activation="silu", out=out, preact=out)
