"""``pydl.nn.utils``: gradient clipping with PyTorch's semantics."""

import math

import numpy as np

from .tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters, who):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"{who}: parameters must be a Tensor or an iterable of Tensors, got "
                        f"{type(parameters).__name__}") from None
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: parameters must be Tensors, got {type(p).__name__}")
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients in place so that their joint norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the norm is taken over all gradients together, and
    they are multiplied by ``min(1, max_norm / (total_norm + 1e-6))``.

    Args:
        parameters: A Tensor or an iterable of Tensors (those without a gradient are skipped).
        max_norm: The largest allowed norm, >= 0.
        norm_type: The p of the p-norm, > 0, or ``math.inf``. Default 2.
        error_if_nonfinite: Raise when the total norm is NaN or infinite. Default False.

    Returns:
        The total norm of the gradients before clipping, a float.

    Raises:
        ValueError: max_norm < 0 or NaN, norm_type <= 0, or (error_if_nonfinite) a non-finite
            total norm.
    """
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not max_norm >= 0.0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    if not norm_type > 0.0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 or inf, got {norm_type}")
    grads = _grads(parameters, "clip_grad_norm_")
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        total = max(float(np.abs(g).max(initial=0.0)) for g in grads)
    else:
        total = sum(float(np.sum(np.abs(g, dtype=np.float64) ** norm_type)) for g in grads)
        total = total ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise ValueError(f"clip_grad_norm_: the total norm of the gradients is {total}; pass "
                         f"error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= coef
    return total


def clip_grad_value_(parameters, clip_value):
    """Clip every gradient element in place to ``[-clip_value, clip_value]``.

    Args:
        parameters: A Tensor or an iterable of Tensors (those without a gradient are skipped).
        clip_value: The bound, >= 0.

    Raises:
        ValueError: clip_value < 0 or NaN.
    """
    clip_value = float(clip_value)
    if not clip_value >= 0.0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for g in _grads(parameters, "clip_grad_value_"):
        np.clip(g, -clip_value, clip_value, out=g)
