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

import math
from collections import OrderedDict, namedtuple

import numpy as np

from . import functional as F
from . import random as _random
from . import _inference
from .ops import ACTIVATIONS, ActivationOp, signature
from .tensor import Tensor, _grad_mode, _tape

__all__ = ["Dropout", "Linear", "Module", "Parameter", "Sequential"] + \
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


# Bumped by every Module attribute assignment or deletion: part of the engine's replay key, so a
# replaced layer or a changed hyper-parameter (e.g. Dropout.p) records the step anew.
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
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        global _structure_version
        _structure_version += 1
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called "
                                 f"(call super().__init__() first in {type(self).__name__})")
        modules = self._modules
        if isinstance(value, Parameter):
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
        elif len(args) == 1 and not kwargs and not _grad_mode.enabled and _tape.recorder is None:
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
        """Yield this module and every module below it."""
        for _, m in self.named_modules():
            yield m

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
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
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

    # --- state ----------------------------------------------------------------------------
    def state_dict(self):
        """Return an OrderedDict from dotted parameter name to a copy of its array.

        Frozen parameters are included; keys and layouts are PyTorch's.
        """
        return OrderedDict((name, p.data.copy()) for name, p in self._named_parameter_entries())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters after validating ALL of them first.

        Values are cast to each parameter's dtype (float64 -> float32 is allowed; complex,
        strings or objects are not) and copied in place, so optimizers keep working.

        Args:
            state_dict: A mapping from dotted name to numpy array (or Tensor), e.g. from
                ``state_dict()`` or ``{k: v.numpy() for k, v in torch_model.state_dict().items()}``.
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
        own = OrderedDict(self._named_parameter_entries())
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
        for name, p in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if isinstance(value, Tensor):
                value = value.data
            if not isinstance(value, np.ndarray):
                raise ValueError(f"load_state_dict: {name!r} must be a numpy array, got "
                                 f"{type(value).__name__}")
            if value.shape != p.data.shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {value.shape}, the model "
                                 f"expects {p.data.shape}")
            if value.dtype.kind not in "biuf" or not np.can_cast(value.dtype, p.data.dtype,
                                                                  casting="same_kind"):
                raise ValueError(f"load_state_dict: {name!r} has dtype {value.dtype}, which "
                                 f"cannot be cast to the parameter's {p.data.dtype}")
            updates.append((p, value))
        for p, value in updates:
            np.copyto(p.data, value, casting="same_kind")
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
        ValueError: p outside [0, 1) or NaN.
    """

    def __init__(self, p=0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.number)):
            raise ValueError(f"Dropout: p must be a float in [0, 1), got {p!r}")
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p (the drop probability) must be in [0, 1), got {p}")
        self.p = p

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
