"""Export models to ONNX (``pip install "pydl[onnx]"`` brings the ``onnx`` package).

:func:`export` runs the model once on a sample input of the given shape, in eval mode and
without a graph, while the engine (:mod:`pydl.engine`) records every op it runs - so any Module
exports, custom ``forward`` methods included - and writes each recorded op as ONNX nodes, with
the parameters as initializers named by their ``state_dict`` keys. The file passes
``onnx.checker`` and runs in onnxruntime (or any ONNX runtime) with a dynamic batch dimension.

How pydl ops become ONNX nodes (eval semantics):

=============================  =====================================================
pydl                           ONNX
=============================  =====================================================
Linear / F.linear              ``Gemm`` (transB=1); inputs of rank > 2 are merged to
                               2-D and split again with ``Reshape``, as pydl does
activations (pydl.ops)         the node(s) in the row's ``onnx`` field: ``Relu``,
                               ``LeakyRelu``, ``Elu``, ``Sigmoid``, ``Tanh``,
                               ``Gelu`` (opset >= 20; before, built from ``Erf``
                               or ``Tanh``), SiLU as ``Mul(x, Sigmoid(x))``,
                               ``Softmax``, ``LogSoftmax``
Dropout                        removed (the identity in eval mode)
``+ - * / @ **``, unary ``-``  ``Add Sub Mul Div MatMul Pow Neg``
exp, log, sum, mean            ``Exp``, ``Log``, ``ReduceSum`` (mean: ``ReduceSum``
                               times a constant)
reshape                        ``Reshape`` with the batch in the leading dimension
=============================  =====================================================

A Linear followed by an activation is a ``Gemm`` followed by the activation node (ONNX has no
fused form; runtimes fuse them themselves). Ops without a mapping (indexing, transposes, ops
defined with ``Tensor._make``) raise :class:`UnsupportedOpError` naming the op. Numbers and
Parameters used in a forward become constants; an array made inside ``forward`` (e.g. from
``x.data``) cannot be traced, as it cannot be replayed.
"""

import errno
import os
from collections import namedtuple

import numpy as np

from . import nn
from .io import atomic_write
from .tensor import Tensor, no_grad

__all__ = ["export", "UnsupportedOpError", "DEFAULT_OPSET", "MIN_OPSET"]

#: The opset written when ``export(..., opset=None)``: supported by onnxruntime >= 1.14 and by
#: every op pydl maps (LayerNormalization, the newest, entered ONNX in opset 17).
DEFAULT_OPSET = 17
#: The oldest opset accepted: 13 gave Softmax its single-axis semantics (pydl's and PyTorch's).
MIN_OPSET = 13
_BATCH = "batch"


class UnsupportedOpError(ValueError):
    """The model uses an op or layer that has no ONNX mapping; the message names it."""


def _require_onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError('pydl.onnx.export needs the onnx package: pip install "pydl[onnx]" '
                          '(or pip install "onnx>=1.15")') from e
    return onnx


# --- the graph under construction -----------------------------------------------------------

Value = namedtuple("Value", ["name", "shape"])
Value.__doc__ = """A tensor of the ONNX graph: its name and the shape pydl gave it in the trace."""


class GraphBuilder:
    """Collect ONNX nodes and initializers with unique names, for one opset and float dtype.

    Op mappings (``(builder, inputs, out_shape, **params) -> output name``) call :meth:`node`
    for each ONNX node they emit and :meth:`initializer` for each constant.

    Args:
        opset: The ONNX opset the nodes must be valid in.
        dtype: The model's float dtype (float32 or float64).
    """

    def __init__(self, opset, dtype):
        from onnx import helper
        self.opset = opset
        self.dtype = np.dtype(dtype)
        self.elem_type = helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes = []
        self.initializers = []
        self._used = set()
        self._constants = {}

    def fresh(self, hint):
        """Return an unused value name based on ``hint``."""
        name, i = hint, 1
        while name in self._used:
            i += 1
            name = f"{hint}_{i}"
        self._used.add(name)
        return name

    def initializer(self, array, hint):
        """Store ``array`` (in the model's dtype) as a constant; return its name.

        The same array object passed twice (a shared parameter) is stored once.
        """
        from onnx import numpy_helper
        key = id(array)
        if key in self._constants and self._constants[key][0] is array:
            return self._constants[key][1]
        name = self.fresh(hint)
        data = np.ascontiguousarray(array, dtype=self.dtype)
        self.initializers.append(numpy_helper.from_array(data, name))
        self._constants[key] = (array, name)
        return name

    def int64_initializer(self, values, hint):
        """Store a 1-D int64 constant (shapes, axes); return its name."""
        from onnx import numpy_helper
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def node(self, op_type, inputs, hint=None, **attributes):
        """Append one node with a single output; return the output's name."""
        from onnx import helper
        out = self.fresh(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out],
                                           name=self.fresh(f"{op_type}_node"), **attributes))
        return out

    def finish(self, x, y, input_elem_type=None):
        """Return the checked ``ModelProto`` with graph input ``x`` and output ``y`` (Values).

        The first dimension of both is the dynamic dimension ``"batch"``; ``input_elem_type``
        (an ONNX TensorProto type) defaults to the model's float type.
        """
        import onnx
        from onnx import helper
        if y.name == x.name:  # e.g. only Dropout: the graph still needs a node
            y = Value(self.node("Identity", [x.name], "output"), y.shape)
        graph = helper.make_graph(
            self.nodes, "pydl_model",
            [helper.make_tensor_value_info(x.name, input_elem_type or self.elem_type,
                                           [_BATCH, *x.shape[1:]])],
            [helper.make_tensor_value_info(y.name, self.elem_type, [_BATCH, *y.shape[1:]])],
            initializer=self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        proto = helper.make_model(graph, opset_imports=opsets, producer_name="pydl",
                                  ir_version=helper.find_min_ir_version_for(opsets))
        onnx.checker.check_model(proto, full_check=True)
        return proto


# --- op mappings ----------------------------------------------------------------------------
# Each mapping turns one pydl op into ONNX nodes: (builder, inputs, out_shape, **params) -> name.
# ``inputs`` are Values; params are the op's parameters, arrays included.

def _linear(b, x, w, bias, name="linear"):
    """``x @ w.T + bias`` for Values x (2-D), w (out, in) and bias (or None): one Gemm."""
    return b.node("Gemm", [x.name, w.name] + ([bias.name] if bias else []), name, transB=1)


def _activation(b, row, params, x):
    """Emit the ONNX node(s) of the activation row ``row`` (``pydl.ops``) applied to the name x.

    ``row.onnx`` is one ``(op_type, attributes)`` node, or a tuple of them: the first applied to
    x, each later one combining x with the result so far (SiLU: ``Mul(x, Sigmoid(x))``).
    Attribute values naming a parameter take that parameter's value.
    """
    if row.onnx is None:
        raise UnsupportedOpError(f"export: the activation {row.name} has no ONNX mapping in "
                                 f"pydl.ops")
    values = {p.name: v for p, v in zip(row.params, params)}
    nodes = row.onnx if isinstance(row.onnx[0], tuple) else (row.onnx,)
    y = None
    for op_type, attributes in nodes:
        attrs = {k: values.get(v, v) if isinstance(v, str) else v for k, v in attributes.items()}
        inputs = [x] if y is None else [x, y]
        if op_type == "Gelu" and b.opset < 20:
            y = _gelu_before_opset_20(b, x, attrs.get("approximate", "none"))
        else:
            y = b.node(op_type, inputs, row.name, **attrs)
    return y


def _gelu_before_opset_20(b, x, approximate):
    """GELU from older operators: x/2 * (1 + erf(x/sqrt 2)), or PyTorch's tanh form."""
    def const(v):
        return b.initializer(np.asarray(v), "gelu_const")

    if approximate == "tanh":
        cube = b.node("Mul", [b.node("Mul", [x, x], "gelu"), x], "gelu")
        inner = b.node("Add", [x, b.node("Mul", [cube, const(0.044715)], "gelu")], "gelu")
        t = b.node("Tanh", [b.node("Mul", [inner, const(np.sqrt(2.0 / np.pi))], "gelu")], "gelu")
    else:
        t = b.node("Erf", [b.node("Mul", [x, const(1.0 / np.sqrt(2.0))], "gelu")], "gelu")
    half_x = b.node("Mul", [x, const(0.5)], "gelu")
    return b.node("Mul", [half_x, b.node("Add", [t, const(1.0)], "gelu")], "gelu")


def _spatial(value, n, what):
    """``value`` (an int or a tuple of n ints) as a list of n ints."""
    t = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(t) != n:
        raise ValueError(f"export: {what} {value!r} must have {n} entries")
    return [int(v) for v in t]


def _conv(b, inputs, out_shape, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
          name="conv"):
    (x,) = inputs
    n = weight.ndim - 2
    kernel = list(weight.shape[2:])
    dilation = _spatial(dilation, n, "dilation")
    if padding == "valid":
        pads = [0] * (2 * n)
    elif padding == "same":  # PyTorch puts the odd extra pad at the end, as SAME_UPPER does
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        pads = [t // 2 for t in total] + [t - t // 2 for t in total]
    else:
        pads = _spatial(padding, n, "padding") * 2  # ONNX: all begins, then all ends
    args = [x.name, b.initializer(weight, f"{name}.weight")]
    if bias is not None:
        args.append(b.initializer(bias, f"{name}.bias"))
    return b.node("Conv", args, name, kernel_shape=kernel, strides=_spatial(stride, n, "stride"),
                  pads=pads, dilations=dilation, group=int(groups))


def _pool(op_type, **fixed):
    def mapping(b, inputs, out_shape, kernel_size, stride=None, padding=0):
        n = len(inputs[0].shape) - 2
        kernel = _spatial(kernel_size, n, "kernel_size")
        strides = kernel if stride is None else _spatial(stride, n, "stride")
        return b.node(op_type, [inputs[0].name], kernel_shape=kernel, strides=strides,
                      pads=_spatial(padding, n, "padding") * 2, **fixed)
    return mapping


def _adaptive_avg_pool(b, inputs, out_shape, output_size=None):
    (x,) = inputs
    sizes, outs = list(x.shape[2:]), list(out_shape[2:])
    if all(o == 1 for o in outs):
        return b.node("GlobalAveragePool", [x.name], "adaptive_avg_pool")
    if any(i % o for i, o in zip(sizes, outs)):
        raise UnsupportedOpError(
            f"export: adaptive average pooling from {tuple(sizes)} to {tuple(outs)} has windows "
            f"of different sizes, which no ONNX operator expresses; choose an output size that "
            f"divides the input size")
    kernel = [i // o for i, o in zip(sizes, outs)]
    return b.node("AveragePool", [x.name], "adaptive_avg_pool", kernel_shape=kernel,
                  strides=kernel)


def _batch_norm(b, inputs, out_shape, running_mean, running_var, weight=None, bias=None,
                eps=1e-5, name="batch_norm"):
    c = running_mean.shape[0]
    scale = np.ones(c) if weight is None else weight
    shift = np.zeros(c) if bias is None else bias
    return b.node("BatchNormalization",
                  [inputs[0].name, b.initializer(scale, f"{name}.weight"),
                   b.initializer(shift, f"{name}.bias"),
                   b.initializer(running_mean, f"{name}.running_mean"),
                   b.initializer(running_var, f"{name}.running_var")], name, epsilon=float(eps))


def _layer_norm(b, inputs, out_shape, normalized_shape, weight=None, bias=None, eps=1e-5,
                name="layer_norm"):
    if b.opset < 17:
        raise UnsupportedOpError(f"export: LayerNorm needs opset 17 or newer (ONNX's "
                                 f"LayerNormalization), the export asked for opset {b.opset}")
    shape = tuple(normalized_shape)
    scale = np.ones(shape) if weight is None else weight
    args = [inputs[0].name, b.initializer(scale, f"{name}.weight")]
    if bias is not None:
        args.append(b.initializer(bias, f"{name}.bias"))
    return b.node("LayerNormalization", args, name, axis=-len(shape), epsilon=float(eps))


def _flatten(b, inputs, out_shape, start_dim=1, end_dim=-1):
    (x,) = inputs
    rank = len(x.shape)
    start, end = start_dim % rank, end_dim % rank
    if start == 0:
        raise UnsupportedOpError("export: Flatten with start_dim=0 merges the batch dimension, "
                                 "which the exported model keeps dynamic; use start_dim >= 1")
    if start == 1 and end == rank - 1:
        return b.node("Flatten", [x.name], "flatten", axis=1)
    # Reshape: 0 copies a dimension (the dynamic batch one among them), -1 is the merged one.
    target = [0] * start + [-1] + list(x.shape[end + 1:])
    return b.node("Reshape", [x.name, b.int64_initializer(target, "flatten_shape")], "flatten")


def _embedding(b, inputs, out_shape, weight, name="embedding"):
    return b.node("Gather", [b.initializer(weight, f"{name}.weight"), inputs[0].name], name,
                  axis=0)


_MAPPINGS = {
    "conv": _conv,
    "max_pool": _pool("MaxPool"),
    "avg_pool": _pool("AveragePool", count_include_pad=1),  # PyTorch's default
    "adaptive_avg_pool": _adaptive_avg_pool,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "flatten": _flatten,
    "embedding": _embedding,
}


# --- the front end: the ops the engine records while the model runs ---------------------------
# One function per recorded op class: (builder, op, operand Values (None for None), output shape)
# -> output name. Activations come from their row's ``onnx`` field in pydl.ops.

def _binary(op_type):
    def mapping(b, op, ins, out_shape):
        return b.node(op_type, [ins[0].name, ins[1].name])
    return mapping


def _unary(op_type):
    def mapping(b, op, ins, out_shape):
        return b.node(op_type, [ins[0].name])
    return mapping


def _linear_op(b, op, ins, out_shape):
    x, w, bias = ins
    y = _linear(b, x, w, bias, w.name.rpartition(".")[0] or "linear")
    return y if op.act is None else _activation(b, op.act, op.params, y)


def _activation_op(b, op, ins, out_shape):
    return _activation(b, op.row, op.params, ins[0].name)


def _pow_op(b, op, ins, out_shape):
    return b.node("Pow", [ins[0].name, b.initializer(np.asarray(op.p), "exponent")])


def _sum_op(b, op, ins, out_shape):
    x = ins[0]
    axes = range(len(x.shape)) if op.axis is None else (
        op.axis if isinstance(op.axis, tuple) else (op.axis,))
    if any(a % len(x.shape) == 0 for a in axes):
        # A sum (or mean: a sum times 1 / the traced count) over the samples would bake the
        # traced batch into the file, whose batch dimension is dynamic.
        raise UnsupportedOpError("export: a sum or mean over the batch axis (axis 0 or all "
                                 "axes) mixes samples; only per-sample reductions export")
    return b.node("ReduceSum", [x.name, b.int64_initializer(list(axes), "axes")],
                  keepdims=int(bool(op.keepdims)))


def _reshape_op(b, op, ins, out_shape):
    # The batch dimension (dynamic in the file) must end up in the leading dimension, as it does
    # when leading dimensions are merged or split: that one becomes -1.
    if not out_shape:
        raise UnsupportedOpError("export: a reshape to a scalar drops the batch dimension")
    target = [-1] + list(out_shape[1:])
    return b.node("Reshape", [ins[0].name, b.int64_initializer(target, "shape")], "reshape")


def _identity_op(b, op, ins, out_shape):
    return ins[0].name  # e.g. dropout called with training=True: eval semantics


def _op_mappings():
    from .functional import DropoutOp, LinearOp
    from .ops import ActivationOp
    from .tensor import (_Add, _Div, _Exp, _Log, _MatMul, _MatMul2d, _Mul, _Neg, _Pow,
                         _Reshape, _Sub, _Sum)
    return {
        LinearOp: _linear_op, ActivationOp: _activation_op, DropoutOp: _identity_op,
        _Add: _binary("Add"), _Sub: _binary("Sub"), _Mul: _binary("Mul"), _Div: _binary("Div"),
        _MatMul2d: _binary("MatMul"), _MatMul: _binary("MatMul"), _Neg: _unary("Neg"),
        _Exp: _unary("Exp"), _Log: _unary("Log"), _Pow: _pow_op, _Sum: _sum_op,
        _Reshape: _reshape_op, **_layer_op_mappings(),
    }


def _layer_op_mappings():
    """The layer ops of pydl.layers, each through its _MAPPINGS entry (arrays from the op)."""
    from .layers import (AdaptiveAvgPoolOp, AvgPoolOp, BatchNormOp, ConvOp, EmbeddingOp,
                         LayerNormOp, MaxPoolOp)

    def data(o):  # an operand's array; the builder stores each array object once
        return None if o is None else (o.data if isinstance(o, Tensor) else np.asarray(o))

    def conv(b, op, ins, out_shape):
        _, w, bias = op.inputs
        return _MAPPINGS["conv"](b, ins[:1], out_shape, data(w), data(bias), **op.geom)

    def pool(kind):
        return lambda b, op, ins, out_shape: _MAPPINGS[kind](b, ins[:1], out_shape, *op.args)

    def adaptive(b, op, ins, out_shape):
        return _MAPPINGS["adaptive_avg_pool"](b, ins[:1], out_shape, op.output_size)

    def batch_norm(b, op, ins, out_shape):
        if op.rm is None:
            raise UnsupportedOpError("export: a BatchNorm with track_running_stats=False "
                                     "normalises with each batch's statistics, also in eval mode "
                                     "(it mixes samples); give it running statistics to export")
        _, w, bias = op.inputs
        return _MAPPINGS["batch_norm"](b, ins[:1], out_shape, op.rm, op.rv, data(w), data(bias),
                                       op.eps)

    def layer_norm(b, op, ins, out_shape):
        x, w, bias = op.inputs
        shape = x.shape[len(x.shape) - op.param_dims:]
        return _MAPPINGS["layer_norm"](b, ins[:1], out_shape, shape, data(w), data(bias), op.eps)

    def embedding(b, op, ins, out_shape):
        return _MAPPINGS["embedding"](b, ins[:1], out_shape, data(op.inputs[1]))

    return {ConvOp: conv, MaxPoolOp: pool("max_pool"), AvgPoolOp: pool("avg_pool"),
            AdaptiveAvgPoolOp: adaptive, BatchNormOp: batch_norm, LayerNormOp: layer_norm,
            EmbeddingOp: embedding}


def _op_name(op):
    name = type(op).__name__.lstrip("_")
    return f"{name} (indexing)" if name == "GetItem" else name


def _record(model, x):
    """Run ``model`` on the array x under the engine's recorder; return (recorder, in, out)."""
    from .engine import _Compiled
    xt = x if x.dtype.kind == "i" else Tensor(x)  # indices reach an Embedding as the array
    rec = _Compiled._record_begin([x])
    try:
        out = model(xt)
    finally:
        _Compiled._record_end()
    if not isinstance(out, Tensor):
        raise UnsupportedOpError(f"export: the model returned a {type(out).__name__}; a single "
                                 f"Tensor output is needed")
    for op, _ in rec.entries:
        for o in op.inputs:
            rec.check_operand(o)
    if rec.problem is not None:
        raise UnsupportedOpError(f"export: the model's forward cannot be traced: {rec.problem}")
    return rec, xt, out


def _emit(model, rec, xt, out, x_value, b):
    """Turn the recorded ops into ONNX nodes; return the output Value."""
    mappings = _op_mappings()
    names = {id(xt): x_value.name}
    param_names = {id(p): name for name, p in model.named_parameters()}

    def operand(o):
        if o is None:
            return None
        if o is xt:
            return Value(x_value.name, x_value.shape)
        if isinstance(o, Tensor):
            if id(o) in names:
                return Value(names[id(o)], o.shape)
            return Value(b.initializer(o.data, param_names.get(id(o), "constant")), o.shape)
        arr = np.asarray(o)
        return Value(b.initializer(arr, "constant"), arr.shape)

    for op, t in rec.entries:
        mapping = mappings.get(type(op))
        if mapping is None:
            known = ", ".join(sorted(k.__name__.lstrip("_") for k in mappings))
            raise UnsupportedOpError(f"export: the model uses the op {_op_name(op)}, which has "
                                     f"no ONNX mapping; mapped ops: {known}")
        names[id(t)] = mapping(b, op, [operand(o) for o in op.inputs], t.shape)
    if id(out) not in names:
        raise UnsupportedOpError("export: the model's output was not computed from its input")
    return Value(names[id(out)], out.shape)


def _first_layer(model):
    for module in model.modules():
        if not module._modules and type(module) is not nn.Sequential:
            return module
    return None


# --- export ---------------------------------------------------------------------------------

def _check_input_shape(model, input_shape):
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"export: input_shape must be a tuple such as (None, 64), got "
                        f"{input_shape!r}")
    shape = tuple(input_shape)
    first = _first_layer(model)
    if isinstance(first, nn.Linear):
        need, layout = 2, f"(batch, {first.in_features}) or more: (batch, ..., {first.in_features})"
    else:
        need, layout = 1, "(batch, ...)"
    if len(shape) < need:
        what = f"first layer is {type(first).__name__}" if first else "has no layers"
        raise ValueError(f"export: the model's {what}; it needs an input of rank {need} "
                         f"{layout}; input_shape {shape!r} has rank {len(shape)}")
    dims_ok = all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
                  for d in shape[1:])
    batch_ok = shape[0] is None or (isinstance(shape[0], (int, np.integer))
                                    and not isinstance(shape[0], bool) and shape[0] > 0)
    if not (dims_ok and batch_ok):
        raise ValueError(f"export: input_shape must be None (the batch dimension) followed by "
                         f"positive ints, e.g. (None, 64); got {input_shape!r}")
    return tuple(int(d) for d in shape[1:])


def _model_dtype(model):
    dtypes = {p.data.dtype for p in model.parameters()}
    if len(dtypes) > 1:
        raise ValueError(f"export: the model mixes parameter dtypes {sorted(map(str, dtypes))}; "
                         f"cast it to one with .float() or .double() first")
    return dtypes.pop() if dtypes else np.dtype(np.float32)


def _check_opset(onnx, opset):
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not (
            MIN_OPSET <= opset <= newest):
        raise ValueError(f"export: opset must be an int from {MIN_OPSET} to {newest} (the newest "
                         f"this onnx package knows), got {opset!r}")
    return int(opset)


def _check_path(path):
    path = os.fsdecode(os.fspath(path))  # (bytes paths as str, as pydl.save_model does)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"export: cannot write {path!r}: the directory "
                                f"{directory!r} does not exist", path)
    return path


def _build(model, input_shape, opset=None):
    """Return the ONNX ``ModelProto`` of ``model`` without writing it (see :func:`export`)."""
    onnx = _require_onnx()
    if not isinstance(model, nn.Module):
        raise TypeError(f"export: model must be a pydl.nn.Module, got {type(model).__name__}")
    opset = _check_opset(onnx, opset)
    sample_dims = _check_input_shape(model, input_shape)
    dtype = _model_dtype(model)
    b = GraphBuilder(opset, dtype)
    x_name = b.fresh("input")
    # Two samples, so that nothing in the trace can mistake the batch dimension for a singleton.
    rng = np.random.default_rng(0)
    # An Embedding anywhere reads the model's input itself (it takes index arrays, not Tensors
    # computed by other ops): the input holds indices, an int64 graph input.
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    input_elem_type = None
    if embeddings:
        from onnx import TensorProto
        rows = min(m.num_embeddings for m in embeddings)
        x = rng.integers(0, rows, (2,) + sample_dims, dtype=np.int64)
        input_elem_type = TensorProto.INT64
    else:
        x = rng.standard_normal((2,) + sample_dims).astype(dtype)
    modes = nn._modes_of(model)
    model.eval()
    try:
        with no_grad():
            try:
                rec, xt, y = _record(model, x)
            except UnsupportedOpError:
                raise
            except (ValueError, TypeError) as e:
                raise ValueError(f"export: the model cannot run on input_shape "
                                 f"{tuple(input_shape)!r}: {e}") from e
    finally:
        nn._restore_modes(modes)
    out = _emit(model, rec, xt, y, Value(x_name, x.shape), b)
    return b.finish(Value(x_name, x.shape), out, input_elem_type)


def export(model, path, input_shape, opset=None):
    """Write ``model`` to ``path`` as an ONNX file with a dynamic batch dimension.

    The model is traced once on a sample input in EVAL mode: Dropout is left out (and batch
    normalisation uses its running statistics). A model in training mode is exported with these
    eval semantics too, and is left in training mode afterwards. Parameters become initializers
    named by their ``state_dict`` keys (``"0.weight"``, ...); the graph's input is ``"input"``
    with shape ``("batch", *input_shape[1:])``, of the model's float type, or int64 when the
    model's first layer is an ``Embedding`` (its input is indices). The model passes ``onnx.checker`` (full check)
    before it is written; the file is written atomically (a temporary file renamed over
    ``path``).

    Args:
        model: A ``pydl.nn.Module`` built from exportable layers (see this module's table).
        path: The file to write (str or path-like), e.g. ``"model.onnx"``.
        input_shape: The input's shape with ``None`` for the batch dimension, e.g. ``(None, 64)``;
            a number there is accepted and exported as the dynamic batch dimension as well.
        opset: The ONNX opset, from ``MIN_OPSET`` (13) to the newest the installed onnx knows.
            Default None = ``DEFAULT_OPSET`` (17).

    Returns:
        The ``onnx.ModelProto`` that was written.

    Raises:
        ImportError: the onnx package is not installed.
        TypeError: model is not a Module, or input_shape is not a sequence.
        ValueError: input_shape has the wrong rank (the message names the rank the first layer
            needs) or sizes the model rejects, opset is out of range, or the parameters mix
            float32 and float64.
        UnsupportedOpError: (a ValueError) the model uses a layer or op without an ONNX mapping;
            the message names it.
        OSError: ``path`` cannot be written (e.g. its directory does not exist); the message
            names the path.

    Example:
        >>> model = pydl.nn.Sequential(pydl.nn.Linear(64, 32), pydl.nn.ReLU(),
        ...                            pydl.nn.Linear(32, 10))
        >>> pydl.onnx.export(model, "mlp.onnx", input_shape=(None, 64))
        >>> import onnxruntime
        >>> session = onnxruntime.InferenceSession("mlp.onnx")
        >>> session.run(None, {"input": x.astype(np.float32)})[0]    # == model(x) in eval mode
    """
    path = _check_path(path)
    proto = _build(model, input_shape, opset)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data), who="export")
    return proto
