"""pydl.losses: the loss objects give PyTorch's values (numpy closed forms, and torch if present)."""

import numpy as np
import pytest

import pydl
from pydl import losses
from pydl.testing import gradcheck


def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def reduce(per, reduction):
    return per.mean() if reduction == "mean" else per.sum()


def closed_form(name, pred, target, reduction):
    if name == "CrossEntropyLoss":
        return reduce(-np_log_softmax(pred)[np.arange(len(target)), target], reduction)
    if name == "BCEWithLogitsLoss":
        x, t = pred, target
        return reduce(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))), reduction)
    d = pred - target
    if name == "MSELoss":
        return reduce(d * d, reduction)
    if name == "L1Loss":
        return reduce(np.abs(d), reduction)
    ad = np.abs(d)  # HuberLoss, delta = 1
    return reduce(np.where(ad <= 1.0, 0.5 * d * d, ad - 0.5), reduction)


NAMES = ["CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss", "HuberLoss"]


def make_case(name, rng):
    pred = rng.standard_normal((6, 4))
    if name == "CrossEntropyLoss":
        return pred, rng.integers(0, 4, 6)
    if name == "BCEWithLogitsLoss":
        return pred, (rng.random((6, 4)) > 0.5).astype(np.float64)
    # differences of 0.1..1.5 in magnitude, clear of the kinks at 0 and at delta = 1
    sign = rng.choice([-1.0, 1.0], (6, 4))
    return pred, pred - sign * rng.choice([0.1, 0.5, 1.5], (6, 4))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_objects_closed_form_and_gradcheck(name, reduction, rng):
    pred, target = make_case(name, rng)
    loss_fn = getattr(losses, name)(reduction=reduction)
    p = pydl.tensor(pred, requires_grad=True)
    loss = loss_fn(p, target)
    assert isinstance(loss, pydl.Tensor) and loss.shape == ()
    np.testing.assert_allclose(loss.item(), closed_form(name, pred, target, reduction),
                               rtol=1e-12)
    assert gradcheck(lambda t: loss_fn(t, target), [p])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_objects_against_torch(name, reduction, rng):
    torch = pytest.importorskip("torch")
    pred, target = make_case(name, rng)
    tp = torch.tensor(pred, requires_grad=True)
    tloss = getattr(torch.nn, name)(reduction=reduction)(tp, torch.tensor(target))
    tloss.backward()
    p = pydl.tensor(pred, requires_grad=True)
    loss = getattr(losses, name)(reduction=reduction)(p, pydl.tensor(target))
    loss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-12)
    np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_options_against_torch(rng):
    torch = pytest.importorskip("torch")
    pred = rng.standard_normal((8, 5)) * 3
    labels = rng.integers(0, 5, 8)
    ours = losses.CrossEntropyLoss(label_smoothing=0.15)(pydl.tensor(pred), labels).item()
    theirs = torch.nn.CrossEntropyLoss(label_smoothing=0.15)(torch.tensor(pred),
                                                             torch.tensor(labels)).item()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    target = pred + rng.standard_normal((8, 5))
    ours = losses.HuberLoss(delta=0.7)(pydl.tensor(pred), target).item()
    theirs = torch.nn.HuberLoss(delta=0.7)(torch.tensor(pred), torch.tensor(target)).item()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_float32_predictions_give_float32_losses(rng):
    pred = pydl.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    for name in NAMES:
        target = np.array([0, 2, 1, 1]) if name == "CrossEntropyLoss" else np.zeros((4, 3))
        loss = getattr(losses, name)()(pred, target)
        assert loss.dtype == np.float32
        loss.backward()
        assert pred.grad.dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_bad_reduction(name):
    with pytest.raises(ValueError, match=f"{name}: reduction must be 'mean' or 'sum', got 'none'"):
        getattr(losses, name)(reduction="none")


@pytest.mark.parametrize("value", [-0.1, 1.1, float("nan")])
def test_bad_label_smoothing(value):
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        losses.CrossEntropyLoss(label_smoothing=value)


@pytest.mark.parametrize("delta", [0.0, -2.0, float("nan"), float("inf")])
def test_bad_huber_delta(delta):
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        losses.HuberLoss(delta=delta)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        losses.MSELoss()(pydl.tensor(np.zeros((2, 3))), np.zeros((2, 4)))


def test_repr_and_defaults():
    assert repr(losses.CrossEntropyLoss()) == \
        "CrossEntropyLoss(reduction='mean', label_smoothing=0.0)"
    assert losses.HuberLoss().delta == 1.0 and losses.MSELoss().reduction == "mean"
