"""Layers: Module, Parameter, Linear, activations, Dropout and Sequential (PyTorch's surface).

Parameter names, shapes and ``state_dict`` keys follow ``torch.nn``: a ``Sequential`` of Linear,
activation and Dropout layers has the keys ``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ... (layers
without parameters still take up an index), so a PyTorch model's weights load unchanged:

    >>> model = pydl.nn.Sequential(pydl.nn.Linear(4, 8), pydl.nn.ReLU(), pydl.nn.Linear(8, 3))
    >>> model.load_state_dict({k: v.numpy() for k, v in torch_model.state_dict().items()})

The activation classes (``ReLU``, ``LeakyReLU``, ``ELU``, ``Sigmoid``, ``Tanh``, ``Softmax``,
``LogSoftmax``, ...) are generated from the table in :mod:`pydl.ops`.

Speed: a training step or prediction that the engine (:mod:`pydl.engine`) replays runs a Linear
followed by a fusable activation as ONE fused kernel call (bias and activation in the GEMM
epilogue, backward from the saved output), bit-identical to running the two layers one by one.
"""

import importlib
import math
import sys
from collections import OrderedDict, namedtuple

import numpy as np

from . import _validation
from . import functional as F
from . import random as _random
from . import _inference
from .ops import ACTIVATIONS, ActivationOp, signature
from .tensor import Tensor, _grad_mode, _tape

__all__ = ["init", "utils", "Dropout", "Linear", "Module", "Parameter", "Sequential"] + \
    [row.module for row in ACTIVATIONS]


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (``requires_grad=True`` by default).

    Set ``requires_grad = False`` to freeze it: backward then does no gradient work for it and
    no optimizer touches it. ``data`` is always a C-contiguous, writeable float32/float64 array,
    because optimizers update it in place.

    Args:
        data: Array-like (float64 arrays stay float64, everything else becomes float32), or a
            Tensor whose data is used.
        requires_grad: Default True.
    """

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)
        d = self.data
        if not (d.flags.c_contiguous and d.flags.writeable):
            self.data = np.array(d, order="C")

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    @property
    def data(self):
        """The parameter's array (assigning a new one is seen by the engine's replay keys)."""
        return _tensor_data.__get__(self)

    @data.setter
    def data(self, value):
        global _structure_version
        try:
            same = value is _tensor_data.__get__(self)  # (``p.data -= u`` sets the same array)
        except AttributeError:  # not set yet (construction)
            same = False
        if not same:
            _structure_version += 1
        _tensor_data.__set__(self, value)


_tensor_data = Tensor.data  # the slot Parameter.data reads and writes

# Bumped whenever train() / eval() changes a module's mode: the engine's keys hold the modes of
# all modules (a submodule in eval mode, e.g. frozen batch-norm statistics, records anew).
_mode_version = 0


def _modes_of(module):
    """Every module's train/eval mode below (and at) ``module``, for :func:`_restore_modes`."""
    return [(m, m.training) for m in module.modules()]


def _restore_modes(modes):
    """Give each module back the mode :func:`_modes_of` saved (``model.train(flag)`` would
    overwrite a submodule the user put in the other mode, e.g. a frozen batch norm)."""
    global _mode_version
    for m, training in modes:
        if m.__dict__.get("training") is not training:
            object.__setattr__(m, "training", training)
            _mode_version += 1

# Bumped by every Module attribute assignment or deletion and by every Parameter.data
# assignment: part of the engine's replay key, so a replaced layer, array or a changed
# hyper-parameter (e.g. Dropout.p) records the step anew.
_structure_version = 0


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models: register Parameters and sub-Modules as attributes.

    Subclasses call ``super().__init__()`` first, assign Parameters/Modules as attributes (the
    assignment order is the registration order) and define ``forward``.

    Example:
        >>> class MLP(pydl.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.hidden = pydl.nn.Linear(2, 16)
        ...         self.out = pydl.nn.Linear(16, 1)
        ...     def forward(self, x):
        ...         return self.out(self.hidden(x).relu())
        >>> [name for name, _ in MLP().named_parameters()]
        ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        global _structure_version
        _structure_version += 1
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called "
                                 f"(call super().__init__() first in {type(self).__name__})")
        modules = self._modules
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} (a "
                                f"numpy array or None is required)")
            buffers[name] = value
        elif isinstance(value, Parameter):
            modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                f"(a Parameter or None is required)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} "
                                f"(a Module or None is required)")
            modules[name] = None
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        global _structure_version
        _structure_version += 1
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self.__dict__.get("_buffers", {}).pop(name, None)
        object.__delattr__(self, name)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # False for a module whose forward has Python side effects the engine must not skip (e.g.
    # logging its inputs): steps that call it then run eagerly every time (see pydl.engine).
    replayable = True

    def __call__(self, *args, **kwargs):
        if not self.replayable:
            rec = _tape.recorder
            if rec is not None:
                rec.fail(f"{type(self).__name__}.replayable is False")
        elif (not _grad_mode.enabled and len(args) == 1 and not kwargs
                and _tape.recorder is None and not _tape.eager):
            out = _inference.forward(self, args[0])  # no_grad: replay the recorded forward
            if out is not None:
                return out
        return self.forward(*args, **kwargs)

    # --- traversal ------------------------------------------------------------------------
    def children(self):
        """Yield the direct sub-modules."""
        for m in self._modules.values():
            if m is not None:
                yield m

    def named_modules(self, prefix=""):
        """Yield ``(dotted_name, module)`` for this module (name ``prefix``) and all below it."""
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        """Return an iterator over this module and every module below it (named_modules' order).

        The list is kept until the structure version changes (any Module attribute assignment
        bumps it): mode switches and the engine's keys walk it on every predict call.
        """
        cached = self.__dict__.get("_modules_list")
        if cached is None or cached[0] != _structure_version:
            found = []

            def walk(m):
                found.append(m)
                for child in m._modules.values():
                    if child is not None:
                        walk(child)

            walk(self)
            cached = (_structure_version, found)
            self.__dict__["_modules_list"] = cached
        return iter(cached[1])

    def _named_parameter_entries(self, prefix=""):
        """Yield every (dotted name, Parameter), shared parameters under each of their names."""
        for name, p in self._parameters.items():
            if p is not None:
                yield (prefix + name, p)
        for name, m in self._modules.items():
            if m is not None:
                yield from m._named_parameter_entries(f"{prefix}{name}.")

    def named_parameters(self):
        """Yield ``(dotted_name, Parameter)`` in registration order, each parameter once.

        Names are PyTorch's: ``"weight"``, ``"0.bias"``, ``"encoder.1.weight"``.
        """
        seen = set()
        for name, p in self._named_parameter_entries():
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self):
        """Yield every Parameter once, in registration order (frozen ones included)."""
        for _, p in self.named_parameters():
            yield p

    # --- modes, gradients, freezing -------------------------------------------------------
    def train(self, mode=True):
        """Set training (``mode=True``) or eval mode on this module and all below; return self."""
        global _mode_version
        mode = bool(mode)
        for m in self.modules():
            if m.__dict__.get("training") is not mode:
                object.__setattr__(m, "training", mode)
                _mode_version += 1  # the engine's keys hold every module's mode (see modes())
        return self

    def eval(self):
        """Switch to eval mode (Dropout becomes the identity); return self."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient.

        Args:
            set_to_none: True (default, as PyTorch 2) sets ``grad`` to None; False zero-fills the
                existing gradient arrays in place.
        """
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.fill(0)

    def freeze(self):
        """Freeze every parameter (``requires_grad = False``); return self."""
        for p in self.parameters():
            p.requires_grad = False
        return self

    def unfreeze(self):
        """Make every parameter trainable again (``requires_grad = True``); return self."""
        for p in self.parameters():
            p.requires_grad = True
        return self

    # --- PyTorch conveniences -------------------------------------------------------------
    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module (children first) and on this one; return self.

        Example:
            >>> model.apply(lambda m: pydl.nn.init.zeros_(m.bias) if hasattr(m, "bias") else None)
        """
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` on every parameter (False freezes them all); return self."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def num_parameters(self, trainable_only=False):
        """Return the number of parameter elements (each shared parameter counted once).

        Args:
            trainable_only: Count only parameters with ``requires_grad=True``. Default False.
        """
        return sum(int(p.data.size) for p in self.parameters()
                   if p.requires_grad or not trainable_only)

    def to(self, dtype):
        """Cast every parameter (and gradient and floating buffer) to ``dtype`` in place; return self.

        As in PyTorch, an optimizer built before the cast keeps state of the old dtype: build it
        after casting.

        Args:
            dtype: float32 or float64 (a numpy dtype, type or name such as ``"float64"``).

        Raises:
            TypeError: dtype is not float32 or float64.
        """
        try:
            dt = np.dtype(dtype) if dtype is not None else None  # (np.dtype(None) is float64)
        except TypeError:
            raise TypeError(f"Module.to: dtype must be float32 or float64, got {dtype!r}") from None
        if dt is None:
            raise TypeError("Module.to: dtype must be float32 or float64, got None")
        if dt not in (np.float32, np.float64):
            raise TypeError(f"Module.to: dtype must be float32 or float64, got {dt}")
        for p in self.parameters():
            if p.data.dtype != dt:
                p.data = np.ascontiguousarray(p.data, dtype=dt)
                if p.grad is not None:
                    p.grad = np.ascontiguousarray(p.grad, dtype=dt)
        for m in self.modules():
            buffers = m.__dict__.get("_buffers") or {}
            for name, b in list(buffers.items()):
                if isinstance(b, Tensor) and b.data.dtype != dt:
                    b.data = np.ascontiguousarray(b.data, dtype=dt)
                elif isinstance(b, np.ndarray) and b.dtype.kind == "f" and b.dtype != dt:
                    setattr(m, name, np.ascontiguousarray(b, dtype=dt))
        return self

    def double(self):
        """Cast parameters and floating buffers to float64; return self."""
        return self.to(np.float64)

    def float(self):
        """Cast parameters and floating buffers to float32; return self."""
        return self.to(np.float32)

    # --- buffers (non-trainable state such as BatchNorm's running statistics) --------------
    def register_buffer(self, name, array):
        """Register a numpy array (or None) as state that is saved but not trained.

        Buffers appear in ``state_dict()`` after the module's parameters (PyTorch's order), are
        loaded in place by ``load_state_dict`` and cast by ``to(dtype)`` when floating.

        Raises:
            TypeError: array is neither a numpy array nor None.
        """
        if array is not None and not isinstance(array, np.ndarray):
            raise TypeError(f"register_buffer: {name!r} must be a numpy array or None, got "
                            f"{type(array).__name__}")
        global _structure_version
        self._buffers[name] = array
        object.__setattr__(self, name, array)
        _structure_version += 1  # recorded steps hold the old array: record anew

    def named_buffers(self, prefix=""):
        """Yield ``(dotted_name, array)`` for every buffer of this module and those below it."""
        for mname, m in self.named_modules(prefix):
            for name, b in m.__dict__.get("_buffers", {}).items():
                if b is not None:
                    yield (f"{mname}.{name}" if mname else name), b

    def buffers(self):
        """Yield every buffer array."""
        for _, b in self.named_buffers():
            yield b

    def _state_entries(self, prefix=""):
        """Yield (dotted name, array) of parameters then buffers per module, children after."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p.data
        for name, b in self.__dict__.get("_buffers", {}).items():
            if b is not None:
                yield prefix + name, b
        for name, m in self._modules.items():
            if m is not None:
                yield from m._state_entries(f"{prefix}{name}.")

    # --- state ----------------------------------------------------------------------------
    def state_dict(self):
        """Return an OrderedDict from dotted parameter/buffer name to a copy of its array.

        Frozen parameters and buffers (e.g. ``running_mean``) are included; keys and layouts are
        PyTorch's.
        """
        return OrderedDict((name, a.copy()) for name, a in self._state_entries())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters after validating ALL of them first.

        Values are cast to each parameter's dtype (float64 -> float32 is allowed; complex,
        strings or objects are not) and copied in place, so optimizers keep working.

        Args:
            state_dict: A mapping from dotted name to array: a numpy array, a pydl Tensor, or
                anything with ``__array__`` or ``.numpy()`` such as a torch tensor, so
                ``model.load_state_dict(torch_model.state_dict())`` works (torch is never
                imported here).
            strict: True (default) requires exactly this module's keys; False ignores missing
                and unexpected keys (shapes and dtypes are still checked).

        Returns:
            A named tuple ``(missing_keys, unexpected_keys)`` of lists.

        Raises:
            TypeError: state_dict is not a mapping.
            ValueError: (strict) a missing or unexpected key, or a value that is not an array,
                has the wrong shape or an uncastable dtype; the message names the key. The
                module is left unchanged.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"load_state_dict: expected a dict of arrays, got "
                            f"{type(state_dict).__name__}")
        own = OrderedDict(self._state_entries())
        given = list(state_dict.keys())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in given if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing key(s) {missing}")
            if unexpected:
                parts.append(f"unexpected key(s) {unexpected}")
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(parts)
                             + " (pass strict=False to load a subset)")
        updates = []
        for name, target in own.items():
            if name not in state_dict:
                continue
            value = _state_array(name, state_dict[name])
            if value.shape != target.shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {value.shape}, the model "
                                 f"expects {target.shape}")
            if value.dtype.kind not in "biuf" or not np.can_cast(value.dtype, target.dtype,
                                                                  casting="same_kind"):
                raise ValueError(f"load_state_dict: {name!r} has dtype {value.dtype}, which "
                                 f"cannot be cast to the model's {target.dtype}")
            updates.append((target, value))
        for target, value in updates:
            np.copyto(target, value, casting="same_kind")
        return _IncompatibleKeys(missing, unexpected)

    # --- printing -------------------------------------------------------------------------
    def extra_repr(self):
        """Return the text shown inside this module's parentheses in ``repr``."""
        return ""

    def __repr__(self):
        children = [f"({name}): " + repr(m).replace("\n", "\n  ")
                    for name, m in self._modules.items()]
        extra = self.extra_repr()
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = ([extra] if extra else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _state_array(name, value):
    """Return a state_dict value as a numpy array (pydl Tensor, ndarray, torch-like tensor)."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, np.ndarray):
        return value
    if callable(getattr(value, "detach", None)):  # a torch tensor that requires grad
        value = value.detach()
    if hasattr(value, "__array__"):
        return np.asarray(value)
    if callable(getattr(value, "numpy", None)):
        return np.asarray(value.numpy())
    raise ValueError(f"load_state_dict: {name!r} must be an array (numpy array, Tensor, or an "
                     f"object with __array__ or .numpy() such as a torch tensor), got "
                     f"{type(value).__name__}")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _float_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


class Linear(Module):
    """Apply ``y = x @ weight.T + bias``.

    Initialised like ``torch.nn.Linear``: weight and bias ~ U(-1/sqrt(in_features),
    1/sqrt(in_features)) (Kaiming-uniform with a = sqrt(5)), drawn from ``pydl.random``'s
    generator, so ``pydl.manual_seed(s)`` reproduces them.

    Args:
        in_features: Input width, a positive int.
        out_features: Output width, a positive int.
        bias: Learn an additive bias. Default True.
        dtype: float32 (default) or float64 (e.g. for gradient checks).

    Raises:
        ValueError: (construction) a non-positive width; (call) an input whose last dimension
            is not ``in_features`` - the message gives both.

    Example:
        >>> layer = pydl.nn.Linear(3, 2)
        >>> layer(np.ones((4, 3), np.float32)).shape
        (4, 2)
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        dt = _float_dtype(dtype)
        bound = 1.0 / math.sqrt(self.in_features)
        gen = _random.generator()
        self.weight = Parameter(
            gen.uniform(-bound, bound, (self.out_features, self.in_features)).astype(dt))
        if bias:
            self.bias = Parameter(gen.uniform(-bound, bound, self.out_features).astype(dt))
        else:
            self.bias = None

    def _input(self, x):
        # Plain arrays (e.g. float64 numpy batches) are converted to the layer's dtype; Tensors
        # must already have it, as in PyTorch.
        if isinstance(x, Tensor):
            return x
        return Tensor(np.asarray(x, dtype=self.weight.data.dtype))

    def forward(self, x):
        return F.linear(self._input(x), self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


def _activation_module(row):
    """Build the nn class of one activation row of :mod:`pydl.ops`."""
    names = tuple(p.name for p in row.params)

    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        values = row.check(row.module, row.resolve(row.module, args, kwargs))
        for name, value in zip(names, values):
            setattr(self, name, value)

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        return ActivationOp(row, tuple(getattr(self, n) for n in names))(x)

    def extra_repr(self):
        return ", ".join(f"{n}={getattr(self, n)!r}" for n in names)

    __init__.__signature__ = signature(row, "self")
    args = "".join(f"\n        {p.name}: Default {p.default!r}." for p in row.params)
    doc = f"Apply {row.summary}." + (f"\n\n    Args:{args}\n    " if args else "")
    return type(row.module, (Module,), {
        "__init__": __init__, "forward": forward, "extra_repr": extra_repr, "__doc__": doc,
        "__module__": __name__, "activation": row})


for _row in ACTIVATIONS:
    globals()[_row.module] = _activation_module(_row)
del _row


class Dropout(Module):
    """Zero each element with probability ``p`` in training and scale the rest by ``1/(1-p)``.

    ``p`` is the probability of DROPPING a unit. In eval mode (``model.eval()``) the layer is the
    identity. Masks come from ``pydl.random`` (reproducible with ``pydl.manual_seed``).

    Args:
        p: Drop probability, in [0, 1). Default 0.5.

    Raises:
        TypeError: p is not a real number.
        ValueError: p outside [0, 1) or NaN.
    """

    def __init__(self, p=0.5):
        super().__init__()
        self.p = _validation.drop_probability(p, "Dropout")

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Sequential(Module):
    """Chain layers: ``Sequential(a, b, c)(x) == c(b(a(x)))``.

    Layers are registered under ``"0"``, ``"1"``, ... (or the names of an OrderedDict passed as
    the only argument), which gives PyTorch's ``state_dict`` keys. ``len``, iteration,
    ``model[i]`` (by position, negative allowed) and ``model[a:b]`` (a new Sequential sharing the
    same layer objects and keeping their names) work as in PyTorch.

    Args:
        *layers: Modules, or one OrderedDict of name -> Module.

    Raises:
        TypeError: a layer is not a Module.

    Example:
        >>> model = pydl.nn.Sequential(pydl.nn.Linear(2, 16), pydl.nn.ReLU(),
        ...                            pydl.nn.Dropout(0.2), pydl.nn.Linear(16, 2))
        >>> model[:2]      # the first Linear and ReLU, same objects
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], OrderedDict):
            items = list(layers[0].items())
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        for name, layer in items:
            self._add(name, layer)

    def _add(self, name, layer):
        if not isinstance(layer, Module):
            raise TypeError(f"Sequential: layer {name!r} must be a pydl.nn.Module, got "
                            f"{type(layer).__name__}")
        setattr(self, name, layer)

    def append(self, layer):
        """Add a layer at the end (named ``str(len(self))``); return self."""
        self._add(str(len(self)), layer)
        return self

    def forward(self, x):
        for layer in self._modules.values():
            if layer is not None:
                x = layer(x)
        return x

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        try:
            return items[index][1]
        except IndexError:
            raise IndexError(f"Sequential index {index} is out of range for {len(items)} "
                             f"layers") from None
        except TypeError:
            raise TypeError(f"Sequential indices must be ints or slices, got "
                            f"{type(index).__name__}") from None


def _register_submodule(name, module):
    """Expose ``module`` as ``pydl.nn.<name>`` (attribute and importable submodule)."""
    sys.modules[f"{__name__}.{name}"] = module
    return module


init = _register_submodule("init", importlib.import_module("._nn_init", __package__))
utils = _register_submodule("utils", importlib.import_module("._nn_utils", __package__))


# Convolution, pooling, normalisation, embedding and containers live in pydl/layers.py.
from .layers import *  # noqa: E402,F401,F403
from .layers import __all__ as _layer_names  # noqa: E402

__all__ += _layer_names
