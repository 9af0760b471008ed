"""Loss objects: callables ``(pred, target) -> scalar Tensor``, with PyTorch's values.

Example:
    >>> loss_fn = pydl.losses.CrossEntropyLoss(label_smoothing=0.1)
    >>> loss = loss_fn(model(x), y)        # y: integer labels (numpy array or Tensor)
    >>> loss.backward()
"""

from . import functional as F

__all__ = ["CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss", "HuberLoss"]


class _Loss:
    def __init__(self, reduction="mean"):
        F._check_reduction(type(self).__name__, reduction)
        self.reduction = reduction

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of (N, C) logits against (N,) integer class labels.

    Args:
        label_smoothing: In [0, 1]; mixes the one-hot target with the uniform one. Default 0.0.
        reduction: "mean" (default) or "sum".

    Raises:
        ValueError: label_smoothing outside [0, 1] or NaN, or an unknown reduction.
    """

    def __init__(self, label_smoothing=0.0, reduction="mean"):
        super().__init__(reduction)
        label_smoothing = float(label_smoothing)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got "
                             f"{label_smoothing}")
        self.label_smoothing = label_smoothing

    def __call__(self, pred, target):
        return F.cross_entropy(pred, target, self.reduction, self.label_smoothing)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits against 0/1 (or probability) targets of the same shape.

    Args:
        reduction: "mean" (default) or "sum".
    """

    def __call__(self, pred, target):
        return F.binary_cross_entropy_with_logits(pred, target, self.reduction)


class MSELoss(_Loss):
    """Mean squared error between predictions and targets of the same shape.

    Args:
        reduction: "mean" (default) or "sum".
    """

    def __call__(self, pred, target):
        return F.mse_loss(pred, target, self.reduction)


class L1Loss(_Loss):
    """Mean absolute error between predictions and targets of the same shape.

    Args:
        reduction: "mean" (default) or "sum".
    """

    def __call__(self, pred, target):
        return F.l1_loss(pred, target, self.reduction)


class HuberLoss(_Loss):
    """Huber loss: quadratic for |pred - target| <= delta, linear beyond.

    Args:
        delta: Threshold, > 0. Default 1.0.
        reduction: "mean" (default) or "sum".

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
