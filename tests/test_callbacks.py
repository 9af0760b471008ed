"""Callbacks: EarlyStopping and ReduceLROnPlateau driven by hand-written sequences of monitored
values (the expected stop epoch, best and learning rates are worked out by hand from Keras's rules),
LearningRateScheduler, ModelCheckpoint and CSVLogger files, order and shared logs in a real fit."""

import csv
import math
import warnings

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.train import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler,
                        ModelCheckpoint, ReduceLROnPlateau, Trainer)

NAN = float("nan")
INF = float("inf")


class FakeTrainer:
    """What callbacks use from a Trainer: model, optimizer, stop_training."""

    def __init__(self, lr=1.0):
        self.model = nn.Linear(3, 2)
        self.optimizer = pydl.optim.SGD(self.model.parameters(), lr=lr)
        self.stop_training = False


def drive(cb, values, monitor="val_loss", trainer=None):
    """Run ``cb`` over one value per epoch, the weights filled with the epoch number first.

    Returns (trainer, epochs run). Training stops like Trainer.fit: after the epoch whose end
    set ``stop_training``.
    """
    trainer = trainer or FakeTrainer()
    cb.set_trainer(trainer)
    trainer.stop_training = False
    cb.on_train_begin({})
    ran = 0
    for epoch, value in enumerate(values):
        cb.on_epoch_begin(epoch, {})
        for p in trainer.model.parameters():
            p.data.fill(epoch)
        cb.on_epoch_end(epoch, {"loss": 0.0, monitor: value})
        ran += 1
        if trainer.stop_training:
            break
    cb.on_train_end({})
    return trainer, ran


def weights_epoch(trainer):
    w = trainer.model.weight.data
    assert np.all(w == w.flat[0])
    return int(w.flat[0])


# --- EarlyStopping ---------------------------------------------------------------------------

@pytest.mark.parametrize("values, patience, stopped, best, best_epoch", [
    ([1.0, 0.9, 0.95, 0.8], 0, 2, 0.9, 1),            # patience 0: first non-improvement stops
    ([1.0, 0.9, 0.95, 0.8], 1, 2, 0.9, 1),            # patience 1 behaves like 0 (Keras)
    ([1.0, 0.9, 0.95, 0.92, 0.5], 2, 3, 0.9, 1),      # two epochs in a row without improvement
    ([1.0, 0.9, 0.95, 0.85, 0.9, 0.9, 0.1], 2, 5, 0.85, 3),  # an improvement resets the count
    ([1.0, 0.9, 0.8, 0.7], 0, 0, 0.7, 3),             # always improving: never stops
    ([1.0, 1.0, 1.0], 1, 1, 1.0, 0),                  # equal is not better
])
def test_early_stopping_patience(values, patience, stopped, best, best_epoch):
    cb = EarlyStopping(patience=patience)
    trainer, ran = drive(cb, values)
    assert cb.stopped_epoch == stopped
    assert ran == (stopped + 1 if stopped else len(values))
    assert cb.best == best and cb.best_epoch == best_epoch
    assert weights_epoch(trainer) == best_epoch  # restored (on by default)


def test_early_stopping_min_delta():
    # improvement needs value < best - 0.05: 0.96 is not, 0.94 is, 0.93 and 0.92 are not.
    cb = EarlyStopping(patience=2, min_delta=0.05)
    trainer, ran = drive(cb, [1.0, 0.96, 0.94, 0.93, 0.92, 0.5])
    assert (cb.stopped_epoch, cb.best, cb.best_epoch, ran) == (4, 0.94, 2, 5)
    # a negative min_delta means the same (Keras takes the absolute value)
    cb = EarlyStopping(patience=2, min_delta=-0.05)
    drive(cb, [1.0, 0.96, 0.94, 0.93, 0.92, 0.5])
    assert cb.stopped_epoch == 4
    # without min_delta every epoch improves
    cb = EarlyStopping(patience=2)
    drive(cb, [1.0, 0.96, 0.94, 0.93, 0.92, 0.5])
    assert cb.stopped_epoch == 0 and cb.best == 0.5


def test_early_stopping_mode_max_and_min():
    values = [0.5, 0.6, 0.55, 0.58, 0.9]
    cb = EarlyStopping(monitor="val_accuracy", patience=2)  # auto -> max
    _, ran = drive(cb, values, monitor="val_accuracy")
    assert (cb.stopped_epoch, cb.best, cb.best_epoch, ran) == (3, 0.6, 1, 4)
    cb = EarlyStopping(monitor="val_accuracy", patience=2, mode="min")
    drive(cb, values, monitor="val_accuracy")
    assert (cb.stopped_epoch, cb.best, cb.best_epoch) == (2, 0.5, 0)
    cb = EarlyStopping(monitor="val_loss", patience=2, mode="max")
    drive(cb, values)
    assert (cb.stopped_epoch, cb.best, cb.best_epoch) == (3, 0.6, 1)


@pytest.mark.parametrize("monitor, direction", [
    ("val_loss", "min"), ("loss", "min"), ("val_accuracy", "max"), ("accuracy", "max"),
    ("val_auc", "max"), ("f1_score", "max"), ("val_mse", "min"), ("val_acc", "max")])
def test_early_stopping_auto_mode(monitor, direction):
    assert EarlyStopping(monitor=monitor).direction == direction


def test_early_stopping_baseline():
    # never beats the baseline 0.5: improvements over the best do not reset the wait, so the
    # first epoch without improvement stops (wait 3 >= 2); without a baseline it would not
    cb = EarlyStopping(patience=2, baseline=0.5)
    trainer, ran = drive(cb, [0.9, 0.8, 0.85, 0.7])
    assert (cb.stopped_epoch, cb.best, cb.best_epoch, ran) == (2, 0.8, 1, 3)
    assert weights_epoch(trainer) == 1
    cb = EarlyStopping(patience=2)
    drive(cb, [0.9, 0.8, 0.85, 0.7])
    assert cb.stopped_epoch == 0
    # still improving towards the baseline: no stop (Keras), but the wait keeps counting
    cb = EarlyStopping(patience=2, baseline=0.5)
    drive(cb, [0.9, 0.8, 0.7, 0.6])
    assert cb.stopped_epoch == 0 and cb.wait == 4 and cb.best_epoch == 3
    # beats it at epoch 1, then two epochs without improvement
    cb = EarlyStopping(patience=2, baseline=0.5)
    drive(cb, [0.9, 0.4, 0.45, 0.42, 0.3])
    assert (cb.stopped_epoch, cb.best, cb.best_epoch) == (3, 0.4, 1)
    # max mode
    cb = EarlyStopping(monitor="val_accuracy", patience=1, baseline=0.8)
    drive(cb, [0.5, 0.6, 0.55], monitor="val_accuracy")
    assert cb.stopped_epoch == 2 and cb.best == 0.6


def test_early_stopping_start_from_epoch():
    # epochs 0 and 1 are warm-up: their (lower) values never count
    cb = EarlyStopping(patience=1, start_from_epoch=2)
    trainer, ran = drive(cb, [0.1, 0.05, 1.0, 0.9, 0.95, 0.5])
    assert (cb.stopped_epoch, cb.best, cb.best_epoch, ran) == (4, 0.9, 3, 5)
    assert weights_epoch(trainer) == 3


def test_early_stopping_restores_without_stopping_and_can_be_disabled():
    cb = EarlyStopping(patience=10)
    trainer, ran = drive(cb, [1.0, 0.5, 0.7, 0.8])
    assert cb.stopped_epoch == 0 and ran == 4
    assert weights_epoch(trainer) == 1
    cb = EarlyStopping(patience=10, restore_best_weights=False)
    trainer, _ = drive(cb, [1.0, 0.5, 0.7, 0.8])
    assert weights_epoch(trainer) == 3
    cb = EarlyStopping(patience=1, restore_best_weights=False)
    trainer, _ = drive(cb, [1.0, 0.5, 0.7, 0.8])
    assert cb.stopped_epoch == 2 and weights_epoch(trainer) == 2


def test_early_stopping_is_reusable():
    cb = EarlyStopping(patience=1)
    drive(cb, [1.0, 0.9, 0.95])
    assert (cb.stopped_epoch, cb.best) == (2, 0.9)
    # a second run starts fresh: 2.0 is the new best although it is worse than 0.9
    trainer, ran = drive(cb, [2.0, 2.1, 2.2])
    assert (cb.stopped_epoch, cb.best, cb.best_epoch, ran) == (1, 2.0, 0, 2)
    assert cb.wait == 1 and weights_epoch(trainer) == 0


def test_early_stopping_non_finite_never_improves():
    cb = EarlyStopping(patience=2)
    trainer, ran = drive(cb, [NAN, 1.0, NAN, NAN, 0.5])
    assert (cb.stopped_epoch, cb.best, cb.best_epoch, ran) == (3, 1.0, 1, 4)
    assert weights_epoch(trainer) == 1
    cb = EarlyStopping(patience=0)
    drive(cb, [1.0, NAN])
    assert cb.stopped_epoch == 1 and cb.best == 1.0
    cb = EarlyStopping(monitor="val_accuracy", patience=0)
    drive(cb, [0.5, INF, 0.6], monitor="val_accuracy")
    assert cb.stopped_epoch == 1 and cb.best == 0.5
    cb = EarlyStopping(patience=0)
    drive(cb, [1.0, -INF])
    assert cb.stopped_epoch == 1 and cb.best == 1.0
    # only NaN: nothing improves; the first monitored epoch's weights are the fallback
    cb = EarlyStopping(patience=5)
    trainer, _ = drive(cb, [NAN, NAN, NAN])
    assert cb.best == INF and weights_epoch(trainer) == 0


def test_early_stopping_missing_metric_warns_with_available_keys():
    cb = EarlyStopping(monitor="val_accuracy", patience=0)
    with pytest.warns(RuntimeWarning, match=r"'val_accuracy'.*available: loss, val_loss"):
        trainer, ran = drive(cb, [1.0, 2.0, 3.0])
    assert ran == 3 and cb.stopped_epoch == 0 and not trainer.stop_training
    assert weights_epoch(trainer) == 2  # nothing was recorded, nothing restored


@pytest.mark.parametrize("kwargs, match", [
    (dict(patience=-1), "patience"), (dict(patience=1.5), "patience"),
    (dict(mode="up"), "mode"), (dict(min_delta=NAN), "min_delta"),
    (dict(start_from_epoch=-2), "start_from_epoch"), (dict(baseline="x"), "baseline"),
    (dict(monitor=""), "monitor")])
def test_early_stopping_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


# --- ReduceLROnPlateau -----------------------------------------------------------------------

def lrs_over(cb, values, monitor="val_loss", lr=1.0):
    trainer = FakeTrainer(lr)
    cb.set_trainer(trainer)
    cb.on_train_begin({})
    out = []
    for epoch, value in enumerate(values):
        cb.on_epoch_end(epoch, {monitor: value})
        out.append(trainer.optimizer.lr)
    return out


def test_reduce_lr_on_plateau_patience():
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0)
    assert lrs_over(cb, [1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.8]) == [1, 1, .5, .5, .5, .25, .25]


def test_reduce_lr_on_plateau_cooldown_min_lr_min_delta():
    cb = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_delta=0.0)
    # Keras: the counter resumes in the epoch where the cooldown reaches 0
    assert lrs_over(cb, [1.0] * 6) == [1, .5, .5, .25, .25, .125]
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0)
    assert lrs_over(cb, [1.0] * 6) == [1, .5, .25, .125, .0625, .03125]
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.3, min_delta=0.0)
    assert lrs_over(cb, [1.0] * 4) == [1, .5, .3, .3]
    # default min_delta 1e-4: a gain of 5e-5 is not an improvement
    cb = ReduceLROnPlateau(factor=0.5, patience=1)
    assert lrs_over(cb, [1.0, 1.0 - 5e-5, 0.5]) == [1, .5, .5]
    # max mode for accuracies; NaN never improves
    cb = ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1, min_delta=0.0)
    assert lrs_over(cb, [0.5, 0.6, 0.55, NAN], monitor="val_accuracy") == [1, 1, .5, .25]


def test_reduce_lr_on_plateau_resets_and_warns():
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0)
    lrs_over(cb, [0.1, 0.2])
    assert lrs_over(cb, [5.0, 4.0]) == [1, 1]  # fresh best after on_train_begin
    with pytest.warns(RuntimeWarning, match="'val_loss'.*available: loss"):
        cb.on_epoch_end(0, {"loss": 1.0})
    for kwargs in (dict(factor=1.0), dict(factor=0.0), dict(patience=-1), dict(min_lr=-1),
                   dict(cooldown=0.5), dict(mode="best")):
        with pytest.raises(ValueError):
            ReduceLROnPlateau(**kwargs)


# --- with a real Trainer ---------------------------------------------------------------------

def blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.standard_normal((n, 4)) + 2.0 * np.eye(3, 4)[y]).astype(np.float32)
    return x, y


def make_trainer(lr=0.05, metrics=("accuracy",)):
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    return Trainer(model, pydl.losses.CrossEntropyLoss(),
                   pydl.optim.SGD(model.parameters(), lr=lr, momentum=0.9), metrics=metrics)


class Snapshots(Callback):
    """Keep a copy of the weights at the end of every epoch."""

    def __init__(self):
        self.states = []

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(self.model.state_dict())


def assert_state_equal(model, state):
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)


def test_early_stopping_in_fit_restores_best_epoch_bit_exactly():
    x, y = blobs()
    trainer = make_trainer(lr=0.3)
    snaps = Snapshots()
    stop = EarlyStopping(patience=3)
    history = trainer.fit(x, y, epochs=60, batch_size=16, validation_split=0.25,
                          callbacks=[snaps, stop], verbose=0)
    val = history.history["val_loss"]
    assert stop.stopped_epoch == len(val) - 1 and 0 < stop.stopped_epoch < 59
    assert stop.best_epoch == int(np.argmin(val)) and stop.best == min(val)
    assert len(val) - 1 - stop.best_epoch == 3
    assert_state_equal(trainer.model, snaps.states[stop.best_epoch])
    # reused in a second fit: fresh state, restores that fit's best epoch
    snaps2 = Snapshots()
    history = trainer.fit(x, y, epochs=4, batch_size=16, validation_split=0.25,
                          callbacks=[snaps2, stop], verbose=0)
    val = history.history["val_loss"]
    assert stop.best == min(val) and stop.best_epoch == int(np.argmin(val))
    assert_state_equal(trainer.model, snaps2.states[stop.best_epoch])


def test_learning_rate_scheduler_sets_lr_per_epoch():
    x, y = blobs()
    trainer = make_trainer(lr=0.1)
    seen = []
    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return 0.1 * 0.5 ** epoch

    sched = LearningRateScheduler(schedule)
    history = trainer.fit(x, y, epochs=3, callbacks=[sched], verbose=0)
    assert history.history["lr"] == [0.1, 0.05, 0.025]
    assert seen == [(0, 0.1), (1, 0.1), (2, 0.05)]
    with pytest.raises(ValueError, match="lr"):
        trainer.fit(x, y, epochs=1, callbacks=[LearningRateScheduler(lambda e, lr: NAN)],
                    verbose=0)
    with pytest.raises(TypeError):
        LearningRateScheduler(0.1)


def test_reduce_lr_on_plateau_in_fit_logs_the_lr_used():
    x, y = blobs()
    trainer = make_trainer()
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    history = trainer.fit(x, y, epochs=3, callbacks=[plateau], verbose=0)
    # min_delta 10: only the first epoch improves (on inf); each later epoch halves the lr
    assert history.history["lr"] == [0.05, 0.05, 0.025]
    assert trainer.optimizer.lr == 0.0125


def test_model_checkpoint_saves_improvements(tmp_path):
    x, y = blobs()
    trainer = make_trainer(lr=0.3)
    snaps = Snapshots()
    pattern = str(tmp_path / "ckpt-{epoch:02d}.npz")
    best_path = tmp_path / "best.npz"
    history = trainer.fit(x, y, epochs=12, batch_size=16, validation_split=0.25, verbose=0,
                          callbacks=[snaps, ModelCheckpoint(pattern),
                                     ModelCheckpoint(best_path)])
    val = history.history["val_loss"]
    improving = [e for e in range(len(val)) if val[e] < min(val[:e], default=INF)]
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.npz")) == \
        [f"ckpt-{e + 1:02d}.npz" for e in improving]
    best = int(np.argmin(val))
    assert_state_equal(pydl.load_model(best_path), snaps.states[best])
    assert not list(tmp_path.glob("*.tmp*"))  # atomic writes leave no temporary file


def test_model_checkpoint_every_epoch_and_log_fields(tmp_path):
    x, y = blobs()
    trainer = make_trainer()
    snaps = Snapshots()
    pattern = str(tmp_path / "e{epoch}-acc{accuracy:.2f}.npz")
    history = trainer.fit(x, y, epochs=3, verbose=0,
                          callbacks=[snaps, ModelCheckpoint(pattern, save_best_only=False)])
    names = [f"e{e + 1}-acc{a:.2f}.npz" for e, a in enumerate(history.history["accuracy"])]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert_state_equal(pydl.load_model(tmp_path / names[1]), snaps.states[1])
    with pytest.warns(RuntimeWarning, match="val_loss"):
        trainer.fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "x.npz")])
    assert not (tmp_path / "x.npz").exists()


def test_csv_logger(tmp_path):
    x, y = blobs()
    trainer = make_trainer()
    path = tmp_path / "log.csv"
    history = trainer.fit(x, y, epochs=3, validation_split=0.25, verbose=0,
                          callbacks=[CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    for col, name in enumerate(rows[0][1:], start=1):
        assert [float(r[col]) for r in rows[1:]] == history.history[name]
    # append: no second header; overwrite: starts again; custom separator
    trainer.fit(x, y, epochs=2, validation_split=0.25, verbose=0,
                callbacks=[CSVLogger(path, append=True)])
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("epoch,")
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2", "0", "1"]
    assert lines[5].split(",")[2] == repr(trainer.history.history["loss"][1])
    trainer.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";")])
    assert path.read_text().splitlines() == [
        "epoch;accuracy;loss;lr", f"0;{trainer.history.history['accuracy'][0]!r};"
        f"{trainer.history.history['loss'][0]!r};0.05"]


def test_callbacks_called_in_order_with_shared_logs():
    x, y = blobs(n=40)
    trainer = make_trainer()
    calls = []

    class Adder(Callback):
        def on_epoch_end(self, epoch, logs=None):
            calls.append(("adder", "epoch_end", epoch))
            logs["double_loss"] = 2 * logs["loss"]

        def on_batch_end(self, batch, logs=None):
            logs["seen_by_adder"] = True

    class Watcher(Callback):
        def __init__(self):
            self.logs = []

        def on_train_begin(self, logs=None):
            calls.append(("watcher", "train_begin"))

        def on_epoch_begin(self, epoch, logs=None):
            calls.append(("watcher", "epoch_begin", epoch))

        def on_batch_begin(self, batch, logs=None):
            calls.append(("watcher", "batch_begin", batch, logs["size"]))

        def on_batch_end(self, batch, logs=None):
            assert logs["seen_by_adder"] and math.isfinite(logs["loss"])
            calls.append(("watcher", "batch_end", batch))

        def on_epoch_end(self, epoch, logs=None):
            assert self.trainer is trainer and self.model is trainer.model
            calls.append(("watcher", "epoch_end", epoch, logs["double_loss"] == 2 * logs["loss"]))

        def on_train_end(self, logs=None):
            calls.append(("watcher", "train_end", "double_loss" in logs))

    history = trainer.fit(x, y, epochs=2, batch_size=16, callbacks=[Adder(), Watcher()],
                          verbose=0)
    epoch_calls = lambda e: [("watcher", "epoch_begin", e),  # noqa: E731
                             ("watcher", "batch_begin", 0, 16), ("watcher", "batch_end", 0),
                             ("watcher", "batch_begin", 1, 16), ("watcher", "batch_end", 1),
                             ("watcher", "batch_begin", 2, 8), ("watcher", "batch_end", 2),
                             ("adder", "epoch_end", e), ("watcher", "epoch_end", e, True)]
    assert calls == ([("watcher", "train_begin")] + epoch_calls(0) + epoch_calls(1)
                     + [("watcher", "train_end", True)])
    assert history.history["double_loss"] == [2 * v for v in history.history["loss"]]


def test_stop_training_from_a_callback():
    x, y = blobs(n=40)
    trainer = make_trainer()

    class StopAt(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.trainer.stop_training = True

    history = trainer.fit(x, y, epochs=10, callbacks=[StopAt()], verbose=0)
    assert history.epoch == [0, 1, 2]
    history = trainer.fit(x, y, epochs=2, verbose=0)  # the flag is reset by the next fit
    assert history.epoch == [0, 1]


def test_fit_rejects_non_callbacks():
    x, y = blobs(n=40)
    with pytest.raises(ValueError, match="Callback"):
        make_trainer().fit(x, y, callbacks=[lambda: None], verbose=0)


def test_no_warning_when_monitored_value_present():
    x, y = blobs()
    trainer = make_trainer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(x, y, epochs=2, validation_split=0.2, verbose=0,
                    callbacks=[EarlyStopping(), ReduceLROnPlateau(monitor="val_accuracy")])


def test_learning_rate_callbacks_scale_each_parameter_groups_own_rate():
    # Both callbacks wrote one rate (group 0's, scaled) into every group: a head at 0.1 beside a
    # backbone at 1e-3 fell to 5e-4. Oracle: each group's own rate times the factor (as
    # lr_scheduler.ReduceLROnPlateau and PyTorch do). Found by a review (2026-12-02).
    pydl.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    y = np.arange(20) % 2

    def groups():
        return pydl.optim.SGD([{"params": m[0].parameters(), "lr": 1e-3},
                               {"params": m[2].parameters()}], lr=0.1)

    opt = groups()
    Trainer(m, pydl.losses.CrossEntropyLoss(), opt).fit(
        x, y, epochs=2, verbose=0,
        callbacks=[ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10)])
    assert [g["lr"] for g in opt.param_groups] == [1e-3 * 0.5, 0.1 * 0.5]
    opt = groups()
    Trainer(m, pydl.losses.CrossEntropyLoss(), opt).fit(
        x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: lr * 0.5)])
    assert [g["lr"] for g in opt.param_groups] == [1e-3 * 0.5, 0.1 * 0.5]
