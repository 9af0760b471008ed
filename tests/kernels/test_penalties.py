"""Weight penalties: values and accumulated gradients against numpy's closed forms."""

import numpy as np
import pytest

import pydl
from pydl import kernels as K

SHAPES = [(1,), (7,), (812,), (1029, 917)]
DTYPES = [np.float32, np.float64]
# Float64 sums of a float32 input are exact per term: only the summation order differs from numpy.
VALUE_RTOL = 1e-12


def np_value(w, wd, l1_ratio):
    w64 = w.astype(np.float64)
    return wd * (l1_ratio * np.abs(w64).sum() + (1 - l1_ratio) * (w64 * w64).sum())


def np_grad_term(w, wd, l1_ratio):
    dt = w.dtype.type
    return dt(wd * l1_ratio) * np.sign(w) + dt(2 * wd * (1 - l1_ratio)) * w


def weights(shape, dtype, seed=0):
    w = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    w.flat[::5] = 0.0  # exercise sign(0) = 0
    return w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_values_match_numpy(isa, threads, dtype, shape):
    w = weights(shape, dtype)
    wd = 0.37
    assert K.l1_penalty(w, wd) == pytest.approx(wd * np.abs(w.astype(np.float64)).sum(), rel=VALUE_RTOL)
    assert K.l2_penalty(w, wd) == pytest.approx(wd * np.sum(w.astype(np.float64) ** 2), rel=VALUE_RTOL)
    for r in (0.0, 0.3, 0.5, 1.0):
        assert K.elastic_net_penalty(w, wd, r) == pytest.approx(np_value(w, wd, r), rel=VALUE_RTOL)
    assert K.elastic_net_penalty(w, wd) == pytest.approx(np_value(w, wd, 0.5), rel=VALUE_RTOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_accumulate_and_match_numpy(isa, threads, dtype, shape):
    w = weights(shape, dtype, seed=1)
    grad0 = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    wd = 0.37
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    cases = [
        (lambda g: K.l1_penalty_backward(g, w, wd), 1.0),
        (lambda g: K.l2_penalty_backward(g, w, wd), 0.0),
        (lambda g: K.elastic_net_penalty_backward(g, w, wd, 0.3), 0.3),
        (lambda g: K.elastic_net_penalty_backward(g, w, wd), 0.5),
    ]
    for call, r in cases:
        grad = grad0.copy()
        assert call(grad) is None
        expected = grad0 + np_grad_term(w, wd, r)
        np.testing.assert_allclose(grad, expected, rtol=rtol, atol=rtol)
        call(grad)  # a second call adds again: the buffer is accumulated into, never overwritten
        np.testing.assert_allclose(grad, expected + np_grad_term(w, wd, r), rtol=rtol, atol=2 * rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_elastic_net_endpoints_equal_l1_l2_exactly(isa, dtype):
    w = weights((1029, 917), dtype, seed=3)
    assert K.elastic_net_penalty(w, 0.2, 1.0) == K.l1_penalty(w, 0.2)
    assert K.elastic_net_penalty(w, 0.2, 0.0) == K.l2_penalty(w, 0.2)
    grad0 = np.random.default_rng(4).standard_normal(w.shape).astype(dtype)
    for r, single in ((1.0, K.l1_penalty_backward), (0.0, K.l2_penalty_backward)):
        a, b = grad0.copy(), grad0.copy()
        K.elastic_net_penalty_backward(a, w, 0.2, r)
        single(b, w, 0.2)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_l1_gradient_at_zero_is_zero(isa, dtype):
    w = np.array([0.0, -0.0, 1.0, -2.0, 0.0], dtype)
    grad = np.array([1.5, -2.5, 0.0, 0.0, 0.0], dtype)
    K.l1_penalty_backward(grad, w, 0.5)
    np.testing.assert_array_equal(grad, np.array([1.5, -2.5, 0.5, -0.5, 0.0], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_l2_gradient_is_exactly_2_wd_w(isa, dtype):
    w = weights(812, dtype, seed=5)
    grad = np.zeros_like(w)
    K.l2_penalty_backward(grad, w, 0.3)
    np.testing.assert_array_equal(grad, dtype(2 * 0.3) * w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_w(isa, dtype):
    base = weights((60, 90), dtype, seed=6)
    for view in (base[::2], base.T, base[:, ::3], base[::-1, ::-1]):
        dense = np.ascontiguousarray(view)
        assert K.elastic_net_penalty(view, 0.1, 0.4) == K.elastic_net_penalty(dense, 0.1, 0.4)
        a = np.ones(view.shape, dtype)
        b = np.ones(view.shape, dtype)
        K.elastic_net_penalty_backward(a, view, 0.1, 0.4)
        K.elastic_net_penalty_backward(b, dense, 0.1, 0.4)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(0,), (4, 0)])
def test_empty(isa, shape):
    w = np.zeros(shape, np.float32)
    assert K.l1_penalty(w, 1.0) == 0.0
    assert K.l2_penalty(w, 1.0) == 0.0
    assert K.elastic_net_penalty(w, 1.0) == 0.0
    K.l2_penalty_backward(np.zeros(shape, np.float32), w, 1.0)


def test_value_bit_identical_for_any_thread_count(isa):
    w = np.random.default_rng(7).standard_normal(3_000_017).astype(np.float32) * 1e3
    previous = pydl.get_num_threads()
    try:
        values = []
        for n in (1, 2, 8):
            pydl.set_num_threads(n)
            values.append((K.l1_penalty(w, 0.1), K.l2_penalty(w, 0.1), K.elastic_net_penalty(w, 0.1, 0.3)))
    finally:
        pydl.set_num_threads(previous)
    assert values[0] == values[1] == values[2]


def test_nan_propagates(isa):
    w = np.array([1.0, np.nan, -1.0], np.float32)
    assert np.isnan(K.l1_penalty(w, 0.1)) and np.isnan(K.l2_penalty(w, 0.1))
    for backward in (K.l1_penalty_backward, K.l2_penalty_backward):
        grad = np.zeros(3, np.float32)
        backward(grad, w, 0.1)
        assert np.isnan(grad[1]) and np.isfinite(grad[[0, 2]]).all()


@pytest.mark.parametrize("wd", [-1e-3, float("nan")])
def test_bad_wd(wd):
    w = np.ones(3, np.float32)
    for call in (
        lambda: K.l1_penalty(w, wd),
        lambda: K.l2_penalty(w, wd),
        lambda: K.elastic_net_penalty(w, wd),
        lambda: K.l2_penalty_backward(np.zeros_like(w), w, wd),
        lambda: K.elastic_net_penalty_backward(np.zeros_like(w), w, wd),
    ):
        with pytest.raises(ValueError, match="wd"):
            call()


@pytest.mark.parametrize("l1_ratio", [-0.1, 1.1, float("nan")])
def test_bad_l1_ratio(l1_ratio):
    w = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="l1_ratio"):
        K.elastic_net_penalty(w, 0.1, l1_ratio)
    with pytest.raises(ValueError, match="l1_ratio"):
        K.elastic_net_penalty_backward(np.zeros_like(w), w, 0.1, l1_ratio)


def test_bad_arrays():
    w = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="w"):
        K.l1_penalty([1.0, 2.0], 0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        K.l2_penalty(np.ones(3, np.int64), 0.1)
    with pytest.raises(TypeError, match="grad.*float64.*float32"):
        K.l2_penalty_backward(np.zeros((3, 4), np.float64), w, 0.1)
    with pytest.raises(TypeError, match="grad"):
        K.l2_penalty_backward(np.zeros((3, 4)).tolist(), w, 0.1)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        K.l2_penalty_backward(np.zeros((4, 3), np.float32), w, 0.1)
    ro = np.zeros((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        K.l1_penalty_backward(ro, w, 0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.l1_penalty_backward(np.zeros((4, 3), np.float32).T, w, 0.1)
    with pytest.raises(ValueError, match="overlaps"):
        K.l1_penalty_backward(w, w, 0.1)


def test_python_threads_calling_at_once_match_serial(isa):
    from concurrent.futures import ThreadPoolExecutor

    ws = [np.random.default_rng(s).standard_normal(200_000).astype(np.float32) for s in range(8)]
    serial = [K.elastic_net_penalty(w, 0.1, 0.3) for w in ws]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda w: K.elastic_net_penalty(w, 0.1, 0.3), ws))
    assert parallel == serial
