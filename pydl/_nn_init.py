"""``pydl.nn.init``: fill parameters in place with PyTorch's initialisation schemes.

Every function takes a Tensor/Parameter (or a float numpy array), overwrites its values in place
and returns it, as ``torch.nn.init``. Random draws come from ``pydl.random.generator()``, so
``pydl.manual_seed`` reproduces them.

Example:
    >>> def init_weights(m):
    ...     if isinstance(m, pydl.nn.Linear):
    ...         pydl.nn.init.xavier_uniform_(m.weight)
    ...         pydl.nn.init.zeros_(m.bias)
    >>> model.apply(init_weights)
"""

import math

import numpy as np

from . import random as _random
from .tensor import Tensor

__all__ = ["calculate_gain", "constant_", "kaiming_normal_", "kaiming_uniform_", "normal_",
           "ones_", "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_"]


def _array(tensor, who):
    data = tensor.data if isinstance(tensor, Tensor) else tensor
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        raise TypeError(f"nn.init.{who}: expected a Tensor, Parameter or float numpy array, got "
                        f"{type(tensor).__name__}")
    return data


def _fill(tensor, who, values):
    data = _array(tensor, who)
    data[...] = values
    return tensor


def _fans(data, who):
    if data.ndim < 2:
        raise ValueError(f"nn.init.{who}: fan in and fan out need at least 2 dimensions, got "
                         f"shape {data.shape}")
    receptive = int(np.prod(data.shape[2:])) if data.ndim > 2 else 1
    return data.shape[1] * receptive, data.shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """Return the recommended gain for a nonlinearity (PyTorch's values).

    Args:
        nonlinearity: "linear", "conv1d", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu" or
            "selu".
        param: The negative slope of "leaky_relu". Default None (0.01).

    Raises:
        ValueError: an unknown nonlinearity or a non-number slope.
    """
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"nn.init.calculate_gain: negative_slope {param!r} is not a number")
        return math.sqrt(2.0 / (1.0 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"nn.init.calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with draws from U(a, b); return the tensor."""
    data = _array(tensor, "uniform_")
    return _fill(tensor, "uniform_", _random.generator().uniform(a, b, data.shape))


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with draws from N(mean, std^2); return the tensor."""
    data = _array(tensor, "normal_")
    return _fill(tensor, "normal_", _random.generator().normal(mean, std, data.shape))


def constant_(tensor, val):
    """Fill with ``val``; return the tensor."""
    return _fill(tensor, "constant_", val)


def zeros_(tensor):
    """Fill with 0; return the tensor."""
    return _fill(tensor, "zeros_", 0.0)


def ones_(tensor):
    """Fill with 1; return the tensor."""
    return _fill(tensor, "ones_", 1.0)


def xavier_uniform_(tensor, gain=1.0):
    """Fill with U(-a, a), ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot); return it."""
    fan_in, fan_out = _fans(_array(tensor, "xavier_uniform_"), "xavier_uniform_")
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor, gain=1.0):
    """Fill with N(0, std^2), ``std = gain * sqrt(2 / (fan_in + fan_out))`` (Glorot); return it."""
    fan_in, fan_out = _fans(_array(tensor, "xavier_normal_"), "xavier_normal_")
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor, who, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"nn.init.{who}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(_array(tensor, who), who)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """Fill with U(-b, b), ``b = gain * sqrt(3 / fan)`` (He); return the tensor.

    Args:
        tensor: The parameter to fill.
        a: Negative slope of the leaky_relu after this layer. Default 0.
        mode: "fan_in" (default, keeps forward variance) or "fan_out" (backward).
        nonlinearity: As :func:`calculate_gain`. Default "leaky_relu".
    """
    bound = math.sqrt(3.0) * _kaiming_std(tensor, "kaiming_uniform_", a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """Fill with N(0, std^2), ``std = gain / sqrt(fan)`` (He); arguments as kaiming_uniform_."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, "kaiming_normal_", a, mode, nonlinearity))
