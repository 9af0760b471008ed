"""pydl.functional: values against numpy (and torch when installed), float64 gradchecks, errors."""

import math

import numpy as np
import pytest

import pydl
import pydl.functional as F
from pydl.testing import gradcheck


def t64(rng, *shape, requires_grad=True, away=0.0):
    data = rng.standard_normal(shape)
    data = np.sign(data) * (np.abs(data) + away)  # keep values away from kinks at 0
    return pydl.tensor(data, dtype=np.float64, requires_grad=requires_grad)


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


NP_ACT = {
    None: lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(z)),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
}


# --- linear -----------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", list(NP_ACT))
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_numpy_and_gradchecks(activation, with_bias, rng):
    x, w = t64(rng, 6, 4), t64(rng, 3, 4)
    b = t64(rng, 3) if with_bias else None
    y = F.linear(x, w, b, activation)
    z = x.data @ w.data.T + (b.data if with_bias else 0)
    np.testing.assert_allclose(y.data, NP_ACT[activation](z), rtol=1e-12, atol=1e-14)
    if activation in ("relu", "leaky_relu", "elu"):
        assert np.min(np.abs(z)) > 1e-4  # finite differences must not straddle the kink
    inputs = [x, w] + ([b] if with_bias else [])
    assert gradcheck(lambda *t: F.linear(t[0], t[1], t[2] if with_bias else None, activation),
                     inputs)


def test_linear_float32_matches_numpy(rng):
    x = rng.standard_normal((32, 40)).astype(np.float32)
    w = rng.standard_normal((16, 40)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    y = F.linear(pydl.tensor(x), pydl.tensor(w), pydl.tensor(b), "relu")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, np.maximum(x @ w.T + b, 0), rtol=1e-4, atol=1e-4)


def test_linear_leading_dims_are_flattened(rng):
    x, w, b = t64(rng, 2, 3, 4), t64(rng, 5, 4), t64(rng, 5)
    y = F.linear(x, w, b)
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y.data, x.data @ w.data.T + b.data, rtol=1e-12)
    assert gradcheck(lambda x, w, b: F.linear(x, w, b), [x, w, b])


def test_linear_wrong_input_width_names_expected_and_actual(rng):
    w = pydl.tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"expected input with 4 features.*\(2, 5\)"):
        F.linear(pydl.tensor(np.zeros((2, 5))), w)
    with pytest.raises(ValueError, match="weight must be 2-D"):
        F.linear(pydl.tensor(np.zeros((2, 4))), pydl.tensor(np.zeros(4)))
    with pytest.raises(TypeError):
        F.linear(pydl.tensor(np.zeros((2, 4), np.float32)), w)  # float32 input, float64 weight


def test_linear_accumulates_weight_grad_in_place(rng):
    x, w, b = t64(rng, 5, 4), t64(rng, 3, 4), t64(rng, 3)
    F.linear(x, w, b).sum().backward()
    w_buf, b_buf = w.grad, b.grad
    first_w, first_b = w.grad.copy(), b.grad.copy()
    F.linear(x, w, b).sum().backward()
    assert w.grad is w_buf and b.grad is b_buf
    np.testing.assert_allclose(w.grad, 2 * first_w, rtol=1e-14)
    np.testing.assert_allclose(b.grad, 2 * first_b, rtol=1e-14)
    np.testing.assert_allclose(first_w, np.ones((5, 3)).T @ x.data, rtol=1e-12)
    np.testing.assert_allclose(x.grad, 2 * np.ones((5, 3)) @ w.data, rtol=1e-12)


def test_linear_frozen_weight_and_input_get_no_grad(rng):
    x = t64(rng, 5, 4, requires_grad=False)
    w, b = t64(rng, 3, 4), t64(rng, 3)
    w.requires_grad = False
    F.linear(x, w, b).sum().backward()
    assert w.grad is None and x.grad is None
    np.testing.assert_array_equal(b.grad, np.full(3, 5.0))


def test_linear_weight_computed_by_an_op(rng):
    x, w = t64(rng, 5, 4), t64(rng, 3, 4)
    assert gradcheck(lambda x, w: F.linear(x, w * 2.0, None, "tanh"), [x, w])


# --- activations ------------------------------------------------------------------------------
ACTS = {
    "relu": (F.relu, NP_ACT["relu"]),
    "leaky_relu": (lambda t: F.leaky_relu(t, negative_slope=0.1),
                   lambda z: np.where(z > 0, z, 0.1 * z)),
    "elu": (lambda t: F.elu(t, alpha=1.5), lambda z: np.where(z > 0, z, 1.5 * np.expm1(z))),
    "sigmoid": (F.sigmoid, NP_ACT["sigmoid"]),
    "tanh": (F.tanh, np.tanh),
    "softmax": (F.softmax, lambda z: np.exp(np_log_softmax(z))),
    "log_softmax": (F.log_softmax, np_log_softmax),
    "softmax_axis0": (lambda t: F.softmax(t, axis=0), lambda z: np.exp(np_log_softmax(z.T)).T),
}


@pytest.mark.parametrize("name", list(ACTS))
def test_activations_match_numpy_and_gradcheck(name, rng):
    fn, reference = ACTS[name]
    x = t64(rng, 4, 5, away=0.05)
    np.testing.assert_allclose(fn(x).data, reference(x.data), rtol=1e-12, atol=1e-15)
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax",
                                  "log_softmax"])
def test_activations_against_torch(name, rng):
    torch = pytest.importorskip("torch")
    tf = {"relu": torch.relu, "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.1),
          "elu": lambda t: torch.nn.functional.elu(t, 1.5), "sigmoid": torch.sigmoid,
          "tanh": torch.tanh, "softmax": lambda t: torch.softmax(t, -1),
          "log_softmax": lambda t: torch.log_softmax(t, -1)}[name]
    x = rng.standard_normal((4, 5))
    upstream = rng.standard_normal((4, 5))
    tx = torch.tensor(x, requires_grad=True)
    tf(tx).backward(torch.tensor(upstream))
    px = pydl.tensor(x, requires_grad=True)
    out = ACTS[name][0](px)
    out.backward(upstream)
    np.testing.assert_allclose(out.data, tf(torch.tensor(x)).numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(px.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_activations_accept_arrays(rng):
    x = rng.standard_normal(5).astype(np.float32)
    out = F.relu(x)
    assert isinstance(out, pydl.Tensor) and not out.requires_grad
    np.testing.assert_array_equal(out.data, np.maximum(x, 0))


def test_activation_bad_parameters():
    x = pydl.tensor([1.0, -1.0])
    with pytest.raises(ValueError, match="negative_slope"):
        F.leaky_relu(x, negative_slope=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        F.elu(x, alpha=-1.0)


# --- dropout ----------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_dropout_bad_p(p):
    with pytest.raises(ValueError, match=r"p \(the drop probability\) must be in \[0, 1\)"):
        F.dropout(pydl.tensor([1.0]), p)
    with pytest.raises(ValueError):
        F.dropout(pydl.tensor([1.0]), p, training=False)


def test_dropout_p_type():
    with pytest.raises(TypeError, match="dropout: p must be a real number, got str"):
        F.dropout(pydl.tensor([1.0]), "0.5")


def test_dropout_identity_in_eval_and_at_p0():
    x = pydl.tensor(np.arange(5.0), requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_statistics_and_scaling(p):
    pydl.manual_seed(123)
    n = 200_000
    x = pydl.tensor(np.ones(n, np.float32))
    y = F.dropout(x, p).data
    kept = y != 0
    # kept fraction within 5 binomial standard deviations of 1 - p
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[kept], np.float32(1 / (1 - p)), rtol=1e-6)


def test_dropout_gradient_is_mask_times_scale(rng):
    pydl.manual_seed(7)
    x = pydl.tensor(rng.uniform(1, 2, (50, 20)), requires_grad=True)
    y = F.dropout(x, 0.3)
    upstream = rng.standard_normal((50, 20))
    y.backward(upstream)
    kept = y.data != 0
    np.testing.assert_allclose(x.grad, np.where(kept, upstream / 0.7, 0.0), rtol=1e-12)
    np.testing.assert_allclose(y.data, np.where(kept, x.data / 0.7, 0.0), rtol=1e-12)


def test_dropout_gradcheck_with_a_fixed_mask(rng):
    x = t64(rng, 6, 5)

    def fn(t):
        pydl.manual_seed(11)  # the same mask at every evaluation
        return F.dropout(t, 0.4)

    assert gradcheck(fn, [x])


def test_dropout_is_reproducible_with_manual_seed_and_changes_per_call():
    x = pydl.tensor(np.ones((64, 33), np.float32))
    pydl.manual_seed(5)
    a1, a2 = F.dropout(x, 0.5).data, F.dropout(x, 0.5).data
    pydl.manual_seed(5)
    b1, b2 = F.dropout(x, 0.5).data, F.dropout(x, 0.5).data
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)
    pydl.manual_seed(6)
    assert not np.array_equal(F.dropout(x, 0.5).data, a1)


def test_dropout_mask_does_not_depend_on_thread_count(threads):
    x = pydl.tensor(np.ones((300, 257), np.float32))
    pydl.manual_seed(9)
    y = F.dropout(x, 0.25).data
    pydl.set_num_threads(1)
    pydl.manual_seed(9)
    np.testing.assert_array_equal(F.dropout(x, 0.25).data, y)


# --- cross-entropy ----------------------------------------------------------------------------
def np_cross_entropy(z, labels, reduction="mean", eps=0.0):
    logp = np_log_softmax(z)
    c = z.shape[1]
    q = (1 - eps) * np.eye(c)[labels] + eps / c
    per_row = -(q * logp).sum(axis=1)
    return per_row.mean() if reduction == "mean" else per_row.sum()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_closed_form_and_gradcheck(reduction, eps, rng):
    z = t64(rng, 7, 4)
    labels = rng.integers(0, 4, 7)
    loss = F.cross_entropy(z, labels, reduction=reduction, label_smoothing=eps)
    assert loss.shape == () and loss.dtype == np.float64
    np.testing.assert_allclose(loss.item(), np_cross_entropy(z.data, labels, reduction, eps),
                               rtol=1e-12)
    assert gradcheck(lambda z: F.cross_entropy(z, labels, reduction, eps), [z])
    # the scalar upstream gradient scales dlogits
    assert gradcheck(lambda z: F.cross_entropy(z, labels, reduction, eps) * 3.0, [z])


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cross_entropy_against_torch(eps, rng):
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((9, 5))
    labels = rng.integers(0, 5, 9)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(labels), label_smoothing=eps)
    tl.backward()
    pz = pydl.tensor(z, requires_grad=True)
    pl = F.cross_entropy(pz, labels, label_smoothing=eps)
    pl.backward()
    np.testing.assert_allclose(pl.item(), tl.item(), rtol=1e-12)
    np.testing.assert_allclose(pz.grad, tz.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_float32_and_single_sample(rng):
    z = rng.standard_normal((3, 4)).astype(np.float32)
    loss = F.cross_entropy(pydl.tensor(z), np.array([1, 0, 3], np.int32))
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.item(), np_cross_entropy(z.astype(np.float64), [1, 0, 3]),
                               rtol=1e-5)
    one = t64(rng, 4)
    np.testing.assert_allclose(F.cross_entropy(one, np.array(2)).item(),
                               np_cross_entropy(one.data[None], [2]), rtol=1e-12)
    assert gradcheck(lambda t: F.cross_entropy(t, np.array(2)), [one])


def test_cross_entropy_accepts_a_tensor_of_labels(rng):
    z = t64(rng, 4, 3)
    labels = np.array([2, 0, 1, 2])
    expected = np_cross_entropy(z.data, labels)
    np.testing.assert_allclose(F.cross_entropy(z, pydl.tensor(labels)).item(), expected)
    with pytest.raises(ValueError, match="whole numbers"):
        F.cross_entropy(z, pydl.tensor([0.5, 1.0, 2.0, 0.0]))


def test_cross_entropy_bad_input():
    z = pydl.tensor(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="integer class labels.*float64"):
        F.cross_entropy(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(2,\).*\(3,\)"):
        F.cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError):
        F.cross_entropy(z, np.array([0, 3]))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        F.cross_entropy(z, np.array([0, 1]), reduction="none")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, np.array([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        F.cross_entropy(pydl.tensor(np.zeros((2, 3, 4))), np.array([0, 1]))


# --- elementwise losses -----------------------------------------------------------------------
def np_huber(d, delta):
    ad = np.abs(d)
    return np.where(ad <= delta, 0.5 * d * d, delta * (ad - 0.5 * delta))


ELEMENTWISE = {
    "bce": (F.binary_cross_entropy_with_logits,
            lambda x, t: np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))),
    "mse": (F.mse_loss, lambda x, t: (x - t) ** 2),
    "l1": (F.l1_loss, lambda x, t: np.abs(x - t)),
    "huber": (F.huber_loss, lambda x, t: np_huber(x - t, 1.0)),
    "huber_delta": (lambda x, t, reduction="mean": F.huber_loss(x, t, 0.3, reduction),
                    lambda x, t: np_huber(x - t, 0.3)),
}


def _pred_target(name, rng):
    pred = t64(rng, 5, 3)
    if name == "bce":
        target = (rng.random((5, 3)) > 0.5).astype(np.float64)
    else:
        # keep |pred - target| away from 0 (l1 kink) and from delta (huber seam)
        target = pred.data - rng.choice([-1, 1], (5, 3)) * rng.uniform(0.05, 0.25, (5, 3))
        target[0] = pred.data[0] - 2.0
    return pred, target


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_elementwise_losses_closed_form_and_gradcheck(name, reduction, rng):
    fn, reference = ELEMENTWISE[name]
    pred, target = _pred_target(name, rng)
    loss = fn(pred, target, reduction=reduction)
    per = reference(pred.data, target)
    np.testing.assert_allclose(loss.item(), per.mean() if reduction == "mean" else per.sum(),
                               rtol=1e-12)
    assert gradcheck(lambda p: fn(p, target, reduction=reduction) * 2.0, [pred])
    target_tensor = pydl.tensor(target)
    np.testing.assert_allclose(fn(pred, target_tensor, reduction=reduction).item(), loss.item())


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_losses_against_torch(name, rng):
    torch = pytest.importorskip("torch")
    tfn = {"bce": torch.nn.functional.binary_cross_entropy_with_logits,
           "mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss,
           "huber": torch.nn.functional.huber_loss,
           "huber_delta": lambda x, t: torch.nn.functional.huber_loss(x, t, delta=0.3)}[name]
    pred, target = _pred_target(name, rng)
    tp = torch.tensor(pred.data, requires_grad=True)
    tl = tfn(tp, torch.tensor(target))
    tl.backward()
    loss = ELEMENTWISE[name][0](pred, target)
    loss.backward()
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-12)
    np.testing.assert_allclose(pred.grad, tp.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_l1_gradient_at_zero_difference_is_zero():
    p = pydl.tensor(np.array([1.0, 2.0]), requires_grad=True)
    F.l1_loss(p, np.array([1.0, 0.0])).backward()
    np.testing.assert_array_equal(p.grad, [0.0, 0.5])


def test_bce_is_finite_for_huge_logits():
    x = pydl.tensor(np.array([1000.0, -1000.0]), requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, np.array([0.0, 1.0]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), 1000.0)
    np.testing.assert_allclose(x.grad, [0.5, -0.5])


def test_elementwise_loss_float32_target_conversion(rng):
    pred = pydl.tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    loss = F.mse_loss(pred, np.arange(4))  # int target converted to the prediction's dtype
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.item(), np.mean((pred.data - np.arange(4)) ** 2), rtol=1e-6)


@pytest.mark.parametrize("fn", [F.binary_cross_entropy_with_logits, F.mse_loss, F.l1_loss,
                                F.huber_loss])
def test_elementwise_loss_errors(fn):
    p = pydl.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        fn(p, np.zeros(3))
    with pytest.raises(ValueError, match="reduction"):
        fn(p, np.zeros((2, 3)), reduction="none")


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan"), float("inf")])
def test_huber_bad_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        F.huber_loss(pydl.tensor([1.0]), np.array([0.0]), delta=delta)
