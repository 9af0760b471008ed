"""Dropout kernels: Philox4x32-10 known answers, masks against an independent Python generator."""

import math
from fractions import Fraction

import numpy as np
import pytest

import pydl
from pydl import kernels as K

# Philox4x32-10 as published (Salmon et al., SC'11), written independently of the C++ code.
M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF


def philox_py(ctr, key):
    """One Philox4x32-10 block with Python ints."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
    return c0, c1, c2, c3


def philox_np(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 over numpy uint64 arrays holding 32-bit words (products fit in 64 bits)."""
    m32 = np.uint64(MASK32)
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(W0)) & m32
            k1 = (k1 + np.uint64(W1)) & m32
        p0 = np.uint64(M0) * c0
        p1 = np.uint64(M1) * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & m32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & m32
    return c0, c1, c2, c3


def threshold(p):
    """round(p * 2**32), half away from zero, capped at 2**32 - 1 (the documented rule)."""
    return min(math.floor(Fraction(p) * 2**32 + Fraction(1, 2)), MASK32)


def ref_mask(shape, p, seed, step):
    """The documented mask: element i uses word i % 4 of Philox(counter=(i//4, step), key=seed)."""
    n = math.prod(shape)
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    m32, s32 = np.uint64(MASK32), np.uint64(32)
    words = philox_np(
        blocks & m32,
        blocks >> s32,
        np.full(blocks.shape, step & MASK32, np.uint64),
        np.full(blocks.shape, step >> 32, np.uint64),
        seed & MASK32,
        seed >> 32,
    )
    u = np.stack(words, axis=1).ravel()[:n]
    return (u >= threshold(p)).astype(np.uint8).reshape(shape)


KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK32,) * 4, (MASK32,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    assert philox_py(ctr, key) == expected  # the Python oracle agrees with the published vectors
    assert K.philox4x32_10(ctr, key) == expected


def test_philox_numpy_oracle_matches_scalar_oracle():
    rng = np.random.default_rng(0)
    ctr = rng.integers(0, 2**32, size=(4, 50), dtype=np.uint64)
    key = [int(v) for v in rng.integers(0, 2**32, size=2)]
    got = np.stack(philox_np(*ctr, *key), axis=1)
    for j in range(50):
        expected = philox_py([int(c) for c in ctr[:, j]], key)
        assert tuple(int(v) for v in got[j]) == expected
        assert K.philox4x32_10([int(c) for c in ctr[:, j]], key) == expected


def test_philox_argument_errors():
    with pytest.raises(ValueError, match="counter"):
        K.philox4x32_10((0, 0, 0), (0, 0))
    with pytest.raises(ValueError, match="key"):
        K.philox4x32_10((0, 0, 0, 0), (0, 2**32))
    with pytest.raises(TypeError, match="counter"):
        K.philox4x32_10(5, (0, 0))


@pytest.mark.parametrize("shape", [(1,), (7,), (64,), (65,), (812,), (3, 5, 7)])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_mask_matches_reference_small(isa, shape, p):
    for seed, step in [(0, 0), (12345, 7), (2**64 - 1, 2**40 + 3), (2**33 + 5, 2**64 - 1)]:
        expected = ref_mask(shape, p, seed, step)
        np.testing.assert_array_equal(K.dropout_mask(shape, p, seed, step), expected)
        x = np.ones(shape, np.float32)
        _, mask = K.dropout(x, p, seed, step)
        np.testing.assert_array_equal(mask, expected)


def test_mask_matches_reference_large(isa, threads):
    shape = (1029, 917)
    expected = ref_mask(shape, 0.3, 987654321, 42)
    np.testing.assert_array_equal(K.dropout_mask(shape, 0.3, 987654321, 42), expected)
    _, mask = K.dropout(np.zeros(shape), 0.3, 987654321, 42)
    np.testing.assert_array_equal(mask, expected)


def test_mask_bit_identical_for_1_2_8_threads(isa):
    shape = (1029, 917)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    previous = pydl.get_num_threads()
    try:
        results = []
        for n in (1, 2, 8):
            pydl.set_num_threads(n)
            results.append(K.dropout(x, 0.25, 77, 3) + (K.dropout_mask(shape, 0.25, 77, 3),))
    finally:
        pydl.set_num_threads(previous)
    for y, mask, mask_only in results[1:]:
        np.testing.assert_array_equal(mask, results[0][1])
        np.testing.assert_array_equal(mask_only, results[0][1])
        np.testing.assert_array_equal(y.view(np.uint32), results[0][0].view(np.uint32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (812,), (1029, 917), (2, 3, 4, 5)])
def test_forward_values(isa, threads, dtype, shape):
    x = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    p = 0.4
    y, mask = K.dropout(x, p, seed=5, step=11)
    assert y.dtype == dtype and y.shape == shape and mask.dtype == np.uint8 and mask.shape == shape
    np.testing.assert_array_equal(mask, ref_mask(shape, p, 5, 11))
    scale = dtype(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y, x * mask * scale)
    # Scaling: kept units are x / (1 - p) up to the rounding of the reciprocal.
    kept = mask.astype(bool)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=2 * np.finfo(dtype).eps)
    assert not y[~kept].any()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_binomial_bound(isa, p):
    n = 2_000_003
    kept = int(K.dropout_mask(n, p, seed=2024, step=1).sum(dtype=np.int64))
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(kept - n * (1 - p)) < 6 * sigma


def test_p_zero_is_identity(isa):
    x = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    x[5] = np.nan
    y, mask = K.dropout(x, 0.0, seed=9)
    assert mask.all()
    np.testing.assert_array_equal(y.view(np.uint32), x.view(np.uint32))


def test_step_and_seed_change_mask(isa):
    base = K.dropout_mask(10_000, 0.5, seed=1, step=0)
    assert (K.dropout_mask(10_000, 0.5, seed=1, step=1) != base).mean() > 0.4
    assert (K.dropout_mask(10_000, 0.5, seed=2, step=0) != base).mean() > 0.4
    np.testing.assert_array_equal(K.dropout_mask(10_000, 0.5, seed=1, step=0), base)


def test_nan_stays_nan_where_kept(isa):
    x = np.full(300, np.nan, np.float32)
    x[::3] = 1.0
    y, mask = K.dropout(x, 0.5, seed=4)
    kept = mask.astype(bool)
    nan_in = np.isnan(x)
    assert np.isnan(y[kept & nan_in]).all()
    assert (y[kept & ~nan_in] == 2.0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_inputs(isa, dtype):
    base = np.random.default_rng(5).standard_normal((60, 90)).astype(dtype)
    for view in (base[::2], base.T, base[:, ::3], base[::-1]):
        y, mask = K.dropout(view, 0.3, seed=8, step=2)
        y_ref, mask_ref = K.dropout(np.ascontiguousarray(view), 0.3, seed=8, step=2)
        np.testing.assert_array_equal(mask, mask_ref)
        np.testing.assert_array_equal(y, y_ref)
        dx = K.dropout_backward(view, mask[:, :], 0.3)
        np.testing.assert_array_equal(dx, y_ref)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 5)])
def test_empty(isa, shape):
    y, mask = K.dropout(np.zeros(shape, np.float32), 0.5, seed=1)
    assert y.shape == shape and mask.shape == shape
    assert K.dropout_mask(shape, 0.5, 1).shape == shape
    assert K.dropout_backward(np.zeros(shape), np.zeros(shape, np.uint8), 0.5).shape == shape


def test_zero_dim():
    y, mask = K.dropout(np.array(3.0, np.float32), 0.0, seed=0)
    assert y.shape == () and y == 3.0 and mask == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (812,), (1029, 917)])
def test_backward_matches_numpy(isa, threads, dtype, shape):
    rng = np.random.default_rng(6)
    dy = rng.standard_normal(shape).astype(dtype)
    mask = (rng.random(shape) < 0.7).astype(np.uint8)
    p = 0.3
    dx = K.dropout_backward(dy, mask, p)
    np.testing.assert_array_equal(dx, dy * mask * dtype(1 / (1 - p)))


def test_backward_treats_nonzero_as_kept():
    dy = np.ones(4, np.float32)
    dx = K.dropout_backward(dy, np.array([0, 1, 7, 255], np.uint8), 0.5)
    np.testing.assert_array_equal(dx, [0, 2, 2, 2])


def test_forward_backward_round_trip(isa):
    x = np.random.default_rng(7).standard_normal(5000)
    y, mask = K.dropout(x, 0.2, seed=3, step=4)
    np.testing.assert_array_equal(K.dropout_backward(x, mask, 0.2), y)


def test_out_buffers(isa):
    x = np.random.default_rng(8).standard_normal(1000).astype(np.float32)
    out = np.empty_like(x)
    mask_out = np.empty(x.shape, np.uint8)
    y, mask = K.dropout(x, 0.5, seed=1, out=out, mask_out=mask_out)
    assert y is out and mask is mask_out
    expected = x * ref_mask(x.shape, 0.5, 1, 0) * np.float32(2)
    np.testing.assert_array_equal(out, expected)
    # In place on x is allowed.
    y2, _ = K.dropout(x, 0.5, seed=1, out=x)
    assert y2 is x
    np.testing.assert_array_equal(x, expected)
    dx = np.empty_like(x)
    assert K.dropout_backward(x, mask, 0.5, out=dx) is dx


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_bad_p(p):
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="p "):
        K.dropout(x, p, seed=0)
    with pytest.raises(ValueError, match="p "):
        K.dropout_mask(4, p, seed=0)
    with pytest.raises(ValueError, match="p "):
        K.dropout_backward(x, np.ones(4, np.uint8), p)


def test_p_close_to_one_drops_almost_everything():
    assert K.dropout_mask(1000, 1 - 2**-40, seed=0).sum() == 0  # threshold capped at 2**32 - 1


def test_bad_seed_and_step():
    x = np.ones(4, np.float32)
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="seed"):
            K.dropout(x, 0.5, seed=bad)
        with pytest.raises(ValueError, match="step"):
            K.dropout(x, 0.5, seed=0, step=bad)
    for bad in (1.5, "3", None, True):
        with pytest.raises(TypeError, match="seed"):
            K.dropout(x, 0.5, seed=bad)
    with pytest.raises(TypeError, match="step"):
        K.dropout_mask(4, 0.5, 0, step=2.0)
    # numpy integers are ints too.
    np.testing.assert_array_equal(K.dropout_mask(4, 0.5, np.uint64(2**63)), ref_mask((4,), 0.5, 2**63, 0))


def test_bad_arrays():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="x"):
        K.dropout([1.0, 2.0], 0.5, seed=0)
    with pytest.raises(TypeError, match="float32 or float64"):
        K.dropout(np.ones(4, np.int32), 0.5, seed=0)
    with pytest.raises(TypeError, match="out"):
        K.dropout(x, 0.5, seed=0, out=np.empty((3, 4), np.float64))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        K.dropout(x, 0.5, seed=0, out=np.empty((4, 3), np.float32))
    with pytest.raises(TypeError, match="mask_out"):
        K.dropout(x, 0.5, seed=0, mask_out=np.empty((3, 4), np.bool_))
    with pytest.raises(ValueError, match="mask_out"):
        K.dropout(x, 0.5, seed=0, mask_out=np.empty((3, 5), np.uint8))
    ro = np.empty((3, 4), np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        K.dropout(x, 0.5, seed=0, mask_out=ro)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.dropout(x, 0.5, seed=0, out=np.empty((4, 3), np.float32).T)
    with pytest.raises(ValueError, match="overlaps"):
        K.dropout(x, 0.5, seed=0, mask_out=x.reshape(-1).view(np.uint8)[:12].reshape(3, 4))
    big = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        K.dropout(big[:4], 0.5, seed=0, out=big[2:6])
    with pytest.raises(ValueError, match=r"shape entries.*-1"):
        K.dropout_mask((-1, 3), 0.5, 0)
    with pytest.raises(ValueError, match="addressed"):
        K.dropout_mask((2**40, 2**40), 0.5, 0)
    with pytest.raises(TypeError, match="shape"):
        K.dropout_mask(3.0, 0.5, 0)


def test_backward_bad_mask():
    dy = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="uint8"):
        K.dropout_backward(dy, np.ones((3, 4), np.bool_), 0.5)
    with pytest.raises(TypeError, match="uint8"):
        K.dropout_backward(dy, np.ones((3, 4), np.float32), 0.5)
    with pytest.raises(TypeError, match="mask"):
        K.dropout_backward(dy, [[1] * 4] * 3, 0.5)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        K.dropout_backward(dy, np.ones((4, 3), np.uint8), 0.5)
    with pytest.raises(TypeError, match="dy"):
        K.dropout_backward(np.ones((3, 4), np.int64), np.ones((3, 4), np.uint8), 0.5)
    with pytest.raises(ValueError, match="overlaps"):
        mask = np.ones(16, np.uint8)
        K.dropout_backward(np.ones(4, np.float32), mask[:4], 0.5, out=mask.view(np.float32))


def test_backward_strided_mask(isa):
    rng = np.random.default_rng(9)
    dy = rng.standard_normal((40, 30)).astype(np.float32)
    mask = (rng.random((30, 40)) < 0.5).astype(np.uint8)
    dx = K.dropout_backward(dy, mask.T, 0.5)
    np.testing.assert_array_equal(dx, dy * mask.T * np.float32(2))


def test_python_threads_calling_at_once_match_serial(isa):
    from concurrent.futures import ThreadPoolExecutor

    x = np.random.default_rng(10).standard_normal(300_000).astype(np.float32)
    serial = [K.dropout(x, 0.3, seed=s, step=1) for s in range(8)]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda s: K.dropout(x, 0.3, seed=s, step=1), range(8)))
    for (y0, m0), (y1, m1) in zip(serial, parallel):
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(y0, y1)


def test_error_messages_state_the_range():
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\), got -1"):
        K.dropout_mask(4, 0.5, -1)
    with pytest.raises(ValueError, match=r"key must be in \[0, 2\*\*32\), got 4294967296"):
        K.philox4x32_10((0, 0, 0, 0), (0, 2**32))
    with pytest.raises(ValueError, match=r"p \(the drop probability\) must be in \[0, 1\), got 1"):
        K.dropout_mask(4, 1.0, 0)
    with pytest.raises(ValueError, match="shape entries"):
        K.dropout_mask((2**70,), 0.5, 0)
    with pytest.raises(TypeError, match="shape entry"):
        K.dropout_mask((2, 3.0), 0.5, 0)
