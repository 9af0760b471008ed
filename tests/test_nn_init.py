"""pydl.nn.init: PyTorch's gains and fans (torch as the oracle), distribution moments and
bounds, in-place filling, seeding, and bad input."""

import math

import numpy as np
import pytest
import torch

import pydl
from pydl import nn
from pydl.nn import init


@pytest.mark.parametrize("name,param", [("linear", None), ("sigmoid", None), ("tanh", None),
                                        ("relu", None), ("leaky_relu", None),
                                        ("leaky_relu", 0.2), ("selu", None), ("conv2d", None)])
def test_calculate_gain_matches_torch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(
        torch.nn.init.calculate_gain(name, param), rel=1e-15)


SHAPES = [(300, 200), (64, 3, 5, 5), (128, 40, 7)]


def empirical(shape, fn, **kw):
    t = torch.empty(shape, dtype=torch.float64)
    fn(t, **kw)
    return t.numpy()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name,kw", [
    ("xavier_uniform_", {}), ("xavier_uniform_", {"gain": 2.0}), ("xavier_normal_", {}),
    ("kaiming_uniform_", {}), ("kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", {"nonlinearity": "relu"}), ("kaiming_normal_", {"mode": "fan_out"}),
])
def test_schemes_have_pytorch_bounds_and_variance(shape, name, kw):
    pydl.manual_seed(0)
    p = nn.Parameter(np.zeros(shape))
    assert getattr(init, name)(p, **kw) is p
    ours = p.data
    theirs = empirical(shape, getattr(torch.nn.init, name), **kw)
    # same distribution: variances agree within sampling error, and uniform bounds agree
    rel = 6 / math.sqrt(ours.size)
    assert abs(ours.var() / theirs.var() - 1) < rel
    assert abs(ours.mean()) < 6 * ours.std() / math.sqrt(ours.size)
    if "uniform" in name:
        assert np.abs(ours).max() <= np.abs(theirs).max() * (1 + 1e-3) + 1e-12
        assert np.abs(ours).max() >= np.abs(theirs).max() * (1 - 1e-2)


def test_default_linear_init_equals_kaiming_uniform_with_a_sqrt5():
    pydl.manual_seed(5)
    layer = nn.Linear(50, 40)
    w = layer.weight.data.copy()
    pydl.manual_seed(5)
    init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
    np.testing.assert_allclose(layer.weight.data, w, rtol=1e-6)


def test_uniform_normal_constant_fill_in_place_and_keep_dtype():
    pydl.manual_seed(1)
    p = nn.Parameter(np.zeros((200, 300), np.float32))
    buf = p.data
    init.uniform_(p, -2.0, 3.0)
    assert p.data is buf and buf.dtype == np.float32
    assert buf.min() >= -2.0 and buf.max() <= 3.0 and abs(buf.mean() - 0.5) < 0.03
    init.normal_(p, 1.0, 0.5)
    assert abs(buf.mean() - 1.0) < 0.01 and abs(buf.std() - 0.5) < 0.01
    init.constant_(p, 0.25)
    assert (buf == 0.25).all()
    assert (init.zeros_(p).data == 0).all() and (init.ones_(p).data == 1).all()
    arr = np.empty(5)
    assert init.ones_(arr) is arr and (arr == 1).all()


def test_seeded_and_reproducible():
    pydl.manual_seed(9)
    a = init.xavier_normal_(nn.Parameter(np.zeros((8, 8)))).data.copy()
    pydl.manual_seed(9)
    b = init.xavier_normal_(nn.Parameter(np.zeros((8, 8)))).data
    assert np.array_equal(a, b)


def test_apply_with_init_like_pytorch_recipes():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def reset(m):
        if isinstance(m, nn.Linear):
            init.kaiming_normal_(m.weight, nonlinearity="relu")
            init.zeros_(m.bias)

    model.apply(reset)
    assert not model[0].bias.data.any() and not model[2].bias.data.any()


def test_bad_input():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(nn.Parameter(np.zeros(5)))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(nn.Parameter(np.zeros((2, 2))), mode="fan_avg")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(TypeError, match="Tensor"):
        init.zeros_([1.0, 2.0])
    with pytest.raises(TypeError, match="Tensor"):
        init.zeros_(np.zeros(3, np.int64))
