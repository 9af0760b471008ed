"""Trainer's recorded Sequential step (pydl.train._fast_step) against the autograd graph path.

Every comparison is bit for bit: the fast step must make the same kernel calls on the same operands.
"""

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.train import Trainer
from pydl.train._fast_step import SequentialStep


def mlp(dtype=np.float32, act=nn.ReLU, p=0.2, bias=True):
    return nn.Sequential(nn.Linear(12, 32, bias=bias, dtype=dtype), act(), nn.Dropout(p),
                         nn.Linear(32, 16, dtype=dtype), act(), nn.Dropout(p),
                         nn.Linear(16, 5, dtype=dtype))


def data(n=203, dtype=np.float32):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 12)).astype(dtype), rng.integers(0, 5, n)


def train(fast, make_model=mlp, make_opt=None, epochs=3, batch_size=32, regularizer=None,
          metrics=("accuracy",), loss=None, dtype=np.float32, monkeypatch=None):
    """Train a fresh seeded model; return (params, history, optimizer state, grads)."""
    pydl.manual_seed(7)
    model = make_model()
    opt = (make_opt or (lambda ps: pydl.optim.SGD(ps, lr=0.05, momentum=0.9,
                                                  weight_decay=5e-4)))(model.parameters())
    trainer = Trainer(model, loss or pydl.losses.CrossEntropyLoss(), opt,
                      regularizer=regularizer, metrics=metrics)
    used = []
    original = Trainer._fast_step

    def spy(self, x, y):
        step = original(self, x, y) if fast else None
        used.append(step is not None)
        return step

    monkeypatch.setattr(Trainer, "_fast_step", spy)
    x, y = data(dtype=dtype)
    history = trainer.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=0.1,
                          verbose=0)
    monkeypatch.undo()
    params = [p.data.copy() for p in model.parameters()]
    grads = [None if p.grad is None else p.grad.copy() for p in model.parameters()]
    return params, history.history, opt.state_dict()["state"], grads, used


def assert_same_run(a, b):
    pa, ha, sa, ga, _ = a
    pb, hb, sb, gb, _ = b
    for x, y in zip(pa, pb):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(ga, gb):
        np.testing.assert_array_equal(x, y)
    assert ha == hb
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            np.testing.assert_array_equal(sa[k][name], sb[k][name])


@pytest.mark.parametrize("batch_size", [1, 32, 64])
def test_fast_step_matches_graph_path(monkeypatch, threads, batch_size):
    fast = train(True, batch_size=batch_size, monkeypatch=monkeypatch)
    slow = train(False, batch_size=batch_size, monkeypatch=monkeypatch)
    assert all(fast[4]) and not any(slow[4])
    assert_same_run(fast, slow)


@pytest.mark.parametrize("act", [nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh])
def test_fast_step_activations(monkeypatch, act):
    make = lambda: mlp(act=act, p=0.0, bias=False)  # noqa: E731
    fast = train(True, make_model=make, monkeypatch=monkeypatch, epochs=2)
    slow = train(False, make_model=make, monkeypatch=monkeypatch, epochs=2)
    assert all(fast[4])
    assert_same_run(fast, slow)


@pytest.mark.parametrize("case", ["float64", "adam", "l2", "nometrics", "smoothing", "unfused"])
def test_fast_step_variants(monkeypatch, case):
    kw = {}
    if case == "float64":
        kw = dict(make_model=lambda: mlp(dtype=np.float64), dtype=np.float64)
    elif case == "adam":
        kw = dict(make_opt=lambda ps: pydl.optim.Adam(ps, lr=1e-3, weight_decay=1e-4))
    elif case == "l2":
        kw = dict(regularizer=pydl.regularizers.L2(1e-3))
    elif case == "nometrics":
        kw = dict(metrics=())
    elif case == "smoothing":
        kw = dict(loss=pydl.losses.CrossEntropyLoss(label_smoothing=0.1))
    else:  # an activation that is not fused (it follows a Dropout): not supported, graph path
        kw = dict(make_model=lambda: nn.Sequential(nn.Linear(12, 8), nn.Dropout(0.1), nn.ReLU(),
                                                   nn.Linear(8, 5)))
    fast = train(True, monkeypatch=monkeypatch, **kw)
    slow = train(False, monkeypatch=monkeypatch, **kw)
    assert all(fast[4]) == (case != "unfused")
    assert_same_run(fast, slow)


def test_unsupported_models_use_the_graph():
    loss = pydl.losses.CrossEntropyLoss()
    x, y = data()
    assert SequentialStep.build(mlp(), loss, x, y) is not None

    class MyLinear(nn.Linear):
        pass

    shared = nn.Linear(12, 12)
    for model in [nn.Sequential(MyLinear(12, 5)),
                  nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(12, 5)),
                  nn.Sequential(nn.Dropout(0.1), nn.Linear(12, 5)),
                  nn.Sequential(nn.Linear(12, 5), nn.Softmax()),
                  mlp().freeze()]:
        assert SequentialStep.build(model, loss, x, y) is None
    assert SequentialStep.build(mlp(), pydl.losses.MSELoss(), x, y) is None
    assert SequentialStep.build(mlp(), loss, x, y.astype(np.float32)) is None
    assert SequentialStep.build(mlp(), loss, x[:, :5], y) is None
    assert SequentialStep.build(mlp(dtype=np.float64), loss, x, y) is None
    assert SequentialStep.build(mlp().eval(), loss, x, y) is None


def test_fast_step_optimizer_outside_the_model(monkeypatch):
    model = mlp()
    extra = nn.Parameter(np.ones(3, np.float32))
    opt = pydl.optim.SGD(list(model.parameters()) + [extra], lr=0.1)
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(), opt)
    x, y = data()
    assert trainer._fast_step(x, y) is None
    extra.grad = np.ones(3, np.float32)
    trainer.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(extra.data, np.ones(3, np.float32))  # zeroed, never stepped


def test_fast_step_non_finite_loss_keeps_weights():
    pydl.manual_seed(0)
    model = mlp()
    opt = pydl.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(), opt)
    x, y = data()
    x[40] = np.nan
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(pydl.train.NonFiniteLossError, match="batch 1"):
        trainer.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    # Batch 0 was a good step (the weights moved); batch 1 updated nothing.
    assert any((b != p.data).any() for b, p in zip(before, model.parameters()))
    assert all(np.isfinite(p.data).all() for p in model.parameters())


def test_fast_step_same_bits_for_any_thread_count(monkeypatch):
    runs = []
    for n in (1, 2):
        previous = pydl.get_num_threads()
        pydl.set_num_threads(n)
        try:
            # Wide enough that the GEMMs, dropout and the update are split across threads.
            wide = lambda: nn.Sequential(nn.Linear(12, 1024), nn.ReLU(), nn.Dropout(0.2),  # noqa
                                         nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(0.2),
                                         nn.Linear(1024, 5))
            runs.append(train(True, make_model=wide, batch_size=128, monkeypatch=monkeypatch))
        finally:
            pydl.set_num_threads(previous)
    assert all(runs[0][4]) and all(runs[1][4])
    assert_same_run(runs[0], runs[1])


def test_batch_hooks_still_called():
    calls = []

    class Counter(pydl.train.Callback):
        def on_batch_end(self, batch, logs=None):
            calls.append(("end", batch, logs["size"]))

    hooked = pydl.train.Callback()
    hooked.on_batch_begin = lambda batch, logs=None: calls.append(("begin", batch))
    model = mlp()
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1))
    x, y = data(n=70)
    trainer.fit(x, y, epochs=1, batch_size=32, callbacks=[Counter(), hooked], verbose=0)
    assert [c for c in calls if c[0] == "end"] == [("end", 0, 32), ("end", 1, 32), ("end", 2, 6)]
    assert [c for c in calls if c[0] == "begin"] == [("begin", 0), ("begin", 1), ("begin", 2)]
