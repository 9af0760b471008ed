"""Evaluation metrics with scikit-learn's names, arguments, results, warnings and errors.

Classification metrics take 1-D label arrays (ints, bools, strings; multilabel indicator matrices
are not supported), regression metrics 1-D or 2-D (n_samples, n_outputs) arrays. Every input may
be a list, a numpy array or a ``pydl.Tensor``. Results are Python floats (or numpy arrays for
``average=None`` / ``multioutput="raw_values"`` and the confusion matrix), computed with the same
formulas as scikit-learn 1.9, so the two agree to rounding.

Ill-defined scores (a precision with no predicted samples, ...) are set to ``zero_division`` and,
with the default ``zero_division="warn"``, reported with an :class:`UndefinedMetricWarning`.

Example:
    >>> from pydl import metrics
    >>> metrics.accuracy_score([0, 1, 2, 2], [0, 2, 2, 2])
    0.75
    >>> metrics.f1_score([0, 1, 2, 2], [0, 2, 2, 2], average="macro")
    0.6
"""

import math
import numbers
import warnings

import numpy as np

from .tensor import Tensor

__all__ = ["UndefinedMetricWarning", "accuracy_score", "confusion_matrix", "f1_score",
           "log_loss", "mean_absolute_error", "mean_squared_error", "precision_score",
           "r2_score", "recall_score", "top_k_accuracy_score"]


class UndefinedMetricWarning(UserWarning):
    """Warning issued when a metric is ill-defined (e.g. a precision with nothing predicted)."""


# --- input checking -----------------------------------------------------------------------------

def _array(x, name):
    """Return ``x`` (list, ndarray or Tensor) as an ndarray."""
    if isinstance(x, Tensor):
        x = x.data
    arr = np.asarray(x)
    if arr.dtype.kind == "O":
        raise ValueError(f"{name} must be an array of numbers or strings, got objects")
    return arr


def _check_lengths(*arrays):
    lengths = [len(a) if a.ndim else 0 for a in arrays if a is not None]
    if len(set(lengths)) > 1:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                         f"{lengths}")


def _check_finite(arr, name):
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise ValueError(f"Input {name} contains NaN or infinity.")


def _sample_weight(sample_weight, n):
    """Validate ``sample_weight``: None or a finite 1-D numeric array of length ``n``."""
    if sample_weight is None:
        return None
    w = _array(sample_weight, "sample_weight")
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, got shape {w.shape}")
    if w.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must be numeric, got dtype {w.dtype}")
    if len(w) != n:
        raise ValueError(f"sample_weight has {len(w)} values but there are {n} samples")
    _check_finite(w, "sample_weight")
    return w


def _column(arr, name):
    """Return a 1-D view of a label array given as (n,) or (n, 1)."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {arr.shape} "
                         f"(multilabel and multioutput targets are not supported)")
    return arr


def _target_type(y, name):
    """Return "binary", "multiclass" or "continuous" for a 1-D label array (sklearn's rules)."""
    if y.dtype.kind == "f" and np.any(y != np.round(y)):
        _check_finite(y, name)
        return "continuous"
    return "binary" if len(np.unique(y)) <= 2 else "multiclass"


def _unique_labels(*ys):
    kinds = {"str" if y.dtype.kind in "US" else "num" for y in ys}
    if len(kinds) > 1:
        raise ValueError("Mix of label input types (string and number)")
    return np.unique(np.concatenate(ys))


def _check_targets(y_true, y_pred, sample_weight=None):
    """Validate two label arrays; return (type, sorted present labels, y_true, y_pred, weight)."""
    y_true, y_pred = _array(y_true, "y_true"), _array(y_pred, "y_pred")
    _check_lengths(y_true, y_pred)
    y_true, y_pred = _column(y_true, "y_true"), _column(y_pred, "y_pred")
    if len(y_true) < 1:
        raise ValueError("Found empty input array (e.g., `y_true` or `y_pred`) while a "
                         "minimum of 1 sample is required.")
    sample_weight = _sample_weight(sample_weight, len(y_true))
    type_true, type_pred = _target_type(y_true, "y_true"), _target_type(y_pred, "y_pred")
    types = {type_true, type_pred}
    if types == {"binary", "multiclass"}:
        types = {"multiclass"}
    if len(types) > 1:
        raise ValueError(f"Classification metrics can't handle a mix of {type_true} and "
                         f"{type_pred} targets")
    y_type = types.pop()
    if y_type == "continuous":
        raise ValueError("continuous is not supported")
    present = _unique_labels(y_true, y_pred)
    if y_type == "binary" and len(present) > 2:
        y_type = "multiclass"
    return y_type, present, y_true, y_pred, sample_weight


def _check_zero_division(zero_division):
    """Return the value ill-defined scores get (0.0 for "warn")."""
    if isinstance(zero_division, str) and zero_division == "warn":
        return 0.0
    if isinstance(zero_division, numbers.Real) and not isinstance(zero_division, bool):
        if zero_division in (0, 1):
            return float(zero_division)
        if math.isnan(zero_division):
            return math.nan
    raise ValueError(f"zero_division must be 'warn', 0.0, 1.0 or np.nan, got {zero_division!r}")


# --- classification -----------------------------------------------------------------------------

def accuracy_score(y_true, y_pred, normalize=True, sample_weight=None):
    """Return the fraction (or weighted count) of samples whose prediction equals the truth.

    Args:
        y_true: True labels, shape (n_samples,).
        y_pred: Predicted labels, shape (n_samples,).
        normalize: True (default) returns the fraction; False the (weighted) number correct.
        sample_weight: Optional per-sample weights. Default None.

    Returns:
        A float.

    Raises:
        ValueError: Different lengths, empty input, continuous or mixed-type targets.

    Example:
        >>> pydl.metrics.accuracy_score([1, 0, 1], [1, 1, 1])
        0.6666666666666666
    """
    _, _, y_true, y_pred, sample_weight = _check_targets(y_true, y_pred, sample_weight)
    score = y_true == y_pred
    if normalize:
        return float(np.average(score, weights=sample_weight))
    if sample_weight is not None:
        return float(np.dot(score, sample_weight))
    return float(np.sum(score))


def confusion_matrix(y_true, y_pred, labels=None, sample_weight=None, normalize=None):
    """Return the confusion matrix ``C[i, j]``: samples of true class i predicted as class j.

    Args:
        y_true: True labels, shape (n_samples,).
        y_pred: Predicted labels, shape (n_samples,).
        labels: The classes to index the matrix with, in this order; samples whose true or
            predicted label is not listed are ignored. Default None: every label present in
            ``y_true`` or ``y_pred``, sorted.
        sample_weight: Optional per-sample weights. Default None.
        normalize: None (counts), ``"true"`` (rows sum to 1), ``"pred"`` (columns sum to 1) or
            ``"all"`` (the matrix sums to 1). Default None.

    Returns:
        An (n_classes, n_classes) array: int64 counts, or float64 when weights are floats or
        ``normalize`` is set.

    Raises:
        ValueError: Bad inputs as for :func:`accuracy_score`, an empty ``labels``, no label of
            ``labels`` in ``y_true``, or an unknown ``normalize``.

    Example:
        >>> pydl.metrics.confusion_matrix([0, 1, 1], [0, 0, 1])
        array([[1, 0],
               [1, 1]])
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    y_type, present, y_true, y_pred, sample_weight = _check_targets(y_true, y_pred,
                                                                    sample_weight)
    if labels is None:
        labels = present
    else:
        labels = _array(labels, "labels")
        if labels.size == 0:
            raise ValueError("'labels' should contain at least one label.")
        if len(np.intersect1d(y_true, labels)) == 0:
            raise ValueError("At least one label specified must be in y_true")
    n = labels.size
    if sample_weight is None:
        sample_weight = np.ones(len(y_true), dtype=np.int64)
    index = {label: i for i, label in enumerate(labels.tolist())}
    t = np.array([index.get(v, n) for v in y_true.tolist()], dtype=np.int64)
    p = np.array([index.get(v, n) for v in y_pred.tolist()], dtype=np.int64)
    keep = (t < n) & (p < n)
    dtype = np.int64 if sample_weight.dtype.kind in "biu" else np.float64
    cm = np.zeros((n, n), dtype=dtype)
    np.add.at(cm, (t[keep], p[keep]), sample_weight[keep].astype(dtype))
    with np.errstate(all="ignore"):
        if normalize == "true":
            cm = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            cm = cm / cm.sum(axis=0, keepdims=True)
        elif normalize == "all":
            cm = cm / cm.sum()
        cm = np.nan_to_num(cm)
    if cm.shape == (1, 1):
        warnings.warn("A single label was found in 'y_true' and 'y_pred'. For the confusion "
                      "matrix to have the correct shape, use the 'labels' parameter to pass "
                      "all known labels.", UserWarning, stacklevel=2)
    return cm


_AVERAGES = (None, "binary", "micro", "macro", "weighted")


def _prf_divide(numerator, denominator, metric, modifier, zero_division):
    """Divide per class; 0/0 gives ``zero_division`` (0 and a warning for "warn")."""
    mask = denominator == 0
    result = np.asarray(numerator, dtype=np.float64) / np.where(mask, 1, denominator)
    if not mask.any():
        return result
    result[mask] = _check_zero_division(zero_division)
    if isinstance(zero_division, str):
        where = "due to" if result.shape[0] == 1 else "in labels with"
        warnings.warn(f"{metric} is ill-defined and being set to 0.0 {where} no {modifier} "
                      f"samples. Use `zero_division` parameter to control this behavior.",
                      UndefinedMetricWarning, stacklevel=4)
    return result


def _nanaverage(a, weights=None):
    """Average ignoring NaN scores; all-zero weights fall back to a plain mean."""
    if a.shape[0] == 0 or np.all(np.isnan(a)):
        return math.nan
    keep = ~np.isnan(a)
    if weights is None:
        return float(np.mean(a[keep]))
    try:
        return float(np.average(a[keep], weights=weights[keep]))
    except ZeroDivisionError:
        return float(np.mean(a[keep]))


def _prf(y_true, y_pred, labels, pos_label, average, sample_weight, zero_division, metric):
    """Precision, recall or F1 (``metric``) as scikit-learn's precision_recall_fscore_support."""
    _check_zero_division(zero_division)
    if average not in _AVERAGES:
        raise ValueError(f"average has to be one of {_AVERAGES}, got {average!r}")
    y_type, present, y_true, y_pred, sample_weight = _check_targets(y_true, y_pred,
                                                                    sample_weight)
    if average == "binary":
        if y_type != "binary":
            raise ValueError(f"Target is {y_type} but average='binary'. Please choose another "
                             f"average setting, one of {[a for a in _AVERAGES if a != 'binary']}.")
        if pos_label not in present.tolist() and len(present) >= 2:
            raise ValueError(f"pos_label={pos_label} is not a valid label. It should be one of "
                             f"{present}")
        labels = [pos_label]
    elif pos_label not in (None, 1):
        warnings.warn(f"Note that pos_label (set to {pos_label!r}) is ignored when average != "
                      f"'binary' (got {average!r}). You may use labels=[pos_label] to specify a "
                      f"single positive class.", UserWarning, stacklevel=3)
    if labels is None:
        selected = present
    else:
        selected = _array(labels, "labels")
        if selected.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {selected.shape}")
    # Per-class counts over every label that is either selected or present, then keep the
    # selected ones in the order given (absent ones count zero).
    classes = _unique_labels(selected, present)
    t = np.searchsorted(classes, y_true)
    p = np.searchsorted(classes, y_pred)
    hit = t == p
    w = sample_weight
    tp_all = np.bincount(t[hit], weights=None if w is None else w[hit], minlength=len(classes))
    pred_all = np.bincount(p, weights=w, minlength=len(classes))
    true_all = np.bincount(t, weights=w, minlength=len(classes))
    idx = np.searchsorted(classes, selected)
    tp_sum, pred_sum, true_sum = tp_all[idx], pred_all[idx], true_all[idx]
    if average == "micro":
        tp_sum, pred_sum, true_sum = (a.sum(keepdims=True) for a in (tp_sum, pred_sum, true_sum))
    if metric == "precision":
        score = _prf_divide(tp_sum, pred_sum, "Precision", "predicted", zero_division)
    elif metric == "recall":
        score = _prf_divide(tp_sum, true_sum, "Recall", "true", zero_division)
    else:
        score = _prf_divide(2.0 * tp_sum, true_sum + pred_sum.astype(np.float64), "F-score",
                            "true nor predicted", zero_division)
    if average is None:
        return score
    return _nanaverage(score, weights=true_sum if average == "weighted" else None)


_PRF_ARGS = """
    Args:
        y_true: True labels, shape (n_samples,).
        y_pred: Predicted labels, shape (n_samples,).
        labels: The classes to score (and their order for ``average=None``); may include
            classes absent from the data. Default None: all labels present, sorted. Ignored
            with ``average="binary"``.
        pos_label: The positive class for ``average="binary"``. Default 1.
        average: ``"binary"`` (default: the score of ``pos_label``; binary targets only),
            ``"micro"`` (from the total counts), ``"macro"`` (unweighted mean over classes),
            ``"weighted"`` (mean weighted by each class's true count) or None (one score per
            class).
        sample_weight: Optional per-sample weights. Default None.
        zero_division: The score of an ill-defined class: ``"warn"`` (default: 0.0 and an
            :class:`UndefinedMetricWarning`), 0.0, 1.0 or ``np.nan`` (ignored when averaging).

    Returns:
        A float, or a float64 array of per-class scores for ``average=None``.

    Raises:
        ValueError: Bad inputs as for :func:`accuracy_score`, an unknown ``average``,
            ``average="binary"`` with multiclass targets, a ``pos_label`` that is not a label,
            or a bad ``zero_division``.
"""


def precision_score(y_true, y_pred, labels=None, pos_label=1, average="binary",
                    sample_weight=None, zero_division="warn"):
    return _prf(y_true, y_pred, labels, pos_label, average, sample_weight, zero_division,
                "precision")


def recall_score(y_true, y_pred, labels=None, pos_label=1, average="binary",
                 sample_weight=None, zero_division="warn"):
    return _prf(y_true, y_pred, labels, pos_label, average, sample_weight, zero_division,
                "recall")


def f1_score(y_true, y_pred, labels=None, pos_label=1, average="binary", sample_weight=None,
             zero_division="warn"):
    return _prf(y_true, y_pred, labels, pos_label, average, sample_weight, zero_division, "f1")


precision_score.__doc__ = ("""Return the precision ``tp / (tp + fp)``: how many predicted
    positives are right.
""" + _PRF_ARGS + """
    Example:
        >>> pydl.metrics.precision_score([0, 1, 1, 0], [1, 1, 0, 0])
        0.5
    """)
recall_score.__doc__ = ("""Return the recall ``tp / (tp + fn)``: how many true positives are
    found.
""" + _PRF_ARGS + """
    Example:
        >>> pydl.metrics.recall_score([0, 1, 1, 1], [1, 1, 0, 1])
        0.6666666666666666
    """)
f1_score.__doc__ = ("""Return the F1 score ``2 tp / (2 tp + fp + fn)``, the harmonic mean of
    precision and recall.
""" + _PRF_ARGS + """
    Example:
        >>> pydl.metrics.f1_score([0, 1, 2, 2], [0, 2, 2, 2], average="macro")
        0.6
    """)


def top_k_accuracy_score(y_true, y_score, k=2, normalize=True, sample_weight=None, labels=None):
    """Return the fraction of samples whose true class is among the ``k`` highest scores.

    Ties are broken as in scikit-learn: among equal scores the class with the larger index
    ranks first.

    Args:
        y_true: True labels, shape (n_samples,).
        y_score: Scores (probabilities or logits), shape (n_samples, n_classes) with columns in
            the sorted order of the classes; for binary targets also (n_samples,), the score
            of the greater label.
        k: How many top classes count as a hit, an int >= 1. Default 2.
        normalize: True (default) returns the fraction; False the (weighted) hit count.
        sample_weight: Optional per-sample weights. Default None.
        labels: All the classes (sorted, unique), needed when ``y_true`` lacks some. Default
            None: the classes in ``y_true``.

    Returns:
        A float.

    Raises:
        ValueError: Different lengths, a ``y_score`` shape that does not match the classes,
            unsorted or duplicated ``labels``, labels of ``y_true`` not in ``labels``, a bad
            ``k``, or continuous targets.

    Example:
        >>> pydl.metrics.top_k_accuracy_score([1, 0, 2], [[.5, .3, .2], [.1, .2, .7],
        ...                                              [.2, .5, .3]], k=2)
        0.6666666666666666
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    y_true = _column(_array(y_true, "y_true"), "y_true")
    if len(y_true) < 1:
        raise ValueError("Found empty input array y_true; at least 1 sample is required.")
    y_type = _target_type(y_true, "y_true")
    if y_type == "binary" and labels is not None and len(labels) > 2:
        y_type = "multiclass"
    if y_type not in ("binary", "multiclass"):
        raise ValueError(f"y type must be 'binary' or 'multiclass', got '{y_type}' instead.")
    y_score = _array(y_score, "y_score")
    if y_score.dtype.kind not in "biuf":
        raise ValueError(f"y_score must be numeric, got dtype {y_score.dtype}")
    _check_finite(y_score, "y_score")
    if y_type == "binary":
        if y_score.ndim == 2 and y_score.shape[1] != 1:
            raise ValueError(f"`y_true` is binary while y_score is 2d with {y_score.shape[1]} "
                             f"classes. If `y_true` does not contain all the labels, `labels` "
                             f"must be provided.")
        y_score = y_score.reshape(-1) if y_score.ndim == 2 else y_score
        if y_score.ndim != 1:
            raise ValueError(f"y_score must be 1-D or (n_samples, 1) for binary targets, got "
                             f"shape {y_score.shape}")
    elif y_score.ndim != 2:
        raise ValueError(f"`y_score` needs to be of shape `(n_samples, n_classes)`, since "
                         f"`y_true` contains multiple classes. Got "
                         f"`y_score.shape={y_score.shape}`.")
    _check_lengths(y_true, y_score)
    sample_weight = _sample_weight(sample_weight, len(y_true))
    n_score_classes = y_score.shape[1] if y_score.ndim == 2 else 2
    if labels is None:
        classes = np.unique(y_true)
        if len(classes) != n_score_classes:
            raise ValueError(f"Number of classes in 'y_true' ({len(classes)}) not equal to the "
                             f"number of classes in 'y_score' ({n_score_classes}). You can "
                             f"provide a list of all known classes by assigning it to the "
                             f"`labels` parameter.")
    else:
        labels = _column(_array(labels, "labels"), "labels")
        classes = np.unique(labels)
        if len(classes) != len(labels):
            raise ValueError("Parameter 'labels' must be unique.")
        if not np.array_equal(classes, labels):
            raise ValueError("Parameter 'labels' must be ordered.")
        if len(classes) != n_score_classes:
            raise ValueError(f"Number of given labels ({len(classes)}) not equal to the number "
                             f"of classes in 'y_score' ({n_score_classes}).")
        if len(np.setdiff1d(y_true, classes)):
            raise ValueError("'y_true' contains labels not in parameter 'labels'.")
    if k >= len(classes):
        warnings.warn(f"'k' ({k}) greater than or equal to 'n_classes' ({len(classes)}) will "
                      f"result in a perfect score and is therefore meaningless.",
                      UndefinedMetricWarning, stacklevel=2)
    encoded = np.searchsorted(classes, y_true)
    if y_type == "binary":
        if k == 1:
            threshold = 0.5 if y_score.min() >= 0 and y_score.max() <= 1 else 0
            hits = (y_score > threshold).astype(np.int64) == encoded
        else:
            hits = np.ones(len(y_score), dtype=bool)
    else:
        # A stable ascending sort reversed: tied scores rank the larger class index first.
        ranked = np.argsort(y_score, axis=1, kind="mergesort")[:, ::-1]
        hits = (ranked[:, :k] == encoded[:, None]).any(axis=1)
    if normalize:
        return float(np.average(hits, weights=sample_weight))
    if sample_weight is None:
        return float(np.sum(hits))
    return float(np.dot(hits, sample_weight))


def log_loss(y_true, y_proba=None, normalize=True, sample_weight=None, labels=None,
             y_pred=None):
    """Return the cross-entropy of predicted probabilities, ``-mean(sum_c t_c log p_c)``.

    Probabilities are clipped to ``[eps, 1 - eps]`` with ``eps`` the machine epsilon of their
    dtype (float32 stays float32), as in scikit-learn >= 1.5; rows are not renormalised (a
    ``UserWarning`` says when they do not sum to 1).

    Args:
        y_true: True labels, shape (n_samples,).
        y_proba: Predicted probabilities, shape (n_samples, n_classes) with columns in the
            sorted order of the classes, or (n_samples,) for binary targets: the probability
            of the greater label.
        normalize: True (default) returns the mean loss per sample; False the (weighted) sum.
        sample_weight: Optional per-sample weights. Default None.
        labels: All the classes, needed when ``y_true`` lacks some. Default None.
        y_pred: The former name of ``y_proba`` (scikit-learn < 1.9); give one of the two.

    Returns:
        A float.

    Raises:
        ValueError: Probabilities outside [0, 1] or not finite, different lengths, a column
            count that differs from the number of classes, a single class, labels of
            ``y_true`` not in ``labels``, or both ``y_proba`` and ``y_pred``.

    Example:
        >>> pydl.metrics.log_loss([0, 1], [[0.9, 0.1], [0.2, 0.8]])
        0.164252033486018
    """
    if y_pred is not None:
        if y_proba is not None:
            raise ValueError("Cannot use both `y_pred` and `y_proba`; `y_pred` is the old name "
                             "of `y_proba`.")
        y_proba = y_pred
    if y_proba is None:
        raise ValueError("log_loss needs the predicted probabilities `y_proba`")
    p = _array(y_proba, "y_proba")
    if p.dtype.kind not in "biuf":
        raise ValueError(f"y_proba must be numeric, got dtype {p.dtype}")
    p = p.astype(np.float32 if p.dtype == np.float32 else np.float64)
    if p.ndim not in (1, 2) or p.size == 0:
        raise ValueError(f"y_proba must be a non-empty 1-D or 2-D array, got shape {p.shape}")
    _check_finite(p, "y_proba")
    if p.max() > 1:
        raise ValueError(f"y_prob contains values greater than 1: {p.max()}")
    if p.min() < 0:
        raise ValueError(f"y_prob contains values lower than 0: {p.min()}")
    y_true = _column(_array(y_true, "y_true"), "y_true")
    _check_lengths(p, y_true)
    sample_weight = _sample_weight(sample_weight, len(y_true))
    if _target_type(y_true, "y_true") == "continuous":
        raise ValueError("Unknown label type: y_true is continuous")
    if labels is not None:
        labels = _column(_array(labels, "labels"), "labels")
        classes = np.unique(labels)
        if len(classes) != len(labels) or not np.all(classes == labels):
            warnings.warn(f"Labels passed were {labels}. But this function assumes labels are "
                          f"ordered lexicographically. Pass the ordered "
                          f"labels={classes.tolist()} and ensure that the columns of y_prob "
                          f"correspond to this ordering.", UserWarning, stacklevel=2)
        unknown = set(np.setdiff1d(y_true, classes).tolist())
        if unknown:
            raise ValueError(f"y_true contains values {unknown} not belonging to the passed "
                             f"labels {labels}.")
    else:
        classes = np.unique(y_true)
    if len(classes) == 1:
        if labels is None:
            raise ValueError(f"y_true contains only one label ({classes[0]}). Please provide "
                             f"the list of all expected class labels explicitly through the "
                             f"labels argument.")
        raise ValueError(f"The labels array needs to contain at least two labels, got "
                         f"{classes}.")
    onehot = (y_true[:, None] == classes[None, :]).astype(p.dtype)
    if p.ndim == 1:
        p = p[:, None]
    if p.shape[1] == 1:
        p = np.concatenate([1 - p, p], axis=1)
    eps = np.finfo(p.dtype).eps
    if not np.all(np.isclose(p.sum(axis=1), 1, rtol=math.sqrt(eps))):
        warnings.warn("The y_prob values do not sum to one. Make sure to pass probabilities.",
                      UserWarning, stacklevel=2)
    if len(classes) != p.shape[1]:
        if labels is None:
            raise ValueError(f"y_true and y_prob contain different number of classes: "
                             f"{len(classes)} vs {p.shape[1]}. Please provide the true labels "
                             f"explicitly through the labels argument. Classes found in y_true: "
                             f"{classes}")
        raise ValueError(f"The number of classes in labels is different from that in y_prob. "
                         f"Classes found in labels: {classes}")
    p = np.clip(p, eps, 1 - eps)
    loss = -np.sum(onehot * np.log(p), axis=1)
    if normalize:
        return float(np.average(loss, weights=sample_weight))
    if sample_weight is not None:
        return float(np.dot(loss, sample_weight))
    return float(np.sum(loss))


# --- regression ---------------------------------------------------------------------------------

def _check_reg_targets(y_true, y_pred, sample_weight, multioutput, allowed):
    """Validate regression inputs; return 2-D float arrays, the weights and ``multioutput``."""
    y_true, y_pred = _array(y_true, "y_true"), _array(y_pred, "y_pred")
    _check_lengths(y_true, y_pred)
    arrays = [y_true, y_pred]
    if sample_weight is not None:
        arrays.append(_array(sample_weight, "sample_weight"))
    for a, name in zip(arrays, ("y_true", "y_pred", "sample_weight")):
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    # Work in float32 only when every floating input is float32, as scikit-learn does.
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    dtype = np.result_type(*floats) if floats else np.float64
    y_true, y_pred = y_true.astype(dtype), y_pred.astype(dtype)
    for a, name in ((y_true, "y_true"), (y_pred, "y_pred")):
        if a.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D or 2-D, got shape {a.shape}")
        if a.shape[0] < 1:
            raise ValueError(f"Found empty input array {name}; at least 1 sample is required.")
        _check_finite(a, name)
    if sample_weight is not None:
        sample_weight = _sample_weight(sample_weight, len(y_true)).astype(dtype)
    y_true = y_true.reshape(-1, 1) if y_true.ndim == 1 else y_true
    y_pred = y_pred.reshape(-1, 1) if y_pred.ndim == 1 else y_pred
    if y_true.shape[1] != y_pred.shape[1]:
        raise ValueError(f"y_true and y_pred have different number of output "
                         f"({y_true.shape[1]}!={y_pred.shape[1]})")
    if isinstance(multioutput, str):
        if multioutput not in allowed:
            raise ValueError(f"Allowed 'multioutput' string values are {allowed}. You provided "
                             f"multioutput={multioutput!r}")
    else:
        multioutput = _array(multioutput, "multioutput")
        if y_true.shape[1] == 1:
            raise ValueError("Custom weights are useful only in multi-output cases.")
        if multioutput.shape != (y_true.shape[1],):
            raise ValueError(f"There must be equally many custom weights "
                             f"({multioutput.shape[0] if multioutput.ndim else 1}) as outputs "
                             f"({y_true.shape[1]}).")
    return y_true, y_pred, sample_weight, multioutput


def _combine_outputs(errors, multioutput):
    if isinstance(multioutput, str):
        if multioutput == "raw_values":
            return errors
        return float(np.average(errors))
    return float(np.average(errors, weights=multioutput))


_REG_ARGS = """
    Args:
        y_true: True values, shape (n_samples,) or (n_samples, n_outputs).
        y_pred: Predicted values, same shape.
        sample_weight: Optional per-sample weights. Default None.
        multioutput: ``"uniform_average"`` (default: mean over outputs), ``"raw_values"`` (one
            value per output) or an array of per-output weights.{extra}

    Returns:
        A float, or a per-output array for ``"raw_values"``.

    Raises:
        ValueError: Different lengths or output counts, NaN/inf, empty input, or a bad
            ``multioutput``.
"""


def mean_squared_error(y_true, y_pred, sample_weight=None, multioutput="uniform_average"):
    y_true, y_pred, w, multioutput = _check_reg_targets(
        y_true, y_pred, sample_weight, multioutput, ("raw_values", "uniform_average"))
    return _combine_outputs(np.average((y_true - y_pred) ** 2, axis=0, weights=w), multioutput)


def mean_absolute_error(y_true, y_pred, sample_weight=None, multioutput="uniform_average"):
    y_true, y_pred, w, multioutput = _check_reg_targets(
        y_true, y_pred, sample_weight, multioutput, ("raw_values", "uniform_average"))
    return _combine_outputs(np.average(np.abs(y_pred - y_true), axis=0, weights=w), multioutput)


def r2_score(y_true, y_pred, sample_weight=None, multioutput="uniform_average",
             force_finite=True):
    y_true, y_pred, w, multioutput = _check_reg_targets(
        y_true, y_pred, sample_weight, multioutput,
        ("raw_values", "uniform_average", "variance_weighted"))
    if len(y_pred) < 2:
        warnings.warn("R^2 score is not well-defined with less than two samples.",
                      UndefinedMetricWarning, stacklevel=2)
        return math.nan
    weight = 1.0 if w is None else w[:, None]
    numerator = np.sum(weight * (y_true - y_pred) ** 2, axis=0)
    denominator = np.sum(weight * (y_true - np.average(y_true, axis=0, weights=w)) ** 2, axis=0)
    nonzero_den = denominator != 0
    if force_finite:
        nonzero_num = numerator != 0
        scores = np.ones(y_true.shape[1], dtype=numerator.dtype)
        valid = nonzero_den & nonzero_num
        scores[valid] = 1 - numerator[valid] / denominator[valid]
        scores[nonzero_num & ~nonzero_den] = 0.0  # a constant y_true predicted wrongly
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = 1 - numerator / denominator
    if isinstance(multioutput, str) and multioutput == "variance_weighted":
        multioutput = denominator if nonzero_den.any() else "uniform_average"
    return _combine_outputs(scores, multioutput)


mean_squared_error.__doc__ = ("""Return the mean squared error ``mean((y_true - y_pred)**2)``.
""" + _REG_ARGS.format(extra="") + """
    Example:
        >>> pydl.metrics.mean_squared_error([3.0, -0.5, 2.0], [2.5, 0.0, 2.0])
        0.16666666666666666
    """)
mean_absolute_error.__doc__ = ("""Return the mean absolute error ``mean(|y_true - y_pred|)``.
""" + _REG_ARGS.format(extra="") + """
    Example:
        >>> pydl.metrics.mean_absolute_error([3.0, -0.5, 2.0], [2.5, 0.0, 2.0])
        0.3333333333333333
    """)
r2_score.__doc__ = ("""Return the coefficient of determination ``1 - SS_res / SS_tot``.

    With ``force_finite=True`` (default) a constant ``y_true`` gives 1.0 when predicted exactly
    and 0.0 otherwise (instead of NaN/-inf); fewer than two samples give NaN and an
    :class:`UndefinedMetricWarning`.
""" + _REG_ARGS.format(extra="""
            Also ``"variance_weighted"``: weighted by each output's variance.
        force_finite: Replace NaN/-inf scores of constant outputs as above. Default True.""")
    + """
    Example:
        >>> pydl.metrics.r2_score([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
        0.9486081370449679
    """)
