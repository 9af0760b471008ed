"""Trainer: argument checks, the training step against a numpy oracle, batching, shuffling and
validation splits, modes, NaN/Inf handling, reproducibility across thread counts, output."""

import math

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.train import Callback, History, NonFiniteLossError, Trainer


def blobs(n=96, seed=0, d=4, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = (rng.standard_normal((n, d)) + 2.0 * np.eye(k, d)[y]).astype(np.float32)
    return x, y


def classifier(seed=0, d=4, hidden=16, k=3, dropout=0.0):
    pydl.manual_seed(seed)
    layers = [nn.Linear(d, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(hidden, k))


def make_trainer(model=None, lr=0.05, **kwargs):
    model = model or classifier()
    return Trainer(model, pydl.losses.CrossEntropyLoss(),
                   pydl.optim.SGD(model.parameters(), lr=lr, momentum=0.9), **kwargs)


class Recorder(nn.Module):
    """Wrap a model and record (training flag, input batch) for every call."""

    replayable = False  # a side effect in forward: the engine must run it for every batch

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, np.array(x.data)))
        return self.inner(x)


# --- argument checks -------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(batch_size=-3), "batch_size"),
    (dict(batch_size=2.0), "batch_size must be an int"),
    (dict(epochs=-1), "epochs must be >= 0"),
    (dict(epochs=2.5), "epochs must be an int"),
    (dict(epochs="3"), "epochs must be an int"),
    (dict(epochs=True), "epochs must be an int"),
    (dict(validation_split=-0.1), "validation_split"),
    (dict(validation_split=1.0), "validation_split"),
    (dict(validation_split=1.5), "validation_split"),
    (dict(validation_split=float("nan")), "validation_split"),
    (dict(validation_split="a"), "validation_split"),
    (dict(validation_split=1e-17), "leaves 10 for training and 0 for validation"),
    (dict(validation_split=0.95), "leaves 0 for training and 10 for validation"),
    (dict(verbose=3), "verbose"),
    (dict(validation_data=(np.zeros((3, 4)),)), "validation_data"),
    (dict(validation_data=(np.zeros((3, 4)), np.zeros(2, int))),
     "validation x has 3 samples but validation y has 2"),
])
def test_fit_rejects_bad_arguments(kwargs, match):
    x, y = blobs(n=10)
    trainer = make_trainer()
    before = trainer.model.state_dict()
    with pytest.raises(ValueError, match=match):
        trainer.fit(x, y, **{"verbose": 0, **kwargs})
    for name, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_fit_rejects_mismatched_and_empty_data():
    x, y = blobs(n=10)
    trainer = make_trainer()
    with pytest.raises(ValueError, match="x has 10 samples but y has 9"):
        trainer.fit(x, y[:9], verbose=0)
    with pytest.raises(ValueError, match="x has 9 samples but y has 10"):
        trainer.fit(x[:9], y, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        trainer.fit(x[:0], y[:0], verbose=0)
    with pytest.raises(ValueError, match="x has 10 samples but y has 9"):
        trainer.evaluate(x, y[:9])
    with pytest.raises(ValueError, match="batch_size"):
        trainer.predict(x, batch_size=0)
    with pytest.raises(ValueError, match="unknown metric"):
        make_trainer(metrics=("precision",))
    with pytest.raises(ValueError, match="reserved"):
        make_trainer(metrics=(lambda a, b: 0.0, "accuracy", lambda a, b: 1.0))


def test_epochs_zero_trains_nothing():
    x, y = blobs(n=10)
    trainer = make_trainer()
    before = trainer.model.state_dict()
    history = trainer.fit(x, y, epochs=0, verbose=0)
    assert history.epoch == [] and history.history == {}
    for name, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


# --- the training step -----------------------------------------------------------------------

def test_steps_match_numpy_sgd_with_l2_penalty():
    """Linear regression with MSE, L2(wd) on the weight, plain SGD, no shuffle, 2 batches."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 3))
    y = rng.standard_normal((10, 2))
    pydl.manual_seed(0)
    model = nn.Linear(3, 2, dtype=np.float64)
    w, b = model.weight.data.copy(), model.bias.data.copy()
    lr, wd = 0.1, 0.05
    trainer = Trainer(model, pydl.losses.MSELoss(), pydl.optim.SGD(model.parameters(), lr=lr),
                      regularizer=pydl.regularizers.L2(wd), metrics=())
    history = trainer.fit(x, y, epochs=2, batch_size=6, shuffle=False, verbose=0)
    losses, penalties = [], []
    for _ in range(2):
        total = 0.0
        for sl in (slice(0, 6), slice(6, 10)):
            xb, yb = x[sl], y[sl]
            err = xb @ w.T + b - yb
            total += np.mean(err ** 2) * len(xb)  # logged: the data loss alone
            g = 2 * err / err.size
            w = w - lr * (g.T @ xb + 2 * wd * w)  # the penalty's gradient, on the weight only
            b = b - lr * g.sum(axis=0)
        losses.append(total / 10)
        penalties.append(wd * np.sum(w ** 2))  # logged separately, after the epoch
    np.testing.assert_allclose(model.weight.data, w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.bias.data, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-12)
    np.testing.assert_allclose(history.history["penalty"], penalties, rtol=1e-12)
    # evaluate: data loss, penalty apart (unlike Keras)
    scores = trainer.evaluate(x, y)
    np.testing.assert_allclose(scores["loss"], np.mean((x @ w.T + b - y) ** 2), rtol=1e-12)
    np.testing.assert_allclose(scores["penalty"], penalties[-1], rtol=1e-12)
    assert history.history["lr"] == [lr, lr] and history.epoch == [0, 1]


def test_every_sample_used_once_per_epoch_in_shuffled_batches():
    n, bs = 23, 5
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    y = np.arange(n) % 3
    model = Recorder(classifier())
    trainer = make_trainer(model)
    pydl.manual_seed(7)
    expected = [pydl.random.shuffle_generator().permutation(n) for _ in range(2)]
    pydl.manual_seed(7)
    trainer.fit(x, y, epochs=2, batch_size=bs, verbose=0)
    train_calls = [c for t, c in model.calls if t]
    assert [len(c) for c in train_calls] == [5, 5, 5, 5, 3] * 2  # the partial batch is used
    for epoch in range(2):
        seen = np.concatenate(train_calls[5 * epoch:5 * epoch + 5])[:, 0].astype(int)
        np.testing.assert_array_equal(seen, expected[epoch])
    model.calls.clear()
    trainer.fit(x, y, epochs=1, batch_size=bs, shuffle=False, verbose=0)
    # (fit also runs the model once in eval mode on x[:1] to check the inputs up front)
    seen = np.concatenate([c for t, c in model.calls if t])[:, 0]
    np.testing.assert_array_equal(seen, np.arange(n))


def test_validation_split_holds_out_the_last_fraction_in_eval_mode():
    n = 20
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    y = np.arange(n) % 3
    model = Recorder(classifier(dropout=0.5))
    trainer = make_trainer(model)
    model.eval()
    history = trainer.fit(x, y, epochs=2, batch_size=4, validation_split=0.25, verbose=0)
    assert model.training is False  # the mode before fit is restored
    train_rows = {int(v) for t, c in model.calls if t for v in c[:, 0]}
    val_rows = [c[:, 0].astype(int).tolist() for t, c in model.calls if not t]
    assert train_rows == set(range(15))
    # Before training, fit runs the model once in eval mode on the first training and the first
    # validation sample (the up-front input check); then each epoch validates on all five.
    assert val_rows == [[0], [15]] + [[15, 16, 17, 18, 19]] * 2
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    # validation_data wins over validation_split; all of x trains
    model.calls.clear()
    xv = np.full((3, 4), 100.0, np.float32)
    trainer.fit(x, y, epochs=1, validation_split=0.5, validation_data=(xv, np.zeros(3, int)),
                verbose=0)
    assert {int(v) for t, c in model.calls if t for v in c[:, 0]} == set(range(n))
    assert [c[:, 0].tolist() for t, c in model.calls if not t] == [[0.0], [100.0], [100.0] * 3]


def test_validation_scores_equal_evaluate_after_the_epoch():
    x, y = blobs()
    trainer = make_trainer(regularizer=pydl.regularizers.L2(1e-3))
    history = trainer.fit(x[:70], y[:70], epochs=2, validation_data=(x[70:], y[70:]), verbose=0)
    scores = trainer.evaluate(x[70:], y[70:])
    assert history.history["val_loss"][-1] == scores["loss"]
    assert history.history["val_accuracy"][-1] == scores["accuracy"]


# --- evaluate / predict ----------------------------------------------------------------------

def test_evaluate_and_predict_batching_match_a_full_batch_numpy_pass():
    x, y = blobs(n=101)
    model = classifier(dropout=0.5)
    trainer = make_trainer(model)
    logits = trainer.predict(x, batch_size=1000)
    for bs in (1, 7, 100):
        np.testing.assert_allclose(trainer.predict(x, batch_size=bs), logits, rtol=1e-6,
                                   atol=1e-6)
    assert model.training  # predict switched to eval for the call only
    # numpy oracle of the eval-mode forward pass (dropout is the identity)
    w0, b0, w1, b1 = (p.data.astype(np.float64) for p in model.parameters())
    want = np.maximum(x @ w0.T + b0, 0) @ w1.T + b1
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    shifted = want - want.max(axis=1, keepdims=True)
    ce = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y])
    for bs in (7, 256):
        scores = trainer.evaluate(x, y, batch_size=bs)
        assert set(scores) == {"loss", "accuracy"}
        np.testing.assert_allclose(scores["loss"], ce, rtol=1e-5)
        assert scores["accuracy"] == np.mean(want.argmax(axis=1) == y)


def test_accuracy_for_binary_logits_and_callable_metrics():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)[:, None]
    pydl.manual_seed(0)
    model = nn.Linear(2, 1)

    def mean_abs_logit(y_true, y_pred):
        return float(np.mean(np.abs(y_pred)))

    trainer = Trainer(model, pydl.losses.BCEWithLogitsLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1),
                      metrics=("accuracy", mean_abs_logit))
    logits = trainer.predict(x)
    scores = trainer.evaluate(x, y)
    assert scores["accuracy"] == np.mean((logits[:, 0] > 0) == (y[:, 0] == 1))
    assert scores["mean_abs_logit"] == pytest.approx(np.mean(np.abs(logits)))
    history = trainer.fit(x, y, epochs=2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "mean_abs_logit", "lr"}
    assert pydl.train.accuracy(np.array([0, 1, 1]), np.array([-1.0, 2.0, -0.5])) == 2 / 3
    assert pydl.train.accuracy(np.eye(3)[[0, 2, 1]], np.eye(3)[[0, 2, 2]]) == 2 / 3


def test_accuracy_metric_matches_scikit_learn_and_keeps_its_target_checks():
    # The metric compares integer labels directly (no per-epoch target checks); scikit-learn's
    # accuracy_score is the oracle, to the bit, for multiclass, one-hot and binary targets.
    sk_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    for n in (1, 7, 1000):
        logits = rng.standard_normal((n, 5))
        labels = rng.integers(0, 5, n)
        want = sk_metrics.accuracy_score(labels, logits.argmax(axis=1))
        assert pydl.train.accuracy(labels, logits) == want
        assert pydl.train.accuracy(labels.astype(np.int32), logits) == want
        assert pydl.train.accuracy(np.eye(5)[labels], logits) == want
        binary = rng.standard_normal((n, 1))
        y01 = rng.integers(0, 2, n)
        assert pydl.train.accuracy(y01, binary) == sk_metrics.accuracy_score(
            y01, (binary[:, 0] > 0).astype(int))
    with pytest.raises(ValueError, match="continuous"):
        pydl.train.accuracy(np.array([0.5, 1.5, 2.0]), rng.standard_normal((3, 3)))


def test_training_metrics_use_the_train_mode_outputs_of_the_epoch():
    x, y = blobs(n=30)
    seen = []

    def count(y_true, y_pred):
        seen.append((np.array(y_true), np.array(y_pred)))
        return 0.0

    model = Recorder(classifier())
    trainer = make_trainer(model, metrics=(count,))
    trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)
    y_true, y_pred = seen[0]
    train_inputs = np.concatenate([c for t, c in model.calls if t])
    order = [int(np.flatnonzero((x == row).all(axis=1))[0]) for row in train_inputs]
    np.testing.assert_array_equal(y_true, y[order])  # labels in the shuffled order seen
    assert y_pred.shape == (30, 3)


# --- NaN / Inf -------------------------------------------------------------------------------

class NanAt:
    """CrossEntropyLoss that returns NaN (or inf) at the k-th call."""

    def __init__(self, k, value=float("nan")):
        self.k, self.value, self.calls = k, value, 0
        self.inner = pydl.losses.CrossEntropyLoss()

    def __call__(self, pred, target):
        self.calls += 1
        loss = self.inner(pred, target)
        return loss * self.value if self.calls == self.k else loss


class StepSnapshots(Callback):
    def __init__(self):
        self.states = []

    def on_batch_end(self, batch, logs=None):
        self.states.append(self.model.state_dict())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_with_last_good_weights_and_history(bad):
    x, y = blobs(n=40)
    model = classifier(dropout=0.2)
    loss = NanAt(k=11, value=bad)  # 4 batches per epoch: the 3rd batch of epoch 2
    trainer = Trainer(model, loss, pydl.optim.Adam(model.parameters(), lr=0.01),
                      regularizer=pydl.regularizers.L2(1e-3))
    snaps = StepSnapshots()
    stop = pydl.train.EarlyStopping(monitor="loss", patience=10)
    with pytest.raises(NonFiniteLossError, match=r"became (nan|inf) at epoch 2 .*batch 2") as err:
        trainer.fit(x, y, epochs=5, batch_size=10, callbacks=[snaps, stop], verbose=0)
    assert isinstance(err.value, RuntimeError)
    assert (err.value.epoch, err.value.batch) == (2, 2)
    assert err.value.history is trainer.history and trainer.history.epoch == [0, 1]
    assert len(trainer.history.history["loss"]) == 2
    assert all(math.isfinite(v) for v in trainer.history.history["loss"])
    assert len(snaps.states) == 10  # the bad step is not counted as a batch
    for name, value in model.state_dict().items():  # last good step, not the best epoch
        np.testing.assert_array_equal(value, snaps.states[-1][name], err_msg=name)
    assert model.training  # mode restored


def test_poisoned_data_raises_before_any_update():
    x, y = blobs(n=16)
    x[3, 1] = np.inf
    trainer = make_trainer()
    before = trainer.model.state_dict()
    with pytest.raises(NonFiniteLossError, match="epoch 0 .*batch 0"):
        trainer.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for name, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


# --- reproducibility -------------------------------------------------------------------------

def run_seeded(seed, threads):
    previous = pydl.get_num_threads()
    pydl.set_num_threads(threads)
    try:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((600, 64)).astype(np.float32)
        y = (x[:, :10].argmax(axis=1)).astype(np.int64)
        pydl.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.3),
                              nn.Linear(256, 10))
        trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                          pydl.optim.Adam(model.parameters(), lr=1e-3),
                          regularizer=pydl.regularizers.L2(1e-4))
        history = trainer.fit(x, y, epochs=3, batch_size=128, validation_split=0.2, verbose=0)
        return history.history, model.state_dict()
    finally:
        pydl.set_num_threads(previous)


def test_same_seed_same_history_for_one_and_two_threads():
    h1, w1 = run_seeded(5, 1)
    h2, w2 = run_seeded(5, 2)
    assert h1 == h2  # bit for bit (float equality of every logged value)
    for name in w1:
        np.testing.assert_array_equal(w1[name], w2[name])
    h3, _ = run_seeded(6, 2)
    assert h3["loss"] != h1["loss"]  # the seed matters


# --- output ----------------------------------------------------------------------------------

def test_verbose_zero_prints_nothing(capsys):
    x, y = blobs(n=40)
    trainer = make_trainer()
    trainer.fit(x, y, epochs=2, validation_split=0.2, verbose=0,
                callbacks=[pydl.train.EarlyStopping()])
    trainer.evaluate(x, y)
    trainer.predict(x)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_verbose_two_prints_one_line_per_epoch_and_one_shows_a_bar(capsys):
    x, y = blobs(n=40)
    trainer = make_trainer()
    history = trainer.fit(x, y, epochs=3, validation_split=0.2, verbose=2)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3 and err == ""
    assert lines[1].startswith("Epoch 2/3") and f"val_loss: " \
        f"{history.history['val_loss'][1]:.4f}" in lines[1]
    trainer.fit(x, y, epochs=2, verbose=1)
    out, err = capsys.readouterr()
    assert out == "" and "Epoch 1/2" in err and "Epoch 2/2" in err and "loss" in err


def test_history_plot(tmp_path, monkeypatch):
    import matplotlib  # noqa: F401  (an oracle of the test extra)
    x, y = blobs(n=40)
    history = make_trainer().fit(x, y, epochs=3, validation_split=0.2, verbose=0)
    path = tmp_path / "curves.png"
    fig = history.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [3, 3]
    fig = history.plot(metrics=["accuracy"])
    np.testing.assert_array_equal(fig.axes[0].lines[1].get_ydata(),
                                  history.history["val_accuracy"])
    with pytest.raises(ValueError, match="'f1' was not recorded"):
        history.plot(metrics=["f1"])
    with pytest.raises(ValueError, match="nothing to plot"):
        History().plot()
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "pydl\[plot\]"'):
        history.plot()


# --- inputs checked up front (issue 15, items 6, 7 and 10) --------------------------------------

def weights(model):
    return [p.data.copy() for p in model.parameters()]


def assert_weights(model, before):
    for p, w in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, w)


@pytest.mark.parametrize("make_val, error, match", [
    (lambda x, y: (x[:, :3], y), ValueError, r"validation x of shape \(20, 3\) does not fit"),
    (lambda x, y: (x, np.where(np.arange(20) == 13, 3, y)), ValueError,
     r"validation y\[13\] = 3 is not a class label.*\[0, 3\)"),
    (lambda x, y: (x, y.astype(np.float64)), TypeError, "validation y must hold integer"),
    (lambda x, y: (x, y[:, None]), ValueError, r"shape \(20, 1\); pass validation y.ravel"),
])
def test_bad_validation_data_fails_before_the_first_update(make_val, error, match):
    x, y = blobs()
    trainer = make_trainer()
    before = weights(trainer.model)
    with pytest.raises(error, match=match):
        trainer.fit(x, y, epochs=2, validation_data=make_val(x[:20], y[:20]), verbose=0)
    assert_weights(trainer.model, before)
    assert trainer.optimizer.state == {}


@pytest.mark.parametrize("fast", [True, False])
def test_a_bad_training_label_is_named_by_its_index_in_y(fast):
    x, y = blobs()
    y = y.copy()
    y[5] = 7
    model = classifier() if fast else Recorder(classifier())  # Recorder: the graph path
    trainer = make_trainer(model)
    before = weights(trainer.model)
    with pytest.raises(ValueError, match=r"fit: y\[5\] = 7 is not a class label of this model: "
                                         r"its 3 outputs take labels in \[0, 3\)"):
        trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert_weights(trainer.model, before)
    with pytest.raises(ValueError, match=r"evaluate: y\[5\] = 7"):
        trainer.evaluate(x, y)


def test_label_messages_print_uint64_and_shape_problems_plainly():
    x, y = blobs()
    trainer = make_trainer()
    big = y.astype(np.uint64)
    big[9] = 2 ** 63
    with pytest.raises(ValueError, match=r"y\[9\] = 9223372036854775808 is not"):
        trainer.fit(x, big, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"shape \(96,\) for CrossEntropyLoss, got shape \(96, 1\)"
                                         r"; pass y.ravel\(\)"):
        trainer.fit(x, y[:, None], epochs=1, batch_size=32, verbose=0)
    with pytest.raises(TypeError, match="y must hold integer class labels.*float32"):
        trainer.fit(x, y.astype(np.float32), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"x of shape \(96, 5\) does not fit the model"):
        trainer.fit(np.ones((96, 5), np.float32), y, epochs=1, verbose=0)


def test_predict_on_zero_samples_gives_zero_rows_of_outputs():
    trainer = make_trainer()
    out = trainer.predict(np.zeros((0, 4), np.float32))
    assert out.shape == (0, 3) and out.dtype == np.float32
    with pytest.raises(ValueError, match=r"predict: x of shape \(0, 3\) does not fit the model.*"
                                         r"4 features"):
        trainer.predict(np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match=r"predict: x of shape \(2, 3\) does not fit"):
        trainer.predict(np.zeros((2, 3), np.float32))


def test_a_callback_may_evaluate_during_fit_in_the_same_thread():
    x, y = blobs()
    trainer = make_trainer()
    scores = []

    class Evaluate(Callback):
        def on_epoch_end(self, epoch, logs=None):
            scores.append(self.trainer.evaluate(x, y)["loss"])

    trainer.fit(x, y, epochs=2, callbacks=[Evaluate()], verbose=0)
    assert len(scores) == 2


def test_trainer_pickles_and_the_copy_trains():
    # The Trainer holds a lock against use from two threads; a pickled copy gets its own.
    import pickle
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1))
    copy = pickle.loads(pickle.dumps(trainer))
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    y = np.arange(8) % 3
    copy.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(model[0].weight.data, trainer.model[0].weight.data)
    assert not np.array_equal(copy.model[0].weight.data, model[0].weight.data)


def test_predict_evaluate_and_fit_keep_a_frozen_batch_norm_in_eval_mode():
    # Fine-tuning with a batch norm's statistics frozen (bn.eval()): predict / evaluate restored
    # only the model's flag (model.train(True) put the batch norm back in training), and every
    # epoch of fit did the same. Found by a review (2026-12-02).
    pydl.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    m.train()
    m[1].eval()
    stats = m[1].running_mean.copy(), m[1].running_var.copy()
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    y = np.arange(16) % 2
    tr = Trainer(m, pydl.losses.CrossEntropyLoss(), pydl.optim.SGD(m.parameters(), lr=0.1))
    tr.predict(x)
    assert [layer.training for layer in m] == [True, False, True]
    tr.evaluate(x, y)
    assert [layer.training for layer in m] == [True, False, True]
    tr.fit(x, y, epochs=2, batch_size=4, verbose=0, validation_split=0.25)
    assert [layer.training for layer in m] == [True, False, True]
    assert m[1].running_mean.tobytes() == stats[0].tobytes()  # never updated by training
    assert m[1].running_var.tobytes() == stats[1].tobytes()
    m.eval()  # a model in eval mode is trained in training mode, then left in eval mode
    tr.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert [layer.training for layer in m] == [False, False, False]
    assert m[1].running_mean.tobytes() != stats[0].tobytes()
