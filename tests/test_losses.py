"""pydl.losses: the loss objects match numpy closed forms and torch (float64, values and
gradients, every reduction, class weights and pos_weight)."""

import numpy as np
import pytest
import torch

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


def assert_like_torch(ours_fn, theirs_fn, pred, rng):
    """Compare value and input gradient (for a random upstream gradient) with torch's."""
    tp = torch.tensor(pred, requires_grad=True)
    tloss = theirs_fn(tp)
    g = rng.standard_normal(tuple(tloss.shape))
    tloss.backward(torch.tensor(g))
    p = pydl.tensor(pred, requires_grad=True)
    loss = ours_fn(p)
    assert loss.shape == tuple(tloss.shape) and loss.dtype == np.float64
    if g.ndim:
        loss.backward(g)
    else:
        (loss * float(g)).backward()
    np.testing.assert_allclose(loss.data, tloss.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_objects_against_torch(name, reduction, rng):
    pred, target = make_case(name, rng)
    assert_like_torch(lambda p: getattr(losses, name)(reduction=reduction)(p, pydl.tensor(target)),
                      lambda tp: getattr(torch.nn, name)(reduction=reduction)(
                          tp, torch.tensor(target)), pred, rng)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_class_weights_against_torch(reduction, smoothing, rng):
    pred = rng.standard_normal((9, 4)) * 2
    labels = rng.integers(0, 4, 9)
    weight = rng.random(4) * 3
    assert_like_torch(
        lambda p: losses.CrossEntropyLoss(weight=weight, label_smoothing=smoothing,
                                          reduction=reduction)(p, labels),
        lambda tp: torch.nn.CrossEntropyLoss(weight=torch.tensor(weight),
                                             label_smoothing=smoothing,
                                             reduction=reduction)(tp, torch.tensor(labels)),
        pred, rng)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("use_weight,use_pos", [(True, False), (False, True), (True, True)])
def test_bce_weight_and_pos_weight_against_torch(reduction, use_weight, use_pos, rng):
    pred = rng.standard_normal((7, 3)) * 4
    pred[0, 0], pred[1, 1] = 800.0, -800.0  # stable at huge logits too
    target = (rng.random((7, 3)) > 0.4).astype(np.float64)
    weight = rng.random(3) * 2 if use_weight else None
    pos = rng.random(3) * 5 if use_pos else None
    assert_like_torch(
        lambda p: losses.BCEWithLogitsLoss(weight=weight, pos_weight=pos,
                                           reduction=reduction)(p, target),
        lambda tp: torch.nn.BCEWithLogitsLoss(
            weight=None if weight is None else torch.tensor(weight),
            pos_weight=None if pos is None else torch.tensor(pos),
            reduction=reduction)(tp, torch.tensor(target)), pred, rng)


@pytest.mark.parametrize("name", ["BCEWithLogitsLoss", "MSELoss", "L1Loss", "HuberLoss"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_flat_targets_fit_single_output_like_keras(name, reduction, rng):
    pred = rng.standard_normal((6, 1))
    target = (rng.random(6) > 0.5).astype(np.float64) if name.startswith("BCE") else \
        rng.standard_normal(6)
    # torch would broadcast (6, 1) against (6,) to (6, 6); the Keras meaning is (6, 1)
    assert_like_torch(lambda p: getattr(losses, name)(reduction=reduction)(p, target),
                      lambda tp: getattr(torch.nn, name)(reduction=reduction)(
                          tp, torch.tensor(target).reshape(6, 1)), pred, rng)


@pytest.mark.parametrize("name", ["BCEWithLogitsLoss", "MSELoss", "L1Loss", "HuberLoss"])
@pytest.mark.parametrize("pred_shape,target_shape", [((6, 1), (5,)), ((6,), (6, 1)),
                                                     ((6, 2), (6,)), ((6, 1), (1, 6))])
def test_other_shape_mismatches_stay_errors(name, pred_shape, target_shape):
    with pytest.raises(ValueError, match="shape"):
        getattr(losses, name)()(pydl.tensor(np.zeros(pred_shape)), np.zeros(target_shape))


def test_bad_weights_are_rejected():
    with pytest.raises(ValueError, match="weight must have shape \\(3,\\)"):
        losses.CrossEntropyLoss(weight=[1.0, 2.0])(pydl.tensor(np.zeros((2, 3))), [0, 1])
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        losses.CrossEntropyLoss(weight=[1.0, -2.0])
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        losses.BCEWithLogitsLoss(pos_weight=[np.nan])
    with pytest.raises(ValueError, match="1-D"):
        losses.BCEWithLogitsLoss(weight=[[1.0]])
    with pytest.raises(ValueError, match="pos_weight must have shape \\(2,\\)"):
        losses.BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 3.0])(pydl.tensor(np.zeros((2, 2))),
                                                            np.zeros((2, 2)))
    with pytest.raises(ValueError, match="outside \\[0, 3\\)"):
        losses.CrossEntropyLoss(weight=[1.0, 1.0, 1.0])(pydl.tensor(np.zeros((2, 3))), [0, 3])


def test_with_reduction_returns_a_copy():
    loss = losses.CrossEntropyLoss(weight=[1.0, 2.0], label_smoothing=0.1)
    other = loss.with_reduction("none")
    assert other.reduction == "none" and loss.reduction == "mean"
    assert other.label_smoothing == 0.1 and other.weight is loss.weight


def test_options_against_torch(rng):
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
    with pytest.raises(ValueError, match=f"{name}: reduction must be 'mean', 'sum' or 'none', "
                                         f"got 'avg'"):
        getattr(losses, name)(reduction="avg")


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
        "CrossEntropyLoss(reduction='mean', weight=None, label_smoothing=0.0)"
    assert losses.HuberLoss().delta == 1.0 and losses.MSELoss().reduction == "mean"
