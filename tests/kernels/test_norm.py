"""pydl.kernels batch_norm_* / layer_norm_* vs PyTorch (float64) and numpy formulas."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import pydl
from pydl import kernels as K


@pytest.mark.parametrize("shape", [(2, 3), (7, 4), (1, 3, 5), (4, 2, 3, 5), (5, 1, 1, 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_matches_torch(isa, shape, affine, rng):
    c = shape[1]
    x = rng.standard_normal(shape) * 3 + 1
    w = rng.standard_normal(c) if affine else None
    b = rng.standard_normal(c) if affine else None
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    X = torch.tensor(x, requires_grad=True)
    W = torch.tensor(w, requires_grad=True) if affine else None
    B = torch.tensor(b, requires_grad=True) if affine else None
    Y = TF.batch_norm(X, trm, trv, W, B, training=True, momentum=0.3, eps=1e-4)
    y, mean, invstd = K.batch_norm_forward(x, w, b, rm, rv, training=True, momentum=0.3, eps=1e-4)
    np.testing.assert_allclose(y, Y.detach().numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-13)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-13)
    axes = (0,) + tuple(range(2, len(shape)))
    np.testing.assert_allclose(mean, x.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x.var(axis=axes) + 1e-4), rtol=1e-12)
    dy = rng.standard_normal(shape)
    Y.backward(torch.tensor(dy))
    dx, dw, db = K.batch_norm_backward(dy, x, mean, invstd, w, training=True,
                                       need_weight_grad=affine, need_bias_grad=affine)
    np.testing.assert_allclose(dx, X.grad.numpy(), rtol=1e-9, atol=1e-10)
    if affine:
        np.testing.assert_allclose(dw, W.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(db, B.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_batch_norm_eval_matches_torch(isa, rng):
    x = rng.standard_normal((6, 3, 4))
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    X = torch.tensor(x, requires_grad=True)
    W = torch.tensor(w, requires_grad=True)
    B = torch.tensor(b, requires_grad=True)
    Y = TF.batch_norm(X, torch.tensor(rm), torch.tensor(rv), W, B, training=False)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = K.batch_norm_forward(x, w, b, rm, rv, training=False)
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)  # eval never updates them
    np.testing.assert_allclose(y, Y.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(x.shape)
    Y.backward(torch.tensor(dy))
    dx, dw, db = K.batch_norm_backward(dy, x, mean, invstd, w, training=False)
    np.testing.assert_allclose(dx, X.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, W.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(db, B.grad.numpy(), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (33, 64), (130, 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(isa, shape, affine, rng):
    d = shape[1]
    x = rng.standard_normal(shape) * 2 - 1
    w = rng.standard_normal(d) if affine else None
    b = rng.standard_normal(d) if affine else None
    X = torch.tensor(x, requires_grad=True)
    W = torch.tensor(w, requires_grad=True) if affine else None
    B = torch.tensor(b, requires_grad=True) if affine else None
    Y = TF.layer_norm(X, (d,), W, B, eps=1e-5)
    y, mean, rstd = K.layer_norm_forward(x, w, b, eps=1e-5)
    np.testing.assert_allclose(y, Y.detach().numpy(), rtol=1e-11, atol=1e-11)
    dy = rng.standard_normal(shape)
    Y.backward(torch.tensor(dy))
    dx, dw, db = K.layer_norm_backward(dy, x, mean, rstd, w, need_weight_grad=affine,
                                       need_bias_grad=affine)
    np.testing.assert_allclose(dx, X.grad.numpy(), rtol=1e-9, atol=1e-10)
    if affine:
        np.testing.assert_allclose(dw, W.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(db, B.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_float32_close_to_float64(rng):
    x = rng.standard_normal((64, 8, 5))
    y64, _, _ = K.batch_norm_forward(x, training=True)
    y32, _, _ = K.batch_norm_forward(x.astype(np.float32), training=True)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-5)
    l64, _, _ = K.layer_norm_forward(x.reshape(64, 40))
    l32, _, _ = K.layer_norm_forward(x.reshape(64, 40).astype(np.float32))
    np.testing.assert_allclose(l32, l64, rtol=1e-5, atol=1e-5)


def test_bit_identical_for_any_thread_count(isa, rng):
    x = rng.standard_normal((300, 16, 64)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32)
    lw = rng.standard_normal(64).astype(np.float32)
    prev = pydl.get_num_threads()
    res = []
    try:
        for t in (1, 2):
            pydl.set_num_threads(t)
            y, m, s = K.batch_norm_forward(x, w, w, training=True)
            out = [y, *K.batch_norm_backward(dy, x, m, s, w)]
            x2 = x.reshape(-1, 64)
            ly, lm, ls = K.layer_norm_forward(x2, lw, lw)
            out += [ly, *K.layer_norm_backward(dy.reshape(-1, 64), x2, lm, ls, lw)]
            res.append(out)
    finally:
        pydl.set_num_threads(prev)
    for a, b in zip(*res):
        assert np.array_equal(a, b)


def test_bad_inputs():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        K.batch_norm_forward(np.zeros((1, 4)), training=True)
    with pytest.raises(ValueError, match="needs running_mean"):
        K.batch_norm_forward(np.zeros((3, 4)), training=False)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\), got \(3,\)"):
        K.batch_norm_forward(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        K.batch_norm_forward(np.zeros((3, 4)), running_mean=np.zeros(4))
    with pytest.raises(ValueError, match="momentum"):
        K.batch_norm_forward(np.zeros((3, 4)), momentum=1.5)
    with pytest.raises(TypeError):
        K.batch_norm_forward(np.zeros((3, 4)), running_mean=np.zeros(4, np.float32),
                             running_var=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros(4)
        ro.flags.writeable = False
        K.batch_norm_forward(np.zeros((3, 4)), running_mean=ro, running_var=np.ones(4))
    with pytest.raises(ValueError, match=r"x must be 2-D, got shape \(4,\)"):
        K.layer_norm_forward(np.zeros(4))


def test_misaligned_running_statistics_are_refused_not_copied():
    # The running statistics are updated in place: a copy of a misaligned view would lose the
    # update, so the kernel refuses it and names the argument.
    from pydl import kernels as K
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    odd = np.zeros(13, np.uint8)[1:13].view(np.float32)
    with pytest.raises(ValueError, match="running_mean is not aligned"):
        K.batch_norm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32),
                             running_mean=odd, running_var=np.ones(3, np.float32),
                             training=True, momentum=0.1, eps=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_backward_writes_into_given_arrays(isa, training, rng):
    # Oracle: the same call without the out arrays, bit for bit; their NaN must not leak in.
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    w = rng.standard_normal(3).astype(np.float32)
    _, mean, invstd = K.batch_norm_forward(x, w, np.zeros(3, np.float32))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ref = K.batch_norm_backward(dy, x, mean, invstd, w, training=training)
    outs = [np.full(a.shape, np.nan, np.float32) for a in ref]
    got = K.batch_norm_backward(dy, x, mean, invstd, w, training=training, dx_out=outs[0],
                                dw_out=outs[1], db_out=outs[2])
    for r, o, g in zip(ref, outs, got):
        assert g is o and g.tobytes() == r.tobytes()
    with pytest.raises(ValueError, match="dw_out overlaps the memory of weight"):
        K.batch_norm_backward(dy, x, mean, invstd, w, dw_out=w)
    with pytest.raises(ValueError, match="dx_out"):
        K.batch_norm_backward(dy, x, mean, invstd, w, dx_out=np.empty((6, 3), np.float32))
