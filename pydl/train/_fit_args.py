"""Argument handling for Trainer and fit: metrics, verbosity, sample/class weights, guards.

Kept apart from the training step so that the step stays small: everything here runs once per
``Trainer(...)`` or ``fit(...)`` call, before any update.
"""

import warnings

import numpy as np

from ..metrics import accuracy_score
from ..tensor import Tensor
from .callbacks import Callback


# --- metrics ------------------------------------------------------------------------------------
def _to_labels(logits, y):
    """Return (predicted, true) class labels for the "accuracy" metric."""
    logits = np.asarray(logits)
    y = np.asarray(y)
    if logits.ndim == 2 and logits.shape[1] > 1:
        if y.shape == logits.shape:  # one-hot or probability targets
            y = y.argmax(axis=1)
        return logits.argmax(axis=1), y.reshape(len(y))
    # One output per sample: a binary classifier's logit, class 1 when it is > 0.
    return (logits.reshape(len(logits)) > 0).astype(np.int64), \
        (y.reshape(len(y)) > 0.5).astype(np.int64)


def accuracy(y_true, y_pred):
    """Return the fraction of samples whose predicted class is the true one.

    ``y_pred`` are model outputs: (N, C) logits -> argmax (``y_true`` integer labels, or one-hot
    rows); (N,) or (N, 1) binary logits -> class 1 when the logit is > 0 (``y_true`` 0/1).
    """
    pred, true = _to_labels(y_pred, y_true)
    if pred.ndim == 1 and pred.shape == true.shape and len(pred) \
            and pred.dtype.kind in "iu" and true.dtype.kind in "iu":
        # Integer class labels (fit's validated targets): accuracy_score's target checks would
        # pass, and its np.average of the matches is this count over n, to the bit; per epoch
        # the checks (np.unique of both arrays) cost more than the comparison.
        return np.count_nonzero(pred == true) / len(true)
    return float(accuracy_score(true, pred))


def _like_outputs(y_true, y_pred):
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.float64)
    if y_true.shape != y_pred.shape and y_true.size == y_pred.size:
        y_true = y_true.reshape(y_pred.shape)  # (N,) targets of an (N, 1) model
    return y_true, y_pred


def binary_accuracy(y_true, y_pred):
    """Return the fraction of elements where ``logit > 0`` agrees with ``target > 0.5``.

    For BCEWithLogitsLoss models (outputs are logits, so the threshold 0 is probability 0.5);
    multi-label (N, C) outputs are scored element by element, as Keras's binary_accuracy.
    """
    y_true, y_pred = _like_outputs(y_true, y_pred)
    return float(np.mean((y_pred > 0) == (y_true > 0.5)))


def mse(y_true, y_pred):
    """Return the mean squared error between outputs and targets."""
    y_true, y_pred = _like_outputs(y_true, y_pred)
    return float(np.mean((y_pred - y_true) ** 2))


def mae(y_true, y_pred):
    """Return the mean absolute error between outputs and targets."""
    y_true, y_pred = _like_outputs(y_true, y_pred)
    return float(np.mean(np.abs(y_pred - y_true)))


NAMED_METRICS = {"accuracy": accuracy, "acc": accuracy, "binary_accuracy": binary_accuracy,
                 "mse": mse, "mae": mae}
_ALIASES = {"acc": "accuracy"}


def _auto_metrics(loss):
    task = getattr(loss, "task", None)
    if task == "classification":
        return [("accuracy", accuracy)]
    if task == "binary":
        return [("accuracy", binary_accuracy)]
    return []


def resolve_metrics(metrics, loss):
    """Return [(name, fn)] for Trainer's ``metrics`` argument ("auto", names or callables)."""
    if metrics is None:
        return []
    if isinstance(metrics, str) and metrics == "auto":
        return _auto_metrics(loss)
    if isinstance(metrics, str) or callable(metrics):
        metrics = [metrics]
    out = []
    for m in metrics:
        if isinstance(m, str):
            if m not in NAMED_METRICS:
                raise ValueError(f"Trainer: unknown metric {m!r} in metrics; use one of "
                                 f"{sorted(set(NAMED_METRICS) - set(_ALIASES))}, \"auto\" or a "
                                 f"callable (y_true, y_pred) -> float")
            name, fn = _ALIASES.get(m, m), NAMED_METRICS[m]
        elif callable(m):
            name, fn = getattr(m, "__name__", type(m).__name__), m
        else:
            raise ValueError(f"Trainer: a metric must be a name or a callable, got {m!r}")
        if name in ("loss", "lr", "penalty") or name.startswith("val_") or \
                name in [n for n, _ in out]:
            raise ValueError(f"Trainer: metric name {name!r} is reserved or used twice")
        out.append((name, fn))
    return out


# --- fit arguments ------------------------------------------------------------------------------
def check_verbose(verbose):
    """Map Keras's verbose values (0, 1, 2, True, False, "auto") to 0, 1 or 2."""
    if verbose is True or verbose == "auto":
        return 1
    if verbose is False:
        return 0
    if isinstance(verbose, (int, np.integer)) and not isinstance(verbose, bool) \
            and verbose in (0, 1, 2):
        return int(verbose)
    raise ValueError(f"fit: verbose must be 0, 1, 2, True, False or 'auto', got {verbose!r}")


def as_callbacks(callbacks):
    """Return the callbacks as a new list; a single Callback (not in a list) is accepted."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise ValueError(f"fit: callbacks must be a list of pydl.train.Callback instances, got "
                         f"{type(callbacks).__name__}") from None
    for cb in callbacks:
        if isinstance(cb, type) and issubclass(cb, Callback):
            raise ValueError(f"fit: callbacks holds the class {cb.__name__}, not an instance; "
                             f"write {cb.__name__}() instead")
        if not isinstance(cb, Callback):
            raise ValueError(f"fit: callbacks must be pydl.train.Callback instances, got "
                             f"{type(cb).__name__}")
    return callbacks


def check_clip(clip_grad_norm):
    """Validate fit's clip_grad_norm (None or a finite number > 0)."""
    if clip_grad_norm is None:
        return None
    try:
        value = float(clip_grad_norm)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(clip_grad_norm, bool) or not 0.0 < value < float("inf"):
        raise ValueError(f"fit: clip_grad_norm must be None or a finite number > 0, got "
                         f"{clip_grad_norm!r}")
    return value


def _class_labels(y):
    """Return one integer label per sample for class_weight (labels, 0/1, (N, 1) or one-hot)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    flat = y.reshape(len(y))
    if flat.dtype.kind == "f":
        if not np.array_equal(flat, np.round(flat)):
            raise ValueError("fit: class_weight needs class labels in y (whole numbers, 0/1 or "
                             "one-hot rows), but y holds fractional values")
        flat = flat.astype(np.int64)
    return flat


def sample_weights(y, sample_weight, class_weight, loss):
    """Return the per-sample weights of fit (Keras semantics), or None when there are none.

    ``class_weight`` maps a class label to a weight, ``sample_weight`` gives one weight per
    sample; both given -> their product.
    """
    if sample_weight is None and class_weight is None:
        return None
    if not callable(getattr(loss, "with_reduction", None)):
        raise ValueError(f"fit: sample_weight and class_weight need a pydl.losses loss (it "
                         f"computes per-sample losses with reduction='none'), got "
                         f"{type(loss).__name__}; weight the samples inside your loss instead")
    n = len(y)
    w = np.ones(n, np.float64)
    if sample_weight is not None:
        sw = np.asarray(sample_weight.data if isinstance(sample_weight, Tensor)
                        else sample_weight)
        if sw.dtype.kind not in "biuf":
            raise ValueError(f"fit: sample_weight must be numbers, got dtype {sw.dtype}")
        sw = sw.astype(np.float64)
        if sw.ndim == 2 and sw.shape[1] == 1:
            sw = sw.reshape(-1)
        if sw.shape != (n,):
            raise ValueError(f"fit: sample_weight has shape {sw.shape}, but x and y have {n} "
                             f"samples; pass one weight per sample, shape ({n},)")
        bad = np.flatnonzero(~np.isfinite(sw) | (sw < 0))
        if bad.size:
            raise ValueError(f"fit: sample_weight[{bad[0]}] = {sw[bad[0]]}; sample weights must "
                             f"be finite and >= 0")
        w *= sw
    if class_weight is not None:
        if not hasattr(class_weight, "items"):
            raise ValueError(f"fit: class_weight must be a dict {{class label: weight}}, got "
                             f"{type(class_weight).__name__}")
        labels = _class_labels(y)
        present = np.unique(labels)
        unknown = [k for k in class_weight if not (isinstance(k, (int, np.integer))
                                                   and not isinstance(k, bool)
                                                   and k in present)]
        if unknown:
            raise ValueError(f"fit: class_weight has key(s) {unknown} that are not labels in y "
                             f"(labels present: {present.tolist()}); use the class labels of "
                             f"y as keys")
        table = {}
        for k, v in class_weight.items():
            try:
                v = float(v)
            except (TypeError, ValueError):
                v = float("nan")
            if not 0.0 <= v < float("inf"):
                raise ValueError(f"fit: class_weight[{k}] = {class_weight[k]!r}; class weights "
                                 f"must be finite numbers >= 0")
            table[int(k)] = v
        w *= np.array([table.get(int(label), 1.0) for label in labels])
    return w


class SampleWeighted:
    """The loss of a weighted fit: ``weighted_loss`` of ``loss`` with the batch's weights.

    The Trainer sets ``batch_weights`` before each step. The weights are a new array every batch,
    so the engine runs such a step eagerly (it never replays stale weights).
    """

    __slots__ = ("loss", "batch_weights")

    def __init__(self, loss):
        self.loss = loss
        self.batch_weights = None

    def __call__(self, out, y):
        return weighted_loss(self.loss, out, y, self.batch_weights)


def weighted_loss(loss, out, y, w):
    """Return sum_i w_i * loss_i / N (Keras's weighted mean), loss_i the per-sample loss."""
    per = loss.with_reduction("none")(out, y)
    shape = (len(w),) + (1,) * (per.data.ndim - 1)
    return (per * w.reshape(shape).astype(per.data.dtype)).mean()


# --- guards against silent mistakes -------------------------------------------------------------
def check_loss(loss):
    """Reject a loss class passed instead of an instance, and non-callables."""
    if isinstance(loss, type):
        raise TypeError(f"Trainer: loss is the class {loss.__name__}, not an instance; write "
                        f"{loss.__name__}() (with its options) instead")
    if not callable(loss):
        raise TypeError(f"Trainer: loss must be callable (output, target) -> Tensor, got "
                        f"{type(loss).__name__}")


def warn_double_activation(model, loss):
    """Warn when a Sequential ends in Softmax/Sigmoid but the loss applies it to logits itself."""
    from .. import nn

    activation = getattr(loss, "output_activation", None)
    if activation is None or not isinstance(model, nn.Sequential) or not len(model):
        return
    last = model[-1]
    if isinstance(last, (nn.Softmax, nn.Sigmoid)):
        warnings.warn(f"Trainer: the model ends in {type(last).__name__}(), but "
                      f"{type(loss).__name__} takes logits and applies {activation} itself, so "
                      f"it is applied twice (training slows down or stalls). Remove the last "
                      f"layer; use trainer.predict_proba(x) for probabilities.",
                      UserWarning, stacklevel=3)


def check_optimizer_covers(model, optimizer):
    """Raise when a trainable model parameter is not in the optimizer (it would never train)."""
    groups = getattr(optimizer, "param_groups", None)
    if groups is None:
        return
    covered = {id(p) for group in groups for p in group["params"]}
    missing = [name for name, p in model.named_parameters()
               if p.requires_grad and id(p) not in covered]
    if missing:
        raise ValueError(f"fit: the optimizer does not hold {len(missing)} of the model's "
                         f"trainable parameters ({', '.join(missing[:5])}"
                         f"{', ...' if len(missing) > 5 else ''}), so they would never be "
                         f"updated; build it from this model, e.g. "
                         f"{type(optimizer).__name__}(model.parameters(), ...)")
