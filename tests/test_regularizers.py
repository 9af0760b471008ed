"""pydl.regularizers: values and gradients against numpy closed forms, weights-only selection,
ElasticNet limits, the differentiable call, add_gradients, freezing and validation."""

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.regularizers import L1, L2, ElasticNet
from pydl.testing import gradcheck

F64 = np.float64


def make_model(dtype=F64, seed=0):
    pydl.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5, dtype=dtype), nn.ReLU(), nn.Linear(5, 3, dtype=dtype))
    model[0].weight.data[0, 0] = 0.0  # an exact zero: L1's gradient there is 0
    return model


def closed_form(model, kind, wd, l1_ratio=0.5, include_bias=False):
    """(value, {name: gradient}) from the formulas in the docs, in float64."""
    value = 0.0
    grads = {}
    for name, p in model.named_parameters():
        w = p.data.astype(F64)
        if name.endswith("bias") and not include_bias:
            grads[name] = np.zeros_like(w)
            continue
        l1, l2 = np.abs(w).sum(), (w * w).sum()
        if kind == "l1":
            value += wd * l1
            grads[name] = wd * np.sign(w)
        elif kind == "l2":
            value += wd * l2
            grads[name] = 2 * wd * w
        else:
            value += wd * (l1_ratio * l1 + (1 - l1_ratio) * l2)
            grads[name] = wd * (l1_ratio * np.sign(w) + 2 * (1 - l1_ratio) * w)
    return value, grads


CASES = [
    ("l1", lambda **kw: L1(0.3, **kw), {}),
    ("l2", lambda **kw: L2(0.3, **kw), {}),
    ("en", lambda **kw: ElasticNet(0.3, **kw), dict(l1_ratio=0.5)),
    ("en", lambda **kw: ElasticNet(0.3, l1_ratio=0.2, **kw), dict(l1_ratio=0.2)),
]


@pytest.mark.parametrize("include_bias", [False, True])
@pytest.mark.parametrize("kind,make,extra", CASES)
@pytest.mark.parametrize("dtype", [np.float32, F64])
def test_value_and_gradient_match_closed_forms(kind, make, extra, include_bias, dtype):
    model = make_model(dtype)
    reg = make(include_bias=include_bias)
    value, grads = closed_form(model, kind, 0.3, include_bias=include_bias, **extra)
    assert reg.penalty(model) == pytest.approx(value, rel=1e-6 if dtype == np.float32 else 1e-12)
    out = reg(model)
    assert isinstance(out, pydl.Tensor) and out.shape == () and out.dtype == dtype
    assert out.item() == pytest.approx(value, rel=1e-6)
    out.backward()
    for name, p in model.named_parameters():
        got = np.zeros_like(p.data) if p.grad is None else p.grad
        np.testing.assert_allclose(got, grads[name], rtol=1e-6, atol=1e-7, err_msg=name)
    if kind == "l1":
        assert model[0].weight.grad[0, 0] == 0.0  # sign(0) = 0


def test_l2_default_weight_decay():
    assert L2().wd == 5e-4


@pytest.mark.parametrize("include_bias", [False, True])
def test_elastic_net_limits_equal_l1_and_l2(include_bias):
    model = make_model()
    assert ElasticNet(0.7, 1.0, include_bias).penalty(model) == L1(0.7, include_bias).penalty(model)
    assert ElasticNet(0.7, 0.0, include_bias).penalty(model) == L2(0.7, include_bias).penalty(model)
    for en, ref in [(ElasticNet(0.7, 1.0, include_bias), L1(0.7, include_bias)),
                    (ElasticNet(0.7, 0.0, include_bias), L2(0.7, include_bias))]:
        model.zero_grad()
        en(model).backward()
        a = [p.grad for p in model.parameters()]
        model.zero_grad()
        ref(model).backward()
        b = [p.grad for p in model.parameters()]
        for x, y in zip(a, b):
            assert (x is None and y is None) or np.array_equal(x, y)


def test_loss_plus_penalty_is_differentiable_end_to_end(rng):
    model = make_model()
    model[0].weight.data[0, 0] = 0.5  # away from L1's kink
    x = pydl.tensor(rng.standard_normal((6, 4)), dtype="float64")
    y = rng.integers(0, 3, 6)
    crit = pydl.losses.CrossEntropyLoss()
    reg = ElasticNet(0.05, l1_ratio=0.3)
    assert gradcheck(lambda *ps: crit(model(x), y) + reg(model), list(model.parameters()))
    # scaled and negated uses of the penalty get the matching gradient
    model.zero_grad()
    (-2.0 * L2(0.1)(model)).backward()
    np.testing.assert_allclose(model[0].weight.grad, -0.4 * model[0].weight.data, rtol=1e-12)


@pytest.mark.parametrize("make", [lambda: L1(0.2), lambda: L2(0.2),
                                  lambda: ElasticNet(0.2, 0.4, include_bias=True)])
def test_add_gradients_equals_backward_of_the_penalty(make, rng):
    model = make_model()
    reg = make()
    x = rng.standard_normal((5, 4))
    model(x).sum().backward()
    base = {n: p.grad.copy() for n, p in model.named_parameters()}
    reg.add_gradients(model)
    fast = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    (model(x).sum() + reg(model)).backward()
    for n, p in model.named_parameters():
        np.testing.assert_allclose(fast[n], p.grad, rtol=1e-12, atol=1e-15)
    assert not np.array_equal(fast["0.weight"], base["0.weight"])


def test_add_gradients_skips_frozen_and_gradless_parameters(rng):
    model = make_model()
    model(rng.standard_normal((5, 4))).sum().backward()
    model[0].freeze()
    frozen_grad = model[0].weight.grad.copy()
    model[2].weight.grad = None
    L2(0.5).add_gradients(model)
    assert np.array_equal(model[0].weight.grad, frozen_grad)
    assert model[2].weight.grad is None


def test_frozen_parameters_count_in_the_value_but_get_no_gradient():
    model = make_model()
    model[0].freeze()
    reg = L2(0.1)
    out = reg(model)
    assert out.item() == pytest.approx(closed_form(model, "l2", 0.1)[0], rel=1e-12)
    out.backward()
    assert model[0].weight.grad is None and model[2].weight.grad is not None
    model.freeze()
    out = reg(model)
    assert not out.requires_grad  # nothing to differentiate


def test_penalty_under_no_grad_builds_no_graph():
    model = make_model()
    with pydl.no_grad():
        out = L1(0.1)(model)
    assert not out.requires_grad


def test_sgd_weight_decay_equals_half_l2(rng):
    a, b = make_model(seed=3), make_model(seed=3)
    x = rng.standard_normal((5, 4))
    opt_a = pydl.optim.SGD(a.parameters(), lr=0.1, weight_decay=0.2)
    opt_b = pydl.optim.SGD(b.parameters(), lr=0.1)
    reg = L2(0.1, include_bias=True)
    for _ in range(3):
        opt_a.zero_grad()
        a(x).sum().backward()
        opt_a.step()
        opt_b.zero_grad()
        (b(x).sum() + reg(b)).backward()
        opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(pa.data, pb.data, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make,name", [
    (lambda: L1(-0.1), "wd"), (lambda: L2(float("nan")), "wd"), (lambda: L2("x"), "wd"),
    (lambda: ElasticNet(-1.0), "wd"), (lambda: ElasticNet(0.1, 1.5), "l1_ratio"),
    (lambda: ElasticNet(0.1, -0.1), "l1_ratio"),
    (lambda: ElasticNet(0.1, float("nan")), "l1_ratio"),
])
def test_invalid_arguments_raise(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_repr():
    assert repr(ElasticNet(0.1, 0.25)) == "ElasticNet(wd=0.1, l1_ratio=0.25, include_bias=False)"
    assert repr(L2()) == "L2(wd=0.0005, include_bias=False)"
