"""Stateless differentiable functions on Tensors (``import pydl.functional as F``).

Each function accepts Tensors (numpy arrays are wrapped as constants), validates its arguments once
and calls the fused C++ kernels from :mod:`pydl.kernels` for forward and backward.
"""

import math

import numpy as np

from . import _core, _validation, kernels
from . import ops
from . import random as _random
from .tensor import Op, Tensor, _matmul_into_grad, _sum_rows_into_grad

__all__ = [
    "linear", "dropout", "cross_entropy", "binary_cross_entropy_with_logits", "mse_loss",
    "l1_loss", "huber_loss",
] + [row.name for row in ops.ACTIVATIONS]

def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _check_reduction(name, reduction):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _class_vector(name, arg, value, n, dtype):
    """Validate a per-class weight vector (``weight`` or ``pos_weight``) of length n."""
    if value is None:
        return None
    w = value.data if isinstance(value, Tensor) else np.asarray(value)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name}: {arg} must be numeric, got dtype {w.dtype}")
    if w.shape != (n,) and not (arg != "weight" and w.ndim <= 1 and w.size == 1):
        raise ValueError(f"{name}: {arg} must have shape ({n},) (one entry per class), got "
                         f"{w.shape}")
    return w.astype(dtype)


class LinearOp(Op):
    """``act(x @ w.T + b)`` with the activation in the GEMM epilogue; dW and db accumulate into a
    leaf parameter's gradient inside the GEMM (db as ones @ dz) (operands: x, w, b or None)."""

    native = True
    native_backward = True
    y = None
    z = None
    dz = None
    dx = None
    # A DropoutOp applied to this op's output whose backward the engine folded into this one's
    # (engine._fold_backward): backward then receives the dropout output's gradient.
    dropout = None

    def __init__(self, activation=None, params=()):
        self.act = activation  # an ops.Activation row with an epilogue, or None
        self.params = params
        self.epilogue = (None, {}) if activation is None else activation.epilogue(*params)
        # An activation whose backward reads its input keeps x @ w.T + b from the epilogue.
        self.keeps_preact = activation is not None and activation.saves == "x"

    def forward(self, x, w, b):
        self.x, self.w = x, w
        name, kwargs = self.epilogue
        if self.keeps_preact:
            if self.z is None:
                self.z = np.empty((x.shape[0], w.shape[0]), np.result_type(x, w))
            kwargs = dict(kwargs, preact=self.z)
        self.y = kernels.linear(x, w, b, name, **kwargs, out=self.y)
        return self.y

    def backward(self, g):
        act = self.act
        dz = g
        if act is not None:
            saved = self.z if self.keeps_preact else self.y
            drop = self.dropout
            if drop is None:
                dz = self.dz = act.backward(g, saved, *self.params, out=self.dz)
            else:
                name, kwargs = self.epilogue
                dz = self.dz = _core._dropout_act_backward(g, drop.mask, drop.p, saved, name,
                                                           **kwargs, out=self.dz)
        need_x, need_w, need_b = self.needs_grad
        dx = dw = db = None
        if need_x:
            dx = self.dx = kernels.matmul(dz, self.w, out=self.dx)
        if need_w:
            weight = self.inputs[1]
            if weight._backward is None:
                _matmul_into_grad(weight, dz, self.x, trans_a=True)
            else:
                dw = kernels.matmul(dz, self.x, trans_a=True)
        if need_b:
            bias = self.inputs[2]
            if bias._backward is None:
                _sum_rows_into_grad(bias, dz)
            else:
                db = dz.sum(axis=0)
        return dx, dw, db


_FUSABLE = [row.name for row in ops.ACTIVATIONS if row.epilogue is not None]


def linear(x, weight, bias=None, activation=None, *, negative_slope=0.01, alpha=1.0,
           approximate="none"):
    """Apply a dense layer: ``activation(x @ weight.T + bias)``, fused in one kernel.

    Args:
        x: (batch, in_features) Tensor (or (*, in_features); leading dims are flattened).
        weight: (out_features, in_features) Tensor, PyTorch's layout.
        bias: Optional (out_features,) Tensor. Default None.
        activation: None or the name of a fusable activation of :mod:`pydl.ops` ("relu",
            "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "silu"), applied in the kernel's
            epilogue. Default None.
        negative_slope: leaky_relu slope. Default 0.01.
        alpha: elu scale. Default 1.0.
        approximate: gelu's form, "none" (erf) or "tanh". Default "none".

    Returns:
        The (batch, out_features) output Tensor.

    Raises:
        ValueError: x's last dimension differs from in_features (both are named), or weight is
            not 2-D, or bias has the wrong shape, or an unknown activation.
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
                   negative_slope=negative_slope, alpha=alpha, approximate=approximate)
        return y.reshape(*lead, wd.shape[0])
    row, params = None, ()
    if activation is not None:
        if activation not in _FUSABLE:
            raise ValueError(f"linear: unknown activation {activation!r}; expected None or one "
                             f"of {_FUSABLE}")
        row = ops.by_name[activation]
        given = {"negative_slope": negative_slope, "alpha": alpha, "approximate": approximate}
        params = tuple(given.get(p.name, p.default) for p in row.params)
    return LinearOp(row, params)(x, weight, bias)


def _activation_function(row):
    def function(x, *args, **kwargs):
        return ops.ActivationOp(row, row.resolve(row.name, args, kwargs))(_tensor(x))

    sig = "".join(f", {p.name}={p.default!r}" for p in row.params)
    function.__name__ = function.__qualname__ = row.name
    function.__module__ = __name__
    function.__signature__ = ops.signature(row, "x")
    function.__doc__ = (f"Return {row.summary}.\n\n    Signature: ``{row.name}(x{sig})``; x is a "
                        f"Tensor or an array (wrapped as a constant).\n    ")
    return function


for _row in ops.ACTIVATIONS:
    globals()[_row.name] = _activation_function(_row)
del _row


class DropoutOp(Op):
    """Inverted dropout with a Philox mask keyed by the next ``pydl.random`` dropout key.

    ``forward`` is ``prepare()`` (draw the key into ``self.key``) then ``compute(x)`` (the kernel,
    which reads the key when it runs). The engine captures ``compute``'s kernel call and calls
    ``prepare`` before each replay, in tape order, so replayed masks are the eager ones.
    """

    native = True
    native_backward = True  # reads the mask forward wrote (a kept buffer)
    y = None
    mask = None
    dx = None
    key = None

    def __init__(self, p):
        self.p = p

    def prepare(self):
        if self.key is None:
            self.key = np.empty(2, np.uint64)
        self.key[0], self.key[1] = _random.next_dropout_key()

    def compute(self, x):
        self.y, self.mask = _core._dropout_keyed(x, self.p, self.key, out=self.y,
                                                 mask_out=self.mask)
        return self.y

    def forward(self, x):
        self.prepare()
        return self.compute(x)

    def backward(self, g):
        self.dx = kernels.dropout_backward(g, self.mask, self.p, out=self.dx)
        return (self.dx,)


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
    return DropoutOp(p)(x)


def _scaled(d, g):
    """Return d * g for a scalar upstream gradient g, skipping the pass when g == 1."""
    return d if g == 1.0 else d * g


def _labels(name, target, n, from_tensor):
    if from_tensor:  # Tensors hold floats: accept whole-number labels
        labels = target.astype(np.int64)
        if not np.array_equal(labels, target):
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


class _ReducedLossOp(Op):
    """A loss computed in numpy from per-element values and their derivatives.

    Operands: pred, target. ``fn(pred, target) -> (values, dvalues, denom)``: ``values`` is
    shaped like pred (element-wise losses) or like its leading dimensions (one value per row, as
    cross-entropy), ``dvalues[i]`` is d values[i] / d pred[i] (pred's shape), ``denom`` divides
    the sum for "mean" (NaN when it is 0, as PyTorch). "sum" sums; "none" returns ``values``.
    The sum is taken in float64 whatever the dtype.
    """

    def __init__(self, fn, reduction):
        self.fn, self.reduction = fn, reduction

    def forward(self, pred, target):
        values, self.dvalues, denom = self.fn(pred, target)
        if self.reduction == "none":
            self.extra = self.dvalues.ndim - np.ndim(values)
            return np.asarray(values, dtype=pred.dtype)
        total = float(np.sum(values, dtype=np.float64))
        if self.reduction == "sum":
            self.scale = 1.0
        else:
            self.scale = 1.0 / denom if denom else math.nan
        return np.array(total * self.scale, dtype=pred.dtype)

    def backward(self, g):
        if self.reduction == "none":
            g = np.asarray(g)
            return self.dvalues * g.reshape(g.shape + (1,) * self.extra), None
        return self.dvalues * (self.scale * g), None


def _target_array(target):
    return target.data if isinstance(target, Tensor) else target


class CrossEntropyOp(Op):
    """Softmax cross-entropy of (N, C) logits against labels (operands: logits, target)."""

    native_backward = True  # hands on the gradient forward wrote (for an upstream 1)
    dlogits = None

    def __init__(self, reduction, label_smoothing, target_is_tensor):
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.target_is_tensor = target_is_tensor

    def forward(self, logits, target):
        labels = _labels("cross_entropy", target, logits.shape[0], self.target_is_tensor)
        loss, self.dlogits = kernels.softmax_cross_entropy(
            logits, labels, label_smoothing=self.label_smoothing, reduction=self.reduction,
            dlogits=self.dlogits)
        return np.array(loss, dtype=logits.dtype)

    def backward(self, g):
        return _scaled(self.dlogits, g), None


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0, weight=None):
    """Return the softmax cross-entropy of logits against integer class labels.

    Same values as ``torch.nn.functional.cross_entropy`` with class-index targets: with
    ``weight``, sample i counts ``weight[target[i]]`` times and "mean" divides by the sum of
    those weights; label smoothing weights each class's share by ``weight[c]``.

    Args:
        logits: (N, C) Tensor of unnormalized scores (or (C,) for one sample).
        target: (N,) integer class labels in [0, C), numpy array or Tensor.
        reduction: "mean" (default), "sum" or "none" (an (N,) Tensor of per-sample losses).
        label_smoothing: In [0, 1]; mixes the one-hot target with the uniform one. Default 0.0.
        weight: Optional (C,) per-class weights. Default None.

    Returns:
        A scalar Tensor ((N,) for reduction="none").

    Raises:
        TypeError: target is not integer.
        ValueError: a label outside [0, C), a shape mismatch, a weight not of shape (C,),
            label_smoothing outside [0, 1] or an unknown reduction.
    """
    _check_reduction("cross_entropy", reduction)
    logits = _tensor(logits)
    ld = logits.data
    if ld.ndim == 1:
        out = cross_entropy(logits.reshape(1, -1), np.reshape(_target_array(target), (1,)),
                            reduction, label_smoothing, weight)
        return out.reshape(()) if reduction == "none" else out
    if ld.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C) or (C,), got shape {ld.shape}")
    is_tensor = isinstance(target, Tensor)
    w = _class_vector("cross_entropy", "weight", weight, ld.shape[1], ld.dtype)
    if w is None and reduction != "none":
        return CrossEntropyOp(reduction, label_smoothing, is_tensor)(logits,
                                                                     _target_array(target))
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {eps}")
    return _ReducedLossOp(_weighted_cross_entropy(None if w is None else weight, eps, is_tensor),
                          reduction)(logits, _target_array(target))


def _weighted_cross_entropy(weight, eps, target_is_tensor):
    """The (values, dvalues, denom) function of cross-entropy with class weights (or None).

    The weights are read on every call (a replayed step sees them changed in place)."""

    def fn(ld, target):
        n, c = ld.shape
        w = _class_vector("cross_entropy", "weight", weight, c, ld.dtype)
        labels = _labels("cross_entropy", target, n, target_is_tensor)
        if n and (labels.min() < 0 or labels.max() >= c):
            bad = int(np.flatnonzero((labels < 0) | (labels >= c))[0])
            raise ValueError(f"cross_entropy: target[{bad}] = {labels[bad]} is outside "
                             f"[0, {c})")
        logp = kernels.log_softmax(np.ascontiguousarray(ld))
        prob = np.exp(logp)
        rows = np.arange(n)
        cw = np.ones(c, ld.dtype) if w is None else w
        wy = cw[labels]
        values = -(1.0 - eps) * wy * logp[rows, labels]
        dvalues = prob * ((1.0 - eps) * wy)[:, None]
        dvalues[rows, labels] -= (1.0 - eps) * wy
        if eps:
            values -= (eps / c) * (logp @ cw)
            dvalues += (eps / c) * (prob * cw.sum() - cw)
        return values, dvalues, float(wy.sum(dtype=np.float64))

    return fn


def _float_target(name, pred, target):
    """Return target as an array of pred's dtype and shape (pred: an array); (N,) targets fit
    (N, 1) outputs."""
    t = np.asarray(target)
    if t.dtype != pred.dtype:
        if t.dtype.kind not in "biuf":
            raise TypeError(f"{name}: target must be numeric, got dtype {t.dtype}")
        t = t.astype(pred.dtype)
    shape = pred.shape
    if t.shape != shape:
        if len(shape) == 2 and shape[1] == 1 and t.shape == shape[:1]:
            return t.reshape(shape)  # Keras/scikit-learn habit: y of shape (N,) for one output
        raise ValueError(f"{name}: input shape {shape} and target shape {t.shape} differ (a "
                         f"target must have the input's shape, or (N,) for an (N, 1) input)")
    return t


class _FusedLossOp(Op):
    """A loss whose kernel returns (value, dpred) in one pass (operands: pred, target)."""

    native_backward = True  # hands on the gradient forward wrote (for an upstream 1)
    dpred = None

    def __init__(self, name, kernel, reduction):
        self.name, self.kernel, self.reduction = name, kernel, reduction

    def forward(self, pred, target):
        t = _float_target(self.name, pred, target)
        loss, self.dpred = self.kernel(pred, t, self.dpred, reduction=self.reduction)
        return np.array(loss, dtype=pred.dtype)

    def backward(self, g):
        return _scaled(self.dpred, g), None


def _bce_kernel(pred, t, out, reduction):
    return kernels.bce_with_logits(pred, t, reduction=reduction, dlogits=out)


def _mse_kernel(pred, t, out, reduction):
    return kernels.mse(pred, t, reduction=reduction, dpred=out)


def _fused_loss(name, kernel, pred, target, reduction):
    _check_reduction(name, reduction)
    return _FusedLossOp(name, kernel, reduction)(_tensor(pred), _target_array(target))


def binary_cross_entropy_with_logits(logits, target, reduction="mean", weight=None,
                                     pos_weight=None):
    """Return binary cross-entropy on logits (sigmoid folded in, stable for large |logits|).

    With ``weight`` w and ``pos_weight`` p the element loss is
    ``-w * (p * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x)))``, as PyTorch.

    Args:
        logits: Tensor of any shape.
        target: Probabilities (usually 0/1) of the same shape ((N,) for (N, 1) logits); numpy
            array or Tensor.
        reduction: "mean" (default), "sum" or "none" (per-element losses, logits' shape).
        weight: Optional weights broadcastable to the logits' shape. Default None.
        pos_weight: Optional weight of the positive term, one per class (last dimension) or a
            scalar. Default None.

    Returns:
        A scalar Tensor (logits' shape for "none"), as
        ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Raises:
        ValueError: shapes differ, weight not broadcastable, pos_weight not one per class, or
            an unknown reduction.
    """
    name = "binary_cross_entropy_with_logits"
    if weight is None and pos_weight is None and reduction != "none":
        return _fused_loss(name, _bce_kernel, logits, target, reduction)
    _check_reduction(name, reduction)
    logits = _tensor(logits)
    x = logits.data
    classes = x.shape[-1] if x.ndim else 1
    def weights(x):
        # Read on every call: a replayed step sees weights changed in place.
        pw = _class_vector(name, "pos_weight", pos_weight, classes, x.dtype)
        w = 1.0
        if weight is not None:
            w = (weight.data if isinstance(weight, Tensor) else np.asarray(weight)).astype(x.dtype)
            try:
                shape = np.broadcast_shapes(w.shape, x.shape)
            except ValueError:
                shape = None
            if shape != x.shape:
                raise ValueError(f"{name}: weight of shape {w.shape} does not broadcast to the "
                                 f"logits' shape {x.shape}")
        return pw, w

    weights(x)  # bad weights raise here, before any op runs

    def fn(x, target):
        pw, w = weights(x)
        y = _float_target(name, x, target)
        sig = kernels.sigmoid(np.ascontiguousarray(x))
        soft_pos = np.logaddexp(0.0, -x)  # -log(sigmoid(x))
        soft_neg = np.logaddexp(0.0, x)   # -log(1 - sigmoid(x))
        pos = y if pw is None else pw * y
        values = w * (pos * soft_pos + (1.0 - y) * soft_neg)
        dvalues = w * (pos * (sig - 1.0) + (1.0 - y) * sig)
        return values, np.broadcast_to(dvalues, x.shape), x.size

    return _ReducedLossOp(fn, reduction)(logits, _target_array(target))


def mse_loss(pred, target, reduction="mean"):
    """Return the squared error between pred and target (same shape, or (N,) for (N, 1)).

    ``reduction``: "mean" (default), "sum" or "none" (per-element, pred's shape).
    """
    if reduction == "none":
        return _elementwise_loss("mse_loss", pred, target, reduction,
                                 lambda d: (d * d, 2.0 * d))
    return _fused_loss("mse_loss", _mse_kernel, pred, target, reduction)


def _elementwise_loss(name, pred, target, reduction, value_and_grad):
    """A loss from a numpy ``value_and_grad(pred - target) -> (values, dvalues)``."""
    _check_reduction(name, reduction)

    def fn(pred, target):
        diff = pred - _float_target(name, pred, target)
        value, grad = value_and_grad(diff)
        return value, grad, diff.size

    return _ReducedLossOp(fn, reduction)(_tensor(pred), _target_array(target))


def l1_loss(pred, target, reduction="mean"):
    """Return the absolute error between pred and target (same shape, or (N,) for (N, 1)).

    ``reduction``: "mean" (default), "sum" or "none". The gradient at pred == target is 0, as
    in PyTorch.
    """
    return _elementwise_loss("l1_loss", pred, target, reduction,
                             lambda d: (np.abs(d), np.sign(d)))


def huber_loss(pred, target, delta=1.0, reduction="mean"):
    """Return the Huber loss: 0.5 d^2 where |d| <= delta, else delta * (|d| - 0.5 delta).

    Args:
        pred: Tensor.
        target: Same shape ((N,) for an (N, 1) pred); numpy array or Tensor.
        delta: Threshold between the quadratic and linear parts, > 0. Default 1.0.
        reduction: "mean" (default), "sum" or "none".

    Returns:
        A scalar Tensor (pred's shape for "none"), as ``torch.nn.functional.huber_loss``.

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
