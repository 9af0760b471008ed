"""Property-based tests of the kernels (hypothesis): algebraic identities on random shapes, strides
and values, each checked on every instruction set this CPU has.

The per-kernel files under tests/kernels pin fixed edge cases; here hypothesis searches the space
between them (empty dimensions, odd sizes, negative and multi-element strides, both dtypes) for a
counterexample and shrinks it. The oracles are float64 numpy, exact algebraic identities (scaling
by a power of two, shifting by an exactly representable constant) and central differences.
"""

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pydl
from pydl import _core
from pydl import kernels as K

ISAS = list(_core.supported_isas())
DTYPES = [np.float32, np.float64]
# Bounded so the whole file stays within a few tens of seconds on two cores.
PROPS = settings(max_examples=200, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def dispatch(isa):
    previous = _core.isa()
    _core._set_isa(isa)
    try:
        yield
    finally:
        _core._set_isa(previous)


def each_isa():
    for isa in ISAS:
        with dispatch(isa):
            yield isa


# --- strategies ---------------------------------------------------------------------------------

dims = st.integers(0, 70) | st.sampled_from([127, 129, 257])
steps = st.sampled_from([1, 1, 2, 3, -1, -2])


@st.composite
def strided(draw, shape, dtype, scale=1.0):
    """A view of the given shape taken with random steps (and an optional .T) of a larger array."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    transpose = len(shape) == 2 and draw(st.booleans())
    view_shape = tuple(reversed(shape)) if transpose else tuple(shape)
    step = [draw(steps) for _ in view_shape]
    base_shape = [max(1, n * abs(s)) for n, s in zip(view_shape, step)]
    base = (np.random.default_rng(seed).standard_normal(base_shape) * scale).astype(dtype)
    view = base[tuple(slice(None, None, s) for s in step)]
    view = view[tuple(slice(0, n) for n in view_shape)]
    return view.T if transpose else view


@st.composite
def gemm_case(draw):
    m, n, k = draw(dims), draw(dims), draw(dims)
    dtype = draw(st.sampled_from(DTYPES))
    trans_a, trans_b = draw(st.booleans()), draw(st.booleans())
    a = draw(strided((k, m) if trans_a else (m, k), dtype))
    b = draw(strided((n, k) if trans_b else (k, n), dtype))
    return a, b, trans_a, trans_b


def op(x, trans):
    return x.T if trans else x


def gemm_atol(a, b, k, dtype):
    scale = (np.abs(a).max() if a.size else 0.0) * (np.abs(b).max() if b.size else 0.0)
    return 4 * np.finfo(dtype).eps * max(k, 1) * max(scale, 1.0)


# --- GEMM ---------------------------------------------------------------------------------------

@PROPS
@given(gemm_case())
def test_gemm_matches_float64_on_any_strides(case):
    a, b, ta, tb = case
    want = op(a, ta).astype(np.float64) @ op(b, tb).astype(np.float64)
    k = op(a, ta).shape[1]
    for isa in each_isa():
        c = K.matmul(a, b, trans_a=ta, trans_b=tb)
        assert c.shape == want.shape and c.dtype == a.dtype
        np.testing.assert_allclose(c, want, rtol=0, atol=gemm_atol(a, b, k, a.dtype),
                                   err_msg=isa)


@PROPS
@given(gemm_case())
def test_gemm_strided_input_equals_contiguous_input(case):
    # Every element is the same dot product whatever the operands' layout: bit-identical.
    a, b, ta, tb = case
    for isa in each_isa():
        got = K.matmul(a, b, trans_a=ta, trans_b=tb)
        want = K.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b), trans_a=ta,
                        trans_b=tb)
        np.testing.assert_array_equal(got, want, err_msg=isa)


@PROPS
@given(gemm_case(), st.sampled_from([2.0, 0.5, -4.0]), st.integers(0, 2 ** 32 - 1))
def test_gemm_is_linear(case, alpha, seed):
    a, b, ta, tb = case
    b2 = np.random.default_rng(seed).standard_normal(b.shape).astype(b.dtype)
    k = op(a, ta).shape[1]
    for isa in each_isa():
        ab = K.matmul(a, b, trans_a=ta, trans_b=tb)
        # Scaling by a power of two is exact in every product and partial sum.
        np.testing.assert_array_equal(K.matmul(alpha * a, b, trans_a=ta, trans_b=tb),
                                      alpha * ab, err_msg=isa)
        np.testing.assert_array_equal(K.matmul(a, alpha * b, trans_a=ta, trans_b=tb),
                                      alpha * ab, err_msg=isa)
        # Additivity holds up to rounding: a(b + b2) = ab + ab2.
        ab2 = K.matmul(a, b2, trans_a=ta, trans_b=tb)
        summed = K.matmul(a, b + b2, trans_a=ta, trans_b=tb)
        np.testing.assert_allclose(summed, ab + ab2, rtol=0,
                                   atol=3 * gemm_atol(a, np.abs(b) + np.abs(b2), k, a.dtype),
                                   err_msg=isa)


@PROPS
@given(gemm_case())
def test_gemm_transpose_identities(case):
    a, b, ta, tb = case
    k = op(a, ta).shape[1]
    atol = gemm_atol(a, b, k, a.dtype)
    for isa in each_isa():
        ab = K.matmul(a, b, trans_a=ta, trans_b=tb)
        # (A B)^T = B^T A^T, with the transposes expressed as flags and as views.
        np.testing.assert_allclose(K.matmul(b, a, trans_a=not tb, trans_b=not ta).T, ab,
                                   rtol=0, atol=atol, err_msg=isa)
        np.testing.assert_allclose(K.matmul(op(b, tb).T, op(a, ta).T).T, ab, rtol=0, atol=atol,
                                   err_msg=isa)
        # A transpose flag and a transposed view are the same operand.
        np.testing.assert_array_equal(K.matmul(op(a, ta), op(b, tb)), ab, err_msg=isa)


@PROPS
@given(gemm_case(), st.booleans())
def test_gemm_accumulate_adds_and_overwrite_ignores_nan(case, accumulate):
    a, b, ta, tb = case
    shape = (op(a, ta).shape[0], op(b, tb).shape[1])
    k = op(a, ta).shape[1]
    for isa in each_isa():
        ab = K.matmul(a, b, trans_a=ta, trans_b=tb)
        if accumulate:
            out = np.ones(shape, a.dtype)
            K.matmul(a, b, trans_a=ta, trans_b=tb, out=out, accumulate=True)
            np.testing.assert_allclose(out, ab + 1, rtol=0,
                                       atol=gemm_atol(a, b, k, a.dtype) + np.finfo(a.dtype).eps,
                                       err_msg=isa)
        else:
            out = np.full(shape, np.nan, a.dtype)
            K.matmul(a, b, trans_a=ta, trans_b=tb, out=out)
            np.testing.assert_array_equal(out, ab, err_msg=isa)


# --- softmax ------------------------------------------------------------------------------------

@st.composite
def softmax_case(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(0, 40)) for _ in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    axis = draw(st.integers(-ndim, ndim - 1))
    # Multiples of 1/8 within +-100: adding an integer shift below 2**16 is exact in float32.
    seed = draw(st.integers(0, 2 ** 32 - 1))
    base = np.random.default_rng(seed).integers(-800, 801, size=shape) / 8.0
    x = draw(strided(shape, dtype)) if draw(st.booleans()) else np.empty(shape, dtype)
    if x.size:
        x[...] = base
    return x.astype(dtype, copy=False), axis


@PROPS
@given(softmax_case(), st.integers(-2 ** 16, 2 ** 16))
def test_softmax_sums_to_one_and_is_shift_invariant(case, shift):
    x, axis = case
    eps = np.finfo(x.dtype).eps
    n = x.shape[axis]
    for isa in each_isa():
        y = K.softmax(x, axis=axis)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert np.all(np.isfinite(y)) and np.all(y >= 0)
        if x.size:
            np.testing.assert_allclose(y.astype(np.float64).sum(axis=axis), 1.0,
                                       rtol=0, atol=4 * eps * max(n, 1), err_msg=isa)
        shifted = K.softmax(x + x.dtype.type(shift), axis=axis)
        np.testing.assert_allclose(shifted, y, rtol=8 * eps, atol=8 * eps, err_msg=isa)
        logy = K.log_softmax(x, axis=axis)
        np.testing.assert_allclose(K.log_softmax(x + x.dtype.type(shift), axis=axis), logy,
                                   rtol=8 * eps, atol=64 * eps, err_msg=isa)
        # log_softmax = log(softmax) wherever softmax is not tiny.
        big = y > 1e-3
        np.testing.assert_allclose(logy[big], np.log(y[big].astype(np.float64)),
                                   rtol=0, atol=64 * eps, err_msg=isa)


@PROPS
@given(softmax_case())
def test_softmax_strided_input_equals_contiguous_input(case):
    x, axis = case
    for isa in each_isa():
        for f in (K.softmax, K.log_softmax):
            np.testing.assert_array_equal(f(x, axis=axis), f(np.ascontiguousarray(x), axis=axis),
                                          err_msg=f"{f.__name__} {isa}")


# --- elementwise --------------------------------------------------------------------------------

ELEMENTWISE = {
    "relu": {},
    "leaky_relu": {"negative_slope": 0.125},
    "elu": {"alpha": 0.75},
    "sigmoid": {},
    "tanh": {},
}


@st.composite
def elementwise_case(draw, dtypes=DTYPES):
    # (0-d arrays are pinned in tests/kernels; numpy turns 0-d arithmetic results into scalars.)
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(0, 30 if ndim > 1 else 1100)) for _ in range(ndim))
    x = draw(strided(shape, draw(st.sampled_from(dtypes)), scale=4.0))
    return draw(st.sampled_from(sorted(ELEMENTWISE))), x


@PROPS
@given(elementwise_case(), st.integers(0, 2 ** 32 - 1))
def test_elementwise_strided_input_equals_contiguous_input(case, seed):
    name, x = case
    kw = ELEMENTWISE[name]
    fwd, bwd = getattr(K, name), getattr(K, name + "_backward")
    dy = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    for isa in each_isa():
        y = fwd(x, **kw)
        np.testing.assert_array_equal(y, fwd(np.ascontiguousarray(x), **kw), err_msg=isa)
        # A strided y for the backward too (a view of a reversed copy).
        y_view = np.flip(np.flip(y).copy())
        np.testing.assert_array_equal(bwd(dy, y_view, **kw), bwd(dy, y, **kw), err_msg=isa)


def away_from_kinks(x, h):
    # relu/leaky_relu/elu are not differentiable at 0: keep central differences off the kink.
    return np.where(np.abs(x) < 10 * h, x + np.copysign(20 * h, x), x)


@PROPS
@given(elementwise_case(dtypes=[np.float64]), st.integers(0, 2 ** 32 - 1))
def test_elementwise_backward_agrees_with_central_differences(case, seed):
    name, x = case
    h = 1e-6
    x = away_from_kinks(np.asarray(x, np.float64), h)
    kw = ELEMENTWISE[name]
    fwd, bwd = getattr(K, name), getattr(K, name + "_backward")
    dy = np.random.default_rng(seed).standard_normal(x.shape)
    for isa in each_isa():
        y = fwd(x, **kw)
        fd = (fwd(x + h, **kw) - fwd(x - h, **kw)) / (2 * h)
        np.testing.assert_allclose(bwd(dy, y, **kw), dy * fd, rtol=1e-6, atol=1e-7,
                                   err_msg=isa)


@PROPS
@given(softmax_case(), st.integers(0, 2 ** 32 - 1), st.booleans())
def test_softmax_backward_agrees_with_central_differences(case, seed, log):
    x, axis = case
    # Moderate logits keep the differences well conditioned; few elements keep the loop short.
    cap = {1: 40, 2: 12, 3: 6}[x.ndim]
    x = np.asarray(x[(slice(0, cap),) * x.ndim], np.float64) / 16
    fwd = K.log_softmax if log else K.softmax
    bwd = K.log_softmax_backward if log else K.softmax_backward
    dy = np.random.default_rng(seed).standard_normal(x.shape)
    h = 1e-6
    for isa in each_isa():
        y = fwd(x, axis=axis)
        got = bwd(dy, y, axis=axis)
        # dL/dx_i for L = sum(dy * f(x)), one coordinate at a time.
        fd = np.empty_like(x)
        for i in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[i] = h
            fd[i] = np.sum(dy * (fwd(x + e, axis=axis) - fwd(x - e, axis=axis))) / (2 * h)
        np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-7, err_msg=isa)


# --- thread count -------------------------------------------------------------------------------

@settings(max_examples=20, deadline=None, derandomize=True)
@given(gemm_case(), st.integers(2, 4))
def test_gemm_any_thread_count_is_bit_identical(case, n_threads):
    a, b, ta, tb = case
    previous = pydl.get_num_threads()
    try:
        pydl.set_num_threads(1)
        want = K.matmul(a, b, trans_a=ta, trans_b=tb)
        pydl.set_num_threads(n_threads)
        np.testing.assert_array_equal(K.matmul(a, b, trans_a=ta, trans_b=tb), want)
    finally:
        pydl.set_num_threads(previous)


def test_hypothesis_is_really_searching():
    # Guard against a strategy that silently collapses to one case (e.g. every shape empty).
    seen = set()

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(gemm_case())
    def collect(case):
        a, b, ta, tb = case
        seen.add((op(a, ta).shape, op(b, tb).shape[1], a.dtype.name, ta, tb))

    collect()
    assert len(seen) > 30
    assert any(0 in s[0] or s[1] == 0 for s in seen)
    assert len({s[2] for s in seen}) == 2


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
