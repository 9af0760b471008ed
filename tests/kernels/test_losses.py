"""pydl.kernels losses (softmax_cross_entropy, bce_with_logits, mse) vs float64 numpy oracles."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pydl
from pydl import kernels as K

DTYPES = [np.float32, np.float64]
# Relative tolerance per dtype (the oracle runs in float64 on the same inputs). Gradient elements
# near zero are compared against the largest gradient element instead of themselves.
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


# ---------------------------------------------------------------------------------------------
# float64 numpy oracles
# ---------------------------------------------------------------------------------------------


def ce_ref(x, y, eps=0.0, reduction="mean"):
    """PyTorch's CrossEntropyLoss with label smoothing: loss and dlogits, in float64."""
    x = np.asarray(x, np.float64)
    n, c = x.shape
    z = x - x.max(axis=1, keepdims=True)  # log_p = z - log(sum(exp(z))), exact even for |x| = 1e20
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    q = np.full((n, c), eps / c if c else 0.0)
    q[np.arange(n), y] += 1.0 - eps
    per_row = -(q * log_p).sum(axis=1)
    d = np.exp(log_p) - q
    if reduction == "mean":
        return per_row.mean(), d / n
    return per_row.sum(), d


def bce_ref(x, t, reduction="mean"):
    x = np.asarray(x, np.float64)
    t = np.asarray(t, np.float64)
    per = np.logaddexp(0.0, x) - x * t
    e = np.exp(-np.abs(x))
    sig = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    d = sig - t
    if reduction == "mean":
        return per.mean(), d / x.size
    return per.sum(), d


def mse_ref(p, t, reduction="mean"):
    diff = np.asarray(p, np.float64) - np.asarray(t, np.float64)
    if reduction == "mean":
        return (diff * diff).mean(), 2.0 * diff / diff.size
    return (diff * diff).sum(), 2.0 * diff


def central_differences(f, x, h=1e-6):
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f(x)
        x[i] = old - h
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * h)
    return g


def assert_loss(got, want, dtype):
    loss, d = got
    want_loss, want_d = want
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, want_loss, rtol=RTOL[dtype])
    assert d.dtype == dtype and d.shape == want_d.shape
    scale = np.abs(want_d).max() if want_d.size else 0.0
    np.testing.assert_allclose(d, want_d, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


# ---------------------------------------------------------------------------------------------
# softmax_cross_entropy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 3), (64, 10), (33, 1000), (5, 16500)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ce_matches_numpy(isa, rng, dtype, shape, eps, reduction):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    got = K.softmax_cross_entropy(x, y, label_smoothing=eps, reduction=reduction)
    assert_loss(got, ce_ref(x, y, eps, reduction), dtype)


@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ce_gradient_matches_finite_differences(isa, rng, eps, reduction):
    x = rng.standard_normal((4, 5))
    y = np.array([0, 4, 2, 2])
    _, d = K.softmax_cross_entropy(x, y, label_smoothing=eps, reduction=reduction)
    def loss(v):
        return K.softmax_cross_entropy(v, y, label_smoothing=eps, reduction=reduction)[0]

    fd = central_differences(loss, x.copy())
    np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-8)


def test_ce_label_smoothing_is_a_mixture(isa, rng):
    # With q = (1-eps) onehot + eps/C the loss is linear in eps: (1-eps) * NLL + eps * (mean over
    # classes of -log p), a closed form independent of ce_ref.
    x = rng.standard_normal((9, 6))
    y = rng.integers(0, 6, 9)
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    nll = -log_p[np.arange(9), y].mean()
    uniform = -log_p.mean()
    for eps in [0.0, 0.25, 1.0]:
        loss, _ = K.softmax_cross_entropy(x, y, label_smoothing=eps)
        np.testing.assert_allclose(loss, (1 - eps) * nll + eps * uniform, rtol=1e-12)


def test_ce_sum_is_n_times_mean(isa, rng):
    x = rng.standard_normal((13, 4))
    y = rng.integers(0, 4, 13)
    mean, d_mean = K.softmax_cross_entropy(x, y, label_smoothing=0.2)
    total, d_sum = K.softmax_cross_entropy(x, y, label_smoothing=0.2, reduction="sum")
    np.testing.assert_allclose(total, 13 * mean, rtol=1e-13)
    np.testing.assert_allclose(d_sum, 13 * d_mean, rtol=1e-13)
    np.testing.assert_allclose(d_mean.sum(axis=1), 0.0, atol=1e-15)  # softmax and q both sum to 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, 1e20])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ce_extreme_logits_are_finite(isa, rng, dtype, scale, eps):
    x = (rng.choice([-1.0, 1.0], size=(6, 5)) * scale).astype(dtype)
    x[0] = scale  # a row of ties
    y = np.array([0, 1, 2, 3, 4, 0])
    loss, d = K.softmax_cross_entropy(x, y, label_smoothing=eps)
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    want_loss, want_d = ce_ref(x, y, eps)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    np.testing.assert_allclose(d, want_d, rtol=1e-5, atol=1e-7)


def test_ce_shift_invariant(isa, rng):
    x = rng.standard_normal((8, 7))
    y = rng.integers(0, 7, 8)
    a = K.softmax_cross_entropy(x, y, label_smoothing=0.1)
    b = K.softmax_cross_entropy(x + 1000.0, y, label_smoothing=0.1)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)
    np.testing.assert_allclose(a[1], b[1], atol=1e-15)


def test_ce_neg_inf_logit_without_smoothing(isa):
    # Only the labelled logit enters the loss when eps == 0 (as in PyTorch); -inf elsewhere is fine.
    x = np.array([[0.0, -np.inf, 0.0]])
    loss, d = K.softmax_cross_entropy(x, np.array([0]))
    np.testing.assert_allclose(loss, np.log(2.0))
    np.testing.assert_allclose(d, [[-0.5, 0.0, 0.5]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_nan_propagates(isa, rng, dtype):
    x = rng.standard_normal((3, 5)).astype(dtype)
    x[1, 3] = np.nan
    loss, d = K.softmax_cross_entropy(x, np.array([0, 1, 2]))
    assert np.isnan(loss)
    assert np.all(np.isnan(d[1]))
    assert np.all(np.isfinite(d[[0, 2]]))


def test_ce_label_dtypes_and_strided_inputs(isa, rng):
    x = rng.standard_normal((10, 12))
    y = rng.integers(0, 6, 10)
    want = ce_ref(x[::2, ::2], y[::2], 0.1)
    for labels in (y[::2], y[::2].astype(np.int32), np.ascontiguousarray(y[::2])):
        got = K.softmax_cross_entropy(x[::2, ::2], labels, label_smoothing=0.1)
        assert_loss(got, want, np.float64)
    xf = np.asfortranarray(x[:, :5])
    assert_loss(K.softmax_cross_entropy(xf, y % 5), ce_ref(xf, y % 5), np.float64)
    yt = rng.integers(0, 10, 12)
    assert_loss(K.softmax_cross_entropy(x.T, yt), ce_ref(x.T, yt), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_dlogits_out(isa, rng, dtype):
    x = rng.standard_normal((6, 4)).astype(dtype)
    y = rng.integers(0, 4, 6)
    out = np.full((6, 4), np.nan, dtype)
    loss, d = K.softmax_cross_entropy(x, y, dlogits=out)
    assert d is out
    assert_loss((loss, out), ce_ref(x, y), dtype)


def test_ce_empty_batch():
    loss, d = K.softmax_cross_entropy(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    assert np.isnan(loss) and d.shape == (0, 3) and d.dtype == np.float32
    loss, d = K.softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int32), reduction="sum")
    assert loss == 0.0 and d.shape == (0, 3)


def test_ce_bad_labels():
    x = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"labels\[2\] = 5 .*C = 5"):
        K.softmax_cross_entropy(x, np.array([0, 1, 5]))
    with pytest.raises(ValueError, match=r"labels\[0\] = -1 .*C = 5"):
        K.softmax_cross_entropy(x, np.array([-1, 1, 2], np.int32))
    with pytest.raises(ValueError, match=r"C = 0"):
        K.softmax_cross_entropy(np.zeros((1, 0)), np.array([0]))
    for dtype in (np.float64, np.uint8, np.int16, np.bool_):
        bad = np.array([0, 1, 1], dtype)
        with pytest.raises(TypeError, match="int32 or int64"):
            K.softmax_cross_entropy(x, bad)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        K.softmax_cross_entropy(x, [0, 1, 2])
    with pytest.raises(ValueError, match=r"\(3,\).*\(3, 5\).*\(4,\)"):
        K.softmax_cross_entropy(x, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="labels must be 1-D"):
        K.softmax_cross_entropy(x, np.zeros((3, 1), np.int64))


def test_ce_bad_logits_and_parameters():
    y = np.array([0, 1])
    with pytest.raises(TypeError, match="float32 or float64"):
        K.softmax_cross_entropy(np.zeros((2, 3), np.int64), y)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        K.softmax_cross_entropy([[0.0, 1.0], [1.0, 0.0]], y)
    with pytest.raises(ValueError, match=r"logits must be 2-D, got shape \(6,\)"):
        K.softmax_cross_entropy(np.zeros(6), y)
    x = np.zeros((2, 3))
    for eps in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match="label_smoothing"):
            K.softmax_cross_entropy(x, y, label_smoothing=eps)
    with pytest.raises(ValueError, match="reduction"):
        K.softmax_cross_entropy(x, y, reduction="none")


def test_ce_bad_dlogits():
    x = np.zeros((2, 3))
    y = np.array([0, 1])
    with pytest.raises(TypeError, match="dlogits"):
        K.softmax_cross_entropy(x, y, dlogits=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"dlogits must have shape \(2, 3\), got \(3, 2\)"):
        K.softmax_cross_entropy(x, y, dlogits=np.zeros((3, 2)))
    ro = np.zeros((2, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        K.softmax_cross_entropy(x, y, dlogits=ro)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.softmax_cross_entropy(x, y, dlogits=np.zeros((3, 2)).T)
    with pytest.raises(ValueError, match="overlaps"):
        K.softmax_cross_entropy(x, y, dlogits=x)


def test_ce_bit_identical_for_any_thread_count(isa, rng):
    x = (rng.standard_normal((3000, 97)) * 4).astype(np.float32)
    y = rng.integers(0, 97, 3000)
    previous = pydl.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3, 8):
            pydl.set_num_threads(n)
            results.append(K.softmax_cross_entropy(x, y, label_smoothing=0.1))
    finally:
        pydl.set_num_threads(previous)
    for loss, d in results[1:]:
        assert loss == results[0][0]
        np.testing.assert_array_equal(d, results[0][1])
    assert_loss(results[0], ce_ref(x, y, 0.1), np.float32)


def test_ce_concurrent_python_threads(rng):
    # The GIL is released inside the kernel: 8 Python threads at once give the serial results.
    batches = [
        ((rng.standard_normal((700, 50)) * 3).astype(np.float32), rng.integers(0, 50, 700))
        for _ in range(8)
    ]
    serial = [K.softmax_cross_entropy(x, y, label_smoothing=0.1) for x, y in batches]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(
            pool.map(lambda b: K.softmax_cross_entropy(*b, label_smoothing=0.1), batches * 3)
        )
    for (loss, d), (want_loss, want_d) in zip(parallel, serial * 3):
        assert loss == want_loss
        np.testing.assert_array_equal(d, want_d)


# ---------------------------------------------------------------------------------------------
# bce_with_logits and mse (shared element-wise plumbing)
# ---------------------------------------------------------------------------------------------

ELEMENTWISE = {
    "bce": (K.bce_with_logits, bce_ref, "logits", "targets", "dlogits"),
    "mse": (K.mse, mse_ref, "pred", "target", "dpred"),
}


def inputs(name, rng, shape, dtype):
    a = (rng.standard_normal(shape) * 4).astype(dtype)
    b = rng.random(shape) if name == "bce" else rng.standard_normal(shape)
    return a, b.astype(dtype)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (812,), (29, 31), (1029, 917)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_elementwise_matches_numpy(isa, rng, name, dtype, shape, reduction):
    fn, ref, *_ = ELEMENTWISE[name]
    a, b = inputs(name, rng, shape, dtype)
    got = fn(a, b, reduction=reduction)
    assert got[1].shape == shape
    assert_loss(got, ref(a, b, reduction), dtype)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_strided_inputs(isa, rng, name):
    fn, ref, *_ = ELEMENTWISE[name]
    a, b = inputs(name, rng, (40, 30), np.float64)
    assert_loss(fn(a[::2], b[::2]), ref(a[::2], b[::2]), np.float64)
    assert_loss(fn(a.T, b.T), ref(a.T, b.T), np.float64)
    a3, b3 = a[:, ::3], np.ascontiguousarray(b[:, ::3])
    assert_loss(fn(a3, b3), ref(a3, b3), np.float64)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_elementwise_gradient_matches_finite_differences(isa, rng, name, reduction):
    fn, *_ = ELEMENTWISE[name]
    a, b = inputs(name, rng, (3, 4), np.float64)
    _, d = fn(a, b, reduction=reduction)
    fd = central_differences(lambda v: fn(v, b, reduction=reduction)[0], a.copy())
    np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_extreme_logits(isa, dtype):
    x = np.array([1000.0, -1000.0, 1000.0, -1000.0, 0.0], dtype)
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.5], dtype)
    loss, d = K.bce_with_logits(x, t, reduction="sum")
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    np.testing.assert_allclose(loss, 2000.0 + np.log(2.0), rtol=1e-7)
    np.testing.assert_allclose(d, [1.0, -1.0, 0.0, 0.0, 0.0], atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_tiny_losses_keep_relative_accuracy(isa, dtype):
    # With t = 1 the loss is log1p(exp(-x)) (down to ~1e-35 / 1e-304): each element's value, not
    # just the sum, must keep a few-ulp relative accuracy (the vector log1p and exp).
    top = 80.0 if dtype == np.float32 else 700.0
    x = np.concatenate([np.linspace(-3, top, 1001), np.geomspace(1e-7, 3, 501)]).astype(dtype)
    one = np.ones(1, dtype)
    got = np.array([K.bce_with_logits(v[None], one, reduction="sum")[0] for v in x])
    want = np.logaddexp(0.0, -x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_nan_propagates(isa, name, dtype):
    fn, *_ = ELEMENTWISE[name]
    a = np.array([0.5, np.nan, -2.0], dtype)
    b = np.array([1.0, 0.0, 0.0], dtype)
    loss, d = fn(a, b)
    assert np.isnan(loss)
    assert np.isnan(d[1]) and np.all(np.isfinite(d[[0, 2]]))


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_empty(name):
    fn, *_ = ELEMENTWISE[name]
    loss, d = fn(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32))
    assert np.isnan(loss) and d.shape == (0, 4)
    assert fn(np.zeros(0), np.zeros(0), reduction="sum")[0] == 0.0


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_out(isa, rng, name):
    fn, ref, _, _, out_name = ELEMENTWISE[name]
    a, b = inputs(name, rng, (5, 6), np.float32)
    out = np.full((5, 6), np.nan, np.float32)
    loss, d = fn(a, b, **{out_name: out})
    assert d is out
    assert_loss((loss, out), ref(a, b), np.float32)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_errors(name):
    fn, _, a_name, b_name, out_name = ELEMENTWISE[name]
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match=rf"{a_name} and {b_name} .*\(2, 3\) and \(3, 2\)"):
        fn(a, np.zeros((3, 2)))
    with pytest.raises(TypeError, match=rf"{b_name} has dtype float32"):
        fn(a, np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        fn(np.zeros((2, 3), np.int32), np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        fn([0.0, 1.0], np.zeros(2))
    with pytest.raises(ValueError, match="reduction"):
        fn(a, a.copy(), reduction="max")
    with pytest.raises(ValueError, match=rf"{out_name} must have shape \(2, 3\)"):
        fn(a, a.copy(), **{out_name: np.zeros(6)})
    ro = np.zeros((2, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fn(a, a.copy(), **{out_name: ro})
    b = np.zeros((2, 3))
    with pytest.raises(ValueError, match="overlaps"):
        fn(a, b, **{out_name: b})


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_bit_identical_for_any_thread_count(isa, rng, name):
    fn, ref, *_ = ELEMENTWISE[name]
    a, b = inputs(name, rng, (300_001,), np.float32)
    previous = pydl.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3, 8):
            pydl.set_num_threads(n)
            results.append(fn(a, b))
    finally:
        pydl.set_num_threads(previous)
    for loss, d in results[1:]:
        assert loss == results[0][0]
        np.testing.assert_array_equal(d, results[0][1])
    assert_loss(results[0], ref(a, b), np.float32)


# ---------------------------------------------------------------------------------------------
# PyTorch, when it happens to be installed
# ---------------------------------------------------------------------------------------------


def test_against_torch(rng):
    import torch
    x = rng.standard_normal((16, 5))
    y = rng.integers(0, 5, 16)
    xt = torch.tensor(x, requires_grad=True)
    want = torch.nn.CrossEntropyLoss(label_smoothing=0.2)(xt, torch.tensor(y))
    want.backward()
    loss, d = K.softmax_cross_entropy(x, y, label_smoothing=0.2)
    np.testing.assert_allclose(loss, want.item(), rtol=1e-12)
    np.testing.assert_allclose(d, xt.grad.numpy(), rtol=1e-10, atol=1e-15)
    t = rng.random((16, 5))
    xt.grad = None
    want = torch.nn.BCEWithLogitsLoss(reduction="sum")(xt, torch.tensor(t))
    want.backward()
    loss, d = K.bce_with_logits(x, t, reduction="sum")
    np.testing.assert_allclose(loss, want.item(), rtol=1e-12)
    np.testing.assert_allclose(d, xt.grad.numpy(), rtol=1e-10, atol=1e-15)
    xt.grad = None
    want = torch.nn.MSELoss()(xt, torch.tensor(t))
    want.backward()
    loss, d = K.mse(x, t)
    np.testing.assert_allclose(loss, want.item(), rtol=1e-12)
    np.testing.assert_allclose(d, xt.grad.numpy(), rtol=1e-10, atol=1e-15)
