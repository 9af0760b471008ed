"""The activation table: every activation of pydl is ONE row here.

A row names the activation's kernels, parameters (with defaults and checks), whether and how it
fuses into the GEMM epilogue of ``kernels.linear``, the layer name ``save_model``/``load_model``
use, and its ONNX mapping. Everything else is derived from the table:

- ``pydl.nn``: one Module class per row (``nn.ReLU``, ``nn.LeakyReLU(negative_slope=0.01)``, ...);
- ``pydl.functional``: one function per row (``F.relu(x)``, ``F.elu(x, alpha=1.0)``, ...);
- ``pydl.Tensor``: one method per row (``x.relu()``, ``x.softmax(axis=-1)``, ...);
- the engine's Linear + activation fusion (:mod:`pydl.engine`), from :attr:`Activation.epilogue`;
- ``pydl.io``'s layer types, from :attr:`Activation.module` and the parameter names.

Adding an activation = its C++ kernel pair (``<name>`` / ``<name>_backward`` in
:mod:`pydl.kernels`) + one row in :data:`ACTIVATIONS`.
"""

import inspect
from dataclasses import dataclass, field

from . import _validation, kernels
from .tensor import Op, Tensor

__all__ = ["Activation", "ActivationOp", "Param", "ACTIVATIONS", "by_name"]


def _nonnegative(who, name, value):
    return _validation.real(value, name, who, low=0.0)


def _axis(who, name, value):
    return _validation.integer(value, name, who)


def _choice(*options):
    def check(who, name, value):
        return _validation.choice(value, name, who, options)
    return check


@dataclass(frozen=True)
class Param:
    """One parameter of an activation: its name, default and check (who, name, value) -> value."""

    name: str
    default: object
    check: object


@dataclass(frozen=True)
class Activation:
    """One activation: kernels, parameters, fusion, file name and ONNX mapping.

    Attributes:
        name: The function / Tensor-method name (``"leaky_relu"``).
        module: The ``nn`` class name, also the layer type in saved model files (``"LeakyReLU"``).
        forward: ``kernel(x, *params, out=None) -> y``.
        backward: ``kernel(dy, saved, *params, out=None) -> dx``; ``saved`` is y (the output) or
            x (the input) as :attr:`saves` says.
        params: The parameters, in positional order.
        saves: ``"y"`` or ``"x"``: what the backward kernel reads besides dy.
        epilogue: None (not fusable), or ``fn(*params) -> (activation, kwargs)`` giving the
            ``kernels.linear(..., activation, **kwargs)`` arguments of the fused GEMM epilogue.
        onnx: ``(op_type, {attribute: parameter name or constant})``: the ONNX node computing it;
            for an activation without its own ONNX op, a tuple of such nodes whose results
            combine with the input (SiLU: ``Mul(x, Sigmoid(x))``).
        summary: The one-line description used in every derived docstring.
    """

    name: str
    module: str
    forward: object
    backward: object
    summary: str
    params: tuple = ()
    saves: str = "y"
    epilogue: object = None
    onnx: tuple = field(default=None)

    def check(self, who, values):
        """Return the parameter values checked and normalised (who names the caller)."""
        return tuple(p.check(who, p.name, v) for p, v in zip(self.params, values))

    def resolve(self, who, args, kwargs):
        """Bind positional/keyword arguments to the parameters, with defaults (like Python)."""
        params = self.params
        if len(args) > len(params):
            raise TypeError(f"{who} takes {len(params)} parameter(s) after the input, got "
                            f"{len(args)}")
        values = list(args) + [p.default for p in params[len(args):]]
        if kwargs:
            names = [p.name for p in params]
            for k, v in kwargs.items():
                if k not in names:
                    raise TypeError(f"{who} got an unexpected keyword argument {k!r}")
                i = names.index(k)
                if i < len(args):
                    raise TypeError(f"{who} got multiple values for argument {k!r}")
                values[i] = v
        return tuple(values)

    def __call__(self, x, *params):
        """Apply the activation to the Tensor x with the given (checked) parameter values."""
        return ActivationOp(self, params)(x)

    def __reduce__(self):
        # A row holds kernels and lambdas: pickle it (e.g. inside a pickled model or Trainer) by
        # name, and unpickle to the same row of this table.
        return (_row_by_name, (self.name,))


def _row_by_name(name):
    return by_name[name]


class ActivationOp(Op):
    """The op of one activation row: its forward kernel, and backward from the saved x or y."""

    native = True
    native_backward = True
    y = None
    dx = None

    def __init__(self, row, params):
        self.row = row
        self.params = params

    def forward(self, x):
        row = self.row
        self.y = row.forward(x, *self.params, out=self.y)
        self.saved = self.y if row.saves == "y" else x
        return self.y

    def backward(self, g):
        self.dx = self.row.backward(g, self.saved, *self.params, out=self.dx)
        return (self.dx,)

    def __repr__(self):
        return f"ActivationOp({self.row.name}, {self.params})"


ACTIVATIONS = (
    Activation("relu", "ReLU", kernels.relu, kernels.relu_backward,
               "max(x, 0) elementwise (gradient 0 at 0, as PyTorch)",
               epilogue=lambda: ("relu", {}), onnx=("Relu", {})),
    Activation("leaky_relu", "LeakyReLU", kernels.leaky_relu, kernels.leaky_relu_backward,
               "x where x > 0, else negative_slope * x",
               params=(Param("negative_slope", 0.01, _nonnegative),),
               epilogue=lambda s: ("leaky_relu", {"negative_slope": s}),
               onnx=("LeakyRelu", {"alpha": "negative_slope"})),
    Activation("elu", "ELU", kernels.elu, kernels.elu_backward,
               "x where x > 0, else alpha * (exp(x) - 1)",
               params=(Param("alpha", 1.0, _nonnegative),),
               epilogue=lambda a: ("elu", {"alpha": a}), onnx=("Elu", {"alpha": "alpha"})),
    Activation("sigmoid", "Sigmoid", kernels.sigmoid, kernels.sigmoid_backward,
               "1 / (1 + exp(-x)) elementwise",
               epilogue=lambda: ("sigmoid", {}), onnx=("Sigmoid", {})),
    Activation("tanh", "Tanh", kernels.tanh, kernels.tanh_backward, "tanh(x) elementwise",
               epilogue=lambda: ("tanh", {}), onnx=("Tanh", {})),
    Activation("gelu", "GELU", kernels.gelu, kernels.gelu_backward,
               "the Gaussian error linear unit x * Phi(x) (approximate='tanh': PyTorch's tanh "
               "form)",
               params=(Param("approximate", "none", _choice("none", "tanh")),), saves="x",
               epilogue=lambda a: ("gelu" if a == "none" else "gelu_tanh", {}),
               onnx=("Gelu", {"approximate": "approximate"})),
    Activation("silu", "SiLU", kernels.silu, kernels.silu_backward,
               "x * sigmoid(x) elementwise (also called swish)", saves="x",
               epilogue=lambda: ("silu", {}), onnx=(("Sigmoid", {}), ("Mul", {}))),
    Activation("softmax", "Softmax", kernels.softmax, kernels.softmax_backward,
               "exp(x) / sum(exp(x)) along axis, computed stably",
               params=(Param("axis", -1, _axis),), onnx=("Softmax", {"axis": "axis"})),
    Activation("log_softmax", "LogSoftmax", kernels.log_softmax, kernels.log_softmax_backward,
               "x - logsumexp(x) along axis, computed stably",
               params=(Param("axis", -1, _axis),), onnx=("LogSoftmax", {"axis": "axis"})),
)

by_name = {row.name: row for row in ACTIVATIONS}


# --- derived: Tensor methods ---------------------------------------------------------------------
def signature(row, *leading):
    """Return the inspect.Signature ``(*leading, <params with defaults>)`` of a derived callable."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(n, kind) for n in leading]
                             + [inspect.Parameter(p.name, kind, default=p.default)
                                for p in row.params])


def _method(row):
    def method(self, *args, **kwargs):
        return ActivationOp(row, row.resolve(row.name, args, kwargs))(self)

    sig = ", ".join(f"{p.name}={p.default!r}" for p in row.params)
    method.__name__ = method.__qualname__ = row.name
    method.__signature__ = signature(row, "self")
    method.__doc__ = f"Return {row.summary}" + (f" (parameters: {sig})." if sig else ".")
    return method


for _row in ACTIVATIONS:
    setattr(Tensor, _row.name, _method(_row))
del _row
