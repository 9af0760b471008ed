"""pydl.ops: the activation table and everything derived from it (nn, functional, Tensor, io,
fusion); GELU and SiLU against PyTorch in float64; the Op protocol for user-defined ops."""

import inspect

import numpy as np
import pytest

import pydl
from pydl import nn, ops
from pydl import functional as F
from pydl.engine import compile_step
from pydl.tensor import Op, Tensor
from pydl.testing import gradcheck

torch = pytest.importorskip("torch")

NEW = [("gelu", "GELU", {}, lambda t: torch.nn.functional.gelu(t)),
       ("gelu", "GELU", {"approximate": "tanh"},
        lambda t: torch.nn.functional.gelu(t, approximate="tanh")),
       ("silu", "SiLU", {}, lambda t: torch.nn.functional.silu(t))]


def test_every_row_derives_its_nn_class_function_method_and_io_name():
    for row in ops.ACTIVATIONS:
        cls = getattr(nn, row.module)
        assert cls.activation is row and row.module in nn.__all__
        assert getattr(F, row.name).__name__ == row.name and row.name in F.__all__
        assert callable(getattr(Tensor, row.name))
        assert pydl.io._ACTIVATIONS[row.module] == (cls, tuple(p.name for p in row.params))
        names = [p.name for p in row.params]
        assert list(inspect.signature(cls).parameters) == names
        assert list(inspect.signature(getattr(F, row.name)).parameters) == ["x"] + names
        assert isinstance(row.onnx, tuple) and row.onnx
        if row.epilogue is not None:
            name, kwargs = row.epilogue(*[p.default for p in row.params])
            assert name in F._FUSABLE or name in ("gelu_tanh",) and isinstance(kwargs, dict)


@pytest.mark.parametrize("name, cls, kw, ref", NEW)
def test_new_activations_match_torch_float64(name, cls, kw, ref, rng):
    x = rng.standard_normal((7, 13)) * 4
    x[0, :3] = [0.0, -30.0, 30.0]
    g = rng.standard_normal((7, 13))
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(g))
    for make in (lambda t: getattr(nn, cls)(**kw)(t), lambda t: getattr(F, name)(t, **kw),
                 lambda t: getattr(t, name)(**kw)):
        t = pydl.tensor(x, requires_grad=True)
        y = make(t)
        y.backward(g)
        np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(t.grad, tx.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, cls, kw, ref", NEW)
def test_new_activations_gradcheck(name, cls, kw, ref, rng):
    x = pydl.tensor(rng.standard_normal((4, 5)) * 2, requires_grad=True)
    assert gradcheck(lambda t: getattr(F, name)(t, **kw), (x,))


@pytest.mark.parametrize("name, cls, kw, ref", NEW)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_new_activations_fuse_into_linear_bit_identically(name, cls, kw, ref, dtype, rng):
    x = rng.standard_normal((9, 6)).astype(dtype)
    w = pydl.tensor(rng.standard_normal((5, 6)), dtype=dtype, requires_grad=True)
    b = pydl.tensor(rng.standard_normal(5), dtype=dtype, requires_grad=True)
    g = rng.standard_normal((9, 5)).astype(dtype)
    fused = F.linear(x, w, b, name, **kw)
    fused.backward(g)
    dw, db = w.grad.copy(), b.grad.copy()
    w.grad = b.grad = None
    sep = getattr(F, name)(F.linear(x, w, b), **kw)
    sep.backward(g)
    assert fused.data.tobytes() == sep.data.tobytes()
    assert dw.tobytes() == w.grad.tobytes() and db.tobytes() == b.grad.tobytes()


@pytest.mark.parametrize("act", [nn.GELU(), nn.GELU("tanh"), nn.SiLU()], ids=repr)
def test_new_activations_replay_fused_and_bit_identical(act, rng):
    def model():
        pydl.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), act, nn.Linear(8, 3))

    m1, m2 = model(), model()
    loss = pydl.losses.CrossEntropyLoss()
    step = compile_step(m2, loss)
    for _ in range(3):
        x = rng.standard_normal((6, 4)).astype(np.float32)
        y = rng.integers(0, 3, 6)
        m1.zero_grad()
        ref = loss(m1(Tensor(x)), y)
        ref.backward()
        assert step.forward(x, y) == float(ref.item())
        step.backward()
        for p, q in zip(m1.parameters(), m2.parameters()):
            assert p.grad.tobytes() == q.grad.tobytes()
    tape = next(iter(step._tapes.values()))
    first = tape.calls[0][0].__self__
    assert type(first).__name__ == "LinearOp" and first.act is act.activation


def test_new_activations_save_and_load(tmp_path, rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU("tanh"), nn.Linear(4, 4), nn.SiLU())
    path = tmp_path / "m.npz"
    pydl.save_model(model, path)
    loaded = pydl.load_model(path)
    assert repr(loaded) == repr(model)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    assert loaded(x).data.tobytes() == model(x).data.tobytes()


def test_bad_activation_parameters_are_refused():
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(TypeError, match="unexpected keyword"):
        nn.SiLU(alpha=1.0)
    with pytest.raises(TypeError, match="parameter"):
        F.silu(pydl.tensor([1.0]), 2.0)
    with pytest.raises(ValueError, match="LeakyReLU: negative_slope must be in"):
        nn.LeakyReLU(-1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        F.linear(np.ones((2, 2), np.float32), nn.Linear(2, 2).weight, activation="softmax")


# --- the Op protocol ---------------------------------------------------------------------------
class ScaledGather(Op):
    """out[i] = x[i, idx[i]] * s: a parameter, an integer operand, two saved values."""

    y = None

    def __init__(self, s):
        self.s = s

    def forward(self, x, idx):
        idx = np.asarray(idx, dtype=np.int64)
        if idx.shape != (x.shape[0],) or (idx < 0).any() or (idx >= x.shape[1]).any():
            raise ValueError(f"ScaledGather: indices must be (N,) in [0, {x.shape[1]})")
        self.shape, self.idx = x.shape, idx
        self.y = np.multiply(x[np.arange(x.shape[0]), idx], self.s, out=self.y)
        return self.y

    def backward(self, g):
        dx = np.zeros(self.shape, g.dtype)
        dx[np.arange(self.shape[0]), self.idx] = g * self.s
        return dx, None


def test_a_user_op_gradchecks_and_replays(rng):
    x = pydl.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    idx = np.array([0, 3, 1, 1, 2])
    assert gradcheck(lambda t: ScaledGather(1.5)(t, idx), (x,))

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4, dtype=np.float64)

        def forward(self, xb):
            return self.lin(xb)

    def gather_loss(out, target):
        return ScaledGather(-1.0)(out, target).mean()

    pydl.manual_seed(0)
    m1, m2 = Head(), Head()
    m2.load_state_dict(m1.state_dict())
    step = compile_step(m2, gather_loss)
    for _ in range(3):
        xb = rng.standard_normal((5, 3))
        target = rng.integers(0, 4, 5)
        m1.zero_grad()
        ref = gather_loss(m1(Tensor(xb)), target)
        ref.backward()
        assert step.forward(xb, target) == float(ref.item())
        step.backward()
        for p, q in zip(m1.parameters(), m2.parameters()):
            assert p.grad.tobytes() == q.grad.tobytes()
    assert all(t is not None for t in step._tapes.values())
    bad = np.array([0, 9, 1, 1, 2])
    with pytest.raises(ValueError, match="ScaledGather"):
        step.forward(rng.standard_normal((5, 3)), bad)
