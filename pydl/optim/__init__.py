"""Optimizers: SGD (momentum, Nesterov), Adam and AdamW with PyTorch's update rules.

``step()`` updates all parameters in place through ONE compiled kernel call
(``pydl.kernels.sgd_update_multi``, ``adam_update_multi``, ``adamw_update_multi``). A parameter is
skipped entirely - no step, no weight decay, no state update - when its ``grad`` is None or its
``requires_grad`` is False (frozen).

The contract of ``step()``, for every optimizer here:

- All or nothing. If any gradient holds a NaN or an infinity, or (Adam/AdamW) the step would make
  ``exp_avg`` or ``exp_avg_sq`` infinite (a finite gradient whose square overflows),
  :class:`NonFiniteUpdateError` is raised and no parameter and no state entry changes.
- A KeyboardInterrupt (Ctrl-C) arriving during ``step()`` in the main thread is held back until
  the step has been applied in full, then delivered: every parameter and state entry is always at
  the same step.
- Thread-safe: one optimizer used from several threads at once runs their steps one after
  another (a per-optimizer lock), never interleaved; ``state_dict`` and ``load_state_dict`` take
  the same lock.

Example:
    >>> import numpy as np, pydl
    >>> model = pydl.nn.Linear(3, 1)
    >>> opt = pydl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> loss = (model(pydl.tensor(np.ones((2, 3)))) ** 2).mean()
    >>> opt.zero_grad(); loss.backward(); opt.step()
"""

import abc
import math
import operator
import signal
import threading

try:
    # The C functions behind signal.signal/getsignal: the public wrappers convert handlers to
    # enums through a failing lookup that costs ~10 us per call, twice per step.
    import _signal as _sig
except ImportError:  # pragma: no cover - not CPython
    _sig = signal

import numpy as np

from .. import _core, kernels
from ..kernels import NonFiniteUpdateError
from ..tensor import Tensor

__all__ = ["Adam", "AdamW", "NonFiniteUpdateError", "Optimizer", "SGD", "lr_scheduler"]

NonFiniteUpdateError.__doc__ = """Raised by ``step()`` when a gradient, or the new optimizer state, would not be finite.

A FloatingPointError. Nothing was updated: every parameter and state entry is as before the step.
``Trainer.fit`` turns it into ``pydl.train.NonFiniteLossError`` naming the parameter.

Attributes:
    index: The parameter's position in the optimizer (as in ``state_dict()``).
    param: The Parameter itself.
    what: ``"grad"`` (a NaN/Inf gradient) or ``"state"`` (exp_avg/exp_avg_sq would overflow).
"""


class _HoldInterrupt:
    """Hold back SIGINT (Ctrl-C) inside the block and deliver it on exit.

    Python runs signal handlers in the main thread between bytecodes, so a KeyboardInterrupt could
    otherwise land between the kernel call and the bookkeeping of a step (new state entries, step
    counts). Elsewhere than in the main thread, or when SIGINT's handler was not installed from
    Python, this does nothing.
    """

    __slots__ = ("previous", "pending")

    def __enter__(self):
        self.previous = None
        self.pending = False
        if threading.current_thread() is threading.main_thread():
            previous = _sig.getsignal(signal.SIGINT)
            if previous is not None:
                _sig.signal(signal.SIGINT, self._hold)
                self.previous = previous
        return self

    def _hold(self, signum, frame):
        self.pending = True

    def __exit__(self, *exc_info):
        if self.previous is not None:
            _sig.signal(signal.SIGINT, self.previous)
            if self.pending:
                signal.raise_signal(signal.SIGINT)  # now handled as it would have been
        return False


def _per_item(values):
    """One value for all items when they agree (the common single-group case), else the list."""
    first = values[0]
    return first if all(v == first for v in values) else values


def _check_range(name, value, low=0.0, high=math.inf, high_open=False):
    """Return ``value`` as a float after checking it is a finite-or-inf number in its range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    bad_high = v >= high if high_open else v > high
    if math.isnan(v) or v < low or bad_high:
        if high == math.inf:
            expected = f">= {low}"
        else:
            expected = f"in [{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return v


class _Plan:
    """An optimizer step's kernel call kept for the next steps, used only while everything the
    slow path would read is as it was: the groups (same dicts, parameter lists, lengths and
    hyper-parameter values), every parameter's array, gradient array and requires_grad, the
    ``state`` dict and each updated parameter's state dict and state arrays. (A replayed training
    step hands the same gradient buffers every time, so it gets the plan; eager autograd's new
    gradient arrays never match and take the slow path.) The slow path then costs a list walk
    and a handful of dict reads per step less; the identity checks run as C-level map()s."""

    __slots__ = ("items", "run", "groups", "state", "params", "grads", "data_of", "datas",
                 "reqs", "indices", "states", "dicts", "keys", "arrays")

    def __init__(self, opt, items, run, buffers):
        self.items, self.run = items, run
        self.groups = [(g, g["params"], len(g["params"]), _hyper_values(g))
                       for g in opt.param_groups]
        self.state = opt.state
        params = self.params = [p for g in opt.param_groups for p in g["params"]]
        self.grads = list(map(_grad_of, params))
        # Tensor's array slot directly (Parameter.data's property reads it); any other object
        # with a .data (the optimizers accept duck-typed parameters) through the attribute.
        self.data_of = _data_of if all(isinstance(p, Tensor) for p in params) \
            else _attribute_data
        self.datas = list(map(self.data_of, params))
        self.reqs = list(map(_requires_grad_of, params))
        self.indices = [i for i, _, _ in buffers]
        self.states = [s for _, s, _ in buffers]
        entries = [(s, key, a) for _, s, arrays in buffers for key, a in arrays]
        self.dicts = [s for s, _, _ in entries]
        self.keys = [key for _, key, _ in entries]
        self.arrays = [a for _, _, a in entries]

    def holds(self, opt):
        groups = opt.param_groups
        if len(groups) != len(self.groups) or opt.state is not self.state:
            return False
        for g, (g0, params, n, hyper) in zip(groups, self.groups):
            if g is not g0 or g["params"] is not params or len(params) != n \
                    or _hyper_values(g) != hyper:
                return False
        params = self.params
        return (all(map(_is, map(_grad_of, params), self.grads))
                and all(map(_is, map(self.data_of, params), self.datas))
                and list(map(_requires_grad_of, params)) == self.reqs
                and all(map(_is, map(self.state.get, self.indices), self.states))
                and all(map(_is, map(dict.get, self.dicts, self.keys), self.arrays)))


_is = operator.is_
_grad_of = operator.attrgetter("grad")
_requires_grad_of = operator.attrgetter("requires_grad")
_data_of = Tensor.__dict__["data"].__get__  # the array slot (Parameter.data's property reads it)
_attribute_data = operator.attrgetter("data")


def _hyper_values(group):
    return [v for k, v in group.items() if k != "params"]


class Optimizer(abc.ABC):
    """Base class: holds parameter groups and per-parameter state, updates each parameter.

    Args:
        params: An iterable of Parameters, or of dicts ``{"params": [...], <hyper-parameter>: ...}``
            (parameter groups; missing hyper-parameters take the optimizer's values).
        defaults: The optimizer's hyper-parameters (validated by the subclass).

    Attributes:
        param_groups: A list of dicts, each with ``"params"`` (a list of Parameters) and the
            hyper-parameters for those parameters (``"lr"``, ...); schedulers edit ``"lr"`` here.
        state: A dict from parameter index (position in the concatenated groups, as in PyTorch's
            ``state_dict``) to that parameter's state dict (numpy buffers and counters).
    """

    def __init__(self, params, defaults):
        if hasattr(params, "data") and hasattr(params, "requires_grad"):
            raise TypeError("params must be an iterable of Parameters (e.g. model.parameters()), "
                            "got a single Parameter; wrap it in a list")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        self._lock = threading.Lock()
        seen = set()
        for group in params:
            group = dict(group)
            if "params" not in group:
                raise ValueError("a parameter group dict needs a 'params' entry")
            group_params = list(group["params"])
            for p in group_params:
                if not (hasattr(p, "data") and hasattr(p, "requires_grad")):
                    raise TypeError(f"optimizer params must be Parameters, got {type(p).__name__}")
                if id(p) in seen:
                    raise ValueError("a parameter appears more than once in the optimizer")
                seen.add(id(p))
            unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
            if unknown:
                raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)} in a parameter "
                                 f"group; expected some of {sorted(self.defaults)}")
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            group["params"] = group_params
            self._validate_group(group)
            self.param_groups.append(group)

    def _validate_group(self, group):
        """Check (and normalise in place) one group's hyper-parameters; ValueError names them."""
        group["lr"] = _check_range("lr", group["lr"])
        group["weight_decay"] = _check_range("weight_decay", group["weight_decay"])

    def _indexed_params(self):
        """Yield (index, group, param) over all groups, index counting across groups."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, group, p
                i += 1

    @property
    def lr(self):
        """The learning rate of the first parameter group; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        value = _check_range("lr", value)
        for group in self.param_groups:
            group["lr"] = value

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of every parameter.

        Args:
            set_to_none: True (the default, as in PyTorch 2) sets ``grad`` to None, so the next
                backward allocates it fresh; False fills the existing gradient arrays with zeros.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.fill(0)

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]  # a lock cannot be copied; a copy gets its own
        state.pop("_plan", None)  # closures over this object's arrays
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def step(self, closure=None):
        """Update every parameter that has a gradient and is not frozen, all or nothing.

        See the module docstring for the contract: a NaN/Inf gradient or an overflowing state
        raises :class:`NonFiniteUpdateError` with nothing changed; Ctrl-C never splits a step;
        concurrent calls from several threads run one after another.

        Args:
            closure: Optional callable that re-evaluates the model and returns the loss.
                Default None.

        Returns:
            The closure's loss, or None.

        Raises:
            NonFiniteUpdateError: A gradient, or the new optimizer state, is not finite; its
                ``index``/``param`` name the parameter. Nothing was updated.
        """
        loss = closure() if closure is not None else None
        with self._lock:
            plan = self._plan
            if plan is not None and plan.holds(self):
                # One C++ call: a Ctrl-C (handled between bytecodes) lands before or after it.
                try:
                    if plan.run():
                        return loss
                except NonFiniteUpdateError as e:
                    raise self._refusal(plan.items, e) from None
            self._plan = None
            items = [(i, group, p, p.grad) for i, group, p in self._indexed_params()
                     if p.grad is not None and p.requires_grad]
            if items:
                try:
                    with _HoldInterrupt():
                        self._apply(items)
                except NonFiniteUpdateError as e:
                    raise self._refusal(items, e) from None
                made = self._plan_of(items)
                if made is not None:
                    self._plan = _Plan(self, items, *made)
        return loss

    # The last step's kernel call, prebuilt (see _Plan); None until a step has run.
    _plan = None

    def _plan_of(self, items):
        """(run, buffers) for the steps after this one while nothing they read changes, or None.

        ``run()`` repeats this step's update with the same arrays (reading what changes from
        step to step, like Adam's step counts, when it runs); ``buffers`` lists (index, state
        dict, ((key, array), ...)) of the state arrays it holds. Called right after a successful
        ``_apply(items)``; subclasses without a plan return None.
        """
        return None

    def _refusal(self, items, err):
        """The NonFiniteUpdateError of a refused step, naming the optimizer's parameter."""
        index, _, param, grad = items[err.item]
        if err.what == "grad":
            detail = "its gradient holds NaN or Inf"
        else:
            detail = ("the step would make its exp_avg or exp_avg_sq infinite (gradient up to "
                      f"{float(np.abs(grad).max()):.3g} in magnitude; its square overflows "
                      f"{param.data.dtype})")
        new = NonFiniteUpdateError(
            f"{type(self).__name__}.step: parameter {index} (shape {param.data.shape}): {detail}; "
            f"nothing was updated (no parameter, no optimizer state). Lower the learning rate, "
            f"scale the inputs or the loss, or clip the gradients.")
        new.item, new.what, new.index, new.param = err.item, err.what, index, param
        return new

    def _hyper(self, items, key):
        """Hyper-parameter ``key`` for a *_multi kernel: one value, or one per item of ``items``."""
        groups = self.param_groups
        if len(groups) == 1:
            return groups[0][key]
        return _per_item([group[key] for _, group, _, _ in items])

    @abc.abstractmethod
    def _apply(self, items):
        """Update ``items``, a list of (index, group, param, grad), in place, all or nothing.

        Called by ``step()`` under the optimizer's lock with SIGINT held back. Raise
        NonFiniteUpdateError with ``.item`` (the position in ``items``) and ``.what`` set, and
        change nothing, when a gradient or the new state is not finite.
        """

    # The per-parameter state entries, and those that hold arrays of the parameter's shape/dtype.
    _state_keys = ()
    _buffers = ()

    def state_dict(self):
        """Return the optimizer state: ``{"state": {index: {...}}, "param_groups": [...]}``.

        As in PyTorch, parameters are named by their index in the concatenated groups and each
        group lists the indices it holds under ``"params"``; arrays are copies.
        """
        with self._lock:
            return self._state_dict()

    def _state_dict(self):
        groups = []
        i = 0
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = list(range(i, i + len(group["params"])))
            i += len(group["params"])
            groups.append(g)
        state = {index: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for index, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a state saved by ``state_dict()`` after validating all of it.

        Args:
            state_dict: The dict from ``state_dict()`` (possibly after a save/load round trip).

        Raises:
            ValueError: Missing keys, a different number or size of parameter groups, an unknown
                parameter index, a state entry with the wrong name, shape or dtype, or an invalid
                hyper-parameter; the optimizer is left unchanged.
        """
        with self._lock:
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict):
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("optimizer state_dict must be a dict with exactly the keys "
                             "'state' and 'param_groups'")
        groups = list(state_dict["param_groups"])
        if len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(groups)} parameter groups, the optimizer has "
                             f"{len(self.param_groups)}")
        new_groups = []
        for gi, (saved, ours) in enumerate(zip(groups, self.param_groups)):
            n = len(ours["params"])
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"param_groups[{gi}] must be a dict with a 'params' entry")
            if len(saved["params"]) != n:
                raise ValueError(f"param_groups[{gi}] holds {len(saved['params'])} parameters, the "
                                 f"optimizer's group holds {n}")
            keys = set(saved) - {"params", "initial_lr"}
            if keys != set(self.defaults):
                raise ValueError(f"param_groups[{gi}] has hyper-parameters {sorted(keys)}, "
                                 f"expected {sorted(self.defaults)}")
            group = {k: v for k, v in saved.items() if k != "params"}
            group["params"] = ours["params"]
            self._validate_group(group)
            new_groups.append(group)
        params = [p for _, _, p in self._indexed_params()]
        new_state = {}
        for key, s in dict(state_dict["state"]).items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"optimizer state key {key!r} is not a parameter index") from None
            if not 0 <= index < len(params):
                raise ValueError(f"optimizer state key {index} is out of range: the optimizer "
                                 f"has {len(params)} parameters")
            if not isinstance(s, dict):
                raise ValueError(f"optimizer state[{index}] must be a dict")
            new_state[index] = self._validate_state(index, s, params[index])
        for group, new in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new)
        self.state = new_state

    def _validate_state(self, index, s, param):
        """Return a validated copy of one parameter's saved state."""
        extra = set(s) - set(self._state_keys)
        if extra:
            raise ValueError(f"optimizer state[{index}] has unexpected entries {sorted(extra)}")
        out = {}
        for k, v in s.items():
            if k in self._buffers:
                if v is None:
                    out[k] = None
                    continue
                if not isinstance(v, np.ndarray):
                    raise ValueError(f"optimizer state[{index}]['{k}'] must be a numpy array, "
                                     f"got {type(v).__name__}")
                if v.shape != param.data.shape:
                    raise ValueError(f"optimizer state[{index}]['{k}'] has shape {v.shape}, the "
                                     f"parameter has shape {param.data.shape}")
                if not np.can_cast(v.dtype, param.data.dtype, casting="same_kind"):
                    raise ValueError(f"optimizer state[{index}]['{k}'] has dtype {v.dtype}, the "
                                     f"parameter has dtype {param.data.dtype}")
                # step() keeps the state finite and its overflow check relies on that.
                if v.dtype.kind in "fc" and not np.isfinite(v).all():
                    raise ValueError(f"optimizer state[{index}]['{k}'] holds NaN or Inf; a "
                                     f"state saved by pydl never does")
                out[k] = np.array(v, dtype=param.data.dtype, order="C", copy=True)
            else:
                out[k] = self._validate_scalar_state(index, k, v)
        return out

    def _validate_scalar_state(self, index, key, value):
        raise ValueError(f"optimizer state[{index}] has an unexpected entry {key!r}")

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for gi, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {gi}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        lines.append(")")
        return "\n".join(lines)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    With ``d = grad + weight_decay * w``: without momentum ``w -= lr * d``; with momentum the
    buffer starts as ``d`` on a parameter's first step and becomes ``momentum * buf +
    (1 - dampening) * d`` afterwards, then ``w -= lr * buf`` (or ``lr * (d + momentum * buf)``
    with ``nesterov=True``). ``weight_decay=λ`` is the gradient of ``pydl.regularizers.L2(λ / 2)``.

    Args:
        params: Parameters (e.g. ``model.parameters()``) or parameter-group dicts.
        lr: Learning rate, >= 0 (required).
        momentum: Momentum factor, >= 0. Default 0.0.
        nesterov: Use Nesterov momentum (needs momentum > 0 and dampening 0). Default False.
        weight_decay: Coupled L2 weight decay added to the gradient, >= 0. Default 0.0.
        dampening: Dampening of the momentum, in [0, 1]. Default 0.0.

    Raises:
        ValueError: A negative, NaN or out-of-range hyper-parameter (named), or nesterov without
            momentum or with dampening.
        NonFiniteUpdateError: From ``step()``, when a gradient holds NaN or Inf; nothing is
            updated (see the module docstring for the whole contract of ``step()``).

    Example:
        >>> opt = pydl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    """

    _buffers = ("momentum_buffer",)
    _state_keys = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
                 dampening=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay))

    def _validate_group(self, group):
        super()._validate_group(group)
        group["momentum"] = _check_range("momentum", group["momentum"])
        group["dampening"] = _check_range("dampening", group["dampening"], 0.0, 1.0)
        group["nesterov"] = bool(group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening == 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _apply(self, items):
        # One sgd_update_multi call for all groups; a parameter's first step with momentum gets
        # a new buffer (first_step=True), stored only once the kernel has accepted the step.
        state = self.state
        params, grads, bufs, firsts, new = [], [], [], [], []
        for i, group, p, grad in items:
            params.append(p.data)
            grads.append(grad)
            buf, first = None, False
            if group["momentum"] != 0.0:
                s = state.get(i)
                buf = s.get("momentum_buffer") if s is not None else None
                if buf is None:
                    buf, first = np.empty_like(p.data), True
                    new.append((i, buf))
            bufs.append(buf)
            firsts.append(first)
        kernels.sgd_update_multi(
            params, grads, bufs if any(b is not None for b in bufs) else None,
            first_step=_per_item(firsts),
            **{k: self._hyper(items, k)
               for k in ("lr", "momentum", "dampening", "nesterov", "weight_decay")})
        for i, buf in new:
            state[i] = {"momentum_buffer": buf}

    def _plan_of(self, items):
        state = self.state
        params = [p.data for _, _, p, _ in items]
        grads = [grad for _, _, _, grad in items]
        bufs, buffers = [], []
        for i, group, _, _ in items:
            buf = None
            if group["momentum"] != 0.0:
                s = state[i]
                buf = s["momentum_buffer"]
                buffers.append((i, s, (("momentum_buffer", buf),)))
            bufs.append(buf)
        run = _core._prepare_sgd_update(
            params, grads, bufs if buffers else None,
            **{k: self._hyper(items, k)
               for k in ("lr", "momentum", "dampening", "nesterov", "weight_decay")})
        return None if run is None else (run, buffers)


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (``weight_decay`` is coupled L2 added to the gradient).

    Per parameter, with ``g = grad + weight_decay * w`` and ``t`` its step count:
    ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g^2``,
    ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.

    Args:
        params: Parameters (e.g. ``model.parameters()``) or parameter-group dicts.
        lr: Learning rate, >= 0. Default 1e-3.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: Added to the denominator, >= 0. Default 1e-8.
        weight_decay: Coupled L2 weight decay, >= 0. Default 0.0.

    Raises:
        ValueError: A negative, NaN or out-of-range hyper-parameter (named).
        NonFiniteUpdateError: From ``step()``, when a gradient holds NaN or Inf or the step would
            make exp_avg/exp_avg_sq infinite; nothing is updated (see the module docstring).

    Example:
        >>> opt = pydl.optim.Adam(model.parameters(), lr=3e-4)
    """

    _buffers = ("exp_avg", "exp_avg_sq")
    _state_keys = ("step", "exp_avg", "exp_avg_sq")
    _kernel = staticmethod(kernels.adam_update_multi)
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _validate_group(self, group):
        super()._validate_group(group)
        betas = group["betas"]
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        group["betas"] = (_check_range("betas[0]", beta1, 0.0, 1.0, high_open=True),
                          _check_range("betas[1]", beta2, 0.0, 1.0, high_open=True))
        group["eps"] = _check_range("eps", group["eps"])

    def _apply(self, items):
        # One kernel call for all groups; a parameter's first step gets new zero moments, stored
        # (and every step count advanced) only once the kernel has accepted the step.
        state = self.state
        params, grads, ms, vs, steps, new = [], [], [], [], [], []
        for i, _, p, grad in items:
            s = state.get(i)
            if s is None:
                s = {"step": 0, "exp_avg": np.zeros_like(p.data),
                     "exp_avg_sq": np.zeros_like(p.data)}
                new.append((i, s))
            params.append(p.data)
            grads.append(grad)
            ms.append(s["exp_avg"])
            vs.append(s["exp_avg_sq"])
            steps.append(s["step"] + 1)
        betas = self._hyper(items, "betas")
        beta1, beta2 = betas if isinstance(betas, tuple) else ([b[0] for b in betas],
                                                                [b[1] for b in betas])
        self._kernel(params, grads, ms, vs, steps=_per_item(steps), lr=self._hyper(items, "lr"),
                     beta1=beta1, beta2=beta2, eps=self._hyper(items, "eps"),
                     weight_decay=self._hyper(items, "weight_decay"))
        for i, s in new:
            state[i] = s
        for i, _, _, _ in items:
            state[i]["step"] += 1

    def _plan_of(self, items):
        states = [self.state[i] for i, _, _, _ in items]
        params = [p.data for _, _, p, _ in items]
        grads = [grad for _, _, _, grad in items]
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        betas = self._hyper(items, "betas")
        beta1, beta2 = betas if isinstance(betas, tuple) else ([b[0] for b in betas],
                                                                [b[1] for b in betas])
        run = _core._prepare_adam_update(
            params, grads, ms, vs, states, decoupled=self._decoupled, lr=self._hyper(items, "lr"),
            beta1=beta1, beta2=beta2, eps=self._hyper(items, "eps"),
            weight_decay=self._hyper(items, "weight_decay"))
        if run is None:
            return None
        buffers = [(i, s, (("exp_avg", m), ("exp_avg_sq", v)))
                   for (i, _, _, _), s, m, v in zip(items, states, ms, vs)]
        return run, buffers

    def _validate_state(self, index, s, param):
        if set(s) != set(self._state_keys):
            raise ValueError(f"optimizer state[{index}] must have the entries "
                             f"{sorted(self._state_keys)}, got {sorted(s)}")
        return super()._validate_state(index, s, param)

    def _validate_scalar_state(self, index, key, value):
        if key != "step":
            return super()._validate_scalar_state(index, key, value)
        step = np.asarray(value)
        if step.shape != () or not np.issubdtype(step.dtype, np.integer) or int(step) < 0:
            raise ValueError(f"optimizer state[{index}]['step'] must be an int >= 0, "
                             f"got {value!r}")
        return int(step)


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    Each step first shrinks the parameter, ``w *= 1 - lr * weight_decay``, then applies the Adam
    update with the plain gradient.

    Args:
        params: Parameters (e.g. ``model.parameters()``) or parameter-group dicts.
        lr: Learning rate, >= 0. Default 1e-3.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: Added to the denominator, >= 0. Default 1e-8.
        weight_decay: Decoupled weight decay, >= 0. Default 1e-2.

    Raises:
        ValueError: A negative, NaN or out-of-range hyper-parameter (named).
        NonFiniteUpdateError: From ``step()``, when a gradient holds NaN or Inf or the step would
            make exp_avg/exp_avg_sq infinite; nothing is updated (see the module docstring).
    """

    _kernel = staticmethod(kernels.adamw_update_multi)
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


from . import lr_scheduler  # noqa: E402  (imports Optimizer from this module)
