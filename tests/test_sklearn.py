"""pydl.sklearn: check_estimator in full (subprocess, every check must pass, none skipped),
scikit-learn's tools (Pipeline, GridSearchCV, cross_val_score, clone, pickle), labels of any
type, partial_fit, weights, quality against scikit-learn's own MLP, and bad input."""

import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import pydl
from pydl.sklearn import MLPClassifier, MLPRegressor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK_SCRIPT = """
import json, warnings
from sklearn.utils.estimator_checks import check_estimator
from pydl.sklearn import MLPClassifier, MLPRegressor
warnings.simplefilter("ignore")
out = {}
for est in (MLPClassifier(), MLPRegressor()):
    results = check_estimator(est, on_fail=None)
    out[type(est).__name__] = [(r["check_name"], r["status"], repr(r["exception"])[:300])
                               for r in results]
print(json.dumps(out))
"""


@pytest.mark.timeout(900)
def test_check_estimator_passes_in_full():
    # A subprocess, so that SCIPY_ARRAY_API=1 (needed by check_array_api_input) is set before
    # scipy is imported and nothing the checks change leaks into this process.
    env = dict(os.environ, SCIPY_ARRAY_API="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", CHECK_SCRIPT], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, checks in results.items():
        assert len(checks) > 50, name
        not_passed = [c for c in checks if c[1] != "passed"]
        assert not_passed == [], f"{name}: {not_passed}"


def iris_split():
    X, y = load_iris(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipeline_grid_search_cross_val_score_and_clone():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,),
                                                         max_iter=150, random_state=0,
                                                         learning_rate_init=0.01))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.85
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1],
                               "mlpclassifier__dropout": [0.0, 0.1]}, cv=3)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"mlpclassifier__alpha", "mlpclassifier__dropout"}
    assert grid.best_score_ > 0.85
    est = MLPClassifier(hidden_layer_sizes=(7, 5), dropout=0.3, class_weight="balanced")
    twin = clone(est)
    assert twin.get_params() == est.get_params() and twin is not est


def test_fit_is_repeatable_with_random_state_and_pickles():
    X_tr, X_te, y_tr, _ = iris_split()
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=3).fit(X_tr, y_tr)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=3).fit(X_tr, y_tr)
    np.testing.assert_array_equal(a.predict_proba(X_te), b.predict_proba(X_te))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(X_te), c.predict_proba(X_te))


def test_string_labels_and_probabilities_from_the_network():
    X_tr, X_te, y_tr, y_te = iris_split()
    names = np.array(["setosa", "versicolor", "virginica"])
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=200,
                        random_state=0).fit(X_tr, names[y_tr])
    assert clf.classes_.tolist() == names.tolist()
    pred = clf.predict(X_te)
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert clf.score(X_te, names[y_te]) > 0.85
    proba = clf.predict_proba(X_te)
    logits = clf.model_.eval()(X_te.astype(clf.model_[0].weight.dtype)).data
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(proba, e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(pred, names[proba.argmax(axis=1)])


def test_float32_input_trains_a_float32_network():
    X_tr, X_te, y_tr, _ = iris_split()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_tr.astype(np.float32), y_tr)
        assert clf.model_[0].weight.dtype == np.float32
        clf.fit(X_tr, y_tr)
    assert clf.model_[0].weight.dtype == np.float64


def test_convergence_warning_like_scikit_learn():
    X, y = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        MLPClassifier(max_iter=2, random_state=0).fit(X, y)


def test_partial_fit_continues_training():
    X_tr, X_te, y_tr, y_te = iris_split()
    X_tr = StandardScaler().fit(X_tr).transform(X_tr)
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X_tr, y_tr)
    clf.partial_fit(X_tr[:10], y_tr[:10], classes=[0, 1, 2])
    first = clf.loss_
    for _ in range(30):
        clf.partial_fit(X_tr, y_tr)
    assert clf.n_iter_ == 31 and len(clf.loss_curve_) == 31 and clf.loss_ < first
    with pytest.raises(ValueError, match=r"label\(s\) \[7\]"):
        clf.partial_fit(X_tr[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X_tr[:, :2], y_tr)
    reg = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    Xr, yr = load_diabetes(return_X_y=True)
    for _ in range(3):
        reg.partial_fit(Xr, yr)
    assert reg.n_iter_ == 3 and reg.predict(Xr).shape == yr.shape


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_class_weight_and_sample_weight_shift_the_decision():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 2))
    y = np.where(X[:, 0] + 0.8 * rng.standard_normal(300) > 0, "b", "a")  # overlapping classes
    base = dict(hidden_layer_sizes=(8,), learning_rate_init=0.02, max_iter=100, random_state=0)
    plain = MLPClassifier(**base).fit(X, y)
    heavy_b = MLPClassifier(class_weight={"b": 5.0}, **base).fit(X, y)
    weighted = MLPClassifier(**base).fit(X, y, sample_weight=np.where(y == "b", 5.0, 1.0))
    frac = {name: np.mean(m.predict(X) == "b") for name, m in
            [("plain", plain), ("class", heavy_b), ("sample", weighted)]}
    assert frac["class"] > frac["plain"] + 0.05 and frac["sample"] > frac["plain"] + 0.05
    # class_weight {"b": 5} and the same sample weights are the same objective
    np.testing.assert_allclose(heavy_b.predict_proba(X), weighted.predict_proba(X),
                               rtol=1e-6, atol=1e-9)
    balanced = MLPClassifier(class_weight="balanced", **base).fit(X[:200], np.r_[y[:200]])
    assert balanced.predict(X).shape == (300,)


def test_regressor_multi_output_and_quality():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    y = (y - y.mean()) / y.std()
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=100,
                       early_stopping=True, random_state=0)
    assert reg.fit(X, y).score(X, y) > 0.45
    assert reg.best_validation_loss_ == min(reg.validation_loss_curve_)
    Y = np.c_[y, -y]
    multi = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert multi.fit(X, Y).predict(X).shape == (len(X), 2)


def test_accuracy_on_par_with_scikit_learns_mlp():
    X, y = load_breast_cancer(return_X_y=True)
    scores = {"pydl": [], "sklearn": []}
    for seed in range(3):
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=seed,
                                                  stratify=y)
        for name, cls in (("pydl", MLPClassifier), ("sklearn", SkMLPClassifier)):
            pipe = make_pipeline(StandardScaler(), cls(hidden_layer_sizes=(32,), max_iter=300,
                                                       random_state=seed))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                scores[name].append(pipe.fit(X_tr, y_tr).score(X_te, y_te))
    assert np.mean(scores["pydl"]) >= np.mean(scores["sklearn"]) - 0.02


def test_unfitted_and_bad_parameters():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    for params, match in [
        (dict(hidden_layer_sizes=(10, 0)), "hidden_layer_sizes must be a tuple of ints >= 1"),
        (dict(activation="swish"), "activation must be one of"),
        (dict(optimizer="rmsprop"), "optimizer must be one of"),
        (dict(alpha=-1.0), r"alpha must be a number in \[0.0"),
        (dict(dropout=1.0), r"dropout must be a number in \[0.0, 1.0\)"),
        (dict(batch_size=0), "batch_size must be 'auto' or an int >= 1"),
        (dict(max_iter=0), "max_iter must be an int >= 1"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(class_weight={5: 2.0}), r"class_weight has the label 5.*\[0, 1, 2\]"),
        (dict(class_weight={0: -2.0}), r"class_weight\[0\] must be a number in \[0.0"),
        (dict(class_weight="heavy"), "class_weight must be None, 'balanced' or a dict"),
    ]:
        with pytest.raises(ValueError, match=match):
            MLPClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="[Nn]egative"):
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="at least one non-zero"):
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="NaN"):
        MLPRegressor(max_iter=1).fit(np.full((5, 2), np.nan), np.zeros(5))


def test_importing_pydl_does_not_import_scikit_learn():
    code = "import sys, pydl; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env=dict(os.environ, PYTHONPATH=ROOT))
