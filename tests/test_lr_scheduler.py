"""pydl.optim.lr_scheduler: closed forms, torch's schedulers as a second oracle, ReduceLROnPlateau
traces, warmup chaining, validation and state_dict."""

import math

import numpy as np
import pytest

from pydl.nn import Parameter
from pydl.optim import SGD
from pydl.optim import lr_scheduler as S



def make_opt(lr=0.1, groups=1):
    if groups == 1:
        return SGD([Parameter(np.zeros(2))], lr=lr, momentum=0.9)
    return SGD([{"params": [Parameter(np.zeros(2))], "lr": lr * (i + 1)} for i in range(groups)],
               lr=lr, momentum=0.9)


def trace(sched, n):
    """Learning rates seen during epochs 0..n-1 (read before each step, as a training loop does)."""
    out = []
    for _ in range(n):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.step()
    return out


CLOSED_FORMS = [
    ("StepLR", dict(step_size=3, gamma=0.5), lambda t: 0.1 * 0.5 ** (t // 3)),
    ("ExponentialLR", dict(gamma=0.9), lambda t: 0.1 * 0.9 ** t),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01),
     lambda t: 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * t / 7)) / 2),
    ("LinearLR", dict(start_factor=0.25, end_factor=1.0, total_iters=4),
     lambda t: 0.1 * (0.25 + 0.75 * min(t, 4) / 4)),
    ("LinearLR", dict(), lambda t: 0.1 * (1 / 3 + (2 / 3) * min(t, 5) / 5)),
]


@pytest.mark.parametrize("name,kw,closed", CLOSED_FORMS)
def test_schedules_follow_their_closed_forms(name, kw, closed):
    opt = make_opt()
    sched = getattr(S, name)(opt, **kw)
    got = trace(sched, 20)
    np.testing.assert_allclose(got, [closed(t) for t in range(20)], rtol=1e-12)
    assert sched.get_last_lr() == [opt.lr]


@pytest.mark.parametrize("name,kw,closed", CLOSED_FORMS)
def test_schedules_match_torch(name, kw, closed):
    import torch
    tparam = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([tparam], lr=0.1, momentum=0.9)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    expected = []
    for _ in range(20):
        expected.append(topt.param_groups[0]["lr"])
        topt.step()
        tsched.step()
    got = trace(getattr(S, name)(make_opt(), **kw), 20)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-15)


def test_every_parameter_group_is_scheduled_from_its_own_lr():
    opt = make_opt(groups=2)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.05, 0.1])


def test_sequential_warmup_then_cosine_matches_torch():
    import torch
    tparam = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([tparam], lr=0.1)
    tsched = torch.optim.lr_scheduler.SequentialLR(
        topt, [torch.optim.lr_scheduler.LinearLR(topt, start_factor=0.1, total_iters=3),
               torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=10)], milestones=[4])
    expected = []
    for _ in range(16):
        expected.append(topt.param_groups[0]["lr"])
        topt.step()
        tsched.step()
    opt = make_opt()
    sched = S.SequentialLR(opt, [S.LinearLR(opt, start_factor=0.1, total_iters=3),
                                 S.CosineAnnealingLR(opt, T_max=10)], milestones=[4])
    np.testing.assert_allclose(trace(sched, 16), expected, rtol=1e-10)


def test_linear_warmup_ramps_then_hands_over():
    opt = make_opt()
    sched = S.LinearWarmup(opt, warmup_steps=4, after=S.StepLR(opt, step_size=2, gamma=0.5))
    expected = [0.025, 0.05, 0.075, 0.1] + [0.1 * 0.5 ** (t // 2) for t in range(6)]
    np.testing.assert_allclose(trace(sched, 10), expected, rtol=1e-12)


def test_linear_warmup_alone_stays_at_base_lr():
    opt = make_opt()
    sched = S.LinearWarmup(opt, warmup_steps=2)
    np.testing.assert_allclose(trace(sched, 5), [0.05, 0.1, 0.1, 0.1, 0.1], rtol=1e-12)


def plateau_reference(metrics, lr, mode, factor, patience, threshold, threshold_mode, cooldown,
                      min_lr):
    """ReduceLROnPlateau written out from its definition; returns the lr after each step."""
    best = math.inf if mode == "min" else -math.inf
    bad = cool = 0
    out = []
    for m in metrics:
        if mode == "min":
            better = m < (best * (1 - threshold) if threshold_mode == "rel" else best - threshold)
        else:
            better = m > (best * (1 + threshold) if threshold_mode == "rel" else best + threshold)
        if better:
            best, bad = m, 0
        else:
            bad += 1
        if cool > 0:
            cool -= 1
            bad = 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            if lr - new > 1e-8:
                lr = new
            cool, bad = cooldown, 0
        out.append(lr)
    return out


PLATEAU_CASES = [
    dict(mode="min", factor=0.5, patience=2, threshold=1e-4, threshold_mode="rel", cooldown=0,
         min_lr=0.0),
    dict(mode="min", factor=0.1, patience=0, threshold=0.05, threshold_mode="abs", cooldown=2,
         min_lr=0.002),
    dict(mode="max", factor=0.5, patience=1, threshold=0.01, threshold_mode="rel", cooldown=1,
         min_lr=0.0),
    dict(mode="max", factor=0.3, patience=3, threshold=0.0, threshold_mode="abs", cooldown=0,
         min_lr=0.01),
]
METRICS = [1.0, 0.9, 0.95, 0.9, 0.91, 0.92, 0.5, 0.5, 0.49999, 0.6, 0.7, float("nan"), 0.4, 0.45,
           0.45, 0.45, 0.45, 0.3, 0.31, 0.32, 0.33, 0.34, 0.35]


@pytest.mark.parametrize("kw", PLATEAU_CASES)
def test_reduce_on_plateau_matches_its_definition(kw):
    opt = make_opt()
    sched = S.ReduceLROnPlateau(opt, **kw)
    got = []
    for m in METRICS:
        sched.step(m)
        got.append(opt.lr)
    assert got == plateau_reference(METRICS, 0.1, **kw)
    assert got[-1] < 0.1  # every case reduces at least once
    assert sched.get_last_lr() == [got[-1]]


@pytest.mark.parametrize("kw", PLATEAU_CASES)
def test_reduce_on_plateau_matches_torch(kw):
    import torch
    tparam = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([tparam], lr=0.1)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    opt = make_opt()
    sched = S.ReduceLROnPlateau(opt, **kw)
    for m in METRICS:
        tsched.step(m)
        sched.step(m)
        assert opt.lr == topt.param_groups[0]["lr"]


def test_reduce_on_plateau_accepts_scalar_arrays():
    opt = make_opt()
    sched = S.ReduceLROnPlateau(opt, patience=0)
    sched.step(np.float32(1.0))
    sched.step(np.array(2.0))
    assert opt.lr == pytest.approx(0.01)


@pytest.mark.parametrize("make,name", [
    (lambda o: S.StepLR(o, step_size=0), "step_size"),
    (lambda o: S.StepLR(o, step_size=2.5), "step_size"),
    (lambda o: S.StepLR(o, step_size=2, gamma=-1), "gamma"),
    (lambda o: S.ExponentialLR(o, gamma=float("nan")), "gamma"),
    (lambda o: S.CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: S.CosineAnnealingLR(o, T_max=5, eta_min=-1), "eta_min"),
    (lambda o: S.LinearLR(o, start_factor=0), "start_factor"),
    (lambda o: S.LinearLR(o, end_factor=1.5), "end_factor"),
    (lambda o: S.LinearLR(o, total_iters=0), "total_iters"),
    (lambda o: S.LinearWarmup(o, warmup_steps=0), "warmup_steps"),
    (lambda o: S.ReduceLROnPlateau(o, factor=1.0), "factor"),
    (lambda o: S.ReduceLROnPlateau(o, mode="up"), "mode"),
    (lambda o: S.ReduceLROnPlateau(o, threshold_mode="pct"), "threshold_mode"),
    (lambda o: S.ReduceLROnPlateau(o, patience=-1), "patience"),
    (lambda o: S.ReduceLROnPlateau(o, min_lr=[0.0, 0.0]), "min_lr"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2)], milestones=[3]), "milestones"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2), S.StepLR(make_opt(), 2)], milestones=[3]),
     "same optimizer"),
])
def test_invalid_arguments_raise(make, name):
    with pytest.raises(ValueError, match=name):
        make(make_opt())


def test_scheduler_needs_a_pydl_optimizer():
    with pytest.raises(TypeError, match="optimizer"):
        S.StepLR(object(), step_size=1)


@pytest.mark.parametrize("make", [
    lambda o: S.StepLR(o, step_size=2, gamma=0.5),
    lambda o: S.CosineAnnealingLR(o, T_max=6),
    lambda o: S.LinearWarmup(o, 3, after=S.ExponentialLR(o, gamma=0.8)),
])
def test_state_dict_round_trip_resumes_the_schedule(make):
    opt = make_opt()
    sched = make(opt)
    trace(sched, 5)
    saved = sched.state_dict()
    rest = trace(sched, 6)
    opt2 = make_opt()
    sched2 = make(opt2)
    sched2.load_state_dict(saved)
    opt2.lr = sched2.get_last_lr()[0]
    assert trace(sched2, 6) == rest
    with pytest.raises(ValueError, match="state_dict"):
        sched2.load_state_dict({"last_epoch": 3})


def test_reduce_on_plateau_state_dict_round_trip():
    opt = make_opt()
    sched = S.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    for m in METRICS[:6]:
        sched.step(m)
    saved = sched.state_dict()
    opt2 = SGD([Parameter(np.zeros(2))], lr=opt.lr)
    sched2 = S.ReduceLROnPlateau(opt2)
    sched2.load_state_dict(saved)
    for m in METRICS[6:]:
        sched.step(m)
        sched2.step(m)
        assert opt.lr == opt2.lr
    with pytest.raises(ValueError, match="unexpected keys"):
        sched2.load_state_dict({**saved, "bogus": 1})
