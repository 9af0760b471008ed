"""Trainer: Keras-style ``fit`` / ``evaluate`` / ``predict`` over a pydl model."""

import contextlib
import math
import numbers
import sys
import threading
import time

import numpy as np

from .. import distributed as _dist
from .. import kernels, nn
from .. import random as _random
from .._nn_utils import clip_grad_norm_
from ..losses import CrossEntropyLoss
from ..engine import CompiledForward, CompiledStep, NonFiniteLossError, model_input
from ..layers import Embedding
from ..optim import NonFiniteUpdateError, Optimizer
from ..tensor import Tensor, no_grad
from . import _fit_args as _args
from ._fit_args import accuracy  # noqa: F401  (re-exported by pydl.train)
from .callbacks import Callback
from .history import History

__all__ = ["NonFiniteLossError", "Trainer"]




def _check_int(who, name, value, low):
    if type(value) is int and value >= low:  # the common case, without the ABC checks below
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{who}: {name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{who}: {name} must be >= {low}, got {value}")
    return int(value)


def _overrides(callback, hook):
    """Return whether callback's `hook` is anything but the base class's no-op."""
    return getattr(getattr(callback, hook), "__func__", None) is not getattr(Callback, hook)


def _same_kind(err):
    """TypeError or ValueError, whichever ``err`` is (to re-raise it with more context)."""
    return TypeError if isinstance(err, TypeError) else ValueError


def _fmt(logs):
    return " - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                      for k, v in logs.items())


class Trainer:
    """Train a model with a loss and an optimizer: ``fit``, ``evaluate``, ``predict``.

    The model receives Tensors of mini-batches (inputs are converted once to the dtype of the
    model's first parameter, float32 for a model without parameters; integer inputs of a model
    with an Embedding stay integer arrays); ``loss(output, y_batch)``
    must return the batch MEAN (``reduction="mean"``, the default of every pydl loss), which
    ``fit`` and ``evaluate`` weight by batch size.

    Each training step: zero the gradients, forward in train mode, loss (+ the regularizer's
    penalty), backward, the regularizer's gradient added in place (``add_gradients``, no graph
    node), ``optimizer.step()``. The loss and the gradients are checked BEFORE the update: a
    NaN/Inf loss or gradient raises :class:`NonFiniteLossError` and the weights and optimizer
    state stay those of the last good step.

    Speed: every step goes through :mod:`pydl.engine`: the first batch of each shape runs eagerly
    while the step is recorded, later batches replay the recorded kernel calls (the same bits,
    much less Python per batch), for any model, loss and optimizer; ``predict`` and
    ``evaluate`` replay the eval-mode forward the same way. The gradient arrays are reused:
    ``p.grad`` after a step is overwritten by the next step, so copy it if you keep it (e.g. in
    a callback).

    Logged values (``History.history``, callback logs): ``loss`` is the size-weighted mean over
    the epoch's batches of the batch DATA loss (weighted by sample/class weights when given);
    each metric is computed on all training outputs of the epoch (train mode, i.e. with
    dropout, before each step, as Keras); ``val_loss`` and ``val_<metric>`` are computed after
    the epoch in eval mode, without weights; ``penalty`` is the regularizer's value after the
    epoch (only with a regularizer); ``lr`` is the learning rate used during the epoch.

    Difference from Keras: Keras adds the regularization penalty into ``loss`` and
    ``val_loss``; pydl logs the data loss alone and the penalty as ``penalty`` (the
    optimisation still minimises their sum). So ``EarlyStopping``, ``ReduceLROnPlateau`` and
    ``ModelCheckpoint`` on ``val_loss`` monitor how well the model fits, not how large its
    weights are; monitor ``loss`` + ``penalty`` yourself for Keras's number.

    Args:
        model: A ``pydl.nn.Module``.
        loss: A loss INSTANCE, a callable ``(output, target) -> scalar Tensor``, e.g.
            ``pydl.losses.CrossEntropyLoss()``.
        optimizer: A ``pydl.optim`` optimizer over the model's parameters (all trainable ones).
        regularizer: Optional ``pydl.regularizers`` penalty (L1/L2/ElasticNet). Default None.
        metrics: ``"auto"`` (default: accuracy for CrossEntropyLoss and BCEWithLogitsLoss, no
            metric for regression losses), None, or a list of names and callables
            ``(y_true, y_pred) -> float`` (``y_pred`` = model outputs). Names: ``"accuracy"``
            (argmax of (N, C) logits, or logit > 0 for a single-output binary model),
            ``"binary_accuracy"`` (logit > 0 per element), ``"mse"``, ``"mae"``.

    Raises:
        TypeError: loss is a class instead of an instance, or not callable; optimizer is not a
            pydl optimizer.
        ValueError: an unknown metric name.

    Warns:
        UserWarning: a Sequential model ending in Softmax/Sigmoid with a loss that takes logits
            (the activation would be applied twice).

    Attributes:
        history: The History of the last ``fit`` (also after an error).
        stop_training: Set True (e.g. by a callback) to stop after the current epoch.

    Example:
        >>> model = pydl.nn.Sequential(pydl.nn.Linear(64, 32), pydl.nn.ReLU(),
        ...                            pydl.nn.Linear(32, 10))
        >>> trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
        ...                              pydl.optim.Adam(model.parameters(), lr=1e-3))
        >>> history = trainer.fit(x, y, epochs=20, validation_split=0.2, verbose=0)
        >>> trainer.evaluate(x_test, y_test)
        {'loss': 0.12, 'accuracy': 0.97}
    """

    _train_modes = None  # fit: the modules' modes each epoch trains with (None: all train)
    _all_eval = None  # (mode version, structure version) when every module was in eval mode

    _predict_checked = None  # (sample shape, empty, model structure) predict has checked

    def __init__(self, model, loss, optimizer, regularizer=None, metrics="auto"):
        _args.check_loss(loss)
        for name in ("step", "zero_grad"):
            if not callable(getattr(optimizer, name, None)):
                raise TypeError(f"Trainer: optimizer must be a pydl.optim optimizer, got "
                                f"{type(optimizer).__name__}")
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.regularizer = regularizer
        self.metrics = _args.resolve_metrics(metrics, loss)
        self.history = History()
        self.stop_training = False
        self._busy = threading.RLock()
        self._clip_grad_norm = None
        _args.warn_double_activation(model, loss)

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_busy"]  # a lock cannot be pickled or copied; a copy gets its own
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._busy = threading.RLock()

    @contextlib.contextmanager
    def _exclusive(self, who):
        """Refuse a second thread: fit/evaluate/predict of one Trainer switch the model's mode and
        share its history. The same thread may re-enter (a callback calling evaluate)."""
        if not self._busy.acquire(blocking=False):
            raise self._busy_error(who)
        try:
            yield
        finally:
            self._busy.release()

    @staticmethod
    def _busy_error(who):
        return RuntimeError(f"{who}: this Trainer is already running fit, evaluate or predict in "
                            f"another thread; a Trainer (and its model) serves one thread at a "
                            f"time. Use one Trainer and model per thread, or wait for the other "
                            f"call to finish")

    def _check_data(self, who, x, y=None, xname="x", yname="y", probe_loss=False):
        """Check inputs (and targets) against the model and loss before anything is updated.

        Runs the model in eval mode, without a graph, on the first sample of ``x`` (on the empty
        batch when ``x`` is empty), so a wrong feature count fails here whatever the model. With
        CrossEntropyLoss every label of ``y`` is checked at once: integer dtype, shape (N,), and
        in [0, outputs); an error gives its index in y. With ``probe_loss`` the loss also runs on
        that sample's target (for validation data, which training reaches only after an epoch;
        training targets meet the loss on the first batch, before its update).

        Returns:
            The model's output for that probe sample.
        """
        modes = nn._modes_of(self.model)
        self.model.eval()
        try:
            with no_grad():
                try:
                    out = self.model(model_input(x[:1])).data
                except (ValueError, TypeError) as e:
                    raise _same_kind(e)(f"{who}: {xname} of shape {x.shape} does not fit the "
                                        f"model: {e}") from e
                if y is None or len(x) == 0:
                    return out
                if type(self.loss) is CrossEntropyLoss:
                    self._check_class_labels(who, y, out, yname)
                if not probe_loss:
                    return out
                try:
                    self.loss(Tensor(out), y[:1])
                except (ValueError, TypeError) as e:
                    raise _same_kind(e)(f"{who}: {yname} does not fit the model's outputs and "
                                        f"the loss: {e}") from e
        finally:
            nn._restore_modes(modes)
        return out

    @staticmethod
    def _check_class_labels(who, y, out, yname):
        if y.dtype.kind not in "iu":
            raise TypeError(f"{who}: {yname} must hold integer class labels for "
                            f"CrossEntropyLoss, got dtype {y.dtype}; convert with "
                            f"{yname}.astype(np.int64) if they are whole numbers")
        if y.ndim != 1:
            fix = f"; pass {yname}.ravel()" if y.ndim == 2 and y.shape[1] == 1 else ""
            raise ValueError(f"{who}: {yname} must be a vector of class labels of shape "
                             f"({len(y)},) for CrossEntropyLoss, got shape {y.shape}{fix}")
        classes = out.shape[-1] if out.ndim == 2 else None
        if classes is None:
            return
        bad = (y >= classes) if y.dtype.kind == "u" else (y < 0) | (y >= classes)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{who}: {yname}[{i}] = {int(y[i])} is not a class label of this "
                             f"model: its {classes} outputs take labels in [0, {classes}); "
                             f"{int(bad.sum())} label(s) of {yname} are outside")

    # --- data -----------------------------------------------------------------------------
    _dtype_cached = None  # (model, nn._structure_version, dtype) of the last _dtype()

    def _dtype(self):
        """The dtype of the model's first parameter (float32 without parameters).

        Remembered per model structure: assigning a parameter's data (``Module.to`` too) changes
        ``nn._structure_version``, so a batch-1 predict does not walk the parameters every call.
        """
        cached = self._dtype_cached
        if (cached is not None and cached[0] is self.model
                and cached[1] == nn._structure_version):
            return cached[2]
        dtype = np.dtype(np.float32)
        for p in self.model.parameters():
            dtype = p.data.dtype
            break
        self._dtype_cached = (self.model, nn._structure_version, dtype)
        return dtype

    def _inputs(self, who, x, name="x"):
        x = x.data if isinstance(x, Tensor) else np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"{who}: {name} must be an array of samples, got a scalar")
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{who}: {name} must be numeric, got dtype {x.dtype}")
        if x.dtype.kind in "iu" and any(isinstance(m, Embedding) for m in self.model.modules()):
            return np.ascontiguousarray(x)  # token indices stay integers (model_input)
        return np.ascontiguousarray(x, dtype=self._dtype())

    def _pair(self, who, x, y, xname="x", yname="y"):
        x = self._inputs(who, x, xname)
        y = y.data if isinstance(y, Tensor) else np.asarray(y)
        if y.ndim == 0 or len(x) != len(y):
            ny = "a scalar" if y.ndim == 0 else f"{len(y)} samples"
            raise ValueError(f"{who}: {xname} has {len(x)} samples but {yname} has {ny}; they "
                             f"must have the same length (first dimension)")
        if len(x) == 0:
            raise ValueError(f"{who}: {xname} and {yname} are empty; at least one sample is "
                             f"needed")
        return x, y

    # --- evaluation -----------------------------------------------------------------------
    def _forward_all(self, x, batch_size):
        """Return the eval-mode outputs for all of x, computed in batches without a graph."""
        fwd = getattr(self, "_compiled_forward", None)
        if fwd is None or fwd.model is not self.model:
            fwd = self._compiled_forward = CompiledForward(self.model)
        n = len(x)
        x = x[slice(*_dist.row_range(n))]  # data-parallel: this rank's rows (else all)
        # Eval mode for the forward and each module's own mode back afterwards; a model that is
        # all in eval mode already (checked again only after a mode or structure change) is left
        # alone: walking its modules is most of a batch-1 predict.
        state = (nn._mode_version, nn._structure_version)
        modes = None
        if state != self._all_eval:
            modes = nn._modes_of(self.model)
            if any(training for _, training in modes):
                self.model.eval()
            else:
                modes = None
                self._all_eval = state
        try:
            # No samples: the empty batch itself gives the (0, outputs) shape. This Trainer
            # runs one call at a time (_exclusive), so the compiled forward's unlocked replay
            # path serves (None: a key it has not recorded yet).
            outs = []
            for i in range(0, max(len(x), 1), batch_size):
                xb = x[i:i + batch_size]
                out = fwd.replay(xb, xb, False)
                outs.append(fwd(xb) if out is None else out)
        finally:
            if modes is not None:
                nn._restore_modes(modes)
        return _dist.gather_rows(outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0), n)

    def _scores(self, x, y, batch_size, prefix=""):
        out = self._forward_all(x, batch_size)
        total = 0.0
        with no_grad():
            for i in range(0, len(x), batch_size):
                yb = y[i:i + batch_size]
                total += float(self.loss(Tensor(out[i:i + batch_size]), yb).item()) * len(yb)
        logs = {prefix + "loss": total / len(x)}
        for name, fn in self.metrics:
            logs[prefix + name] = float(fn(y, out))
        return logs

    def _penalty(self):
        return self.regularizer.penalty(self.model) if self.regularizer is not None else 0.0

    def evaluate(self, x, y, batch_size=256):
        """Return the data loss and metrics on (x, y), in eval mode (and ``penalty``, if any).

        Unlike Keras, ``loss`` does not include the regularizer's penalty; it is reported
        separately as ``penalty`` when the Trainer has a regularizer.

        Args:
            x: Inputs, (N, ...) array or Tensor.
            y: Targets, length N.
            batch_size: Samples per forward pass, int >= 1. Default 256.

        Returns:
            A dict ``{"loss": float, <metric>: float, ...}``.

        Raises:
            ValueError: mismatched lengths (both named), empty inputs, x not fitting the model,
                labels out of range (the first one's index in y is named) or a bad batch_size.
            TypeError: non-integer labels for CrossEntropyLoss.
            RuntimeError: this Trainer is busy in another thread.
        """
        batch_size = _check_int("evaluate", "batch_size", batch_size, 1)
        x, y = self._pair("evaluate", x, y)
        with self._exclusive("evaluate"):
            self._check_data("evaluate", x, y)
            logs = self._scores(x, y, batch_size)
        if self.regularizer is not None:
            logs["penalty"] = float(self._penalty())
        return logs

    def predict(self, x, batch_size=256):
        """Return the model's outputs for x (eval mode, no graph), computed in batches.

        Args:
            x: Inputs, (N, ...) array or Tensor.
            batch_size: Samples per forward pass, int >= 1. Default 256.

        Returns:
            An np.ndarray with the outputs of all samples (e.g. (N, C) logits); (0, C) for an
            empty x.

        Raises:
            ValueError: x does not fit the model (e.g. a wrong feature count, also for 0
                samples) or a bad batch_size.
            RuntimeError: this Trainer is busy in another thread.
        """
        batch_size = _check_int("predict", "batch_size", batch_size, 1)
        x = self._inputs("predict", x)
        # As _exclusive, written out: a batch-1 predict is a few tens of microseconds.
        if not self._busy.acquire(blocking=False):
            raise self._busy_error("predict")
        try:
            # The probe forward checks a sample layout once per layout and model structure
            # (a server predicting one request at a time would otherwise run the model twice).
            layout = (x.shape[1:], len(x) == 0, nn._structure_version)
            if layout != self._predict_checked:
                self._check_data("predict", x)
                self._predict_checked = layout
            return self._forward_all(x, batch_size)
        finally:
            self._busy.release()

    def predict_proba(self, x, batch_size=256):
        """Return class probabilities: softmax (CrossEntropyLoss) or sigmoid (BCEWithLogitsLoss).

        Args:
            x: Inputs, (N, ...) array or Tensor.
            batch_size: Samples per forward pass, int >= 1. Default 256.

        Returns:
            An np.ndarray shaped like the outputs: rows summing to 1 (softmax), or per-output
            probabilities of class 1 (sigmoid).

        Raises:
            ValueError: the loss does not say how its outputs become probabilities (a regression
                loss or a custom callable).
        """
        activation = getattr(self.loss, "output_activation", None)
        if activation is None:
            raise ValueError(f"predict_proba: the outputs of a model trained with "
                             f"{type(self.loss).__name__} are not logits of a known "
                             f"probability model; use CrossEntropyLoss or BCEWithLogitsLoss, or "
                             f"predict(x)")
        out = self.predict(x, batch_size)
        if activation == "softmax":
            return kernels.softmax(np.ascontiguousarray(out), axis=-1)
        return kernels.sigmoid(np.ascontiguousarray(out))

    # --- training -------------------------------------------------------------------------
    def fit(self, x, y, epochs=10, batch_size=32, shuffle=True, validation_split=0.0,
            validation_data=None, callbacks=None, verbose=1, class_weight=None,
            sample_weight=None, initial_epoch=0, clip_grad_norm=None):
        """Train for ``epochs`` passes over (x, y) in mini-batches and return the History.

        As Keras: one epoch is one pass over the training samples in mini-batches (the last,
        partial batch is used); ``validation_split`` holds out the LAST fraction of (x, y) before
        any shuffling; ``validation_data`` takes precedence over ``validation_split``. Shuffling
        draws from ``pydl.random.shuffle_generator()``, so ``pydl.manual_seed`` reproduces a run
        bit for bit, for any thread count. The model is in train mode for the steps and eval mode
        for validation; every module's mode before ``fit`` is restored afterwards. A model in
        train mode trains with its modules' own modes (a BatchNorm put in eval mode to freeze its
        statistics, as in fine-tuning, stays in eval mode); a model in eval mode trains with all
        modules in train mode.

        Args:
            x: Training inputs, (N, ...) array or Tensor.
            y: Training targets, length N (class labels for CrossEntropyLoss).
            epochs: Passes over the data, int >= 0. Default 10.
            batch_size: Samples per step, int >= 1 (per rank after ``pydl.distributed.init()``,
                which makes ``fit`` data-parallel). Default 32.
            shuffle: Reshuffle the training samples every epoch. Default True.
            validation_split: Fraction in [0, 1) of the data held out for validation. Default 0.
            validation_data: ``(x_val, y_val)``; overrides validation_split. Default None.
            callbacks: A list of :class:`Callback` (or a single one). Default None.
            verbose: 0 or False silent, 1, True or "auto" a progress bar per epoch (tqdm, on
                stderr), 2 one line per epoch (stdout). Default 1.
            class_weight: Optional dict {class label: weight} (Keras): each sample's loss is
                multiplied by the weight of its label (labels from integer y, 0/1 y, or the
                argmax of one-hot rows); labels not in the dict weigh 1. Default None.
            sample_weight: Optional (N,) array of finite weights >= 0, one per sample of x
                (split along with x by validation_split). Default None. With either weight,
                the batch loss is ``sum(w_i * loss_i) / batch_size`` (Keras), computed from the
                loss's ``reduction="none"`` values; ``val_loss`` stays unweighted.
            initial_epoch: The epoch to start at (Keras): epochs ``initial_epoch`` ..
                ``epochs - 1`` run, and callbacks and History see those indices. Default 0.
            clip_grad_norm: Optional max norm: after each backward the gradients are scaled so
                that their joint 2-norm is at most this (``pydl.nn.utils.clip_grad_norm_``).
                Default None.

        Returns:
            A :class:`History` (also kept as ``trainer.history``).

        Raises:
            ValueError: an invalid argument: epochs < 0 or not an int, batch_size < 1,
                validation_split outside [0, 1) or leaving an empty training or validation set,
                x and y (or the validation pair) of different lengths (both named), empty x,
                verbose not 0/1/2/True/False/"auto", a bad initial_epoch or clip_grad_norm,
                sample weights that are negative, NaN or of the wrong length, class_weight keys
                that are not labels of y, or an optimizer that misses some of the model's
                trainable parameters.
                All inputs are checked before the first update: x and the validation inputs
                must fit the model (feature count), the targets the loss; with CrossEntropyLoss
                every label must be an integer in [0, outputs) (the message names the first bad
                one's index in y or validation y) and y must be 1-D.
            TypeError: non-integer labels for CrossEntropyLoss.
            RuntimeError: this Trainer is busy in another thread (one Trainer serves one thread
                at a time; the same thread may call evaluate from a callback).
            NonFiniteLossError: a training loss or gradient was NaN or infinite, or an Adam
                state would overflow (weights and optimizer state of the last good step kept;
                ``.history`` holds the finished epochs; the message names the parameter).
        """
        epochs = _check_int("fit", "epochs", epochs, 0)
        batch_size = _check_int("fit", "batch_size", batch_size, 1)
        initial_epoch = _check_int("fit", "initial_epoch", initial_epoch, 0)
        verbose = _args.check_verbose(verbose)
        self._clip_grad_norm = _args.check_clip(clip_grad_norm)
        _args.check_optimizer_covers(self.model, self.optimizer)
        try:
            split = float(validation_split)
        except (TypeError, ValueError):
            raise ValueError(f"fit: validation_split must be a number in [0, 1), got "
                             f"{validation_split!r}") from None
        if not 0.0 <= split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
        x, y = self._pair("fit", x, y)
        verbose = verbose if _dist.is_root() else 0  # data-parallel: progress from rank 0 only
        w = _args.sample_weights(y, sample_weight, class_weight, self.loss)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a pair (x_val, y_val)")
            x_val, y_val = self._pair("fit", *validation_data, xname="validation x",
                                      yname="validation y")
        elif split > 0.0:
            cut = int(math.floor(len(x) * (1.0 - split)))
            if cut == 0 or cut == len(x):
                raise ValueError(f"fit: validation_split={split} of {len(x)} samples leaves "
                                 f"{cut} for training and {len(x) - cut} for validation; both "
                                 f"need at least one")
            x, x_val, y, y_val = x[:cut], x[cut:], y[:cut], y[cut:]
            w = None if w is None else w[:cut]
        else:
            x_val = y_val = None
        callbacks = _args.as_callbacks(callbacks)
        with self._exclusive("fit"):
            self._check_data("fit", x, y)
            if x_val is not None:
                self._check_data("fit", x_val, y_val, "validation x", "validation y",
                                 probe_loss=True)
            return self._fit(x, y, x_val, y_val, epochs, batch_size, shuffle, callbacks, verbose,
                             initial_epoch, w)

    def _fit(self, x, y, x_val, y_val, epochs, batch_size, shuffle, callbacks, verbose,
             initial_epoch, w):
        history = History()
        self.history = history
        callbacks.append(history)  # last, so it records what the other callbacks added
        for cb in callbacks:
            cb.set_trainer(self)
        self.stop_training = False
        modes = nn._modes_of(self.model)
        # Each epoch trains with the modules' own modes when the model is in training mode (a
        # batch norm put in eval mode to freeze its statistics stays so), else all in training.
        self._train_modes = modes if self.model.training else None
        logs = {}
        _dist.fit_begin(self.model, self.optimizer, len(x))
        try:
            self._call(callbacks, "on_train_begin", logs)
            for epoch in range(initial_epoch, epochs):
                logs = self._fit_epoch(epoch, epochs, x, y, x_val, y_val, batch_size, shuffle,
                                       callbacks, verbose, history, w)
                if self.stop_training:
                    break
            self._call(callbacks, "on_train_end", logs)
        finally:
            nn._restore_modes(modes)
        return history

    @staticmethod
    def _call(callbacks, hook, *args):
        for cb in callbacks:
            getattr(cb, hook)(*args)

    def _engine_step(self, w=None):
        """Return the recorded step of (model, loss), made once per Trainer and reused.

        With sample weights (``w``) the loss is :class:`_fit_args.SampleWeighted`, whose
        per-batch weights make the engine run each step eagerly (same results, no replay).
        """
        if w is not None:
            step = CompiledStep(self.model, _args.SampleWeighted(self.loss))
        else:
            step = getattr(self, "_compiled", None)
            if step is None or step.model is not self.model or step.loss is not self.loss:
                step = self._compiled = CompiledStep(self.model, self.loss)
        own = {id(p) for p in self.model.parameters()}
        groups = getattr(self.optimizer, "param_groups", [])
        # The step zeroes the model's gradients; the optimizer's other parameters need its own.
        self._zero_optimizer = any(id(p) not in own for g in groups for p in g["params"])
        return step

    def _fit_epoch(self, epoch, epochs, x, y, x_val, y_val, batch_size, shuffle, callbacks,
                   verbose, history, w=None):
        n = len(x)
        order = _random.shuffle_generator().permutation(n) if shuffle else None
        order = _dist.shard_order(order, n)  # data-parallel: this rank's share (else unchanged)
        n_all, n = n, (n if order is None else len(order))
        self._call(callbacks, "on_epoch_begin", epoch, {})
        lr = float(self.optimizer.lr)
        n_batches = -(-n // batch_size)
        bar = None
        if verbose == 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_batches, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch",
                       leave=True, dynamic_ncols=True)
        start = time.perf_counter()
        total = 0.0
        outs = []
        # Only callbacks that override a batch hook are called per batch (the base ones are no-ops).
        begin_cbs = [cb for cb in callbacks if _overrides(cb, "on_batch_begin")]
        end_cbs = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]
        try:
            if self._train_modes is None:
                self.model.train()
            else:
                nn._restore_modes(self._train_modes)
            step = self._engine_step(w)
            for b in range(n_batches):
                lo = b * batch_size
                hi = min(n, lo + batch_size)
                if order is not None:  # ndarray.take: a third of x[idx]'s time for a batch
                    idx = order[lo:hi]
                    xb, yb = x.take(idx, axis=0), y.take(idx, axis=0)
                else:
                    idx = slice(lo, hi)
                    xb, yb = x[idx], y[idx]
                batch_logs = {"batch": b, "size": hi - lo}
                if begin_cbs:
                    self._call(begin_cbs, "on_batch_begin", b, batch_logs)
                value = self._step(step, xb, yb, epoch, b, history,
                                   None if w is None else w[idx])
                if self.metrics:
                    outs.append(step.output.copy())
                total += value * (hi - lo)
                batch_logs["loss"] = value
                if end_cbs:
                    self._call(end_cbs, "on_batch_end", b, batch_logs)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"loss: {total / hi:.4f}", refresh=False)
            y_seen = out_all = None
            if self.metrics:
                out_all = np.concatenate(outs, axis=0)
                y_seen = y[order] if order is not None else y
            # Data-parallel: sums over all ranks, outputs gathered (else unchanged).
            total, n, y_seen, out_all = _dist.reduce_epoch(self.model, total, n, y_seen,
                                                           out_all, n_all)
            logs = {"loss": total / n}
            for name, fn in self.metrics:
                logs[name] = float(fn(y_seen, out_all))
            if x_val is not None:
                logs.update(self._scores(x_val, y_val, 256, prefix="val_"))
            if self.regularizer is not None:
                logs["penalty"] = float(self._penalty())
            logs["lr"] = lr
            if bar is not None:
                bar.set_postfix_str(_fmt(logs), refresh=True)
        finally:
            if bar is not None:
                bar.close()
        self._call(callbacks, "on_epoch_end", epoch, logs)
        if verbose == 2:
            print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - start:.2f}s - "
                  f"{_fmt(logs)}", file=sys.stdout, flush=True)
        return logs

    def _non_finite(self, value, epoch, batch, history):
        raise NonFiniteLossError(
            f"fit: the training loss became {value} at epoch {epoch} (0-based), batch "
            f"{batch}; training stopped before updating, so the model keeps the weights of "
            f"the last good step, and the finished epochs are in the error's .history and "
            f"trainer.history. Try a lower learning rate, check the data for NaN/Inf, or "
            f"clip the inputs.", history, epoch, batch)

    def _clip_gradients(self):
        if self._clip_grad_norm is not None:
            clip_grad_norm_(self.model.parameters(), self._clip_grad_norm)

    def _step(self, step, xb, yb, epoch, batch, history, wb=None):
        """One optimisation step through the engine; return the data loss value."""
        model, reg = self.model, self.regularizer
        if self._zero_optimizer:
            self.optimizer.zero_grad()
        if wb is not None:
            step.loss.batch_weights = wb
        value = step.forward(xb, yb)
        total = value + reg.penalty(model) if reg is not None else value
        total = _dist.agree_finite(total)  # data-parallel: NaN on any rank stops every rank
        if not math.isfinite(total):
            self._non_finite(total, epoch, batch, history)
        step.backward()
        if reg is not None:
            reg.add_gradients(model)
        _dist.average_gradients(self.optimizer)  # data-parallel: before the finiteness check
        self._clip_gradients()
        self._optimizer_step(value, epoch, batch, history, step)
        return value

    def _optimizer_step(self, value, epoch, batch, history, step):
        """optimizer.step(), with a NaN/Inf gradient or state turned into NonFiniteLossError.

        A finite loss can still have a NaN/Inf gradient (e.g. sqrt or log at 0), and a finite
        gradient can overflow Adam's exp_avg_sq: pydl's optimizers refuse such a step without
        changing anything (NonFiniteUpdateError) in the same pass that reads the gradients; any
        other optimizer gets the gradients checked here first (one pass over the engine's
        gradient buffer).
        """
        param = None
        if isinstance(self.optimizer, Optimizer):
            try:
                self.optimizer.step()
                return
            except NonFiniteUpdateError as e:
                param, what, cause = e.param, e.what, e
        else:
            param, what, cause = step.non_finite_gradient(), "grad", None
            if param is None:
                self.optimizer.step()
                return
        name = next((n for n, p in self.model.named_parameters() if p is param), "?")
        if what == "grad":
            problem = (f"the gradient of {name!r} became non-finite although the loss {value} "
                       f"is finite. Look for an operation with an infinite derivative (sqrt or "
                       f"log at 0) or lower the learning rate")
        else:
            problem = (f"the optimizer state of {name!r} would overflow to Inf (the gradient's "
                       f"square exceeds the dtype's range) although the loss {value} is finite. "
                       f"Scale the inputs down (e.g. standardise them) or clip the gradients")
        raise NonFiniteLossError(
            f"fit: at epoch {epoch} (0-based), batch {batch}, {problem}; training stopped before "
            f"updating, so the model and optimizer keep the state of the last good step.",
            history, epoch, batch) from cause
