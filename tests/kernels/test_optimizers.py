"""pydl.kernels optimizer updates (sgd_update, adam_update, adamw_update) against numpy
implementations of PyTorch's torch.optim.SGD / Adam / AdamW update rules."""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pydl
from pydl import kernels as K

DTYPES = [np.float32, np.float64]
# After a few steps; float32 allows for FMA contraction and a different operation order.
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


# ---------------------------------------------------------------------------------------------
# numpy references, written from PyTorch's documented algorithms. Python-float scalars keep
# float32 arrays in float32 (NEP 50), like PyTorch's scalar arithmetic.
# ---------------------------------------------------------------------------------------------


def sgd_ref(p, g, buf, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
            first_step=False):
    d = g + weight_decay * p if weight_decay != 0 else g.copy()
    if momentum != 0:
        buf = d.copy() if first_step else momentum * buf + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    return p - lr * d, buf


def adam_ref(p, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
             decoupled=False):
    if decoupled:
        p = p * (1 - lr * weight_decay)
    elif weight_decay != 0:
        g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    p = p - (lr / bc1) * m / (np.sqrt(v) / math.sqrt(bc2) + eps)
    return p, m, v


def assert_close(got, want, dtype):
    """Relative tolerance, with elements near zero compared against the array's scale."""
    assert got.dtype == dtype
    scale = np.abs(want).max() if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def config_id(cfg):
    return ",".join(f"{k}={v}" for k, v in cfg.items()) or "default"


def grads(rng, shape, dtype, steps):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]


# ---------------------------------------------------------------------------------------------
# SGD
# ---------------------------------------------------------------------------------------------

SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=1e-3),
    dict(lr=0.02, momentum=0.8, nesterov=True),
    dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (1029,), (29, 31)])
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=config_id)
def test_sgd_matches_reference(isa, rng, dtype, shape, cfg):
    p = rng.standard_normal(shape).astype(dtype)
    buf = np.zeros(shape, dtype) if cfg.get("momentum") else None
    want_p, want_buf = p.copy(), None
    for i, g in enumerate(grads(rng, shape, dtype, 5)):
        want_p, want_buf = sgd_ref(want_p, g, want_buf, first_step=i == 0, **cfg)
        K.sgd_update(p, g, buf, first_step=i == 0, **cfg)
    assert_close(p, want_p, dtype)
    if buf is not None:
        assert_close(buf, want_buf, dtype)


def test_sgd_first_step_ignores_old_buffer(isa, rng):
    # PyTorch creates the buffer as a copy of d on the first step: whatever it held is irrelevant.
    p0 = rng.standard_normal(50)
    g = rng.standard_normal(50)
    p, buf = p0.copy(), np.full(50, np.nan)
    K.sgd_update(p, g, buf, lr=0.1, momentum=0.9, weight_decay=0.01, first_step=True)
    d = g + 0.01 * p0
    np.testing.assert_allclose(buf, d, rtol=1e-15)
    np.testing.assert_allclose(p, p0 - 0.1 * d, rtol=1e-15)


def test_sgd_nesterov_differs_from_heavy_ball(isa, rng):
    p0 = rng.standard_normal(20)
    g = rng.standard_normal(20)
    buf = rng.standard_normal(20)
    p_hb, b_hb = p0.copy(), buf.copy()
    p_n, b_n = p0.copy(), buf.copy()
    K.sgd_update(p_hb, g, b_hb, lr=0.1, momentum=0.9)
    K.sgd_update(p_n, g, b_n, lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_array_equal(b_hb, b_n)  # the buffer update is the same
    np.testing.assert_allclose(p_hb, p0 - 0.1 * (0.9 * buf + g), rtol=1e-13)
    np.testing.assert_allclose(p_n, p0 - 0.1 * (g + 0.9 * (0.9 * buf + g)), rtol=1e-13)


def test_sgd_without_momentum_leaves_buffer_alone(isa, rng):
    p = rng.standard_normal(8)
    g = rng.standard_normal(8)
    buf = np.arange(8.0)
    want = p - 0.5 * g
    K.sgd_update(p, g, buf, lr=0.5)
    np.testing.assert_allclose(p, want, rtol=1e-15)
    np.testing.assert_array_equal(buf, np.arange(8.0))


# ---------------------------------------------------------------------------------------------
# Adam / AdamW
# ---------------------------------------------------------------------------------------------

ADAM_CONFIGS = [
    dict(),
    dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.05, beta1=0.0, beta2=0.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (1029,), (29, 31)])
@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=config_id)
def test_adam_matches_reference(isa, rng, dtype, shape, decoupled, cfg):
    update = K.adamw_update if decoupled else K.adam_update
    kw = dict(cfg)
    kw.setdefault("weight_decay", 1e-2 if decoupled else 0.0)  # each function's own default
    p = rng.standard_normal(shape).astype(dtype)
    m = np.zeros(shape, dtype)
    v = np.zeros(shape, dtype)
    want = (p.copy(), m.copy(), v.copy())
    for step, g in enumerate(grads(rng, shape, dtype, 6), start=1):
        want = adam_ref(*want[:1], g, *want[1:], step=step, decoupled=decoupled, **kw)
        update(p, g, m, v, step=step, **cfg)
    for got, ref in zip((p, m, v), want):
        assert_close(got, ref, dtype)


def test_adam_coupled_vs_decoupled_decay(isa, rng):
    p0 = rng.standard_normal(100)
    g = rng.standard_normal(100)
    results = {}
    for name, fn in (("adam", K.adam_update), ("adamw", K.adamw_update)):
        for wd in (0.0, 0.5):
            p, m, v = p0.copy(), np.zeros(100), np.zeros(100)
            fn(p, g, m, v, step=1, lr=0.1, weight_decay=wd)
            results[name, wd] = (p, m)
    # Without decay both are the same update, bit for bit.
    np.testing.assert_array_equal(results["adam", 0.0][0], results["adamw", 0.0][0])
    # Adam's L2 term enters the moments; AdamW's decay leaves them alone and shrinks param.
    np.testing.assert_allclose(results["adam", 0.5][1], 0.1 * (g + 0.5 * p0), rtol=1e-13)
    np.testing.assert_array_equal(results["adamw", 0.5][1], results["adam", 0.0][1])
    want = results["adam", 0.0][0] - 0.1 * 0.5 * p0
    np.testing.assert_allclose(results["adamw", 0.5][0], want, rtol=1e-12)
    # The first step of Adam moves every element by lr * |g| / (|g| + eps), about lr.
    np.testing.assert_allclose(results["adam", 0.0][0], p0 - 0.1 * np.sign(g), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Semantics shared by all three: in place, strided grad, threads, NaN, empty
# ---------------------------------------------------------------------------------------------


def run_update(name, p, g, state, **kw):
    if name == "sgd":
        K.sgd_update(p, g, state[0], lr=0.1, momentum=0.9, **kw)
    else:
        (K.adam_update if name == "adam" else K.adamw_update)(p, g, *state, step=3, lr=0.01, **kw)


def state_for(name, p):
    return [np.zeros_like(p)] if name == "sgd" else [np.zeros_like(p), np.zeros_like(p)]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_in_place_and_strided_grad(isa, rng, name):
    p = rng.standard_normal((6, 5))
    g_big = rng.standard_normal((5, 12))
    g = g_big[:, ::2].T  # (6, 5), neither C- nor F-contiguous
    state = state_for(name, p)
    p_ref, state_ref = p.copy(), [s.copy() for s in state]
    run_update(name, p_ref, np.ascontiguousarray(g), state_ref)
    p_obj, p_ptr = p, p.ctypes.data
    state_ptrs = [s.ctypes.data for s in state]
    g_before = g.copy()
    assert run_update(name, p, g, state) is None
    assert p is p_obj and p.ctypes.data == p_ptr
    assert [s.ctypes.data for s in state] == state_ptrs
    np.testing.assert_array_equal(p, p_ref)
    for s, s_ref in zip(state, state_ref):
        np.testing.assert_array_equal(s, s_ref)
        assert np.any(s != 0)  # the state really was updated
    np.testing.assert_array_equal(g, g_before)  # the gradient is an input


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_agree_on_large_arrays(isa, threads, rng, name, dtype):
    n = 200_003  # several parallel chunks, not a multiple of any vector width
    p0 = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    state0 = [rng.random(n).astype(dtype) for _ in state_for(name, p0)]
    p, state = p0.copy(), [s.copy() for s in state0]
    run_update(name, p, g, state)
    if name == "sgd":
        want, _ = sgd_ref(p0, g, state0[0], lr=0.1, momentum=0.9)
    else:
        want, _, _ = adam_ref(p0, g, *state0, step=3, lr=0.01, decoupled=name == "adamw",
                              weight_decay=0.0 if name == "adam" else 1e-2)
    assert_close(p, want, dtype)
    # Same bits as a single-threaded call.
    previous = pydl.get_num_threads()
    pydl.set_num_threads(1)
    try:
        p1, state1 = p0.copy(), [s.copy() for s in state0]
        run_update(name, p1, g, state1)
    finally:
        pydl.set_num_threads(previous)
    np.testing.assert_array_equal(p, p1)


def test_concurrent_python_threads(rng):
    # 8 Python threads updating 8 different parameters at once give the serial results.
    p0 = [rng.standard_normal(50_000).astype(np.float32) for _ in range(8)]
    g = [rng.standard_normal(50_000).astype(np.float32) for _ in range(8)]

    def steps(i):
        p, m, v = p0[i].copy(), np.zeros_like(p0[i]), np.zeros_like(p0[i])
        for step in range(1, 4):
            K.adamw_update(p, g[i], m, v, step=step, lr=0.01)
        return p

    serial = [steps(i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(steps, range(8)))
    for got, want in zip(parallel, serial):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_nan_grad_only_touches_its_element(isa, name):
    p = np.ones(9, np.float32)
    g = np.full(9, 0.5, np.float32)
    g[4] = np.nan
    run_update(name, p, g, state_for(name, p))
    assert np.isnan(p[4])
    assert np.all(np.isfinite(np.delete(p, 4)))


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_empty_arrays(name):
    p = np.zeros((0, 3), np.float32)
    run_update(name, p, np.zeros((0, 3), np.float32), state_for(name, p))


# ---------------------------------------------------------------------------------------------
# Validation: nothing is updated when anything is wrong
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_array_validation(name):
    p = np.ones(4, np.float32)
    g = np.ones(4, np.float32)
    state = state_for(name, p)

    def check(exc, match, p=p, g=g, state=state):
        snapshot = [a.copy() for a in (p, g, *state)]
        with pytest.raises(exc, match=match):
            run_update(name, p, g, state)
        for a, b in zip((p, g, *state), snapshot):
            np.testing.assert_array_equal(a, b)

    check(TypeError, r"grad has dtype float64 but the other operands are float32",
          g=g.astype(np.float64))
    check(TypeError, r"float32 or float64", p=np.ones(4, np.int32), g=np.ones(4, np.int32))
    check(TypeError, r"param must be a numpy.ndarray", p=[1.0, 1.0, 1.0, 1.0])
    check(ValueError, r"param and grad .*\(4,\) and \(5,\)", g=np.ones(5, np.float32))
    check(ValueError, r"param must be C-contiguous", p=np.ones(8, np.float32)[::2])
    ro = p.copy()
    ro.flags.writeable = False
    check(ValueError, r"param is read-only", p=ro)
    first = "momentum_buffer" if name == "sgd" else "exp_avg"
    check(TypeError, rf"{first} has dtype float64", state=[s.astype(np.float64) for s in state])
    check(ValueError, rf"{first} must have shape \(4,\), got \(2, 2\)",
          state=[s.reshape(2, 2) for s in state])
    check(ValueError, rf"{first} must be C-contiguous",
          state=[np.zeros(8, np.float32)[::2] for _ in state])
    check(ValueError, rf"{first} overlaps the memory of param", state=[p] + state[1:])
    if name != "sgd":
        shared = np.zeros(4, np.float32)
        check(ValueError, r"exp_avg_sq overlaps the memory of exp_avg", state=[shared, shared])
    # grad may be a strided view but not an alias of param.
    check(ValueError, r"param overlaps the memory of grad", g=p)


def test_sgd_parameter_validation():
    p = np.ones(3)
    g = np.ones(3)
    buf = np.zeros(3)
    bad = [
        (dict(lr=-0.1), "lr"),
        (dict(lr=np.nan), "lr"),
        (dict(lr=np.inf), "lr"),
        (dict(lr=0.1, momentum=-0.5), "momentum"),
        (dict(lr=0.1, momentum=np.nan), "momentum"),
        (dict(lr=0.1, momentum=0.9, dampening=1.5), "dampening"),
        (dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
        (dict(lr=0.1, weight_decay=np.nan), "weight_decay"),
        (dict(lr=0.1, nesterov=True), "nesterov=True requires momentum > 0"),
        (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening == 0"),
    ]
    for kw, match in bad:
        with pytest.raises(ValueError, match=match):
            K.sgd_update(p, g, buf, **kw)
    with pytest.raises(ValueError, match="momentum_buffer is required"):
        K.sgd_update(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(TypeError):
        K.sgd_update(p, g, buf)  # lr is required
    np.testing.assert_array_equal(p, 1.0)
    np.testing.assert_array_equal(buf, 0.0)


@pytest.mark.parametrize("fn", [K.adam_update, K.adamw_update])
def test_adam_parameter_validation(fn):
    p = np.ones(3)
    g = np.ones(3)
    m = np.zeros(3)
    v = np.zeros(3)
    bad = [
        (dict(step=0), "step must be >= 1"),
        (dict(step=-3), "step must be >= 1"),
        (dict(step=1, lr=-1e-3), "lr"),
        (dict(step=1, lr=np.nan), "lr"),
        (dict(step=1, beta1=1.0), r"beta1 must be in \[0, 1\)"),
        (dict(step=1, beta1=-0.1), "beta1"),
        (dict(step=1, beta2=np.nan), "beta2"),
        (dict(step=1, beta2=1.5), "beta2"),
        (dict(step=1, eps=-1e-8), "eps"),
        (dict(step=1, eps=np.nan), "eps"),
        (dict(step=1, weight_decay=-0.1), "weight_decay"),
    ]
    for kw, match in bad:
        with pytest.raises(ValueError, match=match):
            fn(p, g, m, v, **kw)
    with pytest.raises(TypeError):
        fn(p, g, m, v)  # step is required
    for a, want in ((p, 1.0), (m, 0.0), (v, 0.0)):
        np.testing.assert_array_equal(a, want)


# ---------------------------------------------------------------------------------------------
# PyTorch, when it happens to be installed
# ---------------------------------------------------------------------------------------------


def test_against_torch(rng):
    import torch
    p0 = rng.standard_normal(37)
    gs = [rng.standard_normal(37) for _ in range(4)]
    cases = [
        (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), "sgd"),
        (torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.2), "sgd"),
        (torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1), "adam"),
        (torch.optim.AdamW, dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1), "adamw"),
    ]
    for cls, kw, name in cases:
        tp = torch.tensor(p0.copy(), requires_grad=True)
        opt = cls([tp], **kw)
        p, state = p0.copy(), state_for(name, p0)
        for step, g in enumerate(gs, start=1):
            tp.grad = torch.tensor(g)
            opt.step()
            if name == "sgd":
                K.sgd_update(p, g, state[0], first_step=step == 1, **kw)
            else:
                b1, b2 = kw["betas"]
                fn = K.adam_update if name == "adam" else K.adamw_update
                fn(p, g, *state, step=step, lr=kw["lr"], beta1=b1, beta2=b2,
                   weight_decay=kw["weight_decay"])
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# sgd_update_multi: every parameter must get exactly the bits of its own sgd_update call.
# ---------------------------------------------------------------------------------------------

MULTI_SHAPES = [(7,), (1029, 917), (3, 5), (256, 40), (1,), (40000,), (0,), (812,)]
MULTI_CONFIGS = [dict(lr=0.05), dict(lr=0.01, momentum=0.9, weight_decay=5e-4),
                 dict(lr=0.02, momentum=0.9, nesterov=True),
                 dict(lr=0.1, momentum=0.5, dampening=0.3, weight_decay=1e-2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", MULTI_CONFIGS, ids=config_id)
def test_sgd_update_multi_matches_single_calls_bitwise(isa, threads, rng, dtype, cfg):
    params = [rng.standard_normal(s).astype(dtype) for s in MULTI_SHAPES]
    ref = [p.copy() for p in params]
    momentum = cfg.get("momentum", 0.0) != 0.0
    bufs = [np.empty_like(p) for p in params] if momentum else None
    ref_bufs = [np.empty_like(p) for p in params] if momentum else [None] * len(params)
    for step in range(3):
        gs = [rng.standard_normal(s).astype(dtype) for s in MULTI_SHAPES]
        gs[1] = np.asfortranarray(gs[1])  # a strided gradient is read through a copy
        K.sgd_update_multi(params, gs, bufs, first_step=step == 0, **cfg)
        for p, g, b in zip(ref, gs, ref_bufs):
            K.sgd_update(p, g, b, first_step=step == 0, **cfg)
    for got, want in zip(params, ref):
        np.testing.assert_array_equal(got, want)
    if momentum:
        for got, want in zip(bufs, ref_bufs):
            np.testing.assert_array_equal(got, want)


def test_sgd_update_multi_empty_and_tuple():
    K.sgd_update_multi([], [], lr=0.1)
    p = np.ones(3, np.float32)
    K.sgd_update_multi((p,), (np.ones(3, np.float32),), lr=0.5)
    np.testing.assert_array_equal(p, np.full(3, 0.5, np.float32))


def test_sgd_update_multi_errors():
    p = [np.ones(4, np.float32), np.ones((2, 3), np.float32)]
    g = [np.ones(4, np.float32), np.ones((2, 3), np.float32)]
    with pytest.raises(TypeError, match="params must be a list or tuple"):
        K.sgd_update_multi(p[0], g[0], lr=0.1)
    with pytest.raises(ValueError, match="same length"):
        K.sgd_update_multi(p, g[:1], lr=0.1)
    with pytest.raises(ValueError, match=r"item 1.*\(2, 3\).*\(3, 2\)|item 1.*\(3, 2\).*\(2, 3\)"):
        K.sgd_update_multi(p, [g[0], np.ones((3, 2), np.float32)], lr=0.1)
    with pytest.raises(TypeError, match="item 1"):
        K.sgd_update_multi(p, [g[0], np.ones((2, 3), np.float64)], lr=0.1)
    with pytest.raises(TypeError, match="one dtype"):
        K.sgd_update_multi([p[0], np.ones(3)], [g[0], np.ones(3)], lr=0.1)
    with pytest.raises(TypeError, match="item 0"):
        K.sgd_update_multi([[1.0, 2.0]], [g[0]], lr=0.1)
    with pytest.raises(ValueError, match="momentum_buffers is required"):
        K.sgd_update_multi(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="lr"):
        K.sgd_update_multi(p, g, lr=float("nan"))
    with pytest.raises(ValueError, match="nesterov"):
        K.sgd_update_multi(p, g, [np.ones(4, np.float32), np.ones((2, 3), np.float32)], lr=0.1,
                           nesterov=True)
    ro = np.ones(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="item 0"):
        K.sgd_update_multi([ro], [g[0]], lr=0.1)
    base = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="share memory"):
        K.sgd_update_multi([base[:5], base[4:]], [np.ones(5, np.float32), np.ones(4, np.float32)],
                           lr=0.1)
    with pytest.raises(ValueError, match="share memory"):  # item 1 reads item 0's parameter
        K.sgd_update_multi([p[0], np.ones(4, np.float32)], [g[0], p[0]], lr=0.1)


def test_sgd_update_multi_overlap_rules():
    a, b = np.ones(4, np.float32), np.ones(4, np.float32)
    g = np.full(4, 2.0, np.float32)
    K.sgd_update_multi([a, b], [g, g], lr=0.5)  # gradients may be shared (they are only read)
    np.testing.assert_array_equal(a, np.zeros(4, np.float32))
    np.testing.assert_array_equal(b, np.zeros(4, np.float32))
    bufs = [np.empty(4, np.float32), np.empty(4, np.float32)]
    with pytest.raises(ValueError, match="items 0 and 1 share memory|items 1 and 0 share memory"):
        K.sgd_update_multi([a, b], [g, g], [bufs[0], a], lr=0.1, momentum=0.9)


def test_sgd_update_multi_rejects_an_empty_buffer_list_with_momentum():
    # Found by tests/test_fuzz.py: an empty tuple of buffers used to pass the length check and
    # the kernel then read a momentum buffer that did not exist (a segfault).
    p = [np.ones(3, np.float32)]
    g = [np.ones(3, np.float32)]
    with pytest.raises(ValueError, match="sgd_update_multi: params, grads and momentum_buffers"):
        K.sgd_update_multi(p, g, (), lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(p[0], np.ones(3, np.float32))


# ---------------------------------------------------------------------------------------------
# adam_update_multi / adamw_update_multi: the bits of one single-parameter call per item, and
# the all-or-nothing refusals of every *_multi update (issue 15, items 3 and 8). The oracle for
# "would overflow" is the single-parameter kernel itself: run on copies, did it leave m and v
# finite?
# ---------------------------------------------------------------------------------------------

ADAM_MULTI_CONFIGS = [dict(), dict(weight_decay=0.01), dict(beta1=0.5, beta2=0.9, eps=1e-6)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("cfg", ADAM_MULTI_CONFIGS, ids=config_id)
def test_adam_update_multi_matches_single_calls_bitwise(isa, threads, rng, dtype, decoupled,
                                                        cfg):
    multi = K.adamw_update_multi if decoupled else K.adam_update_multi
    single = K.adamw_update if decoupled else K.adam_update
    params = [rng.standard_normal(s).astype(dtype) for s in MULTI_SHAPES]
    ms, vs = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    ref = [(p.copy(), np.zeros_like(p), np.zeros_like(p)) for p in params]
    # Per-item steps and learning rates (parameter groups, parameters that joined later).
    steps0 = [1, 3, 1, 2, 5, 1, 1, 4]
    lrs = [1e-3, 2e-3, 1e-3, 5e-4, 1e-2, 1e-3, 1e-3, 3e-3]
    for t in range(3):
        gs = [rng.standard_normal(s).astype(dtype) for s in MULTI_SHAPES]
        gs[1] = np.asfortranarray(gs[1])
        steps = [s + t for s in steps0]
        multi(params, gs, ms, vs, steps=steps, lr=lrs, **cfg)
        for (p, m, v), g, step, lr in zip(ref, gs, steps, lrs):
            single(p, g, m, v, step=step, lr=lr, **cfg)
    for got, m, v, (want, want_m, want_v) in zip(params, ms, vs, ref):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(m, want_m)
        np.testing.assert_array_equal(v, want_v)


def multi_call(name, dtype, rng, shapes=((300, 200), (7,), (40000,))):
    """(kernel, params, grads, state lists, kwargs) of a valid *_multi call."""
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads_ = [rng.standard_normal(s).astype(dtype) for s in shapes]
    if name == "sgd_update_multi":
        state = [[rng.standard_normal(s).astype(dtype) for s in shapes]]
        kw = dict(lr=0.1, momentum=0.9)
    else:
        state = [[rng.standard_normal(s).astype(dtype) for s in shapes],
                 [np.abs(rng.standard_normal(s)).astype(dtype) for s in shapes]]
        kw = dict(steps=3, lr=1e-2, weight_decay=0.01)
    return getattr(K, name), params, grads_, state, kw


MULTI_NAMES = ["sgd_update_multi", "adam_update_multi", "adamw_update_multi"]


@pytest.mark.parametrize("name", MULTI_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (0, 59999), (1, 6), (2, 20000), (2, 39999)])
def test_a_non_finite_gradient_anywhere_refuses_the_whole_update(isa, threads, rng, name, dtype,
                                                                 bad, where):
    fn, params, gs, state, kw = multi_call(name, dtype, rng)
    item, flat = where
    gs[item].reshape(-1)[flat] = bad
    before = [a.copy() for a in params + [s for lst in state for s in lst]]
    with pytest.raises(K.NonFiniteUpdateError, match=f"{name}.*item {item}") as err:
        fn(params, gs, *state, **kw)
    assert isinstance(err.value, FloatingPointError)
    assert err.value.item == item and err.value.what == "grad"
    for got, want in zip(params + [s for lst in state for s in lst], before):
        np.testing.assert_array_equal(got, want)  # nothing written, not even other items


@pytest.mark.parametrize("dtype, scales", [
    (np.float32, [1e15, 1e18, 5e18, 1e19, 3e19, 1e20, 6e20, 1e21, 1e25, 1e37]),
    (np.float64, [1e150, 5e153, 1e154, 1e155, 1e160, 1e300])])
@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_multi_refuses_exactly_the_steps_whose_state_would_overflow(isa, rng, dtype, scales,
                                                                         decoupled):
    multi = K.adamw_update_multi if decoupled else K.adam_update_multi
    single = K.adamw_update if decoupled else K.adam_update
    outcomes = set()
    for scale in scales:
        shapes = [(64, 33), (1000,)]
        params = [rng.standard_normal(s).astype(dtype) for s in shapes]
        gs = [rng.standard_normal(s).astype(dtype) for s in shapes]
        gs[1][rng.integers(1000)] = dtype(scale)  # one large but finite gradient element
        ms, vs = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
        # The oracle: the element-wise single-parameter kernel on copies.
        ref = [(p.copy(), m.copy(), v.copy()) for p, m, v in zip(params, ms, vs)]
        with np.errstate(over="ignore"):
            for (p, m, v), g in zip(ref, gs):
                single(p, g, m, v, step=1, lr=1e-3)
        overflow = not all(np.isfinite(m).all() and np.isfinite(v).all() for _, m, v in ref)
        before = [a.copy() for a in params + ms + vs]
        if overflow:
            with pytest.raises(K.NonFiniteUpdateError, match="item 1.*infinite") as err:
                multi(params, gs, ms, vs, steps=1, lr=1e-3)
            assert err.value.item == 1 and err.value.what == "state"
            for got, want in zip(params + ms + vs, before):
                np.testing.assert_array_equal(got, want)
        else:
            multi(params, gs, ms, vs, steps=1, lr=1e-3)
            for got, m, v, (want, want_m, want_v) in zip(params, ms, vs, ref):
                np.testing.assert_array_equal(got, want)
                np.testing.assert_array_equal(m, want_m)
                np.testing.assert_array_equal(v, want_v)
        outcomes.add(overflow)
    assert outcomes == {False, True}  # the scales straddle the overflow threshold


def test_adam_multi_counts_coupled_weight_decay_in_the_overflow_check(rng):
    # A huge (finite) weight with coupled L2: g + wd * p overflows v although g is small.
    p = [np.array([1.0, 4e37, -2.0], np.float32)]
    g = [np.ones(3, np.float32)]
    m, v = [np.zeros(3, np.float32)], [np.zeros(3, np.float32)]
    with pytest.raises(K.NonFiniteUpdateError, match="item 0"):
        K.adam_update_multi(p, g, m, v, steps=1, weight_decay=0.5)
    assert p[0][1] == np.float32(4e37) and not v[0].any()
    K.adamw_update_multi(p, g, m, v, steps=1, weight_decay=0.5)  # decoupled: no overflow
    assert np.isfinite(v[0]).all()


def test_multi_hyper_parameter_lists_are_checked():
    p = [np.ones(4, np.float32), np.ones(3, np.float32)]
    g = [np.ones(4, np.float32), np.ones(3, np.float32)]
    st = [[np.zeros(4, np.float32), np.zeros(3, np.float32)] for _ in range(2)]
    with pytest.raises(ValueError, match="adam_update_multi: lr has 3 values but there are 2"):
        K.adam_update_multi(p, g, *st, steps=1, lr=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="adam_update_multi: step must be >= 1"):
        K.adam_update_multi(p, g, *st, steps=[1, 0])
    with pytest.raises(TypeError, match="adam_update_multi: steps must be an int"):
        K.adam_update_multi(p, g, *st, steps=[1, 1.5])
    with pytest.raises(ValueError, match="adamw_update_multi: lr must be a finite number"):
        K.adamw_update_multi(p, g, *st, steps=1, lr=[0.1, float("nan")])
    with pytest.raises(ValueError, match="same length"):
        K.adam_update_multi(p, g[:1], *st, steps=1)
    with pytest.raises(ValueError, match="item 1.*momentum buffer is required"):
        K.sgd_update_multi(p, g, [np.zeros(4, np.float32), None], lr=0.1, momentum=[0.0, 0.9])
    # Per-item momentum: an item without momentum needs no buffer.
    K.sgd_update_multi(p, g, [None, np.zeros(3, np.float32)], lr=0.1, momentum=[0.0, 0.9],
                       first_step=[False, True])
    np.testing.assert_array_equal(p[0], np.full(4, 0.9, np.float32))


@pytest.mark.parametrize("kernel", ["sgd", "adam", "adamw"])
def test_multi_rechecks_arrays_that_changed_since_an_accepted_call(kernel):
    # The *_multi entries remember the arrays of the last accepted call so that an optimizer's
    # every step skips the checks; anything a check depends on that changed must be checked again.
    def call(params, grads, states):
        if kernel == "sgd":
            K.sgd_update_multi(params, grads, states[0], lr=0.1, momentum=0.9)
        else:
            getattr(K, f"{kernel}_update_multi")(params, grads, states[0], states[1], steps=1,
                                                  lr=0.1)

    def fresh():
        params = [np.zeros((3, 4), np.float32), np.zeros(5, np.float32)]
        grads = [np.full((3, 4), 0.5, np.float32), np.full(5, 0.25, np.float32)]
        states = [[np.zeros_like(p) for p in params] for _ in range(2)]
        return params, grads, states

    params, grads, states = fresh()
    call(params, grads, states)
    call(params, grads, states)  # the same arrays: accepted again
    before = [p.copy() for p in params]
    params[1].flags.writeable = False
    with pytest.raises(ValueError, match="writeable|read-only"):
        call(params, grads, states)
    params[1].flags.writeable = True
    assert all(np.array_equal(a, b) for a, b in zip(before, params))  # nothing was written
    grads[0].shape = (4, 3)  # same memory, another shape
    with pytest.raises(ValueError, match="shape"):
        call(params, grads, states)
    grads[0].shape = (3, 4)
    aliased = [params[0], params[0].reshape(-1)[:5]]  # item 1's parameter inside item 0's
    with pytest.raises(ValueError, match="share memory|overlap"):
        call(aliased, grads, states)
    strided = np.full((3, 8), 0.5, np.float32)[:, ::2]  # a strided gradient is copied, each call
    call(params, [strided, grads[1]], states)
    call(params, [strided, grads[1]], states)
    p2, g2, s2 = fresh()
    expected_p, expected_g, expected_s = fresh()
    for _ in range(3):
        call(expected_p, expected_g, expected_s)
    call(p2, [strided.copy(), g2[1]], s2)
    call(p2, [strided, g2[1]], s2)
    call(p2, [strided, g2[1]], s2)
    for a, b in zip(p2, expected_p):
        assert a.tobytes() == b.tobytes()
