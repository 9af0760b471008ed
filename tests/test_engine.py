"""pydl.engine: recorded-and-replayed steps against plain eager autograd (the oracle).

Every comparison is BITWISE: the replay must run the same kernels on the same operands in the
same order as the eager graph, so weights, gradients, losses and optimizer state are identical.
"""

import logging

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.engine import CompiledForward, NonFiniteLossError, compile_step
from pydl.tensor import Tensor
from pydl.train import Trainer


# --- models --------------------------------------------------------------------------------------
class Residual(nn.Module):
    """A custom Module exercising the Tensor ops: +, -, *, /, **, @, T, sum, mean, exp, log..."""

    def __init__(self, d_in, width, d_out, dtype=np.float32):
        super().__init__()
        self.inp = nn.Linear(d_in, width, dtype=dtype)
        self.block = nn.Linear(width, width, dtype=dtype)
        self.gate = nn.Linear(width, width, bias=False, dtype=dtype)
        self.out = nn.Linear(width, d_out, dtype=dtype)
        self.drop = nn.Dropout(0.25)

    def forward(self, x):
        h = self.inp(x).tanh()
        r = self.block(h).gelu() if hasattr(Tensor, "gelu") else self.block(h).elu(0.7)
        g = self.gate(h).sigmoid()
        h = h + r * g - 0.5 * (h / (1.0 + (h ** 2))) + (-h).leaky_relu(0.1)
        h = self.drop(h)
        s = (h @ self.out.weight.T).exp().log() + self.out.bias  # a 2-D matmul on a parameter
        scale = h.reshape(-1).mean() * 0.0 + 1.0                   # reductions and reshape
        return s * scale + h.sum(axis=1, keepdims=True).T.T[:, [0]] * 0.01


def mlp(dims=(6, 16, 16, 4), act=nn.ReLU, dropout=0.0, dtype=np.float32, bias=True):
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b, bias=bias, dtype=dtype))
        if i < len(dims) - 2:
            layers.append(act())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def data(n=50, d=6, classes=4, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    return x, rng.integers(0, classes, n)


CASES = {
    "mlp-ce-sgd-momentum": lambda: (mlp(dropout=0.2), pydl.losses.CrossEntropyLoss(),
                                    lambda p: pydl.optim.SGD(p, lr=0.05, momentum=0.9), None,
                                    "int"),
    "mlp-mse-adam": lambda: (mlp(act=nn.Tanh), pydl.losses.MSELoss(),
                             lambda p: pydl.optim.Adam(p, lr=1e-2), None, "reg"),
    "residual-ce-adamw": lambda: (Residual(6, 12, 4), pydl.losses.CrossEntropyLoss(
        label_smoothing=0.1), lambda p: pydl.optim.AdamW(p, lr=1e-2), None, "int"),
    "frozen-bce-adam": lambda: (mlp(dims=(6, 16, 16, 1), act=nn.ELU),
                                pydl.losses.BCEWithLogitsLoss(),
                                lambda p: pydl.optim.Adam(p, lr=1e-2, weight_decay=1e-3), "freeze",
                                "bin"),
    "sigmoid-l1-nesterov-l2reg": lambda: (mlp(act=nn.Sigmoid), pydl.losses.L1Loss(),
                                          lambda p: pydl.optim.SGD(p, lr=0.1, momentum=0.5,
                                                                   nesterov=True),
                                          pydl.regularizers.L2(1e-3), "reg"),
    "leaky-huber-sgd-elasticnet": lambda: (
        mlp(act=nn.LeakyReLU, dropout=0.1, bias=False), pydl.losses.HuberLoss(0.5),
        lambda p: pydl.optim.SGD(p, lr=0.1, weight_decay=1e-3),
        pydl.regularizers.ElasticNet(1e-3, 0.3), "reg"),
    "softmax-head-ce-l1reg": lambda: (nn.Sequential(nn.Linear(6, 8), nn.Softmax(), nn.Linear(8, 4),
                                                    nn.LogSoftmax()),
                                      pydl.losses.CrossEntropyLoss(reduction="sum"),
                                      lambda p: pydl.optim.Adam(p, lr=1e-2),
                                      pydl.regularizers.L1(1e-3), "int"),
}


def build(case, seed=3):
    pydl.manual_seed(seed)
    model, loss, make_opt, extra, target = CASES[case]()
    reg = None
    if extra == "freeze":
        model[0].freeze()
    elif extra is not None:
        reg = extra
    x, labels = data()
    out_dim = 1 if target == "bin" else 4
    if target == "int":
        y = labels
    elif target == "bin":
        y = (labels % 2).astype(np.float32).reshape(-1, 1)
    else:
        y = np.random.default_rng(1).standard_normal((len(x), out_dim)).astype(np.float32)
    return model, loss, make_opt(model.parameters()), reg, x, y


def eager_fit(model, loss, opt, reg, x, y, epochs, batch_size):
    """The reference: zero_grad, forward, loss, backward, penalty gradient, update (no engine)."""
    losses = []
    model.train()
    for _ in range(epochs):
        for lo in range(0, len(x), batch_size):
            xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
            opt.zero_grad()
            model.zero_grad()
            out = model(Tensor(xb))
            value = loss(out, yb)
            losses.append(float(value.item()))
            value.backward()
            if reg is not None:
                reg.add_gradients(model)
            opt.step()
    return losses


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_state(m1, o1, m2, o2):
    for (n, p), q in zip(m1.named_parameters(), m2.parameters()):
        assert same_bits(p.data, q.data), n
    s1, s2 = o1.state_dict()["state"], o2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        for name, v in s1[k].items():
            w = s2[k][name]
            assert same_bits(np.asarray(v), np.asarray(w)), (k, name)


@pytest.mark.parametrize("case", list(CASES))
def test_fit_replay_is_bit_identical_to_eager(case, threads):
    m1, loss1, o1, r1, x, y = build(case)
    m2, loss2, o2, r2, _, _ = build(case)
    pydl.manual_seed(11)
    ref = eager_fit(m1, loss1, o1, r1, x, y, epochs=3, batch_size=16)
    pydl.manual_seed(11)
    trainer = Trainer(m2, loss2, o2, regularizer=r2, metrics=())
    hist = trainer.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    assert_same_state(m1, o1, m2, o2)
    # 2 keys (batch 16 and the last batch of 2) were recorded; both replayed afterwards
    tapes = list(trainer._compiled._tapes.values())
    assert len(tapes) == 2 and all(t is not None for t in tapes)
    # The logged epoch loss is the mean of the batch losses (+ penalty): compare the data part.
    if r2 is None:
        per_epoch = np.array(ref).reshape(3, -1)
        sizes = np.array([16, 16, 16, 2])
        np.testing.assert_array_equal(hist.history["loss"], (per_epoch * sizes).sum(1) / 50)


def assert_steps_match_eager(m1, loss1, m2, step, x, y, seed, lr, steps=4):
    """Four batches of 8: eager autograd on m1 against the compiled step of m2, the loss and every
    gradient bit for bit (None where eager has none), the weights moved by lr * grad between
    steps (the recording run, the capture, the verification and the native program)."""
    for it in range(steps):
        xb, yb = x[it * 8:(it + 1) * 8], y[it * 8:(it + 1) * 8]
        pydl.manual_seed(seed + it)
        m1.zero_grad()
        v1 = loss1(m1(Tensor(xb)), yb)
        v1.backward()
        pydl.manual_seed(seed + it)
        v2 = step.forward(xb, yb)
        step.backward()
        assert float(v1.item()) == v2
        for (n, p), q in zip(m1.named_parameters(), m2.parameters()):
            if p.grad is None:
                assert q.grad is None, n
            else:
                assert same_bits(p.grad, q.grad), (n, it)
        for p, q in zip(m1.parameters(), m2.parameters()):  # move the weights between steps
            if p.grad is not None:
                p.data -= lr * p.grad
                q.data -= lr * q.grad


@pytest.mark.parametrize("case", list(CASES))
def test_compile_step_gradients_are_bit_identical_every_step(case):
    m1, loss1, _, _, x, y = build(case)
    m2, loss2, _, _, _, _ = build(case)
    step = compile_step(m2, loss2)
    assert_steps_match_eager(m1, loss1, m2, step, x, y, seed=100, lr=0.05)
    assert all(t is not None for t in step._tapes.values())


@pytest.mark.parametrize("act", [nn.ReLU, lambda: nn.LeakyReLU(0.2), lambda: nn.ELU(0.7),
                                 nn.Sigmoid, nn.Tanh, nn.GELU, lambda: nn.GELU("tanh"), nn.SiLU])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_after_fused_linear_folds_into_its_backward_with_the_same_bits(act, dtype):
    # Linear + activation + Dropout: the dropout's backward step is folded into the fused
    # Linear's (one kernel pass: mask, scale and the activation's derivative), the same bits as
    # eager autograd's two kernels. The output layer's dropout (read by the loss) and a dropout
    # after an unfused Linear keep their own step.
    def model():
        return nn.Sequential(nn.Linear(6, 16, dtype=dtype), act(), nn.Dropout(0.3),
                             nn.Linear(16, 16, dtype=dtype), act(), nn.Dropout(0.5),
                             nn.Linear(16, 4, dtype=dtype), nn.Dropout(0.2))
    pydl.manual_seed(5)
    m1 = model()
    pydl.manual_seed(5)
    m2 = model()
    x, y = data(n=40, dtype=dtype)
    o1 = pydl.optim.Adam(m1.parameters(), lr=1e-2)
    o2 = pydl.optim.Adam(m2.parameters(), lr=1e-2)
    pydl.manual_seed(11)
    eager_fit(m1, pydl.losses.CrossEntropyLoss(), o1, None, x, y, epochs=3, batch_size=8)
    pydl.manual_seed(11)
    trainer = Trainer(m2, pydl.losses.CrossEntropyLoss(), o2, metrics=())
    trainer.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    assert_same_state(m1, o1, m2, o2)
    tape = next(iter(trainer._compiled._tapes.values()))
    owners = [type(bwd.__self__).__name__ for bwd, _, _ in tape.backward]
    assert owners.count("DropoutOp") == 1  # only the last one (no activation before it)
    folded = [bwd.__self__ for bwd, _, _ in tape.backward
              if type(bwd.__self__).__name__ == "LinearOp" and bwd.__self__.dropout is not None]
    assert len(folded) == 2
    assert tape.native_backward  # still captured as one C++ program


class _FunctionalMLP(nn.Module):
    # F.linear with its activation and F.dropout called directly: the ops of the recording run's
    # eager graph are the tape's own (no Linear + activation rewrite), so folding the dropout's
    # backward into them before the recording run's backward would apply the mask twice.
    def __init__(self, act):
        super().__init__()
        self.act = act
        self.a, self.b, self.c = nn.Linear(6, 12), nn.Linear(12, 12), nn.Linear(12, 4)

    def forward(self, x):
        F = pydl.functional
        h = F.dropout(F.linear(x, self.a.weight, self.a.bias, activation=self.act), 0.3)
        h = F.linear(h, self.b.weight, self.b.bias, activation=self.act)
        return F.linear(h, self.c.weight, self.c.bias)


@pytest.mark.parametrize("act", ["relu", "tanh", "silu"])
def test_backward_rewrite_keeps_every_step_bit_identical_with_functional_layers(act):
    pydl.manual_seed(2)
    m1 = _FunctionalMLP(act)
    pydl.manual_seed(2)
    m2 = _FunctionalMLP(act)
    x, y = data(n=32)
    loss = pydl.losses.CrossEntropyLoss()
    step = compile_step(m2, loss)
    assert_steps_match_eager(m1, loss, m2, step, x, y, seed=40, lr=0.1)
    tape = next(iter(step._tapes.values()))
    assert any(getattr(bwd.__self__, "dropout", None) is not None for bwd, _, _ in tape.backward)


def test_dropout_act_backward_kernel_matches_the_two_kernels():
    # The private fused kernel against dropout_backward then <act>_backward, NaNs included,
    # on every instruction set and at lengths around its 1024-element pieces.
    from pydl import _core, kernels as K

    rng = np.random.default_rng(0)
    previous = _core.isa()
    try:
        for isa in _core.supported_isas():
            _core._set_isa(isa)
            for dtype in (np.float32, np.float64):
                for name, kw, fkw in [("relu", {}, {}), ("leaky_relu", {"negative_slope": 0.2},
                                      {"negative_slope": 0.2}), ("elu", {"alpha": 0.7},
                                      {"alpha": 0.7}), ("sigmoid", {}, {}), ("tanh", {}, {}),
                                      ("gelu", {}, {}), ("gelu_tanh", {}, {"approximate": "tanh"}),
                                      ("silu", {}, {})]:
                    fn = "gelu" if name == "gelu_tanh" else name
                    for n in (1, 9, 1023, 1025, 40000):
                        dy = rng.standard_normal(n).astype(dtype)
                        x = rng.standard_normal(n).astype(dtype)
                        dy[::13] = np.nan
                        mask = (rng.random(n) < 0.7).astype(np.uint8)
                        s = x if name in ("gelu", "gelu_tanh", "silu") else getattr(K, fn)(x, **fkw)
                        ref = getattr(K, fn + "_backward")(K.dropout_backward(dy, mask, 0.3), s,
                                                           **fkw)
                        got = _core._dropout_act_backward(dy, mask, 0.3, s, name, **kw)
                        assert got.tobytes() == ref.tobytes(), (isa, dtype, name, n)
    finally:
        _core._set_isa(previous)
    with pytest.raises(ValueError, match="activation"):
        _core._dropout_act_backward(np.ones(3), np.ones(3, np.uint8), 0.5, np.ones(3), None)
    with pytest.raises(ValueError, match="p"):
        _core._dropout_act_backward(np.ones(3), np.ones(3, np.uint8), 1.5, np.ones(3), "relu")
    with pytest.raises(TypeError, match="mask"):  # the kernel has no unmasked form
        _core._dropout_act_backward(np.ones(3), None, 0.5, np.ones(3), "relu")
    with pytest.raises(ValueError, match="_dropout_act_backward: unknown activation 'softmax'"):
        _core._dropout_act_backward(np.ones(3), np.ones(3, np.uint8), 0.5, np.ones(3), "softmax")


def test_replay_fuses_linear_and_activation_and_runs_fewer_ops():
    model = mlp(dims=(6, 8, 8, 4), act=nn.ReLU)
    x, y = data()
    step = compile_step(model, pydl.losses.CrossEntropyLoss())
    step.forward(x[:8], y[:8])
    step.backward()
    tape = next(iter(step._tapes.values()))
    kinds = [type(fwd.__self__).__name__ for fwd, _, _, _ in tape.calls]
    assert kinds == ["LinearOp", "LinearOp", "LinearOp", "CrossEntropyOp"]
    assert [fwd.__self__.act.name if fwd.__self__.act else None
            for fwd, _, _, _ in tape.calls[:3]] == ["relu", "relu", None]
    # The three fused layers replay as ONE native program (no Python between their kernels);
    # the loss returns a value, so it stays a Python call.
    assert len(tape.forward) == 2
    assert isinstance(tape.forward[0][0], pydl._core._Program) and len(tape.forward[0][0]) == 3


def test_float64_and_no_bias_and_batch_of_one():
    pydl.manual_seed(0)
    m1 = mlp(dtype=np.float64, bias=False)
    pydl.manual_seed(0)
    m2 = mlp(dtype=np.float64, bias=False)
    x, y = data(n=5, dtype=np.float64)
    o1, o2 = pydl.optim.SGD(m1.parameters(), lr=0.1), pydl.optim.SGD(m2.parameters(), lr=0.1)
    eager_fit(m1, pydl.losses.CrossEntropyLoss(), o1, None, x, y, epochs=2, batch_size=1)
    Trainer(m2, pydl.losses.CrossEntropyLoss(), o2, metrics=()).fit(
        x, y, epochs=2, batch_size=1, shuffle=False, verbose=0)
    assert_same_state(m1, o1, m2, o2)


# --- keys: what records anew --------------------------------------------------------------------
def _count(step):
    return len(step._tapes)


def test_changed_shape_dtype_training_grad_and_structure_record_anew():
    pydl.manual_seed(0)
    model = mlp(dropout=0.3)
    x, y = data()
    step = compile_step(model, pydl.losses.CrossEntropyLoss())

    def run(xb, yb):
        step.forward(xb, yb)
        step.backward()

    run(x[:8], y[:8])
    run(x[8:16], y[8:16])
    assert _count(step) == 1
    run(x[:5], y[:5])                              # shape
    assert _count(step) == 2
    run(x[:8], y[:8].astype(np.int32))             # target dtype
    assert _count(step) == 3
    model.eval()                                   # training flag
    run(x[:8], y[:8])
    assert _count(step) == 4
    model.train()
    model[0].weight.requires_grad = False          # requires_grad
    run(x[:8], y[:8])
    assert _count(step) == 5
    assert model[0].weight.grad is None
    model[0].weight.requires_grad = True
    model[2].p = 0.5                               # structure: a hyper-parameter changed
    run(x[:8], y[:8])
    assert _count(step) == 6
    setattr(model, "1", nn.Tanh())                 # structure: a layer replaced
    run(x[:8], y[:8])
    assert _count(step) == 7
    pydl.manual_seed(5)
    v = step.forward(x[:8], y[:8])
    step.backward()
    # ... and the new structure is what runs (eager oracle with the same dropout keys)
    pydl.manual_seed(5)
    ref = pydl.losses.CrossEntropyLoss()(model(Tensor(x[:8])), y[:8])
    assert float(ref.item()) == v


def test_frozen_parameters_get_no_gradient_and_stay_bit_identical():
    m, loss, opt, _, x, y = build("frozen-bce-adam")
    before = [p.data.copy() for p in m[0].parameters()]
    Trainer(m, loss, opt, metrics=()).fit(x, y, epochs=3, batch_size=8, verbose=0)
    for b, p in zip(before, m[0].parameters()):
        assert same_bits(b, p.data) and p.grad is None


# --- bad input: the same exception as eager ------------------------------------------------------
def _error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value)


def test_bad_labels_on_the_replay_path_raise_what_eager_raises():
    pydl.manual_seed(0)
    model = mlp()
    x, y = data()
    loss = pydl.losses.CrossEntropyLoss()
    step = compile_step(model, loss)
    step.forward(x[:8], y[:8])
    step.backward()
    bad = y[:8].copy()
    bad[3] = 7
    eager = _error(lambda: loss(model(Tensor(x[:8])), bad))
    assert _error(lambda: step.forward(x[:8], bad)) == eager
    assert eager[0] is ValueError
    wide = np.ones((8, 7), np.float32)                         # wrong width: a new key
    assert _error(lambda: step.forward(wide, y[:8])) == _error(lambda: model(Tensor(wide)))
    # the step still works afterwards
    step.forward(x[:8], y[:8])
    step.backward()


def test_backward_without_forward_is_a_clear_error():
    step = compile_step(mlp(), pydl.losses.CrossEntropyLoss())
    with pytest.raises(RuntimeError, match="call forward"):
        step.backward()


def test_compile_step_argument_errors():
    with pytest.raises(TypeError, match="Module"):
        compile_step(lambda x: x, pydl.losses.MSELoss())
    with pytest.raises(TypeError, match="callable"):
        compile_step(mlp(), "mse")


# --- finiteness: the repro on every path -------------------------------------------------
def _repro_model():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 3))
    return model


def _poison(model):
    """The issue's repro: zero first weight, +-3e38 second weight: a finite loss (log 3) whose
    gradient overflows (dW1 = sum over the batch of ~1e38 * x)."""
    model[0].weight.data[...] = 0.0
    model[0].bias.data[...] = 0.0
    model[1].weight.data[...] = np.array([[-3e38, -3e38], [3e38, 3e38], [3e38, 3e38]],
                                         np.float32)
    model[1].bias.data[...] = 0.0


# The refused step stays quiet: the bias gradient's overflow is found by the finiteness check,
# not announced by a numpy RuntimeWarning first.
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_overflowing_gradient_stops_the_replayed_step_before_any_update():
    pydl.manual_seed(0)
    model = _repro_model()
    opt = pydl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(), opt, metrics=())
    x = np.full((4, 2), 2.0, np.float32)
    y = np.zeros(4, np.int64)
    trainer.fit(x, y, epochs=2, batch_size=4, verbose=0)    # records, then replays
    assert all(t is not None for t in trainer._compiled._tapes.values())
    _poison(model)
    weights = [p.data.copy() for p in model.parameters()]
    state = {k: {n: np.array(v) for n, v in s.items()} for k, s in opt.state.items()}
    with pytest.raises(NonFiniteLossError, match="gradient"):
        trainer.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert all(same_bits(w, p.data) for w, p in zip(weights, model.parameters()))
    for k, s in opt.state.items():
        for n, v in s.items():
            assert same_bits(np.asarray(v), state[k][n])


# The refused step stays quiet: the bias gradient's overflow is found by the finiteness check,
# not announced by a numpy RuntimeWarning first.
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_overflowing_gradient_stops_compile_step_and_the_first_eager_step():
    pydl.manual_seed(0)
    model = _repro_model()
    _poison(model)
    opt = pydl.optim.SGD(model.parameters(), lr=0.1)
    step = compile_step(model, pydl.losses.CrossEntropyLoss(), opt)
    x = np.ones((4, 2), np.float32)
    y = np.zeros(4, np.int64)
    weights = [p.data.copy() for p in model.parameters()]
    for _ in range(2):  # the recording run, then the replay
        with pytest.raises(NonFiniteLossError):
            step(x, y)
        assert all(same_bits(w, p.data) for w, p in zip(weights, model.parameters()))


def test_non_finite_loss_on_replay_stops_before_backward():
    pydl.manual_seed(0)
    model = mlp(dims=(2, 3))
    opt = pydl.optim.SGD(model.parameters(), lr=0.1)
    step = compile_step(model, pydl.losses.MSELoss(), opt)
    x = np.ones((4, 2), np.float32)
    step(x, np.zeros((4, 3), np.float32))
    weights = [p.data.copy() for p in model.parameters()]
    with pytest.raises(NonFiniteLossError, match="loss"):
        step(x, np.full((4, 3), np.inf, np.float32))
    assert all(same_bits(w, p.data) for w, p in zip(weights, model.parameters()))


# --- what cannot replay runs eagerly, with a log line ------------------------------------------
class ReadsValue(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        h = self.lin(x)
        return h * float(h.sum().item())    # a data-dependent Python number


class WrapsArray(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(Tensor(np.tanh(x.data)))   # an array computed in the step


class MakeOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        h = self.lin(x)
        return Tensor._make(h.data * 2.0, (h,), lambda g: (g * 2.0,))


@pytest.mark.parametrize("cls, reason", [(ReadsValue, "read into Python"),
                                         (WrapsArray, "made from an array"),
                                         (MakeOp, "Tensor._make")])
def test_unreplayable_steps_run_eagerly_and_say_why(cls, reason, caplog):
    pydl.manual_seed(0)
    m1, m2 = cls(), cls()
    m2.load_state_dict(m1.state_dict())
    rng = np.random.default_rng(0)
    step = compile_step(m2, pydl.losses.MSELoss())
    loss = pydl.losses.MSELoss()
    with caplog.at_level(logging.DEBUG, logger="pydl.engine"):
        for _ in range(3):
            x = rng.standard_normal((4, 3)).astype(np.float32)
            y = rng.standard_normal((4, 2)).astype(np.float32)
            m1.zero_grad()
            ref = loss(m1(Tensor(x)), y)
            ref.backward()
            assert step.forward(x, y) == float(ref.item())
            step.backward()
            for p, q in zip(m1.parameters(), m2.parameters()):
                assert same_bits(p.grad, q.grad)
    assert list(step._tapes.values()) == [None]
    assert any(reason in r.getMessage() for r in caplog.records)


# --- inference replay --------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_predict_and_compiled_forward_equal_eager_no_grad(case):
    model, *_ , x, _ = build(case)
    model.eval()
    fwd = CompiledForward(model)
    for n in (1, 1, 7, 7, 50):
        ref = model(Tensor(x[:n])).data          # grad mode on: plain eager ops
        assert same_bits(fwd(x[:n]), ref)
        with pydl.no_grad():                     # Module.__call__ under no_grad replays too
            assert same_bits(model(Tensor(x[:n])).data, ref)
            assert same_bits(model(x[:n]).data, ref)
    replay = model.__dict__["_compiled_forwards"].fwd  # this thread's recorded forward
    assert replay is not None and replay._tapes
    assert all(t is not None for t in replay._tapes.values())
    trainer = Trainer(model, pydl.losses.MSELoss(), pydl.optim.SGD(model.parameters(), lr=0.1))
    ref = np.concatenate([model(Tensor(x[i:i + 16])).data for i in range(0, 50, 16)])
    assert same_bits(trainer.predict(x, batch_size=16), ref)
    assert same_bits(trainer.predict(x, batch_size=16), ref)


def test_predict_replay_sees_weight_updates_in_place():
    pydl.manual_seed(0)
    model = mlp()
    x, _ = data()
    fwd = CompiledForward(model.eval())
    first = fwd(x[:4])
    for p in model.parameters():
        p.data *= 0.5
    ref = model(Tensor(x[:4])).data
    again = fwd(x[:4])
    assert same_bits(again, ref) and not same_bits(again, first)


def test_a_compiled_step_used_from_two_threads_at_once_is_refused():
    step = compile_step(mlp(), pydl.losses.CrossEntropyLoss())
    step._lock.acquire()
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            step.forward(*[a[:4] for a in data()])
    finally:
        step._lock.release()


def test_a_step_whose_recording_stopped_at_a_nan_loss_replays_correctly_later():
    pydl.manual_seed(0)
    m1, m2 = mlp(), mlp()
    m2.load_state_dict(m1.state_dict())
    loss = pydl.losses.CrossEntropyLoss()
    step = compile_step(m2, loss)
    x, y = data()
    bad = x[:8].copy()
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteLossError):
        step(bad, y[:8])                        # recorded, stopped before backward
    for lo in (8, 16, 24):                      # replays: the first one lends the buffers
        m1.zero_grad()
        ref = loss(m1(Tensor(x[lo:lo + 8])), y[lo:lo + 8])
        ref.backward()
        assert step(x[lo:lo + 8], y[lo:lo + 8]) == float(ref.item())
        for p, q in zip(m1.parameters(), m2.parameters()):
            assert same_bits(p.grad, q.grad)


def test_every_parameter_frozen_still_replays_the_forward():
    pydl.manual_seed(0)
    model = mlp().freeze()
    step = compile_step(model, pydl.losses.CrossEntropyLoss())
    x, y = data()
    values = [step(x[:8], y[:8]) for _ in range(3)]
    assert values[0] == values[1] == values[2]
    assert all(p.grad is None for p in model.parameters())


# The refused step stays quiet: the bias gradient's overflow is found by the finiteness check,
# not announced by a numpy RuntimeWarning first.
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_without_a_pydl_optimizer_the_step_checks_its_gradient_arena():
    pydl.manual_seed(0)
    model = _repro_model()
    step = compile_step(model, pydl.losses.CrossEntropyLoss())     # no optimizer
    x, y = np.ones((4, 2), np.float32), np.zeros(4, np.int64)
    step(x, y)
    step(x, y)                                                     # a replay: grads in the arena
    assert step._arena is not None
    _poison(model)
    with pytest.raises(NonFiniteLossError, match="gradient of '0."):
        step(x, y)


# --- found by an adversarial review (2026-12-02): each failed before its fix ----------------------
def _twin_steps(build, loss_of, batches, between=None, zero=True):
    """Train build()'s model eagerly and through compile_step on the same batches; assert the
    same loss and weight bits after every step. build() -> (model, optimizer, loss)."""
    pydl.manual_seed(0)
    m1, o1, l1 = build()
    pydl.manual_seed(0)
    m2, o2, l2 = build()
    step = compile_step(m2, l2, o2)
    for it, (x, y) in enumerate(batches):
        if between is not None:
            between(it, (m1, l1), (m2, l2))
        o1.zero_grad()
        ref = l1(m1(loss_of(x)), y)
        ref.backward()
        o1.step()
        if zero:
            o2.zero_grad()
        assert step(x, y) == float(ref.item()), it
        for p, q in zip(o1.param_groups[0]["params"], o2.param_groups[0]["params"]):
            assert same_bits(p.data, q.data), it
    return m1, m2


def _batches(n=6, d=5, classes=3, repeat_first=0, dtype=np.float32):
    rng = np.random.default_rng(1)
    out = [(rng.standard_normal((8, d)).astype(dtype), rng.integers(0, classes, 8))
           for _ in range(n)]
    return [out[0]] * repeat_first + out


def _sgd(model, extra=()):
    return pydl.optim.SGD(list(model.parameters()) + list(extra), lr=0.1)


def test_a_submodule_switched_to_eval_records_anew():
    # Freezing batch-norm statistics with bn.eval() (transfer learning) changed nothing on replay.
    def build():
        m = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        return m, _sgd(m), pydl.losses.CrossEntropyLoss()

    def freeze(it, *pairs):
        if it == 3:
            for m, _ in pairs:
                m[1].eval()

    m1, m2 = _twin_steps(build, Tensor, _batches(), freeze)
    assert same_bits(m1[1].running_mean, m2[1].running_mean)
    pydl.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    x = _batches()[0][0]
    with pydl.no_grad():
        for _ in range(3):
            m(x)
    m[1].eval()
    with pydl.no_grad():
        assert same_bits(m(x).data, m(Tensor(x)).data)


def test_no_grad_replay_of_a_tensor_input_passes_a_tensor():
    class Centered(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 3)
            self.lin = nn.Linear(10, 3)

        def forward(self, x):  # Tensor-only methods
            return self.lin(self.conv((x - x.mean(axis=1, keepdims=True)).unsqueeze(1))
                            .flatten(1))

    pydl.manual_seed(0)
    m = Centered()
    x = np.random.default_rng(0).standard_normal((64, 7)).astype(np.float32)
    ref = m(Tensor(x)).data.copy()
    with pydl.no_grad():
        for _ in range(3):
            assert same_bits(m(Tensor(x)).data, ref)


def test_parameters_outside_the_model_train_like_eager():
    # A loss with its own Parameter, in the optimizer: compile_step neither cleared its gradient
    # nor, once the backward ran natively, handed the gradient to it; Trainer.fit likewise.
    class HeadLoss:
        def __init__(self):
            w = np.random.default_rng(7).standard_normal((3, 16)).astype(np.float32)
            self.w = nn.Parameter(w * 0.3)
            self.ce = pydl.losses.CrossEntropyLoss()

        def __call__(self, h, y):
            return self.ce(pydl.functional.linear(h, self.w), y)

    def build():
        m = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh())
        lf = HeadLoss()
        return m, _sgd(m, [lf.w]), lf

    for zero in (True, False):
        _twin_steps(build, Tensor, _batches(), zero=zero)
    batches = _batches()
    pydl.manual_seed(0)
    m1, o1, l1 = build()
    for x, y in batches:
        o1.zero_grad()
        l1(m1(Tensor(x)), y).backward()
        o1.step()
    pydl.manual_seed(0)
    m2, o2, l2 = build()
    Trainer(m2, l2, o2).fit(np.concatenate([b[0] for b in batches]),
                            np.concatenate([b[1] for b in batches]), epochs=1, batch_size=8,
                            shuffle=False, verbose=0)
    assert same_bits(l1.w.data, l2.w.data)


def test_reading_the_input_or_a_parameter_into_python_runs_eagerly():
    class InputRead(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 3)

        def forward(self, x):
            return self.lin(x * (1.0 / float(np.abs(x.numpy()).max())))

    class ParamRead(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 3)
            self.t = nn.Parameter(np.full(1, 2.0, np.float32))

        def forward(self, x):
            return self.lin(x) * self.t * (1.0 / max(self.t.item(), 0.5))

    for cls in (InputRead, ParamRead):
        def build():
            m = cls()
            return m, _sgd(m), pydl.losses.CrossEntropyLoss()

        _twin_steps(build, Tensor, _batches(repeat_first=2))


def test_an_embedding_first_model_trains_from_integer_indices():
    def build():
        m = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 3))
        return m, _sgd(m), pydl.losses.CrossEntropyLoss()

    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 10, (8, 3)), rng.integers(0, 3, 8)) for _ in range(5)]
    _twin_steps(build, lambda x: x, batches)
    pydl.manual_seed(0)
    m, opt, loss = build()
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    history = Trainer(m, loss, opt).fit(x, y, epochs=2, batch_size=8, verbose=0,
                                        validation_split=0.2)
    assert np.isfinite(history.history["val_loss"]).all()


def test_a_tensor_of_class_labels_is_what_eager_accepts():
    def build():
        m = nn.Sequential(nn.Linear(5, 3))
        return m, _sgd(m), pydl.losses.CrossEntropyLoss()

    _twin_steps(build, Tensor, [(x, pydl.tensor(y)) for x, y in _batches()])


def test_a_constant_tensor_given_a_new_array_records_anew():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 3)
            self.scale = pydl.tensor(np.ones(3, np.float32))

        def forward(self, x):
            return self.lin(x) * self.scale.T  # (a view op of the constant too)

    def build():
        m = Scaled()
        return m, _sgd(m), pydl.losses.CrossEntropyLoss()

    def rescale(it, *pairs):
        for m, _ in pairs:
            m.scale.data = np.full(3, 1.0 + it, np.float32)

    m1, m2 = _twin_steps(build, Tensor, _batches(), rescale)
    x = _batches()[0][0]
    with pydl.no_grad():
        for it in range(3):
            m2.scale.data = np.full(3, 2.0 + it, np.float32)
            assert same_bits(m2(x).data, m2(Tensor(x)).data)


@pytest.mark.parametrize("kind", ["ce-weight", "bce-pos-weight", "bce-weight"])
def test_loss_weights_changed_in_place_are_seen(kind):
    def make_loss():
        if kind == "ce-weight":
            return pydl.losses.CrossEntropyLoss(weight=np.array([1.0, 2.0, 0.5], np.float32))
        if kind == "bce-pos-weight":
            return pydl.losses.BCEWithLogitsLoss(pos_weight=np.array([1.0, 2.0, 0.5], np.float32))
        return pydl.losses.BCEWithLogitsLoss(weight=np.array([1.0, 2.0, 0.5], np.float32))

    def build():
        m = nn.Sequential(nn.Linear(5, 3))
        return m, _sgd(m), make_loss()

    def reweigh(it, *pairs):
        for _, loss in pairs:
            w = loss.weight if kind != "bce-pos-weight" else loss.pos_weight
            w[1] = 1.0 + it

    batches = _batches()
    if kind != "ce-weight":
        batches = [(x, np.eye(3, dtype=np.float32)[y]) for x, y in batches]
    _twin_steps(build, Tensor, batches, reweigh)
