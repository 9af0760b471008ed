"""Callbacks: hooks into ``Trainer.fit`` with Keras's semantics.

``fit`` calls each hook on every callback in list order with ONE shared ``logs`` dict per event,
so a callback may add entries that later callbacks (and the History, which runs last) see.
Epochs are numbered from 0, as in Keras. A callback stops training with
``self.trainer.stop_training = True``; the current epoch still finishes.

Example:
    >>> stop = pydl.train.EarlyStopping(monitor="val_loss", patience=5)
    >>> trainer.fit(x, y, epochs=100, validation_split=0.2, callbacks=[stop])
    >>> stop.best_epoch, stop.best
"""

import math
import os
import warnings

from .. import distributed as _dist
from ..io import save_model

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint",
           "ReduceLROnPlateau"]

# Monitored names containing one of these are maximised in mode="auto"; everything else
# (losses, errors) is minimised.
_MAXIMISED = ("acc", "auc", "f1", "precision", "recall")


class Callback:
    """Base class: override the hooks you need; ``self.trainer`` is the running Trainer.

    Hooks (all no-ops here): ``on_train_begin(logs)``, ``on_train_end(logs)``,
    ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_batch_begin(batch,
    logs)``, ``on_batch_end(batch, logs)``. Epoch-end logs hold ``loss``, each metric, their
    ``val_`` versions when there is validation data, and ``lr``; batch-end logs hold ``batch``,
    ``size`` and ``loss``.

    Example:
        >>> class PrintLoss(pydl.train.Callback):
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         print(epoch, logs["loss"])
    """

    trainer = None

    def set_trainer(self, trainer):
        """Attach the Trainer whose ``fit`` calls this callback (done by ``fit``)."""
        self.trainer = trainer

    @property
    def model(self):
        """The model being trained (``self.trainer.model``)."""
        return self.trainer.model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


def _check_int(who, name, value, low=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{who}: {name} must be an int >= {low}, got {value!r}")
    return value


def _check_number(who, name, value, low=-math.inf, high=math.inf):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {name} must be a number, got {value!r}") from None
    if not low <= v <= high:  # also rejects NaN
        raise ValueError(f"{who}: {name} must be in [{low}, {high}], got {value!r}")
    return v


def _direction(who, monitor, mode):
    """Return "min" or "max" for ``monitor`` under ``mode`` ("auto" guesses from the name)."""
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{who}: monitor must be a log name such as 'val_loss', got {monitor!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "max" if any(word in name for word in _MAXIMISED) else "min"


def _monitored(who, monitor, logs):
    """Return ``logs[monitor]`` as a float, or warn (naming the available keys) and return None."""
    logs = logs or {}
    value = logs.get(monitor)
    if value is None:
        warnings.warn(f"{who} monitors {monitor!r}, which is not in the logs; available: "
                      f"{', '.join(logs) or 'none'} (pass validation data for 'val_' entries)",
                      RuntimeWarning, stacklevel=3)
        return None
    return float(value)


def _better(direction, value, reference, min_delta):
    """True when ``value`` beats ``reference`` by more than ``min_delta``; NaN/Inf never do."""
    if not math.isfinite(value):
        return False
    if direction == "min":
        return value + min_delta < reference
    return value - min_delta > reference


class EarlyStopping(Callback):
    """Stop training when a monitored quantity stops improving, and restore the best weights.

    Keras's rule, checked at the end of each epoch from ``start_from_epoch`` on: a value
    improves when it beats the best so far by more than ``min_delta`` (NaN and Inf never improve;
    the best starts at +-inf). ``wait`` counts the monitored epochs since the last improvement
    that also beat ``baseline`` (if given); an epoch that does not improve stops training once
    ``wait >= patience`` (never at epoch 0). So ``patience=n`` stops at the n-th epoch in a row
    without improvement (``patience=0`` behaves like 1), and with a ``baseline`` the epochs that
    improve without beating it count towards the patience too.

    Differences from Keras: ``restore_best_weights`` is on by default, and the best weights are
    restored at the end of training whether or not stopping fired (they are the weights at the
    end of epoch ``best_epoch``; if no epoch improved, those of the first monitored epoch). All
    state resets in ``on_train_begin``, so one instance can serve several ``fit`` calls.
    A missing monitored value warns (naming the available keys) and the epoch is skipped.

    Args:
        monitor: Log name to watch. Default "val_loss".
        min_delta: Minimum change that counts as an improvement (its absolute value is used).
            Default 0.0.
        patience: Epochs without improvement before stopping, int >= 0. Default 5.
        mode: "min", "max" or "auto" (max for names containing acc, auc, f1, precision or
            recall; min otherwise). Default "auto".
        baseline: Value the monitored quantity must beat for ``wait`` to reset. Default None.
        restore_best_weights: Load the best epoch's weights at the end of training. Default True.
        start_from_epoch: Epochs to skip before monitoring starts (warm-up), int >= 0. Default 0.

    Attributes:
        best: Best monitored value so far (``inf``/``-inf`` before any).
        best_epoch: Epoch (0-based) of ``best``.
        stopped_epoch: Epoch at which training was stopped, 0 if it was not.
        wait: Epochs since the last improvement.

    Raises:
        ValueError: An invalid argument (named).

    Example:
        >>> stop = pydl.train.EarlyStopping(patience=10)
        >>> trainer.fit(x, y, epochs=200, validation_split=0.2, callbacks=[stop])
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=5, mode="auto", baseline=None,
                 restore_best_weights=True, start_from_epoch=0):
        who = "EarlyStopping"
        self.monitor = monitor
        self.direction = _direction(who, monitor, mode)
        self.mode = mode
        self.min_delta = abs(_check_number(who, "min_delta", min_delta))
        self.patience = _check_int(who, "patience", patience)
        self.baseline = None if baseline is None else _check_number(who, "baseline", baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _check_int(who, "start_from_epoch", start_from_epoch)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.direction == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored("EarlyStopping", self.monitor, logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # Fallback if nothing ever improves (e.g. every value is NaN).
            self.best_weights = self.model.state_dict()
            self.best_epoch = epoch
        self.wait += 1
        if _better(self.direction, current, self.best, self.min_delta):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            if self.baseline is None or _better(self.direction, current, self.baseline,
                                                self.min_delta):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when a monitored quantity stops improving.

    Keras's rule: an epoch improves when the value beats the best by more than ``min_delta``
    (NaN/Inf never do); after ``patience`` epochs in a row without improvement the optimizer's
    ``lr`` becomes ``max(lr * factor, min_lr)`` (if it is above ``min_lr``), then ``cooldown``
    epochs pass before counting resumes. State resets on train begin.

    Args:
        monitor: Log name to watch. Default "val_loss".
        factor: Multiplier, in (0, 1). Default 0.1.
        patience: Epochs without improvement before reducing, int >= 0. Default 10.
        mode: "min", "max" or "auto" (as EarlyStopping). Default "auto".
        min_delta: Minimum change that counts as an improvement, >= 0. Default 1e-4.
        cooldown: Epochs to wait after a reduction, int >= 0. Default 0.
        min_lr: Lower bound on the learning rate, >= 0. Default 0.

    Raises:
        ValueError: An invalid argument (named).

    Example:
        >>> plateau = pydl.train.ReduceLROnPlateau(factor=0.5, patience=3)
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        who = "ReduceLROnPlateau"
        self.monitor = monitor
        self.direction = _direction(who, monitor, mode)
        self.mode = mode
        self.factor = _check_number(who, "factor", factor, 0.0, 1.0)
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"{who}: factor must be in (0, 1), got {factor!r}")
        self.patience = _check_int(who, "patience", patience)
        self.min_delta = _check_number(who, "min_delta", min_delta, 0.0)
        self.cooldown = _check_int(who, "cooldown", cooldown)
        self.min_lr = _check_number(who, "min_lr", min_lr, 0.0)
        self._reset()

    def _reset(self):
        self.best = math.inf if self.direction == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored("ReduceLROnPlateau", self.monitor, logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if _better(self.direction, current, self.best, self.min_delta):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                reduced = False
                for group in _lr_groups(self.trainer.optimizer):  # each group's own rate
                    if group["lr"] > self.min_lr:
                        group["lr"] = max(group["lr"] * self.factor, self.min_lr)
                        reduced = True
                if reduced:
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class _OneGroup:
    """An optimizer without parameter groups seen as one group: its ``lr``."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def __getitem__(self, key):
        return self.optimizer.lr

    def __setitem__(self, key, value):
        self.optimizer.lr = value


def _lr_groups(optimizer):
    """The optimizer's parameter groups (dicts with "lr"), each scheduled on its own rate."""
    groups = getattr(optimizer, "param_groups", None)
    return groups if groups else [_OneGroup(optimizer)]


class LearningRateScheduler(Callback):
    """Set the learning rate each epoch from a function or a ``pydl.optim.lr_scheduler`` object.

    A callable ``schedule(epoch, lr)`` is called at the start of each epoch, as Keras's, once
    per parameter group with that group's rate (so a backbone's smaller rate stays smaller). A
    scheduler object (``StepLR``, ``CosineAnnealingLR``, ``LinearWarmup``, ...) built on the
    trainer's optimizer is stepped at the END of each epoch, as in a PyTorch loop; a
    ``lr_scheduler.ReduceLROnPlateau`` object is stepped with the epoch's ``monitor`` value
    (``"loss"`` when there is no validation data).

    Args:
        schedule: A callable ``(epoch, lr) -> new lr`` (epoch from 0, lr the current one), or a
            ``pydl.optim.lr_scheduler`` object.
        monitor: The log entry given to a ReduceLROnPlateau object. Default "val_loss".

    Raises:
        TypeError: schedule is neither callable nor a scheduler object.
        ValueError: (during fit) schedule returned a negative, NaN or non-number value, or the
            scheduler object belongs to another optimizer than the trainer's.

    Example:
        >>> halve = pydl.train.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)
        >>> cosine = pydl.train.LearningRateScheduler(
        ...     pydl.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=50))
    """

    def __init__(self, schedule, monitor="val_loss"):
        self._object = hasattr(schedule, "step") and hasattr(schedule, "optimizer")
        if not (self._object or callable(schedule)):
            raise TypeError(f"LearningRateScheduler: schedule must be callable (epoch, lr) -> lr "
                            f"or a pydl.optim.lr_scheduler object, got {type(schedule).__name__}")
        self.schedule = schedule
        self.monitor = monitor

    def on_train_begin(self, logs=None):
        if self._object and self.schedule.optimizer is not self.trainer.optimizer:
            raise ValueError("LearningRateScheduler: the scheduler object was built on another "
                             "optimizer than the trainer's; build it on trainer.optimizer")

    def on_epoch_begin(self, epoch, logs=None):
        if not self._object:
            groups = _lr_groups(self.trainer.optimizer)
            new = [_check_number("LearningRateScheduler", "the schedule's lr",
                                 self.schedule(epoch, g["lr"]), 0.0) for g in groups]
            for g, lr in zip(groups, new):  # (all checked before any is set)
                g["lr"] = lr

    def on_epoch_end(self, epoch, logs=None):
        if not self._object:
            return
        from ..optim.lr_scheduler import ReduceLROnPlateau as _Plateau

        if isinstance(self.schedule, _Plateau):
            key = self.monitor if self.monitor in logs else "loss"
            self.schedule.step(_monitored("LearningRateScheduler", key, logs))
        else:
            self.schedule.step()


class LambdaCallback(Callback):
    """Make a callback from plain functions, as Keras's ``LambdaCallback``.

    Args:
        on_epoch_begin, on_epoch_end: Optional ``fn(epoch, logs)``.
        on_batch_begin, on_batch_end: Optional ``fn(batch, logs)``.
        on_train_begin, on_train_end: Optional ``fn(logs)``.

    Raises:
        TypeError: a given hook is not callable.

    Example:
        >>> log = pydl.train.LambdaCallback(
        ...     on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))
    """

    _HOOKS = ("on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end",
              "on_train_begin", "on_train_end")

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_begin=None,
                 on_batch_end=None, on_train_begin=None, on_train_end=None):
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_batch_begin=on_batch_begin, on_batch_end=on_batch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end)
        for hook, fn in given.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {hook} must be callable, got "
                                f"{type(fn).__name__}")
            setattr(self, hook, fn)  # an instance attribute shadows the base class's no-op


class ModelCheckpoint(Callback):
    """Save the model (``pydl.save_model``, atomic) at the end of epochs.

    With ``save_best_only`` the file is written only when the monitored value improves on the
    best seen by this callback (NaN/Inf never do); the best is kept across ``fit`` calls, as in
    Keras, so the file on disk stays the best model. Otherwise every epoch is saved. In a
    data-parallel run (``pydl.distributed``) only rank 0 writes.

    Args:
        path: File path; may contain ``str.format`` fields ``{epoch}`` (1-based, as Keras) and any
            log name, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"``.
        monitor: Log name to watch. Default "val_loss".
        save_best_only: Save only improvements. Default True.
        mode: "min", "max" or "auto" (as EarlyStopping). Default "auto".

    Example:
        >>> ckpt = pydl.train.ModelCheckpoint("best.npz")
        >>> trainer.fit(x, y, validation_split=0.2, callbacks=[ckpt])
        >>> best = pydl.load_model("best.npz")
    """

    def __init__(self, path, monitor="val_loss", save_best_only=True, mode="auto"):
        self.path = os.fspath(path)
        self.monitor = monitor
        self.direction = _direction("ModelCheckpoint", monitor, mode)
        self.mode = mode
        self.save_best_only = bool(save_best_only)
        self.best = math.inf if self.direction == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            current = _monitored("ModelCheckpoint", self.monitor, logs)
            if current is None or not _better(self.direction, current, self.best, 0.0):
                return
            self.best = current
        if _dist.is_root():  # data-parallel: every rank tracks the best, rank 0 writes
            save_model(self.model, self.path.format(epoch=epoch + 1, **logs))


class CSVLogger(Callback):
    """Write one row per epoch to a CSV file: ``epoch`` and the epoch-end logs.

    The columns are fixed at the first epoch (sorted log names, as Keras); a later missing value
    is written as ``NA``. Each row is flushed as it is written. In a data-parallel run
    (``pydl.distributed``) only rank 0 writes.

    Args:
        path: File path.
        separator: Field separator. Default ",".
        append: Append to an existing file (no second header) instead of overwriting it.
            Default False.

    Example:
        >>> trainer.fit(x, y, callbacks=[pydl.train.CSVLogger("log.csv")])
    """

    def __init__(self, path, separator=",", append=False):
        self.path = os.fspath(path)
        self.separator = separator
        self.append = bool(append)
        self.keys = None
        self._file = None

    def on_train_begin(self, logs=None):
        self.keys = None
        if not _dist.is_root():  # data-parallel: rank 0 writes the file
            return
        self._header = not (self.append and os.path.exists(self.path)
                            and os.path.getsize(self.path) > 0)
        self._file = open(self.path, "a" if self.append else "w", newline="", encoding="utf-8")

    def on_epoch_end(self, epoch, logs=None):
        if self._file is None:  # not rank 0 of a data-parallel fit
            return
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self._header:
                self._file.write(self.separator.join(["epoch"] + self.keys) + "\n")
        row = [str(epoch)] + [_format(logs.get(k, "NA")) for k in self.keys]
        self._file.write(self.separator.join(row) + "\n")
        self._file.flush()

    def on_train_end(self, logs=None):
        self._close()

    def _close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self):
        self._close()


def _format(value):
    if isinstance(value, str):
        return value
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)
