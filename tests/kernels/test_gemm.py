"""GEMM kernels (matmul, linear) against float64 numpy, on every ISA and at 1 and 2 threads."""

import os
import threading

import numpy as np
import pytest

import pydl
from pydl.kernels import linear, matmul

SIZES = [0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 257]
DTYPES = [np.float32, np.float64]
TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]
ACTIVATIONS = [None, "relu", "leaky_relu", "elu", "sigmoid", "tanh"]


def operands(rng, m, n, k, trans_a, trans_b, dtype):
    """Random a, b stored so that op(a) is (m, k) and op(b) is (k, n)."""
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def op(x, trans):
    return x.T if trans else x


def tolerance(a, b, k, dtype):
    """Rounding error bound of a k-term dot product: grows with k and with the operand scale."""
    scale = (np.abs(a).max() if a.size else 0.0) * (np.abs(b).max() if b.size else 0.0)
    return 2 * np.finfo(dtype).eps * max(k, 1) * max(scale, 1.0)


def check_matmul(a, b, trans_a=False, trans_b=False, **kw):
    c = matmul(a, b, trans_a=trans_a, trans_b=trans_b, **kw)
    expected = op(a, trans_a).astype(np.float64) @ op(b, trans_b).astype(np.float64)
    assert c.dtype == a.dtype and c.shape == expected.shape
    k = op(a, trans_a).shape[1]
    np.testing.assert_allclose(
        c, expected, rtol=0, atol=tolerance(a, b, k, a.dtype),
        err_msg=f"shape {expected.shape} k={k} trans=({trans_a}, {trans_b}) {a.dtype}")
    return c


def np_activation(z, activation, negative_slope=0.01, alpha=1.0):
    if activation is None:
        return z
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "leaky_relu":
        return np.where(z > 0, z, negative_slope * z)
    if activation == "elu":
        return np.where(z > 0, z, alpha * np.expm1(z))
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-z))
    return np.tanh(z)


# --- sizes, transposes, dtypes -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", ["m", "n", "k"])
def test_every_size_on_each_axis(isa, threads, axis, dtype, rng):
    # Each size in SIZES on one axis, the other two fixed at awkward sizes, all four transposes.
    for s in SIZES:
        dims = {"m": 33, "n": 17, "k": 65}
        dims[axis] = s
        for ta, tb in TRANSPOSES:
            a, b = operands(rng, dims["m"], dims["n"], dims["k"], ta, tb, dtype)
            check_matmul(a, b, ta, tb)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_size_triples(isa, threads, dtype):
    rng = np.random.default_rng(2024)
    for _ in range(48):
        m, n, k = rng.choice(SIZES, size=3)
        ta, tb = TRANSPOSES[rng.integers(4)]
        a, b = operands(rng, m, n, k, ta, tb, dtype)
        check_matmul(a, b, ta, tb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans", TRANSPOSES)
def test_beyond_cache_blocks(isa, threads, trans, dtype, rng):
    # Larger than every MC/KC block (and NR/MR multiple-free), so each block loop runs several
    # times and ends on a partial block.
    a, b = operands(rng, 611, 523, 801, *trans, dtype)
    check_matmul(a, b, *trans)


@pytest.mark.parametrize("dtype", DTYPES)
def test_wide_output_exceeds_nc(isa, threads, dtype, rng):
    # n beyond the NC column block of every ISA, so the jc loop runs more than once.
    a, b = operands(rng, 19, 4200, 300, False, False, dtype)
    check_matmul(a, b)


# --- strided inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_transposed_and_negative_views(isa, threads, dtype, rng):
    base_a = rng.standard_normal((130, 200)).astype(dtype)
    base_b = rng.standard_normal((200, 300)).astype(dtype)
    views = [
        (base_a[::2, :77], base_b[:77, ::3]),
        (base_a[:, :65].T[::2], base_b[:130, ::-3]),
        (base_a[::-1, ::-2], base_b[::-1][:100]),
        (base_a.T[::-3].T[:, :40], base_b.T[:40].T[:40]),
        (base_a[5:70, 3:90], base_b[10:97, 1:201]),
    ]
    for a, b in views:
        check_matmul(a, b)
        # The same views through the transpose flags.
        check_matmul(a.T, b.T, trans_a=True, trans_b=True)


def test_zero_stride_broadcast_input(isa, rng):
    a = np.broadcast_to(rng.standard_normal((1, 40)).astype(np.float32), (33, 40))
    b = rng.standard_normal((40, 20)).astype(np.float32)
    check_matmul(a, b)


def test_unaligned_and_odd_byte_strides(isa, rng):
    # A float32 field of a packed record: byte stride 5, not a multiple of the item size.
    rec = np.zeros(24 * 18, dtype=[("x", "<f4"), ("pad", "u1")])
    rec["x"] = rng.standard_normal(24 * 18)
    a = rec["x"].reshape(24, 18)
    assert a.strides[1] == 5
    # A C-contiguous float64 array starting at an odd byte address.
    buf = np.zeros(18 * 9 * 8 + 1, dtype=np.uint8)
    b64 = buf[1:].view(np.float64).reshape(18, 9)
    b64[...] = rng.standard_normal((18, 9))
    assert not b64.flags.aligned
    check_matmul(a, b64.astype(np.float32))
    check_matmul(a.astype(np.float64), b64)


# --- semantics ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_k_zero_gives_zeros(isa, dtype):
    a = np.zeros((5, 0), dtype)
    b = np.zeros((0, 7), dtype)
    out = np.full((5, 7), np.nan, dtype)
    assert matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, 0)
    np.testing.assert_array_equal(matmul(a, b), np.zeros((5, 7)))
    acc = np.arange(35, dtype=dtype).reshape(5, 7)
    matmul(a, b, out=acc, accumulate=True)
    np.testing.assert_array_equal(acc, np.arange(35).reshape(5, 7))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_m_or_n(isa, dtype):
    assert matmul(np.zeros((0, 4), dtype), np.ones((4, 3), dtype)).shape == (0, 3)
    assert matmul(np.ones((2, 4), dtype), np.ones((4, 0), dtype)).shape == (2, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_in_overwritten_out_never_leaks(isa, threads, dtype, rng):
    for m, n, k in [(1, 1, 1), (7, 33, 5), (65, 129, 300), (300, 40, 513)]:
        a, b = operands(rng, m, n, k, False, False, dtype)
        out = np.full((m, n), np.nan, dtype)
        matmul(a, b, out=out)
        assert np.isfinite(out).all()
        check_matmul(a, b)


def test_nan_in_inputs_propagates(isa, rng):
    a, b = operands(rng, 20, 40, 30, False, False, np.float32)
    a[3, 7] = np.nan
    c = matmul(a, b)
    assert np.isnan(c[3]).all()
    assert np.isfinite(np.delete(c, 3, axis=0)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans", TRANSPOSES)
def test_accumulate_adds_into_out(isa, threads, trans, dtype, rng):
    for m, n, k in [(3, 5, 7), (70, 90, 600)]:
        a, b = operands(rng, m, n, k, *trans, dtype)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        out = c0.copy()
        assert matmul(a, b, trans_a=trans[0], trans_b=trans[1], out=out, accumulate=True) is out
        expected = c0 + op(a, trans[0]).astype(np.float64) @ op(b, trans[1]).astype(np.float64)
        np.testing.assert_allclose(out, expected, rtol=0,
                                   atol=tolerance(a, b, k + 1, dtype) + 4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_product_equals_transposed_product_exactly(isa, threads, dtype, rng):
    # (B.T @ A.T).T adds the same products in the same order, so it must match bit for bit.
    for m, n, k in [(17, 33, 65), (129, 63, 300)]:
        a, b = operands(rng, m, n, k, False, False, dtype)
        ab = matmul(a, b)
        bt_at = matmul(b, a, trans_a=True, trans_b=True)
        np.testing.assert_array_equal(ab, bt_at.T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_few_rows_read_b_in_place_with_the_same_bits(isa, threads, dtype, rng):
    # With few rows of C a plain B is read in place instead of packed; each element's arithmetic
    # must not change, so the first rows of a tall product (B packed) are the oracle, bit for bit.
    base_b = rng.standard_normal((600, 700)).astype(dtype)
    a_tall = rng.standard_normal((300, 600)).astype(dtype)
    views = [base_b[:300, :100], base_b[:300, 5:610], base_b[::-1][:300, :77], base_b[::2, 3:40],
             base_b[:513, :4200 // 7]]
    for b in views:
        k = b.shape[0]
        tall = matmul(a_tall[:, :k], b)
        for m in (1, 13, 32, 56, 57):
            np.testing.assert_array_equal(matmul(a_tall[:m, :k], b), tall[:m])
            c = rng.standard_normal((m, b.shape[1])).astype(dtype)
            c_tall = np.concatenate([c, np.zeros((300 - m, b.shape[1]), dtype)])
            matmul(a_tall[:m, :k], b, out=c, accumulate=True)
            matmul(a_tall[:, :k], b, out=c_tall, accumulate=True)
            np.testing.assert_array_equal(c, c_tall[:m])
    check_matmul(a_tall[:32, :300], base_b[::-1][:300, :77])


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_and_two_threads_bit_identical(isa, dtype, rng):
    previous = pydl.get_num_threads()
    shapes = [(32, 512, 784), (600, 70, 500), (129, 257, 65), (700, 650, 300)]
    try:
        for m, n, k in shapes:
            for ta, tb in TRANSPOSES:
                a, b = operands(rng, m, n, k, ta, tb, dtype)
                results = []
                for t in (1, 2):
                    pydl.set_num_threads(t)
                    results.append(matmul(a, b, trans_a=ta, trans_b=tb))
                np.testing.assert_array_equal(results[0], results[1])
            x, w = operands(rng, m, n, k, False, True, dtype)
            bias = rng.standard_normal(n).astype(dtype)
            results = []
            for t in (1, 2):
                pydl.set_num_threads(t)
                results.append(linear(x, w, bias, "tanh"))
            np.testing.assert_array_equal(results[0], results[1])
    finally:
        pydl.set_num_threads(previous)


def test_isas_agree_within_tolerance(rng):
    # The blocked kernels sum in a different order than the reference one: close, not equal.
    from pydl import _core

    a, b = operands(rng, 200, 150, 700, False, True, np.float32)
    previous = _core.isa()
    try:
        results = {}
        for name in _core.supported_isas():
            _core._set_isa(name)
            results[name] = matmul(a, b, trans_b=True)
    finally:
        _core._set_isa(previous)
    for c in results.values():
        np.testing.assert_allclose(c, results["generic"], rtol=0,
                                   atol=tolerance(a, b, 700, np.float32))


def test_python_threads_at_once_match_serial(rng):
    a, b = operands(rng, 150, 170, 190, False, False, np.float32)
    expected = matmul(a, b)
    results = [None] * 8

    def work(i):
        for _ in range(5):
            results[i] = matmul(a, b)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_works_in_forked_child(rng):
    a, b = operands(rng, 300, 200, 250, False, False, np.float32)
    expected = matmul(a, b)  # starts the pool in the parent
    pid = os.fork()
    if pid == 0:
        ok = np.array_equal(matmul(a, b), expected)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# --- linear ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_matches_numpy(isa, threads, activation, dtype, rng):
    for batch, fin, fout in [(1, 1, 1), (7, 13, 33), (32, 784, 129), (130, 65, 300)]:
        x = rng.standard_normal((batch, fin)).astype(dtype)
        w = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(dtype)
        b = rng.standard_normal(fout).astype(dtype)
        kw = {"negative_slope": 0.2, "alpha": 0.7}
        expected = np_activation(x.astype(np.float64) @ w.T.astype(np.float64) + b,
                                 activation, **kw)
        y = linear(x, w, b, activation, **kw)
        assert y.dtype == dtype and y.shape == (batch, fout)
        atol = tolerance(x, w, fin + 1, dtype) + 8 * np.finfo(dtype).eps
        np.testing.assert_allclose(y, expected, rtol=4 * np.finfo(dtype).eps, atol=atol,
                                   err_msg=f"{activation} {(batch, fin, fout)}")
        y_nobias = linear(x, w, activation=activation, **kw)
        expected = np_activation(x.astype(np.float64) @ w.T.astype(np.float64), activation, **kw)
        np.testing.assert_allclose(y_nobias, expected, rtol=4 * np.finfo(dtype).eps, atol=atol)


def test_linear_without_epilogue_is_matmul_trans_b(isa, rng):
    x, w = operands(rng, 33, 70, 129, False, True, np.float32)
    np.testing.assert_array_equal(linear(x, w), matmul(x, w, trans_b=True))


def test_linear_strided_inputs_and_out(isa, rng):
    x = rng.standard_normal((40, 60)).astype(np.float64)[::2, ::-2]
    w = np.asfortranarray(rng.standard_normal((10, 30)))  # column-major weights
    b = rng.standard_normal(20)[::2]
    out = np.full((20, 10), np.nan)
    assert linear(x, w, b, "relu", out=out) is out
    expected = np.maximum(x @ w.T + b, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_linear_k_zero_applies_bias_and_activation(isa):
    x = np.zeros((3, 0), np.float32)
    w = np.zeros((4, 0), np.float32)
    b = np.array([-1, 0, 1, 2], np.float32)
    np.testing.assert_array_equal(linear(x, w, b, "relu"), np.tile([0, 0, 1, 2], (3, 1)))


def test_linear_backward_products(isa, rng):
    # The two backward products of y = x @ w.T through the transpose flags.
    x = rng.standard_normal((32, 78)).astype(np.float32)
    w = rng.standard_normal((51, 78)).astype(np.float32)
    dy = rng.standard_normal((32, 51)).astype(np.float32)
    check_matmul(dy, w)  # dx = dy @ w
    check_matmul(dy, x, trans_a=True)  # dw = dy.T @ x


# --- bad input --------------------------------------------------------------------------------------

def test_matmul_rejects_non_arrays_and_dtypes():
    f32 = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        matmul([[1.0, 2.0]], f32)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        matmul(f32, [[1.0], [2.0]])
    with pytest.raises(TypeError, match="int64"):
        matmul(np.ones((2, 2), np.int64), f32)
    with pytest.raises(TypeError, match="float64"):
        matmul(f32, np.ones((2, 2), np.float64))
    with pytest.raises(TypeError, match="float16"):
        matmul(np.ones((2, 2), np.float16), np.ones((2, 2), np.float16))
    with pytest.raises(TypeError, match="dtype"):
        matmul(f32, f32, out=np.zeros((2, 2), np.float64))


def test_matmul_rejects_bad_shapes():
    f32 = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"2-D, got shape \(3,\)"):
        matmul(np.ones(3, np.float32), f32)
    with pytest.raises(ValueError, match=r"2-D, got shape \(1, 2, 3\)"):
        matmul(f32, np.ones((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\).*trans_a=False.*\(2, 3\).*trans_b=False"):
        matmul(f32, f32)
    with pytest.raises(ValueError, match=r"\(2, 3\).*trans_a=True.*\(4, 3\).*trans_b=True"):
        matmul(f32, np.ones((4, 3), np.float32), trans_a=True, trans_b=True)


def test_matmul_rejects_bad_out():
    a = np.ones((4, 3), np.float32)
    b = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"shape \(4, 4\), got \(4, 3\)"):
        matmul(a, b, out=np.zeros((4, 3), np.float32))
    ro = np.zeros((4, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        matmul(a, b, out=ro)
    with pytest.raises(ValueError, match="C-contiguous"):
        matmul(a, b, out=np.zeros((4, 8), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        matmul(a, b, out=np.zeros((4, 4), np.float32).T)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        matmul(a, b, out=[[0.0] * 4] * 4)
    with pytest.raises(ValueError, match="accumulate"):
        matmul(a, b, accumulate=True)


def test_matmul_rejects_overlapping_out():
    sq = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="overlaps the memory of a"):
        matmul(sq, np.ones((4, 4), np.float32), out=sq)
    with pytest.raises(ValueError, match="overlaps the memory of b"):
        matmul(np.ones((4, 4), np.float32), sq, out=sq)
    big = np.zeros((8, 4), np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        matmul(big[::2], np.ones((4, 4), np.float32), out=big[4:])


def test_matmul_rejects_overflowing_shapes_before_allocating():
    one = np.zeros(1, np.float32)
    a = np.lib.stride_tricks.as_strided(one, shape=(2**40, 1), strides=(0, 0))
    b = np.lib.stride_tricks.as_strided(one, shape=(1, 2**40), strides=(0, 0))
    with pytest.raises(ValueError, match="addressed"):
        matmul(a, b)


def test_linear_rejects_bad_input():
    x = np.ones((4, 3), np.float32)
    w = np.ones((5, 3), np.float32)
    b = np.ones(5, np.float32)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 4\)"):
        linear(x, np.ones((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"b must have shape \(5,\).*got \(4,\)"):
        linear(x, w, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"got \(5, 1\)"):
        linear(x, w, np.ones((5, 1), np.float32))
    with pytest.raises(TypeError, match="float64"):
        linear(x, w, b.astype(np.float64))
    with pytest.raises(TypeError, match="float64"):
        linear(x, w.astype(np.float64))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        linear(x.tolist(), w)
    with pytest.raises(ValueError, match="2-D"):
        linear(np.ones(3, np.float32), w)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        linear(x, w, b, "swish")
    with pytest.raises(TypeError, match="activation"):
        linear(x, w, b, 3)
    with pytest.raises(ValueError, match="negative_slope"):
        linear(x, w, b, "leaky_relu", negative_slope=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        linear(x, w, b, "elu", alpha=float("nan"))
    sq = np.ones((5, 5), np.float32)
    with pytest.raises(ValueError, match="overlaps the memory of x"):
        linear(sq, np.ones((5, 5), np.float32), out=sq)
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros((4, 5), np.float32)
        ro.flags.writeable = False
        linear(x, w, b, out=ro)
