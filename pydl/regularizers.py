"""Weight penalties added to the loss: L1, L2 and ElasticNet over a model's weights.

By default only weights are penalised, not biases (a parameter whose dotted name ends in
``"bias"``); pass ``include_bias=True`` to penalise every parameter. Three ways to use one:

- ``loss = criterion(out, y) + reg(model)``: a differentiable scalar Tensor (backward adds the
  penalty gradient with the compiled ``*_penalty_backward`` kernels);
- ``reg.add_gradients(model)`` after ``loss.backward()``: the same gradient added in place into
  every trainable parameter's ``.grad`` (the trainer's fast path, no graph node);
- ``reg.penalty(model)``: the value as a float, for logging.

Note: SGD's ``weight_decay=λ`` adds ``λ * w`` to the gradient, which is the gradient of
``L2(λ / 2)`` (``L2(wd)`` is ``wd * sum(w**2)``, gradient ``2 * wd * w``).

Example:
    >>> reg = pydl.regularizers.L2(5e-4)
    >>> loss = pydl.losses.CrossEntropyLoss()(model(x), y) + reg(model)
    >>> loss.backward()
"""

import math

import numpy as np

from . import kernels
from .tensor import Op, leaf_grad_buffer

__all__ = ["ElasticNet", "L1", "L2", "Regularizer"]


def _check(name, value, high=math.inf):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not 0.0 <= v <= high:  # also rejects NaN
        bound = ">= 0" if high == math.inf else f"in [0, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


class _PenaltyOp(Op):
    """The penalty of the operand parameters; backward adds its gradient into their ``.grad``."""

    def __init__(self, reg):
        self.reg = reg

    def forward(self, *weights):
        value = sum(self.reg._value(w) for w in weights)
        return np.array(value, dtype=weights[0].dtype if weights else np.float32)

    def backward(self, g):
        scale = float(g)
        for p, need in zip(self.inputs, self.needs_grad):
            if need:
                self.reg._add_scaled(leaf_grad_buffer(p), p.data, scale)
        return (None,) * len(self.inputs)


class Regularizer:
    """Base class: a penalty ``value(w)`` summed over the selected parameters of a model.

    Subclasses set ``_value(w) -> float`` and ``_grad(grad, w, scale)`` (adds ``scale *
    d penalty / d w`` into ``grad`` in place; ``scale >= 0``).
    """

    def __init__(self, wd, include_bias=False):
        self.wd = _check("wd", wd)
        self.include_bias = bool(include_bias)

    def parameters(self, model):
        """Return the parameters this regularizer penalises (frozen ones included)."""
        if self.include_bias:
            return list(model.parameters())
        return [p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] != "bias"]

    def penalty(self, model):
        """Return the penalty of ``model``'s selected parameters as a float."""
        return float(sum(self._value(p.data) for p in self.parameters(model)))

    def __call__(self, model):
        """Return the penalty as a scalar Tensor whose backward adds its gradient to the weights.

        Frozen parameters count in the value but get no gradient.
        """
        return _PenaltyOp(self)(*self.parameters(model))

    def _add_scaled(self, grad, w, scale):
        if scale >= 0.0 and grad.flags.c_contiguous and grad.flags.writeable:
            self._grad(grad, w, scale)
        else:  # a negative upstream gradient (e.g. ``-reg(model)``) or an unusual grad buffer
            tmp = np.zeros_like(w)
            self._grad(tmp, w, abs(scale))
            if scale >= 0.0:
                grad += tmp
            else:
                grad -= tmp

    def add_gradients(self, model):
        """Add the penalty gradient into ``.grad`` of every selected parameter, in place.

        Parameters that are frozen or have no gradient yet are skipped (call after backward).
        """
        for p in self.parameters(model):
            if p.requires_grad and p.grad is not None:
                self._add_scaled(p.grad, p.data, 1.0)

    def __repr__(self):
        return f"{type(self).__name__}(wd={self.wd}, include_bias={self.include_bias})"


class L1(Regularizer):
    """Penalise ``wd * sum(|w|)`` (gradient ``wd * sign(w)``, 0 at w = 0).

    Args:
        wd: Penalty weight, >= 0.
        include_bias: Also penalise biases. Default False.

    Raises:
        ValueError: wd negative or NaN.
    """

    def _value(self, w):
        return kernels.l1_penalty(w, self.wd)

    def _grad(self, grad, w, scale):
        kernels.l1_penalty_backward(grad, w, self.wd * scale)


class L2(Regularizer):
    """Penalise ``wd * sum(w**2)`` (gradient ``2 * wd * w``).

    SGD's ``weight_decay=λ`` equals ``L2(λ / 2)``.

    Args:
        wd: Penalty weight, >= 0. Default 5e-4.
        include_bias: Also penalise biases. Default False.

    Raises:
        ValueError: wd negative or NaN.
    """

    def __init__(self, wd=5e-4, include_bias=False):
        super().__init__(wd, include_bias)

    def _value(self, w):
        return kernels.l2_penalty(w, self.wd)

    def _grad(self, grad, w, scale):
        kernels.l2_penalty_backward(grad, w, self.wd * scale)


class ElasticNet(Regularizer):
    """Penalise ``wd * (l1_ratio * sum(|w|) + (1 - l1_ratio) * sum(w**2))``.

    ``l1_ratio=1`` is ``L1(wd)``, ``l1_ratio=0`` is ``L2(wd)``.

    Args:
        wd: Penalty weight, >= 0.
        l1_ratio: Share of the L1 term, in [0, 1]. Default 0.5.
        include_bias: Also penalise biases. Default False.

    Raises:
        ValueError: wd negative or NaN, or l1_ratio outside [0, 1] or NaN.
    """

    def __init__(self, wd, l1_ratio=0.5, include_bias=False):
        super().__init__(wd, include_bias)
        self.l1_ratio = _check("l1_ratio", l1_ratio, 1.0)

    def _value(self, w):
        return kernels.elastic_net_penalty(w, self.wd, self.l1_ratio)

    def _grad(self, grad, w, scale):
        kernels.elastic_net_penalty_backward(grad, w, self.wd * scale, self.l1_ratio)

    def __repr__(self):
        return (f"ElasticNet(wd={self.wd}, l1_ratio={self.l1_ratio}, "
                f"include_bias={self.include_bias})")
