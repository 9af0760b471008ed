"""Learning-rate schedules with PyTorch's semantics: call ``step()`` once per epoch.

Each scheduler sets ``optimizer.param_groups[i]["lr"]`` from the group's initial learning rate
(``base_lrs``) with a closed form of the epoch counter ``last_epoch``; creating a scheduler applies
epoch 0. ``ReduceLROnPlateau`` instead reacts to a metric: ``step(val_loss)``.

Warmup: ``LinearLR`` scales the learning rate linearly (PyTorch's warmup building block) and
``SequentialLR`` hands over from one schedule to the next at given epochs; ``LinearWarmup`` is the
usual combination in one object: ``base_lr * (t + 1) / warmup_steps`` for the first
``warmup_steps`` steps, then ``base_lr`` or another schedule started from its epoch 0.

Example:
    >>> opt = pydl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> sched = pydl.optim.lr_scheduler.LinearWarmup(
    ...     opt, warmup_steps=5, after=pydl.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=45))
    >>> for epoch in range(50):
    ...     train_one_epoch(); sched.step()
"""

import abc
import bisect
import math

from . import Optimizer, _check_range

__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "LinearLR", "LinearWarmup",
           "ReduceLROnPlateau", "SequentialLR", "StepLR"]


def _check_optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"expected a pydl.optim optimizer, got {type(optimizer).__name__}")


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


class LRScheduler(abc.ABC):
    """Base class: ``step()`` advances ``last_epoch`` and sets each group's lr to ``_lr_at``.

    Subclasses define ``_lr_at(epoch) -> list`` (one learning rate per parameter group) from
    ``self.base_lrs``. Creating a scheduler records each group's ``"initial_lr"`` (kept if already
    set, so several schedulers on one optimizer share it) and applies epoch 0.
    """

    def __init__(self, optimizer):
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    @abc.abstractmethod
    def _lr_at(self, epoch):
        """Return the learning rates (one per parameter group) for `epoch`."""

    def step(self):
        """Advance one epoch and set the optimizer's learning rates."""
        self.last_epoch += 1
        self._apply(self._lr_at(self.last_epoch))

    def _apply(self, lrs):
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self):
        """Return the learning rates (one per parameter group) set by the last ``step()``."""
        return list(self._last_lr)

    def state_dict(self):
        """Return the scheduler's state (everything but the optimizer) as a dict."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()
                if k != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restore a state from ``state_dict()``; the optimizer's lrs follow at the next step.

        Raises:
            ValueError: The keys differ from this scheduler's (missing or unexpected named).
        """
        expected = set(self.state_dict())
        given = set(state_dict)
        if given != expected:
            raise ValueError(f"{type(self).__name__} state_dict: missing keys "
                             f"{sorted(expected - given)}, unexpected keys "
                             f"{sorted(given - expected)}")
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"state_dict has {len(state_dict['base_lrs'])} base_lrs, the "
                             f"optimizer has {len(self.optimizer.param_groups)} parameter groups")
        self.__dict__.update({k: (list(v) if isinstance(v, (list, tuple)) else v)
                              for k, v in state_dict.items()})

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr})"


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr = base_lr * gamma ** (epoch // step_size)``.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        step_size: Epochs between decays, an int >= 1.
        gamma: Decay factor, >= 0. Default 0.1.
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _check_int("step_size", step_size, 1)
        self.gamma = _check_range("gamma", gamma)
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        factor = self.gamma ** (epoch // self.step_size)
        return [base * factor for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch: ``lr = base_lr * gamma ** epoch``.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        gamma: Decay factor, >= 0.
    """

    def __init__(self, optimizer, gamma):
        self.gamma = _check_range("gamma", gamma)
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        return [base * self.gamma ** epoch for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Anneal the learning rate from ``base_lr`` to ``eta_min`` along a half cosine.

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2`` (PyTorch's closed
    form, which keeps following the cosine, i.e. rises again, after ``T_max``).

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        T_max: Epochs of the half period, an int >= 1.
        eta_min: Final learning rate, >= 0. Default 0.0.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _check_int("T_max", T_max, 1)
        self.eta_min = _check_range("eta_min", eta_min)
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        cos = (1.0 + math.cos(math.pi * epoch / self.T_max)) / 2.0
        return [self.eta_min + (base - self.eta_min) * cos for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the learning rate by a factor moving linearly from ``start_factor`` to ``end_factor``.

    ``lr = base_lr * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) /
    total_iters)``: the PyTorch warmup building block (combine with ``SequentialLR``).

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        start_factor: Factor at epoch 0, in (0, 1]. Default 1/3.
        end_factor: Factor from epoch ``total_iters`` on, in [0, 1]. Default 1.0.
        total_iters: Epochs of the ramp, an int >= 1. Default 5.
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        self.start_factor = _check_range("start_factor", start_factor, 0.0, 1.0)
        if self.start_factor == 0.0:
            raise ValueError("start_factor must be in (0, 1], got 0")
        self.end_factor = _check_range("end_factor", end_factor, 0.0, 1.0)
        self.total_iters = _check_int("total_iters", total_iters, 1)
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        frac = min(epoch, self.total_iters) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * frac
        return [base * factor for base in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers[i]`` between ``milestones[i-1]`` and ``milestones[i]``, each from epoch 0.

    Args:
        optimizer: The optimizer all the schedulers were created for.
        schedulers: A list of schedulers (not ReduceLROnPlateau) on ``optimizer``.
        milestones: Increasing epochs at which the next scheduler takes over;
            ``len(milestones) == len(schedulers) - 1``.

    Example:
        >>> warm = LinearLR(opt, start_factor=0.1, total_iters=5)
        >>> cos = CosineAnnealingLR(opt, T_max=95)
        >>> sched = SequentialLR(opt, [warm, cos], milestones=[5])
    """

    def __init__(self, optimizer, schedulers, milestones):
        _check_optimizer(optimizer)
        schedulers = list(schedulers)
        milestones = [_check_int("milestones[i]", m, 1) for m in milestones]
        if not schedulers or len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR needs len(milestones) == len(schedulers) - 1, got "
                             f"{len(milestones)} milestones for {len(schedulers)} schedulers")
        if milestones != sorted(set(milestones)):
            raise ValueError(f"milestones must be strictly increasing, got {milestones}")
        for s in schedulers:
            if not isinstance(s, LRScheduler) or s.optimizer is not optimizer:
                raise ValueError("every scheduler of SequentialLR must be an LRScheduler on the "
                                 "same optimizer")
        self._schedulers = schedulers
        self.milestones = milestones
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        i = bisect.bisect_right(self.milestones, epoch)
        start = self.milestones[i - 1] if i else 0
        sched = self._schedulers[i]
        sched.last_epoch = epoch - start
        lrs = sched._lr_at(epoch - start)
        sched._last_lr = list(lrs)
        return lrs

    def state_dict(self):
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        inner = state_dict.get("_schedulers")
        if not isinstance(inner, (list, tuple)) or len(inner) != len(self._schedulers):
            raise ValueError(f"SequentialLR state_dict needs '_schedulers' with "
                             f"{len(self._schedulers)} entries")
        for s, d in zip(self._schedulers, inner):  # validate all before changing anything
            if set(d) != set(s.state_dict()):
                raise ValueError(f"SequentialLR state_dict: the entry for {type(s).__name__} "
                                 f"has the wrong keys")
        outer = {k: v for k, v in state_dict.items() if k != "_schedulers"}
        schedulers = self._schedulers
        super().load_state_dict({**outer, "_schedulers": schedulers})
        self._schedulers = schedulers
        for s, d in zip(schedulers, inner):
            s.load_state_dict(d)


class LinearWarmup(SequentialLR):
    """Ramp the learning rate up linearly over ``warmup_steps`` steps, then hand over to ``after``.

    Step ``t < warmup_steps`` uses ``base_lr * (t + 1) / warmup_steps`` (so the first step already
    trains); from step ``warmup_steps`` on, ``after`` runs from its own epoch 0 (or the learning
    rate stays ``base_lr`` when ``after`` is None). Same as ``SequentialLR([LinearLR(opt,
    1/warmup_steps, 1, warmup_steps - 1), after], [warmup_steps])``.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        warmup_steps: Length of the ramp in steps (epochs, or batches if you step per batch), an
            int >= 1.
        after: Optional scheduler on the same optimizer to continue with. Default None.
    """

    def __init__(self, optimizer, warmup_steps, after=None):
        _check_optimizer(optimizer)
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 1)
        ramp = _Ramp(optimizer, warmup_steps)
        if after is None:
            super().__init__(optimizer, [ramp], [])
        else:
            super().__init__(optimizer, [ramp, after], [warmup_steps])


class _Ramp(LRScheduler):
    """``base_lr * min(epoch + 1, n) / n``: LinearWarmup's ramp."""

    def __init__(self, optimizer, n):
        self.n = n
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        factor = min(epoch + 1, self.n) / self.n
        return [base * factor for base in self.base_lrs]


class ReduceLROnPlateau:
    """Multiply the learning rate by ``factor`` when a metric stops improving (PyTorch semantics).

    Call ``step(metric)`` once per epoch. An epoch improves when the metric beats the best so far
    by more than ``threshold`` (``"rel"``: below ``best * (1 - threshold)`` in min mode, above
    ``best * (1 + threshold)`` in max mode; ``"abs"``: ``best -/+ threshold``). After more than
    ``patience`` epochs in a row without improvement each group's lr becomes
    ``max(lr * factor, min_lr)`` (changes smaller than ``eps`` are skipped), then ``cooldown``
    epochs pass with the bad-epoch count held at 0. A NaN metric never counts as an improvement.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        mode: ``"min"`` (lower is better) or ``"max"``. Default "min".
        factor: Multiplier, in [0, 1). Default 0.1.
        patience: Bad epochs tolerated before a reduction, an int >= 0. Default 10.
        threshold: Minimum significant change, >= 0. Default 1e-4.
        threshold_mode: ``"rel"`` or ``"abs"``. Default "rel".
        cooldown: Epochs to wait after a reduction, an int >= 0. Default 0.
        min_lr: Lower bound, >= 0: a float, or a list with one per parameter group. Default 0.0.
        eps: Minimal lr change that is applied. Default 1e-8.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        _check_optimizer(optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.factor = _check_range("factor", factor, 0.0, 1.0, high_open=True)
        self.patience = _check_int("patience", patience, 0)
        self.threshold = _check_range("threshold", threshold)
        self.cooldown = _check_int("cooldown", cooldown, 0)
        self.eps = _check_range("eps", eps)
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"min_lr has {len(min_lr)} entries, the optimizer has {n} "
                                 f"parameter groups")
            self.min_lrs = [_check_range("min_lr", m) for m in min_lr]
        else:
            self.min_lrs = [_check_range("min_lr", min_lr)] * n
        self.optimizer = optimizer
        self.mode = mode
        self.threshold_mode = threshold_mode
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def is_better(self, current, best):
        """Return whether ``current`` improves significantly on ``best``."""
        if self.mode == "min":
            limit = best * (1.0 - self.threshold) if self.threshold_mode == "rel" \
                else best - self.threshold
            return current < limit
        limit = best * (1.0 + self.threshold) if self.threshold_mode == "rel" \
            else best + self.threshold
        return current > limit

    def step(self, metrics):
        """Record one epoch's metric and reduce the learning rate if it has plateaued.

        Args:
            metrics: The monitored value (a number, or a scalar Tensor/array).
        """
        current = float(metrics.item() if hasattr(metrics, "item") else metrics)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                new_lr = max(group["lr"] * self.factor, min_lr)
                if group["lr"] - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """Return the learning rates (one per parameter group) after the last ``step()``."""
        return list(self._last_lr)

    state_dict = LRScheduler.state_dict

    def load_state_dict(self, state_dict):
        """Restore a state from ``state_dict()``.

        Raises:
            ValueError: The keys differ from this scheduler's (missing or unexpected named).
        """
        expected = set(self.state_dict())
        given = set(state_dict)
        if given != expected:
            raise ValueError(f"ReduceLROnPlateau state_dict: missing keys "
                             f"{sorted(expected - given)}, unexpected keys "
                             f"{sorted(given - expected)}")
        self.__dict__.update({k: (list(v) if isinstance(v, (list, tuple)) else v)
                              for k, v in state_dict.items()})
