"""pydl.metrics: hand-computed cases, then scikit-learn as the oracle on many random inputs."""

import warnings

import numpy as np
import pytest

import pydl
from pydl import metrics as M
from pydl.metrics import UndefinedMetricWarning


# --- hand-computed cases (no scikit-learn needed) ---------------------------------------------

def test_accuracy_by_hand():
    assert M.accuracy_score([0, 1, 2, 2], [0, 2, 2, 2]) == 0.75
    assert M.accuracy_score([0, 1, 2, 2], [0, 2, 2, 2], normalize=False) == 3.0
    assert M.accuracy_score([1, 0], [1, 1], sample_weight=[3, 1]) == 0.75
    assert M.accuracy_score(["a", "b"], ["a", "a"]) == 0.5
    assert M.accuracy_score(pydl.tensor([1.0, 0.0]), np.array([1, 0])) == 1.0


def test_precision_recall_f1_by_hand():
    # tp=1 (index 1), fp=1 (index 0), fn=1 (index 2)
    y_true, y_pred = [0, 1, 1, 0], [1, 1, 0, 0]
    assert M.precision_score(y_true, y_pred) == 0.5
    assert M.recall_score(y_true, y_pred) == 0.5
    assert M.f1_score(y_true, y_pred) == 0.5
    assert M.precision_score(y_true, y_pred, pos_label=0) == 0.5
    # multiclass: per class precision [1, 0, 2/3], recall [1, 0, 1], true counts [1, 1, 2]
    t, p = [0, 1, 2, 2], [0, 2, 2, 2]
    with pytest.warns(UndefinedMetricWarning):
        np.testing.assert_allclose(M.precision_score(t, p, average=None), [1, 0, 2 / 3])
    np.testing.assert_allclose(M.recall_score(t, p, average=None), [1, 0, 1])
    np.testing.assert_allclose(M.f1_score(t, p, average=None), [1, 0, 0.8])
    assert M.f1_score(t, p, average="macro") == pytest.approx(0.6)
    assert M.f1_score(t, p, average="weighted") == pytest.approx((1 + 0 + 2 * 0.8) / 4)
    assert M.f1_score(t, p, average="micro") == pytest.approx(0.75)
    np.testing.assert_allclose(M.recall_score(t, p, labels=[2, 5], average=None,
                                              zero_division=0), [1, 0])


def test_zero_division_by_hand():
    with pytest.warns(UndefinedMetricWarning, match="no predicted samples"):
        assert M.precision_score([1, 0], [0, 0]) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.precision_score([1, 0], [0, 0], zero_division=1) == 1.0
        assert np.isnan(M.precision_score([1, 0], [0, 0], zero_division=np.nan))
        assert M.recall_score([0, 0], [1, 0], zero_division=1.0) == 1.0
        # NaN classes are left out of the average
        assert M.precision_score([0, 1, 2], [0, 0, 2], average="macro",
                                 zero_division=np.nan) == pytest.approx(0.75)


def test_confusion_matrix_by_hand():
    cm = M.confusion_matrix([0, 1, 1, 2], [0, 0, 1, 1])
    np.testing.assert_array_equal(cm, [[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    assert cm.dtype == np.int64
    cm = M.confusion_matrix(["b", "a", "a"], ["b", "b", "a"], labels=["b", "a"])
    np.testing.assert_array_equal(cm, [[1, 0], [1, 1]])
    cm = M.confusion_matrix([0, 1, 1], [0, 0, 1], sample_weight=[0.5, 1, 2], normalize="true")
    np.testing.assert_allclose(cm, [[1, 0], [1 / 3, 2 / 3]])
    np.testing.assert_array_equal(M.confusion_matrix([0, 1], [0, 1], labels=[1, 7]),
                                  [[1, 0], [0, 0]])
    with pytest.warns(UserWarning, match="single label"):
        M.confusion_matrix([3, 3], [3, 3])


def test_top_k_by_hand():
    scores = [[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3]]
    assert M.top_k_accuracy_score([0, 1, 2], scores, k=1) == pytest.approx(1 / 3)
    assert M.top_k_accuracy_score([1, 0, 2], scores, k=1) == 0.0
    assert M.top_k_accuracy_score([1, 0, 2], scores, k=2) == pytest.approx(2 / 3)
    assert M.top_k_accuracy_score([1, 0, 2], scores, k=2, normalize=False) == 2.0
    # ties: the larger class index ranks first
    assert M.top_k_accuracy_score([0, 1], [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]], k=1,
                                  labels=[0, 1, 2]) == 0.5
    assert M.top_k_accuracy_score([0, 1, 1], [0.2, 0.9, 0.4], k=1) == pytest.approx(2 / 3)


def test_log_loss_by_hand():
    expected = -(np.log(0.9) + np.log(0.8)) / 2
    assert M.log_loss([0, 1], [[0.9, 0.1], [0.2, 0.8]]) == pytest.approx(expected, rel=1e-12)
    assert M.log_loss([0, 1], [0.1, 0.8]) == pytest.approx(expected, rel=1e-12)
    assert M.log_loss([0, 1], y_pred=[0.1, 0.8]) == pytest.approx(expected, rel=1e-12)
    assert M.log_loss(["no", "yes"], [[1.0, 0.0], [1.0, 0.0]]) == \
        pytest.approx(-np.log(np.finfo(np.float64).eps) / 2, rel=1e-12)
    assert M.log_loss([2, 2], [[0.5, 0.25, 0.25]] * 2, labels=[0, 1, 2]) == \
        pytest.approx(np.log(4))


def test_regression_by_hand():
    y, p = [3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]
    assert M.mean_squared_error(y, p) == pytest.approx(0.375)
    assert M.mean_absolute_error(y, p) == pytest.approx(0.5)
    assert M.r2_score(y, p) == pytest.approx(1 - 1.5 / 29.1875)
    yt, yp = [[0.5, 1], [-1, 1], [7, -6]], [[0, 2], [-1, 2], [8, -5]]
    np.testing.assert_allclose(M.mean_absolute_error(yt, yp, multioutput="raw_values"),
                               [0.5, 1.0])
    assert M.mean_absolute_error(yt, yp, multioutput=[0.3, 0.7]) == pytest.approx(0.85)
    assert M.r2_score([1, 1, 1], [1, 1, 1]) == 1.0
    assert M.r2_score([1, 1, 1], [1, 1, 2]) == 0.0
    assert M.r2_score([1, 1, 1], [1, 1, 2], force_finite=False) == -np.inf
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(M.r2_score([1.0], [2.0]))


# --- invalid input ----------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: M.accuracy_score([0, 1], [0, 1, 1]), "inconsistent numbers of samples"),
    (lambda: M.accuracy_score([], []), "empty"),
    (lambda: M.accuracy_score([0.5, 1], [0, 1]), "continuous and binary"),
    (lambda: M.accuracy_score([[0, 1], [1, 0]], [[0, 1], [1, 1]]), "multilabel"),
    (lambda: M.accuracy_score([0, 1], [0, 1], sample_weight=[1]), "sample_weight"),
    (lambda: M.accuracy_score(["a", "b"], [0, 1]), "Mix of label input types"),
    (lambda: M.f1_score([0, 1, 2], [0, 1, 2]), "average='binary'"),
    (lambda: M.f1_score([0, 1], [0, 1], average="mean"), "average has to be one of"),
    (lambda: M.precision_score([0, 2], [2, 0]), "pos_label=1 is not a valid label"),
    (lambda: M.recall_score([0, 1], [0, 1], zero_division=2), "zero_division"),
    (lambda: M.confusion_matrix([0, 1], [0, 1], labels=[]), "at least one label"),
    (lambda: M.confusion_matrix([0, 1], [0, 1], labels=[5]), "must be in y_true"),
    (lambda: M.confusion_matrix([0, 1], [0, 1], normalize="rows"), "normalize"),
    (lambda: M.top_k_accuracy_score([0, 1, 2], [0.1, 0.2, 0.3]), "y_score"),
    (lambda: M.top_k_accuracy_score([0, 1, 2], np.eye(4)[:3]), "Number of classes"),
    (lambda: M.top_k_accuracy_score([0, 1, 2], np.eye(3), labels=[2, 1, 0]), "ordered"),
    (lambda: M.top_k_accuracy_score([0, 1, 2], np.eye(3), k=0), "k must be"),
    (lambda: M.log_loss([0, 1], [1.5, 0.5]), "greater than 1"),
    (lambda: M.log_loss([0, 1], [-0.5, 0.5]), "lower than 0"),
    (lambda: M.log_loss([0, 0], [0.5, 0.5]), "only one label"),
    (lambda: M.log_loss([0, 1, 2], [0.5, 0.5, 0.5]), "different number of classes"),
    (lambda: M.log_loss([0, 3], [[0.5, 0.5]] * 2, labels=[0, 1]), "not belonging"),
    (lambda: M.log_loss([0, 1], [0.5, 0.5], y_pred=[0.5, 0.5]), "both"),
    (lambda: M.mean_squared_error([1, 2], [1, 2, 3]), "inconsistent numbers of samples"),
    (lambda: M.mean_squared_error([1, np.nan], [1, 2]), "NaN"),
    (lambda: M.mean_squared_error([[1, 2]], [[1, 2, 3]]), "different number of output"),
    (lambda: M.mean_squared_error([1, 2], [1, 2], multioutput="variance_weighted"),
     "multioutput"),
    (lambda: M.mean_absolute_error([1, 2], [1, 2], multioutput=[0.5, 0.5]), "multi-output"),
    (lambda: M.r2_score([[1, 2], [3, 4]], [[1, 2], [3, 4]], multioutput=[1]),
     "equally many custom weights"),
])
def test_invalid_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- scikit-learn as the oracle ---------------------------------------------------------------

def run(module, name, *args, **kwargs):
    """Return (result or ("error", message), [warning categories]) of one metric call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = getattr(module, name)(*args, **kwargs)
        except ValueError as e:
            result = ("error", str(e))
    # numpy's own RuntimeWarnings (0/0 with force_finite=False) are not part of the contract
    return result, sorted(w.category.__name__ for w in caught
                          if not issubclass(w.category, RuntimeWarning))


def compare(name, *args, rtol=1e-10, **kwargs):
    """Assert pydl and scikit-learn agree: value (or both raise ValueError) and warnings."""
    import sklearn.metrics as sk
    ours, our_warnings = run(M, name, *args, **kwargs)
    ref, ref_warnings = run(sk, name, *args, **kwargs)
    context = f"{name}(args={args}, kwargs={kwargs}): pydl {ours!r}, sklearn {ref!r}"
    if isinstance(ref, tuple):
        assert isinstance(ours, tuple), context
        return
    assert not isinstance(ours, tuple), context
    assert type(ours) is type(ref) or isinstance(ref, np.ndarray), context
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=1e-12, equal_nan=True,
                               err_msg=context)
    if isinstance(ref, np.ndarray):
        assert ours.shape == ref.shape and ours.dtype == ref.dtype, context
    assert our_warnings == ref_warnings, context


def random_labels(rng, n, k, kind):
    """Return labels of ``k`` classes as ints, shuffled ints, floats or strings."""
    y = rng.integers(0, k, n)
    if kind == "offset":
        return y * 3 - 2
    if kind == "float":
        return y.astype(np.float64)
    if kind == "str":
        return np.array(["cat", "dog", "emu", "fox", "gnu"])[y]
    return y


SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    k = int(rng.integers(2, 6)) if seed % 4 else 2
    kind = ["int", "offset", "float", "str"][seed % 4]
    y_true = random_labels(rng, n, k, kind)
    # sometimes predictions miss classes, sometimes they are nearly all right
    y_pred = random_labels(rng, n, max(1, k - seed % 3), kind)
    if seed % 5 == 0:
        y_pred = np.where(rng.random(n) < 0.8, y_true, y_pred)
    weights = [None, rng.random(n), rng.integers(0, 3, n)][seed % 3]
    present = np.unique(np.concatenate([y_true, y_pred]))
    label_sets = [None, present[::-1], present[:1]]
    if kind != "str":
        label_sets.append(np.concatenate([present, [present.max() + 1]]))
    compare("accuracy_score", y_true, y_pred, sample_weight=weights)
    compare("accuracy_score", y_true, y_pred, normalize=False, sample_weight=weights)
    pos_labels = [1, y_true[0]]
    for average in ["binary", "micro", "macro", "weighted", None]:
        for zero_division in ["warn", 0.0, 1.0, np.nan]:
            for labels in label_sets:
                for name in ["precision_score", "recall_score", "f1_score"]:
                    compare(name, y_true, y_pred, labels=labels, average=average,
                            sample_weight=weights, zero_division=zero_division)
        for pos_label in pos_labels:
            compare("f1_score", y_true, y_pred, pos_label=pos_label, average=average)
    for labels in label_sets:
        for normalize in [None, "true", "pred", "all"]:
            compare("confusion_matrix", y_true, y_pred, labels=labels, sample_weight=weights,
                    normalize=normalize)


@pytest.mark.parametrize("seed", SEEDS)
def test_score_metrics_match_sklearn(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(1, 40))
    k = int(rng.integers(2, 6))
    y_true = rng.integers(0, k, n)
    weights = [None, rng.random(n)][seed % 2]
    all_labels = np.arange(k)
    scores = rng.normal(size=(n, k))
    if seed % 3 == 0:
        scores = np.round(scores)  # ties
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    if seed % 4 == 0:
        probs[0] = np.eye(k)[(y_true[0] + 1) % k]  # a confident mistake: clipping matters
    for kk in range(1, k + 1):
        compare("top_k_accuracy_score", y_true, scores, k=kk, sample_weight=weights)
        compare("top_k_accuracy_score", y_true, scores, k=kk, labels=all_labels,
                normalize=False, sample_weight=weights)
    for dtype in (np.float64, np.float32):
        for labels in (None, all_labels):
            compare("log_loss", y_true, probs.astype(dtype), labels=labels,
                    sample_weight=weights, rtol=1e-10 if dtype == np.float64 else 1e-5)
            compare("log_loss", y_true, probs.astype(dtype), labels=labels, normalize=False,
                    sample_weight=weights, rtol=1e-10 if dtype == np.float64 else 1e-5)
    binary = rng.integers(0, 2, n)
    p1 = rng.random(n)
    compare("log_loss", binary, p1, sample_weight=weights)
    compare("top_k_accuracy_score", binary, p1, k=1, sample_weight=weights)
    compare("top_k_accuracy_score", binary, scores[:, 0], k=1, labels=[0, 1])
    compare("log_loss", y_true, probs * 1.01)  # rows not summing to one: a warning


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_metrics_match_sklearn(seed):
    rng = np.random.default_rng(2000 + seed)
    n = int(rng.integers(1, 30))
    outputs = int(rng.integers(1, 4))
    y_true = rng.normal(size=(n, outputs))
    y_pred = y_true + rng.normal(scale=rng.random(), size=(n, outputs))
    if seed % 5 == 0:
        y_true[:, 0] = 2.0  # a constant output: the force_finite cases
        y_pred[: n // 2, 0] = 2.0
    if seed % 7 == 0:
        y_pred = y_true.copy()
    weights = [None, rng.random(n), rng.integers(1, 4, n)][seed % 3]
    multis = ["raw_values", "uniform_average"]
    if outputs > 1:
        multis.append(rng.random(outputs))
    for yt, yp in ((y_true, y_pred), (y_true[:, 0], y_pred[:, 0]),
                   (y_true.astype(np.float32), y_pred.astype(np.float32))):
        rtol = 1e-5 if yt.dtype == np.float32 else 1e-10
        for multioutput in multis:
            for name in ["mean_squared_error", "mean_absolute_error"]:
                compare(name, yt, yp, sample_weight=weights, multioutput=multioutput,
                        rtol=rtol)
        for multioutput in multis + ["variance_weighted"]:
            for force_finite in (True, False):
                compare("r2_score", yt, yp, sample_weight=weights, multioutput=multioutput,
                        force_finite=force_finite, rtol=rtol)


def test_tensors_and_lists_are_accepted():
    y = np.array([0, 1, 1, 2])
    p = np.array([0, 1, 2, 2])
    assert M.f1_score(pydl.tensor(y.astype(np.float32)), list(p), average="macro") == \
        M.f1_score(y, p, average="macro")
    scores = np.eye(3)[p].astype(np.float32)
    assert M.top_k_accuracy_score(y, pydl.tensor(scores), k=1) == 0.75
    assert M.mean_squared_error(pydl.tensor([1.0, 2.0]), [1.0, 4.0]) == 2.0
