"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` trained by pydl.

They take scikit-learn's MLP parameter names where the meaning is the same, plus ``dropout``,
``class_weight`` (classifier) and ``optimizer``, and work wherever a scikit-learn estimator
does: ``Pipeline``, ``GridSearchCV``, ``cross_val_score``, ``clone``, pickling. They pass
``sklearn.utils.estimator_checks.check_estimator``. scikit-learn is needed only when this module
is imported (``pip install "pydl[sklearn]"``).

Example:
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from pydl.sklearn import MLPClassifier
    >>> clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,),
    ...                                                     dropout=0.2, random_state=0))
    >>> clf.fit(X_train, y_train).score(X_test, y_test)
"""

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import losses, nn, optim, regularizers
from . import random as _random
from .train import EarlyStopping, Trainer

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": None,
                "leaky_relu": nn.LeakyReLU, "elu": nn.ELU}
_OPTIMIZERS = ("adam", "adamw", "sgd")


def _check_number(name, value, low, high=np.inf, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or np.isnan(value) \
            or value < low or (low_open and value == low) or value > high \
            or (high_open and value == high):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be a number in {lo}{low}, {high}{hi}, got {value!r}")
    return float(value)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


class _BaseMLP(BaseEstimator):
    """Shared fitting code; see MLPClassifier and MLPRegressor for the parameters."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, dropout=0.0, optimizer="adam"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.optimizer = optimizer

    # --- validation (in fit, as scikit-learn: __init__ and set_params never raise) -------------
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            sizes = None
        if sizes is None or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                                    and s >= 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be a tuple of ints >= 1 (one per hidden "
                             f"layer), got {self.hidden_layer_sizes!r}")
        return tuple(int(s) for s in sizes)

    def _validate_params(self):
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(_OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, numbers.Integral)
                                              and not isinstance(self.batch_size, bool)
                                              and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got "
                             f"{self.batch_size!r}")
        _check_number("alpha", self.alpha, 0.0)
        _check_number("learning_rate_init", self.learning_rate_init, 0.0, low_open=True)
        _check_number("tol", self.tol, 0.0)
        _check_number("validation_fraction", self.validation_fraction, 0.0, 1.0, True, True)
        _check_number("dropout", self.dropout, 0.0, 1.0, high_open=True)
        _check_int("max_iter", self.max_iter, 1)
        _check_int("n_iter_no_change", self.n_iter_no_change, 1)
        self._hidden_sizes()

    # --- building ------------------------------------------------------------------------------
    def _build(self, n_in, n_out, dtype):
        layers = []
        act = _ACTIVATIONS[self.activation]
        for width in self._hidden_sizes():
            layers.append(nn.Linear(n_in, width, dtype=dtype))
            if act is not None:
                layers.append(act())
            if self.dropout:
                layers.append(nn.Dropout(self.dropout))
            n_in = width
        layers.append(nn.Linear(n_in, n_out, dtype=dtype))
        model = nn.Sequential(*layers)
        params = model.parameters()
        lr = float(self.learning_rate_init)
        if self.optimizer == "adam":
            opt = optim.Adam(params, lr=lr)
        elif self.optimizer == "adamw":
            opt = optim.AdamW(params, lr=lr)
        else:  # scikit-learn's SGD defaults: momentum 0.9, Nesterov
            opt = optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
        return model, opt

    def _seed(self):
        """Seed pydl's generator from random_state (so fits with an int are repeatable)."""
        seed = int(check_random_state(self.random_state).randint(0, 2 ** 31 - 1))
        _random.manual_seed(seed)
        return seed

    def _batch(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(f"Got batch_size={self.batch_size} for {n} samples; it is clipped to "
                          f"{n}", UserWarning, stacklevel=3)
        return min(int(self.batch_size), n)

    def _weights(self, X, y_enc, sample_weight):
        """Return per-sample weights scaled to mean 1 and their original mean (None if none)."""
        w = None
        if sample_weight is not None:
            w = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        cw = self._class_weights(y_enc)
        if cw is not None:
            w = cw if w is None else w * cw
        if w is None or np.all(w == 1.0):
            return None, 1.0
        mean = float(w.mean())
        if mean == 0.0:
            raise ValueError("class_weight and sample_weight give every sample weight zero")
        return w / mean, mean

    def _class_weights(self, y_enc):
        return None

    # --- training ------------------------------------------------------------------------------
    def _train(self, X, y_enc, n_out, sample_weight, incremental):
        """Fit (or, incrementally, train one more epoch) on validated X and encoded targets."""
        n = X.shape[0]
        w, w_mean = self._weights(X, y_enc, sample_weight)
        batch = self._batch(n)
        # scikit-learn's objective per batch: weighted mean loss + alpha/2 * ||W||^2 / sum(w).
        # The weights are rescaled to mean 1 (so pydl's weighted mean equals the first term),
        # and the penalty uses the batch's expected weight sum.
        reg = regularizers.L2(self.alpha / (2.0 * batch * w_mean)) if self.alpha else None
        if not incremental or not hasattr(self, "model_"):
            self._seed()
            model, opt = self._build(X.shape[1], n_out, X.dtype)
            self.model_ = model
            self._trainer = Trainer(model, self._loss(), opt, regularizer=reg, metrics=None)
            self.loss_curve_ = []
        trainer = self._trainer
        trainer.regularizer = reg
        validation = None
        callbacks = []
        epochs = 1 if incremental else int(self.max_iter)
        if not incremental:
            if self.early_stopping:
                X, y_enc, w, validation = self._split(X, y_enc, w)
                callbacks.append(EarlyStopping("val_loss", min_delta=self.tol,
                                               patience=self.n_iter_no_change))
            else:  # scikit-learn's rule: stop when the training loss stops improving by tol
                callbacks.append(EarlyStopping("loss", min_delta=self.tol,
                                               patience=self.n_iter_no_change,
                                               restore_best_weights=False))
        history = trainer.fit(X, y_enc, epochs=epochs, batch_size=min(batch, len(X)),
                              shuffle=bool(self.shuffle), validation_data=validation,
                              callbacks=callbacks, verbose=2 if self.verbose else 0,
                              sample_weight=w)
        h = history.history
        self.loss_curve_ = list(self.loss_curve_) + [float(v) for v in h["loss"]]
        self.loss_ = self.loss_curve_[-1]
        self.n_iter_ = (getattr(self, "n_iter_", 0) if incremental else 0) + len(history.epoch)
        if validation is not None:
            self.validation_loss_curve_ = [float(v) for v in h["val_loss"]]
            self.best_validation_loss_ = float(callbacks[0].best)
        if not incremental and callbacks[0].stopped_epoch == 0 \
                and self.n_iter_ == self.max_iter:
            warnings.warn(f"{type(self).__name__}: max_iter={self.max_iter} epochs reached and "
                          f"the loss is still improving; raise max_iter or tol",
                          ConvergenceWarning, stacklevel=3)
        return self

    def _split(self, X, y_enc, w):
        seed = int(check_random_state(self.random_state).randint(0, 2 ** 31 - 1))
        stratify = y_enc if self._stratify else None
        arrays = (X, y_enc) if w is None else (X, y_enc, w)
        try:
            parts = train_test_split(*arrays, test_size=self.validation_fraction,
                                     random_state=seed, stratify=stratify)
        except ValueError:  # a class too small to stratify, or too few samples
            parts = train_test_split(*arrays, test_size=self.validation_fraction,
                                     random_state=seed)
        X_tr, X_val, y_tr, y_val = parts[:4]
        if X_tr.shape[0] == 0 or X_val.shape[0] == 0:
            raise ValueError(f"early_stopping with validation_fraction="
                             f"{self.validation_fraction} leaves an empty training or "
                             f"validation set for {X.shape[0]} samples")
        w_tr = parts[4] if w is not None else None
        return X_tr, y_tr, w_tr, (X_val, y_val)

    def _outputs(self, X, who):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        return self._trainer.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    def __getstate__(self):
        state = self.__dict__.copy()
        trainer = state.get("_trainer")
        if trainer is not None:  # the History and callbacks of the last fit are not needed
            trainer.history = type(trainer.history)()
        return state


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by pydl (softmax cross-entropy).

    Args:
        hidden_layer_sizes: Width of each hidden layer. Default (100,).
        activation: "relu" (default), "tanh", "logistic", "identity", "leaky_relu" or "elu".
        alpha: L2 strength with scikit-learn's scaling: each batch's loss gets
            ``alpha / 2 * ||W||^2 / batch_size`` (weights only). Default 1e-4.
        batch_size: Samples per step, or "auto" = min(200, n_samples). Default "auto".
        learning_rate_init: The optimizer's learning rate. Default 1e-3.
        max_iter: Maximum number of epochs. Default 200.
        shuffle: Reshuffle every epoch. Default True.
        random_state: None, an int or a RandomState: seeds weight init, dropout and shuffling
            (through ``pydl.manual_seed``, the process-wide generator). Default None.
        tol: Minimum improvement of the monitored loss. Default 1e-4.
        verbose: Print one line per epoch. Default False.
        early_stopping: Hold out ``validation_fraction`` (stratified) and stop when the
            validation loss has not improved by ``tol`` for ``n_iter_no_change`` epochs,
            restoring the best weights. Without it, training stops when the training loss has
            not improved by ``tol`` for ``n_iter_no_change`` epochs (scikit-learn's rule).
            Default False.
        validation_fraction: In (0, 1). Default 0.1.
        n_iter_no_change: Patience in epochs. Default 10.
        dropout: Drop probability after each hidden activation, in [0, 1). Default 0.0.
        class_weight: None, "balanced" or a dict {label: weight} (labels as in y); multiplies
            each sample's loss, as in scikit-learn's linear models. Default None.
        optimizer: "adam" (default), "adamw" or "sgd" (momentum 0.9, Nesterov).

    The network's dtype follows X: float32 input trains a float32 network (pydl's fastest
    path), anything else float64 (as scikit-learn's MLP does).

    Attributes:
        classes_: The class labels (any type scikit-learn accepts, strings too).
        model_: The trained ``pydl.nn.Sequential`` (its outputs are logits).
        n_features_in_, n_iter_, loss_, loss_curve_; with early stopping also
        validation_loss_curve_ and best_validation_loss_.

    Raises:
        ValueError: (fit) a bad parameter, fewer than 2 classes, class_weight labels not in y,
            negative sample weights, NaN/Inf inputs.
    """

    _stratify = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, dropout=0.0, class_weight=None,
                 optimizer="adam"):
        super().__init__(hidden_layer_sizes, activation, alpha=alpha, batch_size=batch_size,
                         learning_rate_init=learning_rate_init, max_iter=max_iter,
                         shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         early_stopping=early_stopping, validation_fraction=validation_fraction,
                         n_iter_no_change=n_iter_no_change, dropout=dropout, optimizer=optimizer)
        self.class_weight = class_weight

    def _loss(self):
        return losses.CrossEntropyLoss()

    def _class_weights(self, y_enc):
        cw = self.class_weight
        if cw is None:
            return None
        if isinstance(cw, str):
            if cw != "balanced":
                raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {cw!r}")
            present = np.unique(y_enc)
            table = np.ones(len(self.classes_))
            table[present] = compute_class_weight("balanced", classes=present, y=y_enc)
            return table[y_enc]
        if not isinstance(cw, dict):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got "
                             f"{type(cw).__name__}")
        table = np.ones(len(self.classes_))
        known = set(self.classes_.tolist())
        for label, weight in cw.items():
            if label not in known:
                raise ValueError(f"class_weight has the label {label!r}, which is not among the "
                                 f"classes {self.classes_.tolist()}; use labels of y as keys")
            table[int(np.searchsorted(self.classes_, label))] = _check_number(
                f"class_weight[{label!r}]", weight, 0.0)
        return table[y_enc]

    def _encode(self, X, y, classes, first):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first)
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; "
                                 f"y has only one class: {self.classes_.tolist()}")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y has label(s) {unknown.tolist()} that are not in classes_ "
                             f"{self.classes_.tolist()}")
        return X, np.searchsorted(self.classes_, y).astype(np.int64)

    def fit(self, X, y, sample_weight=None):
        """Train a new network on (X, y); return self.

        Args:
            X: (n_samples, n_features) numbers.
            y: (n_samples,) class labels of any type.
            sample_weight: Optional (n_samples,) weights >= 0. Default None.
        """
        self._validate_params()
        X, y_enc = self._encode(X, y, None, first=True)
        return self._train(X, y_enc, len(self.classes_), sample_weight, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train one epoch on (X, y), continuing from the current weights; return self.

        Args:
            X, y, sample_weight: As in fit.
            classes: All class labels; required on the first call.

        Raises:
            ValueError: no classes on the first call, or labels outside classes_.
        """
        first = not hasattr(self, "model_")
        if first:
            self._validate_params()
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit "
                                 "(all labels that y may contain)")
        X, y_enc = self._encode(X, y, classes, first=first)
        return self._train(X, y_enc, len(self.classes_), sample_weight, incremental=True)

    def predict_proba(self, X):
        """Return (n_samples, n_classes) class probabilities (softmax of the logits)."""
        out = self._outputs(X, "predict_proba").astype(np.float64)
        out -= out.max(axis=1, keepdims=True)
        np.exp(out, out=out)
        out /= out.sum(axis=1, keepdims=True)
        return out

    def predict_log_proba(self, X):
        """Return the log of predict_proba."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Return the most probable class label of each sample."""
        out = self._outputs(X, "predict")
        return self.classes_[np.argmax(out, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by pydl (squared error).

    Parameters and attributes as :class:`MLPClassifier` (without class_weight and classes_);
    y may have one column or several (multi-output). ``score`` is R^2.
    """

    _stratify = False

    def _loss(self):
        return losses.MSELoss()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode(self, X, y, first):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first,
                             multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=X.dtype)
        if first:
            self._y_ndim = y.ndim
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        elif (1 if y.ndim == 1 else y.shape[1]) != self.n_outputs_:
            raise ValueError(f"y has {1 if y.ndim == 1 else y.shape[1]} outputs, the model "
                             f"was fitted with {self.n_outputs_}")
        return X, y.reshape(len(y), self.n_outputs_)

    def fit(self, X, y, sample_weight=None):
        """Train a new network on (X, y); return self.

        Args:
            X: (n_samples, n_features) numbers.
            y: (n_samples,) or (n_samples, n_outputs) targets.
            sample_weight: Optional (n_samples,) weights >= 0. Default None.
        """
        self._validate_params()
        X, y = self._encode(X, y, first=True)
        return self._train(X, y, self.n_outputs_, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """Train one epoch on (X, y), continuing from the current weights; return self."""
        first = not hasattr(self, "model_")
        if first:
            self._validate_params()
        X, y = self._encode(X, y, first=first)
        return self._train(X, y, self.n_outputs_, sample_weight, incremental=True)

    def predict(self, X):
        """Return the predictions, (n_samples,) or (n_samples, n_outputs) like the fitted y."""
        out = self._outputs(X, "predict")
        return out.reshape(len(out)) if self._y_ndim == 1 else out
