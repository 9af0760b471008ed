"""``with no_grad(): model(x)`` through the engine's replay (pydl/_inference.py): the same bits
as the eager forward (computed here with grad mode on, which never takes the replay path),
re-recorded when anything in the key changes, eager where it must be."""

import copy
import gc
import logging
import threading
import weakref

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.tensor import Tensor


def _eager(model, x):
    """The eager forward: with grad mode on (a graph is built) nothing takes the replay path."""
    return np.array(model(Tensor(x)).data)


def _mlp(dtype=np.float32, p=0.0):
    pydl.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16, dtype=dtype), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(16, 16, dtype=dtype), nn.Tanh(), nn.Linear(16, 3, dtype=dtype))


def _replays(model, x, calls=4):
    with pydl.no_grad():
        return [np.array(model(x).data) for _ in range(calls)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 5, 32])
def test_replayed_no_grad_forward_equals_eager_bitwise(dtype, batch):
    model = _mlp(dtype).eval()
    x = np.random.default_rng(batch).standard_normal((batch, 6)).astype(dtype)
    expected = _eager(model, x)
    for out in _replays(model, x):
        np.testing.assert_array_equal(out, expected)
    assert model.__dict__["_compiled_forwards"].fwd  # the replay path was taken


def test_the_replay_is_really_used(caplog):
    model = _mlp().eval()
    x = np.ones((2, 6), np.float32)
    with caplog.at_level(logging.DEBUG, logger="pydl.engine"):
        _replays(model, x, calls=5)
    recorded = [r for r in caplog.records if "recorded" in r.getMessage()]
    assert len(recorded) == 1  # recorded once, replayed after


def test_new_shapes_weights_and_modes_record_anew():
    model = _mlp(p=0.5).eval()
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((3, 6)).astype(np.float32)
    x2 = rng.standard_normal((7, 6)).astype(np.float32)
    _replays(model, x1)
    np.testing.assert_array_equal(_replays(model, x2)[-1], _eager(model, x2))
    # weights changed in place: the replay reads the same arrays
    for p in model.parameters():
        p.data *= 0.5
    np.testing.assert_array_equal(_replays(model, x1)[-1], _eager(model, x1))
    # weights replaced by new arrays (load_state_dict copies in place; assignment does not)
    model[0].weight = nn.Parameter(np.full((16, 6), 0.1, np.float32))
    np.testing.assert_array_equal(_replays(model, x1)[-1], _eager(model, x1))
    # train mode: dropout draws the same keys as an eager forward would
    model.train()
    pydl.manual_seed(7)
    replayed = _replays(model, x1, calls=3)
    pydl.manual_seed(7)
    eager = [_eager(model, x1) for _ in range(3)]
    for r, e in zip(replayed, eager):
        np.testing.assert_array_equal(r, e)


def test_grad_mode_and_arguments_that_stay_eager():
    model = _mlp().eval()
    x = np.ones((2, 6), np.float32)
    y = model(x)  # grad mode on: a graph, no replay
    assert y.requires_grad and "_compiled_forwards" not in model.__dict__
    with pydl.no_grad():
        for _ in range(3):  # another dtype: eager, converted by Linear
            out = model(x.astype(np.float64) / 3)
            assert out.dtype == np.float32
            np.testing.assert_array_equal(out.data, _eager(model, x / 3))
            assert model([[1, 2, 3, 4, 5, 6]]).shape == (1, 3)  # a list: eager


def test_modules_returning_other_things_and_nested_calls_stay_correct():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(x), self.lin(x) * 2

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _mlp()

        def forward(self, x):
            return self.inner(x) + 1.0

    pydl.manual_seed(1)
    pair = Pair()
    x = np.ones((3, 4), np.float32)
    with pydl.no_grad():
        for _ in range(3):
            a, b = pair(x)
            np.testing.assert_array_equal(b.data, a.data * 2)
    outer = Outer().eval()
    x = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    expected = _eager(outer, x)
    for out in _replays(outer, x):
        np.testing.assert_array_equal(out, expected)
    assert "_compiled_forwards" not in outer.inner.__dict__  # nested calls never compile


def test_threads_get_their_own_replay():
    model = _mlp().eval()
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((int(rng.integers(1, 9)), 6)).astype(np.float32)
              for _ in range(64)]
    expected = [_eager(model, x) for x in inputs]
    got = [None] * len(inputs)
    errors = []

    def work(indices):
        try:
            for i in indices:
                with pydl.no_grad():
                    got[i] = np.array(model(inputs[i]).data)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(range(t, 64, 8),)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_a_finished_thread_leaves_no_recording_behind():
    model = _mlp().eval()
    x = np.ones((2, 6), np.float32)

    refs = []

    def work():
        _replays(model, x)
        refs.append(weakref.ref(model.__dict__["_compiled_forwards"].fwd))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    gc.collect()
    assert refs and refs[0]() is None  # freed with its thread
    assert model.__dict__["_compiled_forwards"].fwd is None  # this thread never had one


def test_copies_of_a_model_start_without_recordings():
    model = _mlp().eval()
    _replays(model, np.ones((2, 6), np.float32))
    clone = copy.deepcopy(model)
    assert clone.__dict__["_compiled_forwards"].fwd is None
    x = np.full((2, 6), 0.3, np.float32)
    np.testing.assert_array_equal(_replays(clone, x)[-1], _eager(model, x))


def test_errors_are_the_eager_ones():
    model = _mlp().eval()
    _replays(model, np.ones((2, 6), np.float32))
    with pydl.no_grad(), pytest.raises(ValueError, match="6 features"):
        model(np.ones((2, 5), np.float32))
