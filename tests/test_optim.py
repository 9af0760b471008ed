"""pydl.optim: first steps against hand-written numpy updates and torch.optim, skipping rules
(no grad, frozen), validation, zero_grad, the lr property and state_dict round trips."""

import copy
import math

import numpy as np
import pytest

import pydl
from pydl.nn import Parameter
from pydl.optim import SGD, Adam, AdamW


DTYPES = [np.float32, np.float64]


def make_params(rng, dtype, shapes=((4, 3), (3,))):
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def grads_for(rng, params, n_steps):
    """Per step, one gradient array per parameter."""
    return [[rng.standard_normal(p.data.shape).astype(p.data.dtype) for p in params]
            for _ in range(n_steps)]


def run(opt_cls, params, grads, **kw):
    opt = opt_cls(params, **kw)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        opt.step()
    return opt


# --- numpy oracles, written from the PyTorch formulas ---

def sgd_reference(w, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    w = w.astype(np.float64)
    buf = None
    for g in grads:
        d = g + weight_decay * w
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        w = w - lr * d
    return w


def adam_reference(w, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   decoupled=False):
    w = w.astype(np.float64)
    b1, b2 = betas
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=1e-3),
    dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.1),
]
ADAM_CONFIGS = [
    dict(lr=1e-3),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
]


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", SGD_CONFIGS)
def test_sgd_matches_hand_computed_updates(rng, dtype, kw):
    params = make_params(rng, dtype)
    start = [p.data.copy() for p in params]
    grads = grads_for(rng, params, 4)
    run(SGD, params, grads, **kw)
    for i, p in enumerate(params):
        expected = sgd_reference(start[i], [g[i].astype(np.float64) for g in grads], **kw)
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, expected, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [Adam, AdamW])
@pytest.mark.parametrize("kw", ADAM_CONFIGS)
def test_adam_and_adamw_match_hand_computed_updates(rng, dtype, cls, kw):
    params = make_params(rng, dtype)
    start = [p.data.copy() for p in params]
    grads = grads_for(rng, params, 4)
    run(cls, params, grads, **kw)
    ref_kw = dict(kw)
    if cls is AdamW:
        ref_kw.setdefault("weight_decay", 1e-2)
    for i, p in enumerate(params):
        expected = adam_reference(start[i], [g[i].astype(np.float64) for g in grads],
                                  decoupled=cls is AdamW, **ref_kw)
        np.testing.assert_allclose(p.data, expected, rtol=1e-5 if dtype == np.float32 else 1e-11,
                                   atol=1e-6 if dtype == np.float32 else 1e-12)


def test_adam_first_step_moves_each_weight_by_lr():
    # With bias correction the first Adam step is lr * g / (|g| + eps') = lr * sign(g).
    p = Parameter(np.zeros(5))
    p.grad = np.array([3.0, -0.5, 1e-3, -2.0, 7.0])
    Adam([p], lr=0.01, eps=0.0).step()
    np.testing.assert_allclose(p.data, -0.01 * np.sign(p.grad), rtol=1e-14)


@pytest.mark.parametrize("name,kw", [("SGD", c) for c in SGD_CONFIGS]
                         + [("Adam", c) for c in ADAM_CONFIGS]
                         + [("AdamW", c) for c in ADAM_CONFIGS + [dict(lr=0.01)]])
def test_optimizers_match_torch(rng, name, kw):
    import torch
    params = make_params(rng, np.float64)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    grads = grads_for(rng, params, 5)
    run(getattr(pydl.optim, name), params, grads, **kw)
    topt = getattr(torch.optim, name)(tparams, **kw)
    for step_grads in grads:
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.tensor(g)
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    lambda ps: Adam(ps, lr=0.1, weight_decay=0.1),
    lambda ps: AdamW(ps, lr=0.1, weight_decay=0.1),
])
def test_frozen_parameters_stay_bit_identical(rng, make):
    params = make_params(rng, np.float32, shapes=((4, 3), (3,), (2, 2)))
    opt = make(params)
    for p in params:
        p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
    opt.step()  # every parameter gets state (momentum / Adam moments) first
    opt.step()
    params[0].requires_grad = False
    frozen = params[0].data.copy()
    frozen_state = copy.deepcopy(opt.state[0])
    moving = params[1].data.copy()
    for _ in range(4):
        for p in params:
            p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
        opt.step()
    assert params[0].data.tobytes() == frozen.tobytes()
    for k, v in frozen_state.items():
        assert np.array_equal(opt.state[0][k], v)
    assert not np.array_equal(params[1].data, moving)
    params[0].requires_grad = True  # unfreezing resumes training
    opt.step()
    assert not np.array_equal(params[0].data, frozen)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_parameters_without_grad_are_skipped(rng, cls):
    params = make_params(rng, np.float64)
    before = params[0].data.copy()
    params[1].grad = np.ones(3)
    opt = cls(params, lr=0.1, weight_decay=0.5)
    opt.step()
    assert np.array_equal(params[0].data, before)
    assert 0 not in opt.state
    assert not np.array_equal(params[1].data, np.zeros(3))


@pytest.mark.parametrize("kw,name", [
    (dict(lr=-0.1), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(lr=0.1, momentum=-0.5), "momentum"), (dict(lr=0.1, momentum=float("nan")), "momentum"),
    (dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
    (dict(lr=0.1, dampening=1.5), "dampening"),
    (dict(lr=0.1, nesterov=True), "nesterov"),
    (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (dict(lr="fast"), "lr"),
])
def test_sgd_rejects_invalid_hyper_parameters(rng, kw, name):
    with pytest.raises(ValueError, match=name):
        SGD(make_params(rng, np.float32), **kw)


@pytest.mark.parametrize("cls", [Adam, AdamW])
@pytest.mark.parametrize("kw,name", [
    (dict(lr=-1e-3), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(betas=(1.0, 0.999)), r"betas\[0\]"), (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (dict(betas=(float("nan"), 0.9)), r"betas\[0\]"), (dict(betas=0.9), "betas"),
    (dict(eps=-1e-8), "eps"), (dict(weight_decay=float("nan")), "weight_decay"),
])
def test_adam_rejects_invalid_hyper_parameters(rng, cls, kw, name):
    with pytest.raises(ValueError, match=name):
        cls(make_params(rng, np.float32), **kw)


def test_params_must_be_a_non_empty_iterable_of_parameters(rng):
    p = make_params(rng, np.float32)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Parameter"):
        SGD(p[0], lr=0.1)
    with pytest.raises(TypeError, match="Parameters"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        SGD([p[0], p[0]], lr=0.1)


def test_generator_of_parameters_is_accepted(rng):
    params = make_params(rng, np.float32)
    opt = SGD((p for p in params), lr=0.1)
    assert len(opt.param_groups[0]["params"]) == 2


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(rng, set_to_none):
    params = make_params(rng, np.float32)
    opt = SGD(params, lr=0.1)
    grad = np.ones((4, 3), np.float32)
    params[0].grad = grad
    opt.zero_grad(set_to_none=set_to_none)
    if set_to_none:
        assert params[0].grad is None
    else:
        assert params[0].grad is grad and not grad.any()
    assert params[1].grad is None


def test_lr_property_reads_and_sets_every_group(rng):
    a, b = make_params(rng, np.float64)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    assert opt.lr == 0.1 and opt.param_groups[1]["lr"] == 0.5
    opt.lr = 0.01
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    assert opt.lr == 0.01


def test_param_groups_use_their_own_hyper_parameters(rng):
    a, b = make_params(rng, np.float64)
    a0, b0 = a.data.copy(), b.data.copy()
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.ones_like(a0), np.ones_like(b0)
    opt.step()
    np.testing.assert_allclose(a.data, a0 - 0.1)
    np.testing.assert_allclose(b.data, b0 - 0.5)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        SGD([{"params": [a], "betas": (0.9, 0.9)}], lr=0.1)


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: AdamW(ps, lr=0.01),
])
def test_state_dict_round_trip_continues_identically(rng, make):
    params = make_params(rng, np.float32)
    opt = make(params)
    grads = grads_for(rng, params, 5)
    for step_grads in grads[:2]:
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        opt.step()
    saved = opt.state_dict()
    clones = [Parameter(p.data.copy()) for p in params]
    opt2 = make(clones)
    opt2.load_state_dict(saved)
    # state_dict holds copies: stepping the original does not change what was saved
    snapshot = copy.deepcopy(saved)
    for step_grads in grads[2:]:
        for p, c, g in zip(params, clones, step_grads):
            p.grad = g.copy()
            c.grad = g.copy()
        opt.step()
        opt2.step()
    for p, c in zip(params, clones):
        assert p.data.tobytes() == c.data.tobytes()
    for i, s in snapshot["state"].items():
        for k, v in s.items():
            assert np.array_equal(saved["state"][i][k], v)


def test_load_state_dict_validates_before_changing_anything(rng):
    params = make_params(rng, np.float32)
    opt = Adam(params, lr=0.01)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.step()
    good = opt.state_dict()

    def broken(edit):
        d = copy.deepcopy(good)
        edit(d)
        return d

    cases = [
        (broken(lambda d: d["state"][0].update(exp_avg=np.zeros((3, 4), np.float32))),
         r"state\[0\]\['exp_avg'\] has shape"),
        (broken(lambda d: d["state"][1].pop("exp_avg_sq")), r"state\[1\]"),
        (broken(lambda d: d["state"][1].update(step=1.5)), "step"),
        (broken(lambda d: d["state"].update({7: {}})), "out of range"),
        (broken(lambda d: d["param_groups"][0].update(lr=-1.0)), "lr"),
        (broken(lambda d: d["param_groups"][0].update(params=[0])), "holds 1 parameters"),
        (broken(lambda d: d["param_groups"][0].pop("eps")), "hyper-parameters"),
        (broken(lambda d: d.pop("state")), "state"),
        (broken(lambda d: d["state"][0].update(exp_avg=[[0.0] * 3] * 4)), "numpy array"),
    ]
    before = copy.deepcopy(opt.state_dict())
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(bad)
        after = opt.state_dict()
        assert after["param_groups"] == before["param_groups"]
        for i in before["state"]:
            for k, v in before["state"][i].items():
                assert np.array_equal(after["state"][i][k], v)


def test_sgd_without_momentum_keeps_no_buffer(rng):
    params = make_params(rng, np.float32)
    opt = SGD(params, lr=0.1)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.step()
    assert all("momentum_buffer" not in s for s in opt.state.values())


def test_step_returns_closure_loss(rng):
    opt = SGD(make_params(rng, np.float32), lr=0.1)
    assert opt.step(lambda: 3.5) == 3.5
    assert opt.step() is None


def test_repr_lists_hyper_parameters(rng):
    text = repr(Adam(make_params(rng, np.float32), lr=0.5))
    assert "Adam" in text and "lr: 0.5" in text and "betas" in text
    assert math.isclose(Adam(make_params(rng, np.float32)).lr, 1e-3)


def per_parameter_sgd(opt):
    """SGD.step as one kernels.sgd_update call per parameter (the reference of the fused step)."""
    i = 0
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None and p.requires_grad:
                kw = dict(lr=group["lr"], weight_decay=group["weight_decay"])
                if group["momentum"] == 0.0:
                    pydl.kernels.sgd_update(p.data, p.grad, **kw)
                else:
                    s = opt.state.setdefault(i, {})
                    first = "momentum_buffer" not in s
                    if first:
                        s["momentum_buffer"] = np.empty_like(p.data)
                    pydl.kernels.sgd_update(p.data, p.grad, s["momentum_buffer"],
                                            momentum=group["momentum"],
                                            dampening=group["dampening"],
                                            nesterov=group["nesterov"], first_step=first, **kw)
            i += 1


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.05, momentum=0.9, weight_decay=5e-4),
                                dict(lr=0.05, momentum=0.9, nesterov=True)])
def test_sgd_fused_step_matches_per_parameter_updates(rng, kw):
    # SGD.step updates all groups with one sgd_update_multi call; a hand-written loop of one
    # kernels.sgd_update per parameter is the reference, bit for bit, over several steps with
    # two groups, a frozen parameter and a parameter whose gradient appears only later.
    shapes = [(256, 40), (256,), (10, 256), (10,), (7,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    runs = []
    for fused in (True, False):
        ps = [pydl.nn.Parameter(a.copy()) for a in init]
        ps[3].requires_grad = False
        opt = pydl.optim.SGD([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.2}], **kw)
        grad_rng = np.random.default_rng(3)
        for step in range(4):
            for i, p in enumerate(ps):
                g = grad_rng.standard_normal(p.data.shape).astype(np.float32)
                p.grad = None if (i == 4 and step < 2) else g
            if fused:
                opt.step()
            else:
                per_parameter_sgd(opt)
        runs.append((ps, opt.state_dict()))
    (fused_ps, fused_state), (ref_ps, ref_state) = runs
    for a, b in zip(fused_ps, ref_ps):
        np.testing.assert_array_equal(a.data, b.data)
    assert fused_state["state"].keys() == ref_state["state"].keys()
    for k, s in ref_state["state"].items():
        for name, v in s.items():
            np.testing.assert_array_equal(fused_state["state"][k][name], v)


# --- step() is all or nothing (issue 15, items 3 and 8) ----------------------------------------

def snapshot(opt):
    """Parameters and the full state_dict, as deep copies."""
    params = [p.data.copy() for g in opt.param_groups for p in g["params"]]
    return params, copy.deepcopy(opt.state_dict())


def assert_unchanged(opt, snap):
    params, state = snap
    for p, want in zip([p for g in opt.param_groups for p in g["params"]], params):
        np.testing.assert_array_equal(p.data, want)
    now = opt.state_dict()
    assert now["param_groups"] == state["param_groups"]
    assert now["state"].keys() == state["state"].keys()
    for k, s in state["state"].items():
        assert now["state"][k].keys() == s.keys()
        for name, v in s.items():
            np.testing.assert_array_equal(now["state"][k][name], v)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: SGD(ps, lr=0.1),
                                  lambda ps: Adam(ps, lr=0.01),
                                  lambda ps: AdamW(ps, lr=0.01)])
@pytest.mark.parametrize("steps_before", [0, 2])
def test_a_nan_gradient_refuses_the_step_and_names_the_parameter(rng, make, steps_before):
    params = make_params(rng, np.float32, shapes=((4, 3), (3,), (5,)))
    opt = make(params)
    for _ in range(steps_before):
        for p in params:
            p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
        opt.step()
    for p in params:
        p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
    params[2].grad[4] = np.nan  # the LAST parameter: the others come first in any loop
    snap = snapshot(opt)
    with pytest.raises(pydl.optim.NonFiniteUpdateError, match=r"step: parameter 2 \(shape \(5,\)\)"
                       r".*NaN or Inf.*nothing was updated") as err:
        opt.step()
    assert isinstance(err.value, FloatingPointError)
    assert err.value.index == 2 and err.value.param is params[2] and err.value.what == "grad"
    assert_unchanged(opt, snap)  # also: no state created on a refused first step
    params[2].grad[4] = 0.5
    opt.step()  # the same optimizer carries on


def test_adam_state_overflow_is_refused_with_weights_and_state_kept(rng):
    # Issue 15, item 8: a finite gradient of 1e25 squares to Inf in float32; the old step wrote
    # exp_avg_sq = Inf and that weight never moved again.
    params = make_params(rng, np.float32)
    opt = Adam(params, lr=0.01)
    for p in params:
        p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
    opt.step()
    params[0].grad[1, 2] = np.float32(1e25)
    snap = snapshot(opt)
    with pytest.raises(pydl.optim.NonFiniteUpdateError, match="parameter 0.*exp_avg_sq infinite"
                       ) as err:
        opt.step()
    assert err.value.what == "state"
    assert_unchanged(opt, snap)
    assert all(np.isfinite(s["exp_avg_sq"]).all() for s in opt.state.values())


def test_one_kernel_call_updates_every_group(rng, monkeypatch):
    params = make_params(rng, np.float64, shapes=((4, 3), (3,), (2, 2)))
    opt = Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.1, "betas": (0.8, 0.9)}],
               lr=0.01)
    calls = []
    real = pydl.kernels.adam_update_multi
    monkeypatch.setattr(Adam, "_kernel", staticmethod(
        lambda *a, **kw: calls.append(1) or real(*a, **kw)))
    ref = [(p.data.copy(), np.zeros_like(p.data), np.zeros_like(p.data)) for p in params]
    for step in range(1, 4):
        for p in params:
            p.grad = rng.standard_normal(p.data.shape)
        params[1].grad = None if step == 1 else params[1].grad  # joins at step 2
        opt.step()
        for i, (p, (w, m, v)) in enumerate(zip(params, ref)):
            if p.grad is None:
                continue
            lr, (b1, b2) = (0.01, (0.9, 0.999)) if i < 2 else (0.1, (0.8, 0.9))
            pydl.kernels.adam_update(w, p.grad, m, v, step=step - (i == 1), lr=lr, beta1=b1,
                                     beta2=b2)
    assert len(calls) == 3
    for p, (w, _, _) in zip(params, ref):
        np.testing.assert_array_equal(p.data, w)
    assert [opt.state[i]["step"] for i in range(3)] == [3, 2, 3]


def test_load_state_dict_refuses_non_finite_moments(rng):
    params = make_params(rng, np.float32)
    opt = Adam(params)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg_sq"][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg_sq'\] holds NaN or Inf"):
        opt.load_state_dict(sd)


# --- the step plan: a repeated step's kernel call kept while nothing it reads changed ----------

def _twin_runs(make_opt, scenario, steps=6):
    """Run the same steps on two copies: one optimizer with its plan, one without (the slow
    path every step); return both (params, optimizer) pairs."""
    runs = []
    for planned in (True, False):
        rng = np.random.default_rng(3)
        params = [Parameter(rng.standard_normal((5, 4)).astype(np.float32)),
                  Parameter(rng.standard_normal(4).astype(np.float32)),
                  Parameter(rng.standard_normal((4, 2)).astype(np.float32))]
        grads = [rng.standard_normal(p.data.shape).astype(np.float32) for p in params]
        opt = make_opt(params)
        if not planned:
            opt._plan_of = lambda items: None
        for p, g in zip(params, grads):
            p.grad = g
        for t in range(steps):
            for g in grads:  # new values in the same arrays, as a replayed step writes them
                g *= np.float32(0.9)
                g += np.float32(0.01 * (t + 1))
            scenario(t, opt, params, grads)
            try:
                opt.step()
            except pydl.optim.NonFiniteUpdateError:
                for g in grads:
                    np.nan_to_num(g, copy=False)
        runs.append((params, opt))
    return runs


def _change_lr(t, opt, params, grads):
    if t == 3:
        opt.param_groups[0]["lr"] *= 0.5


def _new_grad_array(t, opt, params, grads):
    if t == 2:
        grads[1] = grads[1].copy()
        params[1].grad = grads[1]


def _freeze_one(t, opt, params, grads):
    params[0].requires_grad = t < 2 or t > 3


def _grad_none(t, opt, params, grads):
    params[2].grad = None if t == 3 else grads[2]


def _replace_state_array(t, opt, params, grads):
    if t == 3:
        s = opt.state[0]
        key = "momentum_buffer" if "momentum_buffer" in s else "exp_avg"
        s[key] = s[key] * np.float32(0.5)


def _replace_state_entry(t, opt, params, grads):
    if t == 3:
        opt.state[0] = {k: (v * np.float32(0.5) if isinstance(v, np.ndarray) else v)
                        for k, v in opt.state[0].items()}


def _load_state(t, opt, params, grads):
    if t == 1:
        opt._saved = opt.state_dict()
    if t == 4:
        opt.load_state_dict(opt._saved)


def _replace_param_array(t, opt, params, grads):
    if t == 2:
        params[0].data = params[0].data * np.float32(1.5)


def _adam_step_count(t, opt, params, grads):
    if t == 3 and "step" in opt.state.get(0, {}):
        opt.state[0]["step"] = 40


def _nan_gradient(t, opt, params, grads):
    if t == 3:
        grads[0][1, 1] = np.nan  # in place: the plan's own gradient array


def _numpy_step_count(t, opt, params, grads):
    if t == 2 and "step" in opt.state.get(1, {}):
        opt.state[1]["step"] = np.int64(opt.state[1]["step"])  # the prepared call reads ints


def _strided_gradient(t, opt, params, grads):
    if t == 2:  # a strided view (the kernel call reads a contiguous copy: never prepared)
        wide = np.zeros((5, 8), np.float32)
        wide[:, ::2] = grads[0]
        grads[0] = wide[:, ::2]
        params[0].grad = grads[0]


SCENARIOS = [_change_lr, _new_grad_array, _freeze_one, _grad_none, _replace_state_array,
             _replace_state_entry, _load_state, _replace_param_array, _adam_step_count,
             _nan_gradient, _numpy_step_count, _strided_gradient]
PLAN_OPTIMIZERS = {
    "sgd-momentum": lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "sgd-groups": lambda p: SGD([{"params": p[:1], "lr": 0.05}, {"params": p[1:]}], lr=0.1,
                                momentum=0.5),
    "adam": lambda p: Adam(p, lr=0.01, weight_decay=1e-3),
    "adamw": lambda p: AdamW(p, lr=0.01),
}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("name", list(PLAN_OPTIMIZERS))
def test_step_plan_gives_the_slow_paths_results_when_things_change(name, scenario):
    (p1, o1), (p2, o2) = _twin_runs(PLAN_OPTIMIZERS[name], scenario)
    for a, b in zip(p1, p2):
        assert a.data.tobytes() == b.data.tobytes()
    s1, s2 = o1.state_dict()["state"], o2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        for key, v in s1[k].items():
            assert np.asarray(v).tobytes() == np.asarray(s2[k][key]).tobytes(), (k, key)


def test_step_plan_is_used_for_repeated_gradient_buffers_and_copies_drop_it():
    rng = np.random.default_rng(0)
    params = [Parameter(rng.standard_normal((3, 2)).astype(np.float32))]
    params[0].grad = np.ones((3, 2), np.float32)
    opt = Adam(params)
    opt.step()
    assert opt._plan is not None and opt._plan.holds(opt)
    opt.step()
    assert opt.state[0]["step"] == 2
    clone = copy.deepcopy(opt)  # no closures over the original's arrays travel along
    assert clone._plan is None
    clone.step()
    assert clone.state[0]["step"] == 3 and opt.state[0]["step"] == 2
    params[0].grad = np.ones((3, 2), np.float32)  # eager autograd: a new array every step
    assert not opt._plan.holds(opt)


class _DuckParam:
    """Not a Tensor: the optimizers take any object with data, grad and requires_grad."""

    def __init__(self, data):
        self.data, self.grad, self.requires_grad = data, None, True


@pytest.mark.parametrize("name", list(PLAN_OPTIMIZERS))
def test_step_plan_with_duck_typed_parameters(name):
    # Their arrays are read through the attribute (a Tensor's through its slot); the steps must
    # match Parameters' bit for bit, the planned ones included.
    runs = []
    for make in (Parameter, _DuckParam):
        rng = np.random.default_rng(2)
        params = [make(rng.standard_normal((3, 4)).astype(np.float32)) for _ in range(3)]
        for p in params:
            p.grad = rng.standard_normal((3, 4)).astype(np.float32)
        opt = PLAN_OPTIMIZERS[name](params)
        for _ in range(4):
            opt.step()
        assert opt._plan is not None
        runs.append([p.data.copy() for p in params])
    for a, b in zip(*runs):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_step_plan_leaves_an_overflowing_step_count_to_the_full_path(name):
    rng = np.random.default_rng(3)
    params = [Parameter(rng.standard_normal((3, 4)).astype(np.float32))]
    params[0].grad = np.ones((3, 4), np.float32)
    opt = PLAN_OPTIMIZERS[name](params)
    opt.step()
    opt.step()
    assert opt._plan is not None
    opt.state[0]["step"] = 2 ** 63 - 1
    before = params[0].data.copy()
    with pytest.raises(ValueError, match="64 bits"):
        opt.step()
    assert params[0].data.tobytes() == before.tobytes()
    assert opt.state[0]["step"] == 2 ** 63 - 1


@pytest.mark.parametrize("name", list(PLAN_OPTIMIZERS))
@pytest.mark.parametrize("change", ["read-only param", "read-only state", "grad reshaped"])
def test_step_plan_notices_arrays_changed_in_place(name, change):
    """The plan holds the same array objects; what changed inside one of them (its flags or its
    shape) sends the step down the full path, which reports it as it would have without a plan,
    and nothing is written."""
    rng = np.random.default_rng(1)
    params = [Parameter(rng.standard_normal((4, 3)).astype(np.float32)) for _ in range(2)]
    grads = [np.full((4, 3), 0.5, np.float32) for _ in params]
    for p, g in zip(params, grads):
        p.grad = g
    opt = PLAN_OPTIMIZERS[name](params)
    opt.step()
    opt.step()
    assert opt._plan is not None
    if change == "read-only param":
        params[1].data.flags.writeable = False
        expected = (ValueError, r"param .*(read-only|writeable)")
    elif change == "read-only state":
        key = "momentum_buffer" if "momentum_buffer" in opt.state[1] else "exp_avg_sq"
        opt.state[1][key].flags.writeable = False
        expected = (ValueError, rf"{key} .*(read-only|writeable)")
    else:
        grads[1].shape = (3, 4)
        expected = (ValueError, r"shape")
    before = [p.data.copy() for p in params]
    state_before = copy.deepcopy(opt.state_dict())
    with pytest.raises(expected[0], match=expected[1]):
        opt.step()
    for p, b in zip(params, before):
        assert p.data.tobytes() == b.tobytes()
    after = opt.state_dict()
    for k, s0 in state_before["state"].items():
        for key, v in s0.items():
            assert np.asarray(after["state"][k][key]).tobytes() == np.asarray(v).tobytes()
