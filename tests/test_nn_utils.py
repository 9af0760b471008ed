"""pydl.nn.utils: gradient clipping against torch.nn.utils (float64)."""

import math

import numpy as np
import pytest
import torch

import pydl
from pydl.nn.utils import clip_grad_norm_, clip_grad_value_


def pairs(rng, scale):
    grads = [rng.standard_normal(s) * scale for s in [(3, 4), (4,), (2, 3)]]
    ours = []
    theirs = []
    for g in grads:
        p = pydl.nn.Parameter(np.zeros(g.shape))
        p.grad = g.copy()
        ours.append(p)
        t = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.tensor(g)
        theirs.append(t)
    return ours, theirs


@pytest.mark.parametrize("max_norm", [0.0, 0.5, 3.0, 100.0])
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, math.inf])
def test_clip_grad_norm_matches_torch(max_norm, norm_type, rng):
    ours, theirs = pairs(rng, 2.0)
    ours.append(pydl.nn.Parameter(np.ones(2)))  # no gradient: skipped
    total = clip_grad_norm_(ours, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, ttotal.item(), rtol=1e-12)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("clip", [0.0, 0.3, 10.0])
def test_clip_grad_value_matches_torch(clip, rng):
    ours, theirs = pairs(rng, 1.0)
    clip_grad_value_(ours, clip)
    torch.nn.utils.clip_grad_value_(theirs, clip)
    for p, t in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


def test_single_tensor_and_model_parameters(rng):
    p = pydl.nn.Parameter(np.zeros(4))
    p.grad = np.array([3.0, 4.0, 0.0, 0.0])
    assert clip_grad_norm_(p, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(np.linalg.norm(p.grad), 1.0, rtol=1e-5)
    model = pydl.nn.Sequential(pydl.nn.Linear(3, 2))
    assert clip_grad_norm_(model.parameters(), 1.0) == 0.0  # no gradients yet


def test_bad_input():
    p = pydl.nn.Parameter(np.zeros(2))
    p.grad = np.array([np.inf, 1.0])
    with pytest.raises(ValueError, match="error_if_nonfinite"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_([p], -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_([p], 1.0, norm_type=0)
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_([p], float("nan"))
    with pytest.raises(TypeError, match="Tensors"):
        clip_grad_value_([np.zeros(2)], 1.0)
