"""The engine's native forward (pydl/engine.py ``_native_runs``, csrc/bindings/bind_program.cpp):
runs of ops whose kernel calls were captured while recording replay as ONE C++ call.

Oracle: the eager forward (grad mode on, which never replays) and the eager training step, bit
for bit; what is captured is checked on the recorded tape.
"""

import numpy as np
import pytest

import pydl
from pydl import _core, nn
from pydl.tensor import Op, Tensor


def _eager(model, x):
    return np.array(model(Tensor(x)).data)


def _replayed(model, x, calls=3):
    with pydl.no_grad():
        return [np.array(model(x).data) for _ in range(calls)]


def _tape(model):
    fwd = model.__dict__["_compiled_forwards"].fwd
    (tape,) = fwd._tapes.values()
    return tape


def _programs(tape):
    return [f for f, _, _ in tape.forward if isinstance(f, _core._Program)]


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.a(x).relu()
        return self.head(h + self.b(h).tanh())  # a same-shape add: captured with the rest


class _TransposedNorm(nn.Module):
    """LayerNorm over a transposed (non-contiguous) view: its call is not captured."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):  # x: (N, 4, 6)
        return self.norm(self.lin(x).transpose(1, 2))


def _cnn(dtype):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding="same", dtype=dtype), nn.GELU(),
        nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3, dtype=dtype))


MODELS = {
    # name: (builder(dtype), input shape, programs expected, ops outside programs)
    "mlp": (lambda dt: nn.Sequential(nn.Linear(5, 16, dtype=dt), nn.GELU(),
                                     nn.Linear(16, 16, dtype=dt), nn.SiLU(),
                                     nn.Linear(16, 3, dtype=dt), nn.LogSoftmax(axis=1)),
            (7, 5), 1, 0),
    "cnn": (_cnn, (5, 1, 8, 8), 1, 0),
    "conv1d": (lambda dt: nn.Sequential(nn.Conv1d(3, 4, 5, stride=2, dtype=dt), nn.ELU(),
                                        nn.MaxPool1d(2), nn.Flatten(),
                                        nn.Linear(16, 2, dtype=dt)),
               (4, 3, 20), 1, 0),
    "layernorm": (lambda dt: nn.Sequential(nn.Linear(6, 10, dtype=dt),
                                           nn.LayerNorm(10, dtype=dt), nn.Tanh()),
                  (3, 6), 1, 0),
    "residual": (lambda dt: _Residual().to(dt), (4, 8), 1, 0),
    "transposed-norm": (lambda dt: _TransposedNorm().to(dt), (2, 4, 6), 1, 1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_native_forward_equals_eager_bitwise(name, dtype):
    build, shape, n_programs, n_python = MODELS[name]
    pydl.manual_seed(3)
    model = build(dtype).eval()
    rng = np.random.default_rng(5)
    for batch_scale in (1, 2):  # a second key records a second tape
        x = rng.standard_normal((shape[0] * batch_scale,) + shape[1:]).astype(dtype)
        expected = _eager(model, x)
        for out in _replayed(model, x):
            assert out.tobytes() == expected.tobytes()
    fwd = model.__dict__["_compiled_forwards"].fwd
    for tape in fwd._tapes.values():
        assert len(_programs(tape)) == n_programs
        assert len(tape.forward) - n_programs == n_python


@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_step_with_native_forward_is_bit_identical_to_eager(momentum):
    # Everything but the loss is captured, BatchNorm in train mode included (its kernel call
    # advances num_batches_tracked and the running statistics).
    def build():
        pydl.manual_seed(11)
        return nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4, momentum=momentum), nn.ReLU(),
                             nn.AvgPool1d(2),
                             nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))

    m1, m2 = build(), build()
    o1 = pydl.optim.Adam(m1.parameters(), lr=0.01)
    o2 = pydl.optim.Adam(m2.parameters(), lr=0.01)
    loss = pydl.losses.CrossEntropyLoss()
    step = pydl.compile_step(m2, loss, o2)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal((6, 2, 8)).astype(np.float32)
        y = rng.integers(0, 3, 6)
        o1.zero_grad()
        ref = loss(m1(Tensor(x)), y)
        ref.backward()
        o1.step()
        assert step(x, y) == float(ref.item())
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert p.data.tobytes() == q.data.tobytes()
    for a, b in zip(m1.buffers(), m2.buffers()):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    (tape,) = step._tapes.values()
    assert len(_programs(tape)) == 1 and len(tape.forward) == 2  # [all but the loss], loss


def test_a_replaced_parameter_array_is_seen_by_the_replay():
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = np.ones((2, 4), np.float32)
    _replayed(model, x)
    model[0].weight.data = np.full((4, 4), 0.25, np.float32)  # a new array, not in place
    assert _replayed(model, x)[-1].tobytes() == _eager(model, x).tobytes()
    model[2].bias.data -= 1.0  # in place (the same array is assigned back): no new recording
    assert _replayed(model, x)[-1].tobytes() == _eager(model, x).tobytes()


@pytest.mark.skipif(len(_core.supported_isas()) < 2, reason="needs two instruction sets")
def test_a_changed_instruction_set_runs_the_python_forwards():
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Linear(9, 33), nn.GELU(), nn.Linear(33, 5)).eval()
    x = np.random.default_rng(1).standard_normal((3, 9)).astype(np.float32)
    best = _core.isa()
    try:
        _replayed(model, x)  # captured with the best instruction set's kernels
        _core._set_isa("generic")
        generic = _eager(model, x)
        assert _replayed(model, x)[-1].tobytes() == generic.tobytes()
        _core._set_isa(best)
        assert _replayed(model, x)[-1].tobytes() == _eager(model, x).tobytes()
    finally:
        _core._set_isa(best)


def test_capture_entry_points_refuse_misuse():
    _core._capture_begin(False)
    try:
        with pytest.raises(ValueError, match="already open"):
            _core._capture_begin(True)
    finally:
        assert len(_core._capture_end()) == 0
    with pytest.raises(TypeError):
        _core._Program.join([None], lambda: None)


# --- native backward (pydl/engine.py _NativeBackward) --------------------------------------------
def _native_backward(step):
    return [t.native_backward for t in step._tapes.values()]


class _Doubling(Op):
    """An op that CLAIMS a native backward but multiplies with numpy: the engine's check against
    the Python backward must catch it (its captured program would skip the multiplication)."""

    native_backward = True
    y = None
    dx = None

    def forward(self, x):
        self.y = np.multiply(x, 2.0, out=self.y)
        return self.y

    def backward(self, g):
        self.dx = np.multiply(g, 2.0, out=self.dx)
        return (self.dx,)


class _DoublingNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        return self.b(_Doubling()(self.a(x).relu()))


class _Shifted(nn.Module):
    """A broadcast addition: its backward would sum over the batch in numpy."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 8)
        self.shift = nn.Parameter(np.linspace(-1, 1, 8).astype(np.float32))
        self.shift.requires_grad = False
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        return self.b(self.a(x).relu() + self.shift)


NATIVE_BACKWARD = {
    # name: (model builder, loss, target kind, whether the backward runs natively after 3 steps)
    "relu-dropout-ce": (lambda: nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3),
                                              nn.Linear(16, 3)),
                        pydl.losses.CrossEntropyLoss(), "int", True),
    "gelu-silu-mse-f64": (lambda: nn.Sequential(nn.Linear(5, 16, dtype=np.float64), nn.GELU(),
                                                nn.Linear(16, 16, dtype=np.float64), nn.SiLU(),
                                                nn.Linear(16, 3, dtype=np.float64)),
                          pydl.losses.MSELoss(), "reg", True),
    "frozen-first-bce": (lambda: nn.Sequential(nn.Linear(5, 16).freeze(), nn.Tanh(),
                                               nn.Linear(16, 3)),
                         pydl.losses.BCEWithLogitsLoss(), "bin", True),
    "shared-weights": (lambda: nn.Sequential(*[nn.Linear(5, 5)] * 3), pydl.losses.MSELoss(),
                       "reg", True),
    "residual-sum": (lambda: _Residual(), pydl.losses.CrossEntropyLoss(), "int", True),
    "broadcast-add": (lambda: _Shifted(), pydl.losses.CrossEntropyLoss(), "int", False),
    "lying-op": (_DoublingNet, pydl.losses.CrossEntropyLoss(), "int", False),
    # Convolution, batch norm (train mode), all three poolings and Flatten: dx into kept arrays,
    # dw / db straight into the lent gradient buffers.
    "cnn-batchnorm-pools": (lambda: _cnn(np.float32), pydl.losses.CrossEntropyLoss(), "int",
                            True),
    # A frozen convolution weight with a trainable bias (the kernel's scratch weight gradient).
    "conv1d-frozen-weight": (lambda: _frozen_conv_weight(), pydl.losses.CrossEntropyLoss(),
                             "int", True),
    # Layer norm over the last two axes (a 2-D weight) and over a non-contiguous input.
    "layernorm-2d": (lambda: nn.Sequential(nn.Linear(5, 12), nn.ReLU(), _Unflatten((3, 4)),
                                           nn.LayerNorm((3, 4)), nn.Flatten(), nn.Linear(12, 3)),
                     pydl.losses.CrossEntropyLoss(), "int", True),
    "layernorm-transposed": (lambda: _TransposedNormHead(), pydl.losses.CrossEntropyLoss(),
                             "int", False),
    # Pooling, batch norm and a convolution on transposed (non-contiguous) views: their forwards
    # copy the input and are not captured, so a replay runs them from Python with new saved
    # arrays every step; a captured backward would read the recording's.
    "transposed-pool-norm-conv": (lambda: _TransposedCnn(), pydl.losses.CrossEntropyLoss(),
                                  "int", False),
    # Max pooling alone on a transposed view (its backward reads the indices its Python-replayed
    # forward makes anew every step), with the first batches repeated: verifying a captured
    # backward against the Python one on a repeated batch cannot tell stale indices apart.
    "transposed-pool-repeated-batch": (lambda: _TransposedPool(), pydl.losses.CrossEntropyLoss(),
                                       "int", False),
    # reshape and flatten of a transposed view copy: the replay must re-run them, not treat
    # them as views (it did: the second step trained on the first batch's activations).
    "reshape-copies": (lambda: _ReshapeCopies(), pydl.losses.CrossEntropyLoss(), "int", False),
    # One convolution applied twice: its second weight gradient is added by numpy.
    "shared-conv": (lambda: nn.Sequential(*[nn.Conv1d(3, 3, 3, padding=1)] * 2, nn.Flatten(),
                                          nn.Linear(60, 3)),
                    pydl.losses.CrossEntropyLoss(), "int", False),
}
INPUT_SHAPES = {"residual-sum": (7, 8), "layernorm-transposed": (7, 4, 6),
                "transposed-pool-norm-conv": (7, 2, 6, 6), "cnn-batchnorm-pools": (7, 1, 8, 8),
                "conv1d-frozen-weight": (7, 3, 20), "shared-conv": (7, 3, 20)}


class _TransposedNormHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = _TransposedNorm()
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        return self.head(self.body(x).reshape(-1, 24))


class _TransposedCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(3, 3, 3)
        self.head = nn.Linear(3, 3)

    def forward(self, x):  # x: (N, 2, 6, 6)
        h = self.norm(self.conv(x.transpose(2, 3)).transpose(2, 3)).relu()
        h = self.pool(h.transpose(2, 3))
        return self.head(self.conv2(h.transpose(1, 3)).flatten(1))


class _TransposedPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 16)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = self.a(x).reshape((x.data.shape[0], 1, 4, 4)).transpose(2, 3)
        return self.head(self.pool(h).flatten(1))


class _ReshapeCopies(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(6, 3)
        self.c = nn.Linear(6, 3)

    def forward(self, x):
        n = x.data.shape[0]
        h = self.a(x).reshape(n, 2, 3).transpose(1, 2)
        return self.b(h.reshape(n, 6)) + self.c(h.flatten(1))


class _Unflatten(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape((x.data.shape[0],) + self.shape)


def _frozen_conv_weight():
    m = nn.Sequential(nn.Conv1d(3, 4, 5, stride=2), nn.ELU(), nn.MaxPool1d(2), nn.Flatten(),
                      nn.Linear(16, 3))
    m[0].weight.requires_grad = False
    return m


@pytest.mark.parametrize("name", sorted(NATIVE_BACKWARD))
def test_native_backward_is_bit_identical_to_eager_or_stays_in_python(name):
    build, loss, kind, native = NATIVE_BACKWARD[name]

    def make():
        pydl.manual_seed(21)
        m = build()
        return m, pydl.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.05,
                                 momentum=0.9)

    m1, o1 = make()
    m2, o2 = make()
    step = pydl.compile_step(m2, loss, o2)
    rng = np.random.default_rng(2)
    shape = INPUT_SHAPES.get(name, (7, 5))
    dtype = m1[0].weight.data.dtype if isinstance(m1, nn.Sequential) else np.float32
    repeat = name == "transposed-pool-repeated-batch"
    for it in range(6):  # record, capture, check, then the program alone
        if repeat and it in (1, 2, 3):
            rng = np.random.default_rng(2)  # the first batch again
        x = rng.standard_normal(shape).astype(dtype)
        y = {"int": rng.integers(0, 3, 7),
             "reg": rng.standard_normal((7, 5 if name == "shared-weights" else 3)).astype(dtype),
             "bin": (rng.random((7, 3)) < 0.5).astype(dtype)}[kind]
        pydl.manual_seed(50 + it)
        o1.zero_grad()
        ref = loss(m1(Tensor(x)), y)
        ref.backward()
        pydl.manual_seed(50 + it)
        assert step(x, y) == float(ref.item())
        for (n, p), q in zip(m1.named_parameters(), m2.parameters()):
            if p.grad is None:
                assert q.grad is None, n
            else:
                assert p.grad.tobytes() == q.grad.tobytes(), (n, it)
        o1.step()
        for p, q in zip(m1.parameters(), m2.parameters()):
            assert p.data.tobytes() == q.data.tobytes(), it
    (state,) = _native_backward(step)
    if native:
        assert state and state.verified
    else:
        assert state is False


def _train_twins(make, loss, batches, seed=None, before=None):
    """Train make()'s model eagerly and through compile_step on the same batches, asserting the
    same loss and the same weight bits after every step; return the compiled step. seed: the
    manual_seed of step i is seed + i for both; before(i) runs before step i."""
    m1, o1 = make()
    m2, o2 = make()
    step = pydl.compile_step(m2, loss, o2)
    for it, (x, y) in enumerate(batches):
        if before is not None:
            before(it)
        if seed is not None:
            pydl.manual_seed(seed + it)
        o1.zero_grad()
        ref = loss(m1(Tensor(x)), y)
        ref.backward()
        o1.step()
        if seed is not None:
            pydl.manual_seed(seed + it)
        assert step(x, y) == float(ref.item()), it
        for p, q in zip(m1.parameters(), m2.parameters()):
            assert p.data.tobytes() == q.data.tobytes(), it
    return step


def test_native_backward_falls_back_when_the_instruction_set_changes():
    if len(_core.supported_isas()) < 2:
        pytest.skip("needs two instruction sets")

    def make():
        pydl.manual_seed(4)
        m = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 2))
        return m, pydl.optim.Adam(m.parameters(), lr=0.01)

    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((5, 6)).astype(np.float32), rng.integers(0, 2, 5))
               for _ in range(7)]
    best = _core.isa()
    try:
        _train_twins(make, pydl.losses.CrossEntropyLoss(), batches,
                     before=lambda it: _core._set_isa("generic") if it == 4 else None)
    finally:
        _core._set_isa(best)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_into_gives_numpys_sum_and_refuses_bad_operands(dtype):
    rng = np.random.default_rng(9)
    a = (rng.standard_normal((5, 7)) * 1e3).astype(dtype)
    b = (rng.standard_normal((5, 7)) * 1e-3).astype(dtype)
    out = np.empty_like(a)
    _core._add_into(out, a, b)
    assert out.tobytes() == (a + b).tobytes()
    expected = out + a
    _core._add_into(out, out, a)  # in place: out is its first operand
    assert out.tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match="shape"):
        _core._add_into(out, a, b[:, :3])
    with pytest.raises(TypeError, match="dtype|float"):
        _core._add_into(out, a, b.astype(np.float16))
    with pytest.raises(ValueError, match="overlap"):
        _core._add_into(out, a, out)


class _ThreeDropouts(nn.Module):
    """Three dropouts; the middle one gets a strided input (its kernel copies it, so its call is
    not captured and it draws its key in Python, between the two captured ones)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(4, 4)
        self.head = nn.Linear(24, 3)
        self.drop = nn.Dropout(0.4)

    def forward(self, x):  # x: (N, 4, 6)
        h = self.drop(self.a(x))  # captured, its key drawn just before its program
        t = self.drop(h.transpose(1, 2))  # (N, 6, 4), not contiguous: drawn in Python
        u = self.drop(self.b(t).relu())  # captured again, after it
        return self.head(u.reshape(-1, 24))


def test_dropout_keys_are_drawn_in_tape_order_around_native_programs():
    def make():
        pydl.manual_seed(8)
        m = _ThreeDropouts()
        return m, pydl.optim.SGD(m.parameters(), lr=0.1)

    rng = np.random.default_rng(4)
    batches = [(rng.standard_normal((3, 4, 6)).astype(np.float32), rng.integers(0, 3, 3))
               for _ in range(5)]
    step = _train_twins(make, pydl.losses.CrossEntropyLoss(), batches, seed=70)
    (tape,) = step._tapes.values()
    assert len(tape.forward) >= 3  # programs with their key draws, the strided dropout between


def test_no_grad_replay_of_one_program_takes_any_input_layout():
    # A forward that is one program copies a C-contiguous input in and the output out in C++;
    # other layouts go through numpy's copy. Both give the eager bits, and new arrays each call.
    pydl.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).eval()
    x = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    expected = _eager(model, x)
    outs = _replayed(model, x)
    (tape,) = model.__dict__["_compiled_forwards"].fwd._tapes.values()
    assert tape.io is not None
    for layout in (np.asfortranarray(x), np.repeat(x, 2, axis=1)[:, ::2]):
        outs += _replayed(model, layout)
    for out in outs:
        assert out.tobytes() == expected.tobytes()
    assert len({id(o) for o in outs}) == len(outs)
    outs[0][...] = 0  # a returned array is the caller's: the next call is unaffected
    assert _replayed(model, x, 1)[0].tobytes() == expected.tobytes()


def test_a_switch_before_the_backward_is_captured_keeps_it_in_python():
    # The switch makes the forward programs fall back to the Python forwards, which make new
    # pooling indices every step; a backward captured then (and verified on a repeated batch)
    # read the capture step's indices ever after. Found by a review (2026-12-02).
    if len(_core.supported_isas()) < 2:
        pytest.skip("needs two instruction sets")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(2, 2, 3, padding=1)
            self.p = nn.MaxPool1d(2)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.p(self.c(x)).flatten(1))

    def make():
        pydl.manual_seed(0)
        m = Net()
        return m, pydl.optim.SGD(m.parameters(), lr=0.1)

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4, 2, 8)).astype(np.float32) for _ in range(6)]
    xs[2] = xs[1]
    batches = [(x, np.array([0, 1, 2, 0])) for x in xs]
    best = _core.isa()
    try:
        step = _train_twins(make, pydl.losses.CrossEntropyLoss(), batches,
                            before=lambda it: _core._set_isa("generic") if it == 1 else None)
    finally:
        _core._set_isa(best)
    assert _native_backward(step) == [False]


def test_register_buffer_with_a_new_array_records_anew():
    # register_buffer bypassed Module.__setattr__: the replay kept updating the old running
    # statistics. Found by a review (2026-12-02).
    def make():
        pydl.manual_seed(0)
        m = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
        return m, pydl.optim.SGD(m.parameters(), lr=0.1)

    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((6, 4)).astype(np.float32),
                rng.standard_normal((6, 3)).astype(np.float32)) for _ in range(5)]
    models = []

    def reset(it):
        if it == 3:
            for m in models:
                m[1].register_buffer("running_mean", np.zeros(3, np.float32))
                m[1].register_buffer("running_var", np.ones(3, np.float32))

    def make_kept():
        m, o = make()
        models.append(m)
        return m, o

    _train_twins(make_kept, pydl.losses.MSELoss(), batches, before=reset)
    assert models[0][1].running_mean.tobytes() == models[1][1].running_mean.tobytes()
