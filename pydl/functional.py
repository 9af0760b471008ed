"""Stateless differentiable functions on Tensors (``import pydl.functional as F``).

Each function accepts Tensors (numpy arrays are wrapped as constants), validates its arguments once
and calls the fused C++ kernels from :mod:`pydl.kernels` for forward and backward.
"""

import math

import numpy as np

from . import _validation, kernels
from . import random as _random
from .tensor import Tensor, _matmul_into_grad, accumulate_grad

__all__ = [
    "linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax", "log_softmax",
    "dropout", "cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "l1_loss",
    "huber_loss",
]

_ACTIVATION_BACKWARD = {
    "relu": lambda dy, y, slope, alpha: kernels.relu_backward(dy, y),
    "leaky_relu": lambda dy, y, slope, alpha: kernels.leaky_relu_backward(dy, y, slope),
    "elu": lambda dy, y, slope, alpha: kernels.elu_backward(dy, y, alpha),
    "sigmoid": lambda dy, y, slope, alpha: kernels.sigmoid_backward(dy, y),
    "tanh": lambda dy, y, slope, alpha: kernels.tanh_backward(dy, y),
}


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _check_reduction(name, reduction):
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{name}: reduction must be 'mean' or 'sum', got {reduction!r}")


def linear(x, weight, bias=None, activation=None, *, negative_slope=0.01, alpha=1.0):
    """Apply a dense layer: ``activation(x @ weight.T + bias)``, fused in one kernel.

    Args:
        x: (batch, in_features) Tensor (or (*, in_features); leading dims are flattened).
        weight: (out_features, in_features) Tensor, PyTorch's layout.
        bias: Optional (out_features,) Tensor. Default None.
        activation: None, "relu", "leaky_relu", "elu", "sigmoid" or "tanh", fused into the
            kernel's epilogue. Default None.
        negative_slope: leaky_relu slope. Default 0.01.
        alpha: elu scale. Default 1.0.

    Returns:
        The (batch, out_features) output Tensor.

    Raises:
        ValueError: x's last dimension differs from in_features (both are named), or weight is
            not 2-D, or bias has the wrong shape.
        TypeError: dtypes differ (e.g. float64 input into float32 weights).
    """
    x = _tensor(x)
    wd = weight.data
    if wd.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape "
                         f"{wd.shape}")
    xd = x.data
    if xd.ndim == 0 or xd.shape[-1] != wd.shape[1]:
        raise ValueError(f"linear: expected input with {wd.shape[1]} features in its last "
                         f"dimension, got input of shape {xd.shape}")
    if xd.ndim != 2:
        lead = xd.shape[:-1]
        y = linear(x.reshape(-1, wd.shape[1]), weight, bias, activation,
                   negative_slope=negative_slope, alpha=alpha)
        return y.reshape(*lead, wd.shape[0])
    bd = None if bias is None else bias.data
    y = kernels.linear(xd, wd, bd, activation, negative_slope=negative_slope, alpha=alpha)
    act_backward = None if activation is None else _ACTIVATION_BACKWARD[activation]

    def backward(g):
        dz = g if act_backward is None else act_backward(g, y, negative_slope, alpha)
        dx = kernels.matmul(dz, wd) if x.requires_grad else None
        dw = db = None
        if weight.requires_grad:
            if weight._backward is None:
                _matmul_into_grad(weight, dz, xd, trans_a=True)
            else:
                dw = kernels.matmul(dz, xd, trans_a=True)
        if bias is not None and bias.requires_grad:
            db = dz.sum(axis=0)
            if bias._backward is None:
                accumulate_grad(bias, db)
                db = None
        return dx, dw, db

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(y, parents, backward)


def relu(x):
    """Return max(x, 0) elementwise (gradient 0 at 0, as in PyTorch)."""
    return _tensor(x).relu()


def leaky_relu(x, negative_slope=0.01):
    """Return x where x > 0, else negative_slope * x (negative_slope >= 0, default 0.01)."""
    return _tensor(x).leaky_relu(negative_slope)


def elu(x, alpha=1.0):
    """Return x where x > 0, else alpha * (exp(x) - 1) (alpha >= 0, default 1.0)."""
    return _tensor(x).elu(alpha)


def sigmoid(x):
    """Return 1 / (1 + exp(-x)) elementwise."""
    return _tensor(x).sigmoid()


def tanh(x):
    """Return tanh(x) elementwise."""
    return _tensor(x).tanh()


def softmax(x, axis=-1):
    """Return the softmax of x along `axis` (default -1)."""
    return _tensor(x).softmax(axis)


def log_softmax(x, axis=-1):
    """Return the log-softmax of x along `axis` (default -1)."""
    return _tensor(x).log_softmax(axis)


def dropout(x, p=0.5, training=True):
    """Zero each element with probability `p` and scale the kept ones by 1 / (1 - p).

    The mask comes from the Philox kernel keyed by ``pydl.random.next_dropout_key()``, so
    ``pydl.manual_seed(s)`` makes the masks reproducible for any thread count.

    Args:
        x: Tensor.
        p: Probability of DROPPING an element, in [0, 1). Default 0.5.
        training: Apply dropout; when False (eval) x is returned unchanged. Default True.

    Returns:
        A Tensor like x (x itself when not training or p == 0).

    Raises:
        TypeError: p is not a real number.
        ValueError: p is NaN or outside [0, 1).
    """
    p = _validation.drop_probability(p, "dropout")
    x = _tensor(x)
    if not training or p == 0.0:
        return x
    seed, step = _random.next_dropout_key()
    y, mask = kernels.dropout(x.data, p, seed, step)
    return Tensor._make(y, (x,), lambda g: (kernels.dropout_backward(g, mask, p),))


def _scaled(d, g):
    """Return d * g for a scalar upstream gradient g, skipping the pass when g == 1."""
    return d if g == 1.0 else d * g


def _labels(name, target, n):
    if isinstance(target, Tensor):  # Tensors hold floats: accept whole-number labels
        labels = target.data.astype(np.int64)
        if not np.array_equal(labels, target.data):
            raise ValueError(f"{name}: a Tensor target must hold whole numbers (class labels)")
    else:
        labels = np.asarray(target)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold integer class labels, got dtype "
                        f"{labels.dtype} (use .astype(np.int64))")
    if labels.dtype not in (np.int64, np.int32):
        labels = labels.astype(np.int64)
    if labels.shape != (n,):
        raise ValueError(f"{name}: target must have shape ({n},) to match logits, got "
                         f"{labels.shape}")
    return labels


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """Return the softmax cross-entropy of logits against integer class labels.

    Same value as ``torch.nn.functional.cross_entropy`` with class-index targets.

    Args:
        logits: (N, C) Tensor of unnormalized scores (or (C,) for one sample).
        target: (N,) integer class labels in [0, C), numpy array or Tensor.
        reduction: "mean" (default) or "sum".
        label_smoothing: In [0, 1]; mixes the one-hot target with the uniform one. Default 0.0.

    Returns:
        A scalar Tensor.

    Raises:
        TypeError: target is not integer.
        ValueError: a label outside [0, C), a shape mismatch, label_smoothing outside [0, 1] or
            an unknown reduction.
    """
    _check_reduction("cross_entropy", reduction)
    logits = _tensor(logits)
    ld = logits.data
    if ld.ndim == 1:
        return cross_entropy(logits.reshape(1, -1), np.reshape(
            target.data if isinstance(target, Tensor) else target, (1,)), reduction,
            label_smoothing)
    if ld.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C) or (C,), got shape {ld.shape}")
    labels = _labels("cross_entropy", target, ld.shape[0])
    loss, dlogits = kernels.softmax_cross_entropy(
        ld, labels, label_smoothing=label_smoothing, reduction=reduction)
    return Tensor._make(np.array(loss, dtype=ld.dtype), (logits,),
                        lambda g: (_scaled(dlogits, g),))


def _float_target(name, pred, target):
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype != pred.data.dtype:
        if t.dtype.kind not in "biuf":
            raise TypeError(f"{name}: target must be numeric, got dtype {t.dtype}")
        t = t.astype(pred.data.dtype)
    if t.shape != pred.data.shape:
        raise ValueError(f"{name}: input shape {pred.data.shape} and target shape {t.shape} "
                         f"differ")
    return t


def _fused_loss(name, kernel, pred, target, reduction):
    _check_reduction(name, reduction)
    pred = _tensor(pred)
    t = _float_target(name, pred, target)
    loss, dpred = kernel(pred.data, t, reduction=reduction)
    return Tensor._make(np.array(loss, dtype=pred.data.dtype), (pred,),
                        lambda g: (_scaled(dpred, g),))


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """Return binary cross-entropy on logits (sigmoid folded in, stable for large |logits|).

    Args:
        logits: Tensor of any shape.
        target: Probabilities (usually 0/1) of the same shape; numpy array or Tensor.
        reduction: "mean" (default) or "sum".

    Returns:
        A scalar Tensor, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Raises:
        ValueError: shapes differ or an unknown reduction.
    """
    return _fused_loss("binary_cross_entropy_with_logits", kernels.bce_with_logits, logits,
                       target, reduction)


def mse_loss(pred, target, reduction="mean"):
    """Return the mean (or summed) squared error between pred and target (same shape)."""
    return _fused_loss("mse_loss", kernels.mse, pred, target, reduction)


def _elementwise_loss(name, pred, target, reduction, value_and_grad):
    _check_reduction(name, reduction)
    pred = _tensor(pred)
    diff = pred.data - _float_target(name, pred, target)
    value, grad = value_and_grad(diff)
    scale = 1.0 / diff.size if reduction == "mean" and diff.size else 1.0
    loss = value.sum() * scale if diff.size or reduction == "sum" else np.nan
    return Tensor._make(np.array(loss, dtype=diff.dtype), (pred,),
                        lambda g: (grad * (scale * g),))


def l1_loss(pred, target, reduction="mean"):
    """Return the mean (or summed) absolute error between pred and target (same shape).

    The gradient at pred == target is 0, as in PyTorch.
    """
    return _elementwise_loss("l1_loss", pred, target, reduction,
                             lambda d: (np.abs(d), np.sign(d)))


def huber_loss(pred, target, delta=1.0, reduction="mean"):
    """Return the Huber loss: 0.5 d^2 where |d| <= delta, else delta * (|d| - 0.5 delta).

    Args:
        pred: Tensor.
        target: Same shape; numpy array or Tensor.
        delta: Threshold between the quadratic and linear parts, > 0. Default 1.0.
        reduction: "mean" (default) or "sum".

    Returns:
        A scalar Tensor, as ``torch.nn.functional.huber_loss``.

    Raises:
        ValueError: delta <= 0 or NaN, shapes differ, or an unknown reduction.
    """
    delta = float(delta)
    if not delta > 0.0 or math.isinf(delta):
        raise ValueError(f"huber_loss: delta must be a finite number > 0, got {delta}")

    def value_and_grad(d):
        ad = np.abs(d)
        small = ad <= delta
        value = np.where(small, 0.5 * d * d, delta * (ad - 0.5 * delta))
        return value, np.where(small, d, delta * np.sign(d))

    return _elementwise_loss("huber_loss", pred, target, reduction, value_and_grad)
