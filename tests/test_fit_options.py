"""Trainer/fit options for Keras and PyTorch habits (pydl.train._fit_args): sample and class
weights, clip_grad_norm and LR scheduler objects against a PyTorch loop (float64), metric names
against scikit-learn, initial_epoch, verbose, predict_proba, the penalty kept out of
loss/val_loss, LambdaCallback, the guards against silent mistakes, and bad input."""

import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
import torch

import pydl
from pydl import nn
from pydl.train import (EarlyStopping, LambdaCallback, LearningRateScheduler, Trainer)


def blobs(n=40, seed=0, d=4, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.standard_normal((n, d)) + 2.0 * np.eye(k, d)[y]
    return x, y


def twin_models(seed=0, d=4, hidden=6, k=3):
    """A float64 pydl MLP and a PyTorch copy with the same weights."""
    pydl.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, k)).double()
    tmodel = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.Tanh(),
                                 torch.nn.Linear(hidden, k)).double()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    return model, tmodel


def torch_fit(tmodel, x, y, w, epochs, batch, lr, clip=None, scheduler=None):
    """The PyTorch loop Keras-style weighted training means: sum(w_i * l_i) / batch size."""
    opt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=0.5)
    sched = scheduler(opt) if scheduler else None
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
    losses, lrs = [], []
    for _ in range(epochs):
        total = 0.0
        lrs.append(opt.param_groups[0]["lr"])
        for lo in range(0, len(x), batch):
            xb, yb = torch.tensor(x[lo:lo + batch]), torch.tensor(y[lo:lo + batch])
            wb = torch.tensor(w[lo:lo + batch])
            opt.zero_grad()
            loss = (loss_fn(tmodel(xb), yb) * wb).mean()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(tmodel.parameters(), clip)
            opt.step()
            total += loss.item() * len(xb)
        losses.append(total / len(x))
        if sched is not None:
            sched.step()
    return losses, lrs


def assert_same_weights(model, tmodel):
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("use_sample,use_class", [(True, False), (False, True), (True, True)])
def test_sample_and_class_weights_match_a_weighted_pytorch_loop(use_sample, use_class):
    x, y = blobs()
    rng = np.random.default_rng(1)
    sw = rng.random(len(x)) * 2 if use_sample else None
    cw = {0: 0.5, 1: 2.0, 2: 1.0} if use_class else None
    w = np.ones(len(x))
    if use_sample:
        w = w * sw
    if use_class:
        w = w * np.array([cw[c] for c in y])
    model, tmodel = twin_models()
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1, momentum=0.5))
    history = trainer.fit(x, y, epochs=3, batch_size=7, shuffle=False, verbose=0,
                          sample_weight=sw, class_weight=cw)
    losses, _ = torch_fit(tmodel, x, y, w, 3, 7, 0.1)
    assert_same_weights(model, tmodel)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-10)


def test_sample_weights_follow_validation_split_and_val_loss_is_unweighted():
    x, y = blobs(50)
    sw = np.linspace(0.1, 3.0, 50)
    model, tmodel = twin_models()
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1, momentum=0.5))
    history = trainer.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                          sample_weight=sw, validation_split=0.2)
    losses, _ = torch_fit(tmodel, x[:40], y[:40], sw[:40], 2, 8, 0.1)
    assert_same_weights(model, tmodel)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-10)
    with torch.no_grad():
        val = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x[40:])),
                                                torch.tensor(y[40:])).item()
    np.testing.assert_allclose(history.history["val_loss"][-1], val, rtol=1e-10)


def test_weighted_regression_and_binary_losses_use_per_sample_means():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 3))
    y = rng.standard_normal(12)  # (N,) targets for a one-output model
    sw = rng.random(12)
    pydl.manual_seed(0)
    model = nn.Linear(3, 1, dtype=np.float64)
    w0, b0 = model.weight.data.copy(), model.bias.data.copy()
    trainer = Trainer(model, pydl.losses.MSELoss(), pydl.optim.SGD(model.parameters(), lr=0.1))
    trainer.fit(x, y, epochs=1, batch_size=12, verbose=0, sample_weight=sw)
    err = x @ w0.T[:, 0] + b0[0] - y  # numpy: one full-batch step on sum(w * err^2) / N
    np.testing.assert_allclose(model.weight.data[0], w0[0] - 0.1 * (2 * sw * err) @ x / 12,
                               rtol=1e-12)
    np.testing.assert_allclose(model.bias.data, b0 - 0.1 * np.sum(2 * sw * err) / 12,
                               rtol=1e-12)


def test_clip_grad_norm_and_scheduler_objects_match_pytorch():
    x, y = blobs()
    model, tmodel = twin_models(seed=3)
    opt = pydl.optim.SGD(model.parameters(), lr=0.5, momentum=0.5)
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(), opt)
    sched = pydl.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    history = trainer.fit(x, y, epochs=5, batch_size=8, shuffle=False, verbose=0,
                          clip_grad_norm=0.3, callbacks=LearningRateScheduler(sched))
    losses, lrs = torch_fit(tmodel, x, y, np.ones(len(x)), 5, 8, 0.5, clip=0.3,
                            scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5))
    assert history.history["lr"] == lrs == [0.5, 0.5, 0.25, 0.25, 0.125]
    assert_same_weights(model, tmodel)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-10)


def test_reduce_lr_on_plateau_object_is_stepped_with_the_monitored_value():
    x, y = blobs()
    model, _ = twin_models()
    opt = pydl.optim.SGD(model.parameters(), lr=0.2)
    plateau = pydl.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5,
                                                        threshold=0.2)
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(), opt)
    history = trainer.fit(x, y, epochs=6, verbose=0, validation_split=0.25,
                          callbacks=[LearningRateScheduler(plateau)])
    # oracle: torch's ReduceLROnPlateau fed the same val_loss sequence
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=1, factor=0.5,
                                                        threshold=0.2)
    lrs = []
    for v in history.history["val_loss"]:
        lrs.append(topt.param_groups[0]["lr"])
        tsched.step(v)
    assert history.history["lr"] == pytest.approx(lrs, rel=1e-15)
    assert min(lrs) < 0.2  # the schedule did reduce
    other = pydl.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="another optimizer"):
        trainer.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(
            pydl.optim.lr_scheduler.StepLR(other, 1))])


# --- metrics --------------------------------------------------------------------------------------

def test_metrics_auto_per_loss():
    model = nn.Sequential(nn.Linear(4, 3))
    opt = pydl.optim.SGD(model.parameters(), lr=0.1)
    assert [n for n, _ in Trainer(model, pydl.losses.CrossEntropyLoss(), opt).metrics] == \
        ["accuracy"]
    assert [n for n, _ in Trainer(model, pydl.losses.BCEWithLogitsLoss(), opt).metrics] == \
        ["accuracy"]
    for loss in (pydl.losses.MSELoss(), pydl.losses.L1Loss(), pydl.losses.HuberLoss(),
                 lambda out, y: (out * 0).sum()):
        assert Trainer(model, loss, opt).metrics == []
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 4)), rng.standard_normal((20, 3))
    logs = Trainer(model, pydl.losses.MSELoss(), opt).fit(x, y, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "lr"}  # no "accuracy: 1.0" for a regression model


def test_named_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, 5))
    y = rng.standard_normal((30, 1))
    model = nn.Sequential(nn.Linear(5, 1))
    trainer = Trainer(model, pydl.losses.MSELoss(), pydl.optim.SGD(model.parameters(), lr=0.0),
                      metrics=["mse", "mae"])
    logs = trainer.evaluate(x, y[:, 0])  # (N,) targets of a one-output model
    out = trainer.predict(x)
    assert logs["mse"] == pytest.approx(skm.mean_squared_error(y, out), rel=1e-6)
    assert logs["mae"] == pytest.approx(skm.mean_absolute_error(y, out), rel=1e-6)
    assert logs["mse"] == pytest.approx(logs["loss"], rel=1e-6)
    yb = (rng.random((30, 2)) > 0.5).astype(np.float64)
    model = nn.Sequential(nn.Linear(5, 2))
    trainer = Trainer(model, pydl.losses.BCEWithLogitsLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.0), metrics=["binary_accuracy"])
    logs = trainer.evaluate(x, yb)
    pred = (trainer.predict_proba(x) > 0.5).astype(np.float64)
    assert logs["binary_accuracy"] == pytest.approx(
        skm.accuracy_score(yb.ravel(), pred.ravel()), abs=1e-12)


def test_predict_proba_is_softmax_or_sigmoid():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 4))
    model, tmodel = twin_models()
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1))
    with torch.no_grad():
        expected = torch.softmax(tmodel(torch.tensor(x)), dim=1).numpy()
    np.testing.assert_allclose(trainer.predict_proba(x), expected, rtol=1e-12)
    trainer = Trainer(model, pydl.losses.BCEWithLogitsLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1))
    with torch.no_grad():
        expected = torch.sigmoid(tmodel(torch.tensor(x))).numpy()
    np.testing.assert_allclose(trainer.predict_proba(x), expected, rtol=1e-12)
    trainer = Trainer(model, pydl.losses.MSELoss(), pydl.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="predict_proba.*MSELoss"):
        trainer.predict_proba(x)


# --- epochs, verbosity, logs ------------------------------------------------------------------

def test_initial_epoch_resumes_with_keras_numbering():
    x, y = blobs()
    model, _ = twin_models()
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1))
    seen = []
    history = trainer.fit(x, y, epochs=5, initial_epoch=3, verbose=0,
                          callbacks=[LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e))])
    assert history.epoch == [3, 4] and seen == [3, 4] and len(history.history["loss"]) == 2
    before = model.state_dict()
    assert trainer.fit(x, y, epochs=2, initial_epoch=2, verbose=0).epoch == []
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("verbose,out_lines,bar", [(False, 0, False), (0, 0, False),
                                                   (True, 0, True), ("auto", 0, True),
                                                   (2, 2, False)])
def test_verbose_takes_keras_values(verbose, out_lines, bar, capsys):
    x, y = blobs()
    model, _ = twin_models()
    Trainer(model, pydl.losses.CrossEntropyLoss(),
            pydl.optim.SGD(model.parameters(), lr=0.1)).fit(x, y, epochs=2, verbose=verbose)
    captured = capsys.readouterr()
    assert len([line for line in captured.out.splitlines() if "Epoch" in line]) == out_lines
    assert ("Epoch 1/2" in captured.err) == bar


def test_penalty_is_logged_apart_and_early_stopping_monitors_the_data_loss():
    x, y = blobs(60)
    model, _ = twin_models()
    reg = pydl.regularizers.L2(0.5)  # a large penalty that would dominate a mixed val_loss
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.05), regularizer=reg)
    stop = EarlyStopping(patience=100, restore_best_weights=False)
    history = trainer.fit(x, y, epochs=3, validation_split=0.25, verbose=0, callbacks=stop)
    h = history.history
    assert len(h["penalty"]) == 3
    assert h["penalty"][-1] == pytest.approx(reg.penalty(model), rel=1e-12)
    xv, yv = x[45:], y[45:]
    with pydl.no_grad():
        data_loss = pydl.losses.CrossEntropyLoss()(model.eval()(xv), yv).item()
    assert h["val_loss"][-1] == pytest.approx(data_loss, rel=1e-12)
    assert stop.best == min(h["val_loss"])
    logs = trainer.evaluate(xv, yv)
    assert logs["loss"] == pytest.approx(data_loss, rel=1e-12) and "penalty" in logs


def test_lambda_callback_hooks_run_in_order():
    x, y = blobs(10)
    model, _ = twin_models()
    events = []
    cb = LambdaCallback(on_train_begin=lambda logs: events.append("train_begin"),
                        on_epoch_begin=lambda e, logs: events.append(f"epoch_begin {e}"),
                        on_batch_end=lambda b, logs: events.append(f"batch_end {b}"),
                        on_epoch_end=lambda e, logs: events.append(f"epoch_end {e} "
                                                                   f"{sorted(logs)}"),
                        on_train_end=lambda logs: events.append("train_end"))
    Trainer(model, pydl.losses.CrossEntropyLoss(), pydl.optim.SGD(model.parameters(), lr=0.1)) \
        .fit(x, y, epochs=1, batch_size=5, verbose=0, callbacks=[cb])
    assert events == ["train_begin", "epoch_begin 0", "batch_end 0", "batch_end 1",
                      "epoch_end 0 ['accuracy', 'loss', 'lr']", "train_end"]
    with pytest.raises(TypeError, match="on_epoch_end must be callable"):
        LambdaCallback(on_epoch_end=3)


# --- guards against silent mistakes ------------------------------------------------------------

def test_softmax_or_sigmoid_output_layer_with_a_logits_loss_warns():
    for last, loss in ((nn.Softmax(), pydl.losses.CrossEntropyLoss()),
                       (nn.Sigmoid(), pydl.losses.BCEWithLogitsLoss())):
        model = nn.Sequential(nn.Linear(4, 3), last)
        with pytest.warns(UserWarning, match="applied twice"):
            Trainer(model, loss, pydl.optim.SGD(model.parameters(), lr=0.1))
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sigmoid output with MSE is fine
        Trainer(model, pydl.losses.MSELoss(), pydl.optim.SGD(model.parameters(), lr=0.1))


def test_loss_class_instead_of_instance_is_a_type_error():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(TypeError, match=r"class CrossEntropyLoss.*CrossEntropyLoss\(\)"):
        Trainer(model, pydl.losses.CrossEntropyLoss, pydl.optim.SGD(model.parameters(), lr=0.1))


def test_optimizer_that_misses_trainable_parameters_is_an_error_and_changes_nothing():
    x, y = blobs()
    model, _ = twin_models()
    other, _ = twin_models(seed=1)
    before = model.state_dict()
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"does not hold 4 of the model's trainable.*0\.weight"):
        trainer.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())
    # an optimizer over the trainable part only is fine (frozen layers need no optimizer)
    model[0].freeze()
    Trainer(model, pydl.losses.CrossEntropyLoss(),
            pydl.optim.SGD(model[2].parameters(), lr=0.1)).fit(x, y, epochs=1, verbose=0)


def test_a_single_callback_is_accepted_and_a_class_is_rejected():
    x, y = blobs()
    model, _ = twin_models()
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1))
    stop = EarlyStopping(monitor="loss", patience=0, min_delta=100.0)
    history = trainer.fit(x, y, epochs=5, verbose=0, callbacks=stop)
    assert history.epoch == [0, 1] and stop.stopped_epoch == 1
    with pytest.raises(ValueError, match=r"class EarlyStopping.*EarlyStopping\(\)"):
        trainer.fit(x, y, epochs=1, verbose=0, callbacks=[EarlyStopping])


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(class_weight={0: 1.0, 7: 2.0}), r"class_weight has key\(s\) \[7\].*labels present"),
    (dict(class_weight={"a": 1.0}), r"class_weight has key\(s\) \['a'\]"),
    (dict(class_weight={0: -1.0}), r"class_weight\[0\] = -1.0.*>= 0"),
    (dict(class_weight={0: float("nan")}), r"class_weight\[0\]"),
    (dict(class_weight=[1.0, 2.0]), "class_weight must be a dict"),
    (dict(sample_weight=-np.ones(40)), r"sample_weight\[0\] = -1.0.*finite and >= 0"),
    (dict(sample_weight=np.r_[np.ones(39), np.nan]), r"sample_weight\[39\] = nan"),
    (dict(sample_weight=np.ones(39)), r"sample_weight has shape \(39,\).*40 samples"),
    (dict(sample_weight=np.array(["a"] * 40)), "sample_weight must be numbers"),
    (dict(clip_grad_norm=0.0), "clip_grad_norm must be None or a finite number > 0"),
    (dict(clip_grad_norm=-1.0), "clip_grad_norm"),
    (dict(clip_grad_norm="big"), "clip_grad_norm"),
    (dict(initial_epoch=-1), "initial_epoch must be >= 0"),
    (dict(verbose="loud"), "verbose must be 0, 1, 2, True, False or 'auto'"),
    (dict(callbacks=3), "callbacks must be a list"),
])
def test_bad_fit_arguments_name_the_argument_and_change_nothing(kwargs, match):
    x, y = blobs()
    model, _ = twin_models()
    before = model.state_dict()
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=match):
        trainer.fit(x, y, **{"epochs": 1, "verbose": 0, **kwargs})
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())


def test_unknown_metric_names_list_the_known_ones():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"unknown metric 'f1'.*'accuracy'.*'mae'"):
        Trainer(model, pydl.losses.CrossEntropyLoss(), pydl.optim.SGD(model.parameters(), lr=1),
                metrics=["f1"])


def test_weights_with_a_custom_loss_callable_explain_the_fix():
    x, y = blobs()
    model, _ = twin_models()
    trainer = Trainer(model, lambda out, t: pydl.functional.cross_entropy(out, t),
                      pydl.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="need a pydl.losses loss"):
        trainer.fit(x, y, epochs=1, verbose=0, sample_weight=np.ones(len(x)))


def test_adam_l2_early_stopping_recipe_matches_pytorch_step_for_step():
    """The learning-quality recipe with shared randomness (same init, no dropout, no shuffle):
    pydl's Adam + L2 regularizer + val_loss (data loss) equal a PyTorch loop's."""
    x, y = blobs(60, seed=4)
    model, tmodel = twin_models(seed=2)
    wd = 1e-3
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.Adam(model.parameters(), lr=1e-2),
                      regularizer=pydl.regularizers.L2(wd))
    history = trainer.fit(x[:45], y[:45], epochs=8, batch_size=8, shuffle=False, verbose=0,
                          validation_data=(x[45:], y[45:]))
    opt = torch.optim.Adam(tmodel.parameters(), lr=1e-2)
    weights = [p for name, p in tmodel.named_parameters() if name.endswith("weight")]
    xt, yt = torch.tensor(x), torch.tensor(y)
    val = []
    for _ in range(8):
        for lo in range(0, 45, 8):
            hi = min(lo + 8, 45)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tmodel(xt[lo:hi]), yt[lo:hi]) + \
                wd * sum((w * w).sum() for w in weights)
            loss.backward()
            opt.step()
        with torch.no_grad():
            val.append(torch.nn.functional.cross_entropy(tmodel(xt[45:]), yt[45:]).item())
    np.testing.assert_allclose(history.history["val_loss"], val, rtol=1e-9)
    assert_same_weights(model, tmodel)
