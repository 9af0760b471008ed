"""pydl.tensor_ops: cat, stack, abs, max/min, clip, flatten, transpose, permute, unsqueeze,
squeeze and comparisons, against PyTorch (float64) and gradcheck."""

import numpy as np
import pytest
import torch

import pydl
from pydl import nn
from pydl.engine import compile_step
from pydl.tensor import Tensor
from pydl.testing import gradcheck


def pair(a):
    return (pydl.tensor(a, requires_grad=True, dtype=np.float64),
            torch.tensor(a, requires_grad=True))


def same_grads(fn_pydl, fn_torch, *arrays):
    ps, ts = zip(*(pair(a) for a in arrays))
    y, yt = fn_pydl(*ps), fn_torch(*ts)
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-13, atol=1e-13)
    g = np.random.default_rng(9).standard_normal(y.shape)
    y.backward(g)
    yt.backward(torch.tensor(g))
    for p, t in zip(ps, ts):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-13, atol=1e-13)


RNG = np.random.default_rng(0)
A, B = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((2, 5, 4))


def test_cat_and_stack():
    same_grads(lambda a, b: pydl.cat([a, b], axis=1), lambda a, b: torch.cat([a, b], 1), A, B)
    same_grads(lambda a, b: pydl.cat((a, a * b[:, :3]), axis=-1),
               lambda a, b: torch.cat((a, a * b[:, :3]), -1), A, B)
    same_grads(lambda a, b: pydl.stack([a, b[:, :3]], axis=2),
               lambda a, b: torch.stack([a, b[:, :3]], 2), A, B)
    with pytest.raises(ValueError, match=r"tensor 1 has shape \(2, 5, 4\), incompatible"):
        pydl.cat([Tensor(A), Tensor(B)], axis=2)
    with pytest.raises(ValueError, match="non-empty"):
        pydl.stack([])
    with pytest.raises(TypeError, match="same dtype"):
        pydl.cat([Tensor(A), Tensor(A.astype(np.float32))])
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        pydl.cat([Tensor(A)], axis=3)


@pytest.mark.parametrize("axis,keepdims", [(None, False), (None, True), (0, False), (1, True),
                                           (-1, False)])
def test_max_min(axis, keepdims):
    kw = {} if axis is None else {"dim": axis, "keepdim": keepdims}

    def tmax(t):
        r = t.max(**kw) if axis is not None else t.max()
        r = r.values if axis is not None else r
        return r.reshape((1,) * t.ndim) if axis is None and keepdims else r

    def tmin(t):
        r = t.min(**kw) if axis is not None else t.min()
        r = r.values if axis is not None else r
        return r.reshape((1,) * t.ndim) if axis is None and keepdims else r

    same_grads(lambda a: a.max(axis=axis, keepdims=keepdims), tmax, A)
    same_grads(lambda a: a.min(axis, keepdims), tmin, A)


def test_abs_clip_and_gradcheck():
    x = np.array([[-2.0, -0.5, 0.3, 1.5], [0.7, -1.2, 2.5, -0.1]])
    same_grads(lambda a: a.abs(), torch.abs, x)
    same_grads(lambda a: a.clip(-1.0, 1.0), lambda t: t.clamp(-1.0, 1.0), x)
    same_grads(lambda a: a.clip(lo=0.0), lambda t: t.clamp(min=0.0), x)
    t = pydl.tensor(x, requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda a: (a.abs() * a.clip(-1.0, 1.0)).max(axis=0), [t])
    with pytest.raises(ValueError, match="greater than"):
        t.clip(1.0, -1.0)
    with pytest.raises(ValueError, match="give lo, hi or both"):
        t.clip()


def test_axis_ops():
    same_grads(lambda a: a.transpose(0, 2), lambda t: t.transpose(0, 2), A)
    same_grads(lambda a: a.permute(2, 0, 1), lambda t: t.permute(2, 0, 1), A)
    same_grads(lambda a: a.permute((1, 2, 0)), lambda t: t.permute(1, 2, 0), A)
    same_grads(lambda a: a.unsqueeze(1), lambda t: t.unsqueeze(1), A)
    same_grads(lambda a: a.unsqueeze(-1), lambda t: t.unsqueeze(-1), A)
    same_grads(lambda a: a.flatten(), lambda t: t.flatten(), A)
    same_grads(lambda a: a.flatten(1), lambda t: t.flatten(1), A)
    same_grads(lambda a: a[:, :1].squeeze(1), lambda t: t[:, :1].squeeze(1), A)
    same_grads(lambda a: a[:1, :1].squeeze(), lambda t: t[:1, :1].squeeze(), A)
    with pytest.raises(ValueError, match="axis 1 has size 3, not 1"):
        Tensor(A).squeeze(1)
    with pytest.raises(ValueError, match="not a permutation"):
        Tensor(A).permute(0, 0, 1)


def test_comparisons_are_bool_without_grad():
    a = pydl.tensor(A, requires_grad=True, dtype=np.float64)
    for op, ref in [(a < 0, A < 0), (a <= 0.5, A <= 0.5), (a > a * 0.5, A > A * 0.5),
                    (a >= 0, A >= 0), (a == a, A == A), (a != 0, A != 0)]:
        assert op.dtype == np.bool_ and not op.requires_grad
        assert np.array_equal(op.data, ref)
    masked = a * (a > 0)  # a bool mask as an operand
    masked.sum().backward()
    np.testing.assert_array_equal(a.grad, (A > 0).astype(float))
    assert len({a, a * 1.0}) == 2  # tensors stay hashable


class TwoBranch(nn.Module):
    """Two branches merged by cat and max, then a head: the issue's merge case."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 5)
        self.b = nn.Linear(6, 5)
        self.head = nn.Linear(10, 3)

    def forward(self, x):
        h = pydl.cat([self.a(x).relu(), self.b(x).abs()], axis=1)
        m = pydl.stack([h, h.clip(-0.5, 0.5)], axis=0).max(axis=0)
        return self.head(m.unsqueeze(1).squeeze(1).transpose(0, 1).permute(1, 0))


def test_ops_replay_bit_identical_to_eager():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 6)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    pydl.manual_seed(1)
    m1 = TwoBranch()
    pydl.manual_seed(1)
    m2 = TwoBranch()
    loss = pydl.losses.CrossEntropyLoss()
    step = compile_step(m2, pydl.losses.CrossEntropyLoss())
    for it in range(3):
        xb, yb = x[it * 8:(it + 1) * 8], y[it * 8:(it + 1) * 8]
        m1.zero_grad()
        v1 = loss(m1(Tensor(xb)), yb)
        v1.backward()
        v2 = step.forward(xb, yb)
        step.backward()
        assert float(v1.item()) == v2
        for p, q in zip(m1.parameters(), m2.parameters()):
            assert np.array_equal(p.grad, q.grad)
            p.data -= 0.1 * p.grad
            q.data -= 0.1 * q.grad
    assert all(t is not None for t in step._tapes.values())
