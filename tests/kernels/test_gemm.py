"""GEMM kernels (matmul, linear) against float64 numpy, on every ISA and at 1 and 2 threads."""

import math
import os
import subprocess
import sys
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
def test_narrow_products_give_the_bits_of_wide_ones(isa, threads, dtype, rng):
    # Fewer columns than 4 micro-panels and many rows: computed as C.T = op(B).T @ op(A).T and
    # copied back. A column of C does not depend on the others in the direct product, so C must
    # equal the first columns of the product with zero columns appended (wide enough to be
    # computed directly), bit for bit, for every transpose flag; the fused linear epilogue
    # (bias, activation, pre-activation) too. accumulate=True keeps the direct product.
    for m, k, n in [(512, 256, 10), (32, 256, 10), (256, 512, 40), (100, 7, 3), (64, 700, 1),
                    (600, 300, 15), (33, 5, 9), (40, 64, 63)]:
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        wide = np.concatenate([b, np.zeros((k, 70), dtype)], axis=1)
        for ta, tb in [(False, False), (True, False), (False, True), (True, True)]:
            a_op = np.ascontiguousarray(a.T) if ta else a
            c = matmul(a_op, np.ascontiguousarray(b.T) if tb else b, trans_a=ta, trans_b=tb)
            cw = matmul(a_op, np.ascontiguousarray(wide.T) if tb else wide, trans_a=ta,
                        trans_b=tb)
            assert c.tobytes() == np.ascontiguousarray(cw[:, :n]).tobytes(), (m, k, n, ta, tb)
        start = rng.standard_normal((m, n)).astype(dtype)
        acc = start.copy()
        matmul(a, b, out=acc, accumulate=True)
        acc_wide = np.concatenate([start, np.zeros((m, 70), dtype)], axis=1)
        matmul(a, wide, out=acc_wide, accumulate=True)
        assert acc.tobytes() == np.ascontiguousarray(acc_wide[:, :n]).tobytes()
        w, bias = np.ascontiguousarray(b.T), rng.standard_normal(n).astype(dtype)
        w_wide = np.concatenate([w, np.zeros((70, k), dtype)])
        bias_wide = np.concatenate([bias, np.zeros(70, dtype)])
        for act in (None, "relu", "gelu"):
            pre, pre_wide = np.empty((m, n), dtype), np.empty((m, n + 70), dtype)
            y = linear(a, w, bias, act, preact=pre)
            y_wide = linear(a, w_wide, bias_wide, act, preact=pre_wide)
            assert y.tobytes() == np.ascontiguousarray(y_wide[:, :n]).tobytes(), (m, k, n, act)
            assert pre.tobytes() == np.ascontiguousarray(pre_wide[:, :n]).tobytes()


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
def test_few_rows_against_rows_of_w_give_the_bits_of_tall_products(isa, threads, dtype, rng):
    # x @ W.T with a few rows of x (a batch of 9..64) is computed as (W @ x.T).T, reading W's
    # rows in place; rows of C do not depend on each other, so the first rows of a tall product
    # (300 rows: computed as given) are the oracle, bit for bit, the linear epilogue too.
    for n, k in [(65, 300), (256, 256), (100, 130), (512, 784), (70, 20)]:
        w = rng.standard_normal((n, k)).astype(dtype)
        x_tall = rng.standard_normal((300, k)).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        tall = matmul(x_tall, w, trans_b=True)
        for m in (9, 16, 24, 32, 33, 48, 64, 65):
            c = matmul(x_tall[:m], w, trans_b=True)
            assert c.tobytes() == tall[:m].tobytes(), (m, n, k)
            for act in (None, "relu", "gelu"):
                pre, pre_tall = np.empty((m, n), dtype), np.empty((300, n), dtype)
                y = linear(x_tall[:m], w, bias, act, preact=pre)
                y_tall = linear(x_tall, w, bias, act, preact=pre_tall)
                assert y.tobytes() == y_tall[:m].tobytes(), (m, n, k, act)
                assert pre.tobytes() == pre_tall[:m].tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_few_columns_read_a_in_place_with_the_same_bits(isa, threads, dtype, rng):
    # With few columns of C (<= 4 micro-panels) a row-major A is read in place instead of
    # packed; the same product with A in column-major order (packed, as before) is the oracle,
    # bit for bit, for plain and transposed B, and accumulating into C.
    for m, k, n in [(13, 300, 16), (100, 7, 40), (300, 700, 64), (1000, 256, 33), (64, 65, 1),
                    (777, 40, 50)]:
        a = rng.standard_normal((m, k)).astype(dtype)
        a_packed = np.asfortranarray(a)
        b = rng.standard_normal((k, n)).astype(dtype)
        for bt in (b, np.ascontiguousarray(b.T).T):
            assert matmul(a, bt).tobytes() == matmul(a_packed, bt).tobytes(), (m, k, n)
        start = rng.standard_normal((m, n)).astype(dtype)
        c, c_packed = start.copy(), start.copy()
        matmul(a, b, out=c, accumulate=True)
        matmul(a_packed, b, out=c_packed, accumulate=True)
        assert c.tobytes() == c_packed.tobytes(), (m, k, n)


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


# --- skinny shapes (never-packing kernels) and the threads' shared-B path ------------------------

# (m, n, k, trans_a, trans_b): few rows (m <= 8, the never-packing kernel) and few columns (n <= 16,
# the packed path with a partly used panel), each with op(B) read along k (a linear layer's
# x @ W.T) and along n (dx = dy @ W), plus layouts the few-row kernel leaves to the blocked driver
# (both strides of op(B) non-unit).
SKINNY = [(1, 256, 256, False, True), (1, 64, 256, False, True), (8, 512, 784, False, True),
          (3, 130, 17, True, True), (5, 300, 33, False, False), (8, 40, 100, True, False),
          (1, 1, 1, False, False), (2, 1000, 9, False, False), (32, 10, 256, False, True),
          (512, 10, 512, False, True), (100, 16, 7, False, False), (70, 3, 333, True, False),
          (9, 16, 65, True, True), (600, 1, 50, False, True)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_skinny_shapes_match_float64(isa, threads, dtype, rng):
    for m, n, k, ta, tb in SKINNY:
        a, b = operands(rng, m, n, k, ta, tb, dtype)
        check_matmul(a, b, ta, tb)
        # Strided views of the same shapes: every stride non-unit.
        a2, b2 = operands(rng, 2 * m, 2 * n, 2 * k, ta, tb, dtype)
        check_matmul(a2[::2, ::2], b2[::2, ::2], ta, tb)
        c = rng.standard_normal((m, n)).astype(dtype)
        expected = c.astype(np.float64) + op(a, ta).astype(np.float64) @ op(b, tb)
        matmul(a, b, trans_a=ta, trans_b=tb, out=c, accumulate=True)
        np.testing.assert_allclose(c, expected, rtol=0, atol=tolerance(a, b, k + 1, dtype) + 4 *
                                   np.finfo(dtype).eps * np.abs(expected).max())


# Products large enough that 2 threads split them, on each path: few rows (columns split), few
# columns (rows split), the row kernel, the shared-B path and the grid path.
SPLIT = [(8, 4096, 784, False, True), (4, 6000, 1000, False, False), (4096, 10, 512, False, True),
         (3000, 12, 700, False, False), (600, 500, 300, False, False), (700, 650, 300, True, True),
         (40, 1500, 600, False, True)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_path_bit_identical_for_1_2_3_threads(isa, dtype, rng):
    previous = pydl.get_num_threads()
    try:
        for m, n, k, ta, tb in SPLIT:
            a, b = operands(rng, m, n, k, ta, tb, dtype)
            results = []
            for t in (1, 2, 3):
                pydl.set_num_threads(t)
                results.append(matmul(a, b, trans_a=ta, trans_b=tb))
            np.testing.assert_array_equal(results[0], results[1], err_msg=f"{(m, n, k)}")
            np.testing.assert_array_equal(results[0], results[2], err_msg=f"{(m, n, k)}")
        check_matmul(a, b, ta, tb)
    finally:
        pydl.set_num_threads(previous)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_kernel_gives_the_packed_path_bits(isa, threads, dtype, rng):
    # The few-row kernel for a plain B sums in the driver's KC blocks like the packed micro-kernel:
    # rows 0..m-1 of a tall product (packed) are its oracle bit for bit, at every m <= 8.
    b = rng.standard_normal((900, 300)).astype(dtype)
    a = rng.standard_normal((64, 900)).astype(dtype)
    tall = matmul(a, b)
    for m in range(1, 9):
        np.testing.assert_array_equal(matmul(a[:m], b), tall[:m])


# x @ W.T with few rows: the row kernel reads W across its rows (chunk loads + in-register
# transposes). Its oracles, bit for bit: the same product with a contiguous copy of W.T (the row
# kernel reading B along n) and with a view of W whose strides are both non-unit (the packed path,
# which no skinny kernel takes), at the same m and inside a 64-row product; and float64 numpy.
TRANS_K = [1, 7, 8, 9, 63, 64, 65, 300, 700]  # 700 > KC for both dtypes: several KC blocks
TRANS_N = [1, 3, 8, 10, 17, 64, 257]


def packed_view(w):
    """The values of w in a view with no unit stride, so matmul takes the packed path."""
    spread = np.zeros((w.shape[0], 2 * w.shape[1]), w.dtype)[:, ::2]
    spread[...] = w
    return spread


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_b_few_rows_give_the_packed_path_bits(isa, threads, dtype, rng):
    for k in TRANS_K:
        for n in TRANS_N:
            w = rng.standard_normal((n, k)).astype(dtype)
            x = rng.standard_normal((64, k)).astype(dtype)
            wp, wc = packed_view(w), np.ascontiguousarray(w.T)
            tall = matmul(x, wp, trans_b=True)
            c0 = rng.standard_normal((9, n)).astype(dtype)
            for m in range(1, 10):
                c = matmul(x[:m], w, trans_b=True)
                msg = f"m={m} n={n} k={k}"
                np.testing.assert_array_equal(c, tall[:m], err_msg=msg)
                np.testing.assert_array_equal(c, matmul(x[:m], wp, trans_b=True), err_msg=msg)
                np.testing.assert_array_equal(c, matmul(x[:m], wc), err_msg=msg)
                np.testing.assert_allclose(c, x[:m].astype(np.float64) @ w.T.astype(np.float64),
                                           rtol=0, atol=tolerance(x, w, k, dtype), err_msg=msg)
                acc, acc_packed = c0[:m].copy(), c0[:m].copy()
                matmul(x[:m], w, trans_b=True, out=acc, accumulate=True)
                matmul(x[:m], wp, trans_b=True, out=acc_packed, accumulate=True)
                np.testing.assert_array_equal(acc, acc_packed, err_msg=msg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_b_views_give_the_packed_path_bits(isa, threads, dtype, rng):
    # W with a row stride other than k, reversed rows (negative stride), an offset start, and a
    # float64 W at an odd byte address: the rows must be read at their own stride, never past
    # their end (the last, partial vector of columns and the last k steps are masked loads).
    base = rng.standard_normal((300, 400)).astype(dtype)
    buf = np.zeros(37 * 29 * 8 + 1, np.uint8)
    odd = buf[1:].view(np.float64).reshape(37, 29)
    odd[...] = rng.standard_normal((37, 29))
    views = [base[:257, :300], base[::-1][:10, :65], base[3:20, 5:68], base[1::2, 7:16][:17],
             base[:, 397:][:3]]
    if dtype == np.float64:
        views.append(odd)
    for w in views:
        n, k = w.shape
        x = rng.standard_normal((64, k)).astype(dtype)
        tall = matmul(x, packed_view(w), trans_b=True)
        for m in range(1, 10):
            c = matmul(x[:m], w, trans_b=True)
            np.testing.assert_array_equal(c, tall[:m], err_msg=f"m={m} {w.shape} {w.strides}")
            np.testing.assert_array_equal(c, matmul(x[:m], np.ascontiguousarray(w.T)))
            # The rows of x at a stride too.
            xs = np.repeat(x[:m], 2, axis=0)[::2]
            np.testing.assert_array_equal(matmul(xs, w, trans_b=True), c)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_b_few_rows_bit_identical_at_1_and_2_threads(isa, dtype, rng):
    # Large enough (m * n * k) that 2 threads split the columns.
    previous = pydl.get_num_threads()
    w = rng.standard_normal((3001, 1100)).astype(dtype)
    x = rng.standard_normal((64, 1100)).astype(dtype)
    try:
        tall = matmul(x, packed_view(w), trans_b=True)
        for m in (1, 3, 8):
            results = []
            for t in (1, 2):
                pydl.set_num_threads(t)
                results.append(matmul(x[:m], w, trans_b=True))
            np.testing.assert_array_equal(results[0], tall[:m])
            np.testing.assert_array_equal(results[1], tall[:m])
    finally:
        pydl.set_num_threads(previous)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "relu", "gelu", "tanh", "silu"])
def test_transposed_b_linear_epilogue_gives_the_packed_path_bits(isa, threads, activation, dtype,
                                                                 rng):
    for fin, fout in [(64, 256), (256, 256), (256, 10), (784, 512), (9, 17)]:
        w = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(dtype)
        b = rng.standard_normal(fout).astype(dtype)
        x = rng.standard_normal((64, fin)).astype(dtype)
        pre_tall = np.empty((64, fout), dtype)
        tall = linear(x, packed_view(w), b, activation, preact=pre_tall)
        for m in (1, 2, 5, 8):
            pre = np.full((m, fout), np.nan, dtype)
            y = linear(x[:m], w, b, activation, preact=pre)
            np.testing.assert_array_equal(y, tall[:m], err_msg=f"{activation} m={m} {fin}->{fout}")
            np.testing.assert_array_equal(pre, pre_tall[:m])
            z = x[:m].astype(np.float64) @ w.T.astype(np.float64) + b
            np.testing.assert_allclose(y, np_fusable(z, activation), rtol=4 * np.finfo(dtype).eps,
                                       atol=tolerance(x, w, fin + 1, dtype) + 8 * np.finfo(dtype).eps)


def test_transposed_b_small_kc_blocks_give_the_packed_path_bits():
    # KC = 8 (PYDL_GEMM_BLOCKING): many KC blocks, and k = 9, 13 end in a block of 1 or 5 steps.
    code = """
import numpy as np, pydl
from pydl.kernels import matmul
rng = np.random.default_rng(0)
ok = True
for dtype in (np.float32, np.float64):
    for n, k in [(10, 9), (64, 13), (257, 70), (17, 300)]:
        w = rng.standard_normal((n, k)).astype(dtype)
        x = rng.standard_normal((64, k)).astype(dtype)
        wp = np.zeros((n, 2 * k), dtype)[:, ::2]
        wp[...] = w
        tall = matmul(x, wp, trans_b=True)
        exp = x.astype(np.float64) @ w.T.astype(np.float64)
        ok &= bool(np.allclose(tall, exp, rtol=0, atol=1e-4 * k))
        for m in range(1, 10):
            ok &= bool(np.array_equal(matmul(x[:m], w, trans_b=True), tall[:m]))
print("ok" if ok else "mismatch")
"""
    out = run_python(code, PYDL_GEMM_BLOCKING="8,7,40")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def np_fusable(z, activation, **kw):
    """np_activation plus the activations the epilogue gained later (float64 oracles)."""
    if activation == "gelu":
        return z * 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    if activation == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    if activation == "silu":
        return z / (1 + np.exp(-z))
    return np_activation(z, activation, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS + ["gelu", "gelu_tanh", "silu"])
def test_linear_epilogue_on_every_path(isa, activation, dtype, rng):
    # Batch 1 and 8 (few-row kernel), the 10-output head (a partly used packed panel), a
    # transposed x (copied rows, or the blocked driver), a large batch (shared-B path at 2
    # threads): each against float64 numpy and bit-identical at 1 and 2 threads.
    previous = pydl.get_num_threads()
    kw = {"negative_slope": 0.2, "alpha": 0.7}
    try:
        for batch, fin, fout, x_t in [(1, 256, 256, False), (8, 784, 512, False),
                                      (512, 512, 10, False), (32, 256, 10, True),
                                      (5, 100, 300, True), (600, 300, 500, False)]:
            xs = rng.standard_normal((fin, batch) if x_t else (batch, fin)).astype(dtype)
            x = xs.T if x_t else xs
            w = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(dtype)
            b = rng.standard_normal(fout).astype(dtype)
            z = x.astype(np.float64) @ w.T.astype(np.float64) + b
            expected = np_fusable(z, activation, **kw)
            results, pres = [], []
            for t in (1, 2):
                pydl.set_num_threads(t)
                pre = np.full((batch, fout), np.nan, dtype)
                results.append(linear(x, w, b, activation, preact=pre, **kw))
                pres.append(pre)
            np.testing.assert_array_equal(results[0], results[1])
            np.testing.assert_array_equal(pres[0], pres[1])
            atol = tolerance(x, w, fin + 1, dtype) + 8 * np.finfo(dtype).eps
            np.testing.assert_allclose(pres[0], z, rtol=4 * np.finfo(dtype).eps, atol=atol)
            np.testing.assert_allclose(results[0], expected, rtol=4 * np.finfo(dtype).eps,
                                       atol=atol, err_msg=f"{activation} {(batch, fin, fout)}")
    finally:
        pydl.set_num_threads(previous)


# --- cache blocking -------------------------------------------------------------------------------

def run_python(code, **env):
    full_env = dict(os.environ)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                          text=True, timeout=300)


def test_blocking_fits_the_detected_caches():
    # The model's promises, checked against the caches cpu_info reports: B's KC x NR micro-panel
    # fits in L1 with an A micro-panel, A's MC x KC block in L2; tiles are whole micro-panels.
    info = pydl.cpu_info()["gemm"]
    caches = info["caches"]
    if info["source"] == "reference":
        pytest.skip("the generic kernels do not block")
    assert info["source"] in ("cache model", "PYDL_GEMM_BLOCKING")
    for dtype, size in (("float32", 4), ("float64", 8)):
        blk = info[dtype]
        assert blk["mc"] % blk["mr"] == 0 and blk["nc"] % blk["nr"] == 0 and blk["kc"] % 8 == 0
        if info["source"] == "cache model":
            assert (blk["kc"] * (blk["nr"] + blk["mr"]) * size) < caches["l1d"]["size"]
            assert blk["mc"] * blk["kc"] * size < caches["l2"]["size"]
            assert blk["kc"] * blk["nc"] * size <= caches["l3"]["size"]


def test_blocking_override_is_used_and_exact():
    # Tiny blocks make every block loop run many times; results must stay right and bit-identical
    # across thread counts. mc and nc are rounded up to whole micro-panels.
    code = """
import numpy as np, pydl
from pydl.kernels import matmul
info = pydl.cpu_info()["gemm"]
rng = np.random.default_rng(0)
ok = True
if info["source"] != "reference":
    b = info["float32"]
    assert info["source"] == "PYDL_GEMM_BLOCKING", info
    assert b["kc"] == 16 and b["mc"] == -(-7 // b["mr"]) * b["mr"], b
    assert b["nc"] == -(-40 // b["nr"]) * b["nr"], b
for m, n, k in [(131, 97, 201), (700, 300, 150), (20, 333, 77)]:
    a = rng.standard_normal((m, k)); w = rng.standard_normal((k, n))
    exp = a @ w
    r = []
    for t in (1, 2):
        pydl.set_num_threads(t)
        r.append(matmul(a, w))
    ok &= bool(np.array_equal(r[0], r[1])) and bool(np.allclose(r[0], exp, rtol=0, atol=1e-10))
print("ok" if ok else "mismatch")
"""
    out = run_python(code, PYDL_GEMM_BLOCKING="16,7,40")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("bad", ["abc", "64,128", "64,128,256,4", "0,128,256", "64,0,256",
                                 "64,128,0", "99999,128,256", "64;128;256", "-64,128,256",
                                 "64,128,256x", "1" * 40 + ",1,1"])
def test_blocking_override_rejects_bad_values(bad):
    out = run_python("import pydl", PYDL_GEMM_BLOCKING=bad)
    assert out.returncode != 0
    assert f"PYDL_GEMM_BLOCKING='{bad}'" in out.stderr and "kc,mc,nc" in out.stderr


def test_blocking_override_empty_means_the_model():
    out = run_python("import pydl; print(pydl.cpu_info()['gemm']['source'])", PYDL_GEMM_BLOCKING="")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("cache model", "reference")


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
