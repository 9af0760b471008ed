"""Loss objects: callables ``(pred, target) -> scalar Tensor``, with PyTorch's values.

Example:
    >>> loss_fn = pydl.losses.CrossEntropyLoss(label_smoothing=0.1)
    >>> loss = loss_fn(model(x), y)        # y: integer labels (numpy array or Tensor)
    >>> loss.backward()
"""

import copy

import numpy as np

from . import functional as F
from . import nn
from .tensor import Tensor

__all__ = ["CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss", "HuberLoss"]


class _Loss:
    # What the Trainer needs to know: the task ("classification", "binary" or "regression",
    # which picks metrics="auto") and the output activation that turns outputs into
    # probabilities (None when outputs are not logits).
    task = "regression"
    output_activation = None

    def __init__(self, reduction="mean"):
        F._check_reduction(type(self).__name__, reduction)
        self.reduction = reduction

    def __setattr__(self, name, value):
        # A changed option (reduction, weights, label smoothing, ...) records compiled steps
        # anew, as a changed Module attribute does.
        nn._structure_version += 1
        object.__setattr__(self, name, value)

    def with_reduction(self, reduction):
        """Return a copy of this loss with another reduction ("mean", "sum" or "none")."""
        F._check_reduction(type(self).__name__, reduction)
        other = copy.copy(self)
        other.reduction = reduction
        return other

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _weights(who, arg, value):
    """Validate an optional 1-D vector of finite, non-negative weights; return it as an array."""
    if value is None:
        return None
    w = value.data if isinstance(value, Tensor) else np.asarray(value)
    if w.dtype.kind not in "biuf" or w.ndim != 1:
        raise ValueError(f"{who}: {arg} must be a 1-D array of numbers (one per class), got "
                         f"{w.dtype} of shape {w.shape}")
    w = w.astype(np.float64)
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"{who}: {arg} must hold finite numbers >= 0, got {w}")
    return w


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of (N, C) logits against (N,) integer class labels.

    Args:
        weight: Optional (C,) per-class weights (PyTorch's semantics: "mean" divides by the
            summed weights of the batch's labels). Default None.
        label_smoothing: In [0, 1]; mixes the one-hot target with the uniform one. Default 0.0.
        reduction: "mean" (default), "sum" or "none" (an (N,) Tensor of per-sample losses).

    Raises:
        ValueError: label_smoothing outside [0, 1] or NaN, a weight that is not a 1-D vector of
            finite numbers >= 0, or an unknown reduction.
    """

    task = "classification"
    output_activation = "softmax"

    def __init__(self, weight=None, label_smoothing=0.0, reduction="mean"):
        super().__init__(reduction)
        label_smoothing = float(label_smoothing)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got "
                             f"{label_smoothing}")
        self.weight = _weights("CrossEntropyLoss", "weight", weight)
        self.label_smoothing = label_smoothing

    def __call__(self, pred, target):
        return F.cross_entropy(pred, target, self.reduction, self.label_smoothing, self.weight)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits against 0/1 (or probability) targets of the same shape.

    Targets of shape (N,) are accepted for (N, 1) logits.

    Args:
        weight: Optional weights broadcast over the elements (e.g. one per class). Default None.
        pos_weight: Optional weight of the positive term, one per class (last dimension), as
            PyTorch: > 1 raises recall, < 1 precision. Default None.
        reduction: "mean" (default), "sum" or "none" (per-element losses).

    Raises:
        ValueError: weight or pos_weight not a 1-D vector of finite numbers >= 0, or an unknown
            reduction.
    """

    task = "binary"
    output_activation = "sigmoid"

    def __init__(self, weight=None, pos_weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = _weights("BCEWithLogitsLoss", "weight", weight)
        self.pos_weight = _weights("BCEWithLogitsLoss", "pos_weight", pos_weight)

    def __call__(self, pred, target):
        return F.binary_cross_entropy_with_logits(pred, target, self.reduction, self.weight,
                                                  self.pos_weight)


class MSELoss(_Loss):
    """Mean squared error between predictions and targets of the same shape.

    Args:
        reduction: "mean" (default), "sum" or "none" (per-element losses).
    """

    def __call__(self, pred, target):
        return F.mse_loss(pred, target, self.reduction)


class L1Loss(_Loss):
    """Mean absolute error between predictions and targets of the same shape.

    Args:
        reduction: "mean" (default), "sum" or "none" (per-element losses).
    """

    def __call__(self, pred, target):
        return F.l1_loss(pred, target, self.reduction)


class HuberLoss(_Loss):
    """Huber loss: quadratic for |pred - target| <= delta, linear beyond.

    Args:
        delta: Threshold, > 0. Default 1.0.
        reduction: "mean" (default), "sum" or "none" (per-element losses).

    Raises:
        ValueError: delta <= 0, infinite or NaN, or an unknown reduction.
    """

    def __init__(self, delta=1.0, reduction="mean"):
        super().__init__(reduction)
        delta = float(delta)
        if not 0.0 < delta < float("inf"):
            raise ValueError(f"HuberLoss: delta must be a finite number > 0, got {delta}")
        self.delta = delta

    def __call__(self, pred, target):
        return F.huber_loss(pred, target, self.delta, self.reduction)
