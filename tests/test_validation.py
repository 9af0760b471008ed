"""pydl._validation: one rule (TypeError for a wrong type, ValueError for a bad value) and one
message for a bad hyper-parameter, whichever layer (nn, functional, kernels) it reaches first."""

import re

import numpy as np
import pytest

import pydl
from pydl import _validation as V
from pydl import functional as F
from pydl import kernels as K
from pydl import nn

BAD_TYPES = ["a", "0.5", None, [0.5], True, np.zeros(3), object()]
BAD_VALUES = [-0.1, 1.0, 1.5, float("nan"), float("inf"), -np.inf]


def _raised(fn):
    with pytest.raises((TypeError, ValueError)) as info:
        fn()
    return info.type, str(info.value)


def _p_entries(p):
    """The three layers a dropout p goes through, with the name each uses in its messages."""
    x = np.ones(4, np.float32)
    return {
        "nn.Dropout": (lambda: nn.Dropout(p), "Dropout"),
        "F.dropout": (lambda: F.dropout(pydl.tensor(x), p), "dropout"),
        "kernels.dropout": (lambda: K.dropout(x, p, 0), "dropout"),
        "kernels.dropout_backward": (
            lambda: K.dropout_backward(x, np.ones(4, np.uint8), p), "dropout_backward"),
        "kernels.dropout_mask": (lambda: K.dropout_mask(4, p, 0), "dropout_mask"),
    }


# Ids must not depend on the process (pytest-xdist workers compare their collections): no address.
@pytest.mark.parametrize("p", BAD_TYPES, ids=lambda p: "object()" if type(p) is object else repr(p))
def test_dropout_p_wrong_type_is_type_error_everywhere(p):
    for where, (fn, who) in _p_entries(p).items():
        typ, msg = _raised(fn)
        assert typ is TypeError, where
        assert msg == f"{who}: p must be a real number, got {type(p).__name__}", where


@pytest.mark.parametrize("p", BAD_VALUES, ids=repr)
def test_dropout_p_bad_value_is_value_error_everywhere(p):
    for where, (fn, who) in _p_entries(p).items():
        typ, msg = _raised(fn)
        assert typ is ValueError, where
        assert msg == f"{who}: p (the drop probability) must be in [0, 1), got {V.fmt_real(p)}"


@pytest.mark.parametrize("p", [0, 0.25, np.float32(0.5), np.float64(0.125), np.int64(0)])
def test_dropout_p_accepted_alike(p):
    assert nn.Dropout(p).p == float(p)
    x = np.ones(64, np.float32)
    y, mask = K.dropout(x, p, 3)
    np.testing.assert_array_equal(K.dropout_mask(64, p, 3), mask)


def test_same_message_python_and_cpp_for_real_parameters():
    # The C++ checks and _validation word the type error identically for every real parameter.
    x = np.ones(3)
    cases = [
        (lambda: K.leaky_relu(x, "a"), "leaky_relu", "negative_slope"),
        (lambda: K.elu_backward(x, x, None), "elu_backward", "alpha"),
        (lambda: K.l1_penalty(x, "a"), "l1_penalty", "wd"),
        (lambda: K.elastic_net_penalty(x, 1.0, [0.5]), "elastic_net_penalty", "l1_ratio"),
        (lambda: K.softmax_cross_entropy(np.ones((2, 3)), np.zeros(2, np.int64),
                                         label_smoothing="x"), "softmax_cross_entropy",
         "label_smoothing"),
        (lambda: K.linear(np.ones((2, 3)), np.ones((4, 3)), alpha=True), "linear", "alpha"),
    ]
    for fn, who, name in cases:
        typ, msg = _raised(fn)
        bad = re.search(r"got (\w+)$", msg).group(1)
        assert typ is TypeError
        with pytest.raises(TypeError) as info:
            V.real({"str": "a", "NoneType": None, "list": [0.5], "bool": True}[bad], name, who)
        assert str(info.value) == msg


def test_same_message_python_and_cpp_for_ranges():
    x = np.ones(3)
    with pytest.raises(ValueError) as info:
        K.elastic_net_penalty(x, 1.0, 1.5)
    with pytest.raises(ValueError) as mine:
        V.real(1.5, "l1_ratio", "elastic_net_penalty", low=0.0, high=1.0)
    assert str(mine.value) == str(info.value)


def test_choice_matches_cpp():
    x = np.ones(3)
    for bad, typ in (("tan", ValueError), (3, TypeError)):
        with pytest.raises(typ) as info:
            K.gelu(x, bad)
        with pytest.raises(typ) as mine:
            V.choice(bad, "approximate", "gelu", ("none", "tanh"))
        assert str(mine.value) == str(info.value)
    assert V.choice("tanh", "approximate", "gelu", ("none", "tanh")) == "tanh"


def test_real_bounds_and_messages():
    assert V.real(np.float32(2.5), "lr", "SGD", low=0.0) == 2.5
    assert V.real(3, "lr", "SGD") == 3.0
    with pytest.raises(ValueError, match=r"^SGD: lr must be in \(0, inf\], got 0$"):
        V.real(0.0, "lr", "SGD", low=0.0, low_open=True)
    with pytest.raises(ValueError, match=r"^SGD: lr must be a finite number in \[0, inf\], got inf"):
        V.real(float("inf"), "lr", "SGD", low=0.0, finite=True)
    with pytest.raises(ValueError, match="got nan"):
        V.real(float("nan"), "momentum", "SGD", low=0.0)
    with pytest.raises(TypeError, match="^SGD: lr must be a real number, got str$"):
        V.real("0.1", "lr", "SGD")


def test_integer():
    assert V.integer(np.int32(4), "k", "top_k", low=1) == 4
    with pytest.raises(TypeError, match="^top_k: k must be an int, got float$"):
        V.integer(2.0, "k", "top_k")
    with pytest.raises(TypeError, match="got bool"):
        V.integer(True, "k", "top_k")
    with pytest.raises(ValueError, match=r"^top_k: k must be an int in \[1, inf\], got 0$"):
        V.integer(0, "k", "top_k", low=1)
