"""Layers beyond the MLP: convolution, pooling, normalisation, embedding and containers.

Every layer here has PyTorch's name, arguments, defaults, parameter layouts and ``state_dict``
keys (``pydl.nn`` re-exports them), so ``model.load_state_dict(torch_model.state_dict())`` loads
a PyTorch model built from the same layers. Each computation is one op of the op protocol
(:class:`pydl.tensor.Op`: forward beside backward, re-runnable), backed by a C++ kernel pair of
:mod:`pydl.kernels`, so the engine replays these layers like any other.

Example:
    >>> net = pydl.nn.Sequential(
    ...     pydl.nn.Conv2d(1, 8, 3, padding=1), pydl.nn.BatchNorm2d(8), pydl.nn.ReLU(),
    ...     pydl.nn.MaxPool2d(2), pydl.nn.Flatten(), pydl.nn.Linear(8 * 4 * 4, 10))
    >>> net(np.zeros((5, 1, 8, 8), np.float32)).shape
    (5, 10)
"""

import math

import numpy as np

from . import kernels
from . import random as _random
from .nn import Module, Parameter, _float_dtype, _positive_int
from .tensor import Op, Tensor, leaf_grad_buffer, set_leaf_grad, writes_leaf_grad

__all__ = ["AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "BatchNorm1d",
           "BatchNorm2d", "Conv1d", "Conv2d", "Embedding", "Flatten", "Identity", "LayerNorm",
           "MaxPool1d", "MaxPool2d", "ModuleDict", "ModuleList"]


# --- argument checks -------------------------------------------------------------------------
def _tuple(who, name, value, nd, minimum):
    """An int or a tuple of nd ints (each >= minimum) as a tuple of nd Python ints."""
    items = value if isinstance(value, (tuple, list)) else (value,) * nd
    if len(items) != nd:
        raise ValueError(f"{who}: {name} must be an int or a tuple of {nd} ints, got {value!r}")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{who}: {name} must be an int or a tuple of {nd} ints, got "
                            f"{value!r}")
        if v < minimum:
            raise ValueError(f"{who}: {name} must be >= {minimum}, got {value!r}")
        out.append(int(v))
    return tuple(out)


def _as_input(x, like):
    """A Tensor operand: Tensors pass through; arrays become constants of the layer's dtype."""
    if isinstance(x, Tensor):
        return x
    return Tensor(np.asarray(x, dtype=like.dtype))


def _check_rank(who, x, ranks, layout):
    if x.ndim not in ranks:
        raise ValueError(f"{who}: expected input of shape {layout}, got shape {x.shape}")


def _param_grads(op, dx_dw_db, into):
    """An op's (dx, dw, db) from a kernel that wrote dw / db straight into their leaves' gradients
    where ``into`` says so (see writes_leaf_grad): those become the leaves' grads, None returned."""
    dx, dw, db = dx_dw_db
    _, w, b = op.inputs
    return (dx, set_leaf_grad(w, dw) if into[0] else dw, set_leaf_grad(b, db) if into[1] else db)


def _param_outs(op):
    """(into, dw_out, db_out) for a kernel computing an op's weight and bias gradients: whether each
    is written straight into its leaf's gradient, and the array to write it into (None: new)."""
    _, nw, nb = op.needs_grad
    _, w, b = op.inputs
    into = (nw and writes_leaf_grad(w), nb and writes_leaf_grad(b))
    return into, w._gbuf if into[0] else None, b._gbuf if into[1] else None


# --- convolution -----------------------------------------------------------------------------
class ConvOp(Op):
    """Convolution of x with w (+ b): operands x, w, b (or None).

    The backward writes dx into an array the op keeps and dw / db into the parameters' gradient
    buffers, so a replayed step runs it from C++ (``native_backward``)."""

    native = True
    native_backward = True
    dx = None

    def __init__(self, stride, padding, dilation, groups):
        self.geom = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def forward(self, x, w, b):
        self.x, self.w = x, w
        return kernels.conv_forward(x, w, b, **self.geom)

    def backward(self, g):
        nx, nw, nb = self.needs_grad
        into, dw_out, db_out = _param_outs(self)
        grads = kernels.conv_backward(g, self.x, self.w, need_input_grad=nx, need_weight_grad=nw,
                                      need_bias_grad=nb, dx_out=self.dx, dw_out=dw_out,
                                      db_out=db_out, **self.geom)
        self.dx = grads[0]
        return _param_grads(self, grads, into)


class _ConvNd(Module):
    _nd = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32):
        super().__init__()
        who = type(self).__name__
        nd = self._nd
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.groups = _positive_int("groups", groups)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{who}: groups={self.groups} must divide in_channels="
                             f"{self.in_channels} and out_channels={self.out_channels}")
        self.kernel_size = _tuple(who, "kernel_size", kernel_size, nd, 1)
        self.stride = _tuple(who, "stride", stride, nd, 1)
        self.dilation = _tuple(who, "dilation", dilation, nd, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{who}: padding must be an int, a tuple, 'valid' or 'same', "
                                 f"got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{who}: padding='same' is not supported for strided "
                                 f"convolutions (stride={self.stride})")
            self.padding = padding
        else:
            self.padding = _tuple(who, "padding", padding, nd, 0)
        dt = _float_dtype(dtype)
        fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)  # PyTorch's kaiming_uniform_(a=sqrt(5)) and bias init
        gen = _random.generator()
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(gen.uniform(-bound, bound, shape).astype(dt))
        self.bias = Parameter(gen.uniform(-bound, bound, self.out_channels).astype(dt)) \
            if bias else None

    def forward(self, x):
        x = _as_input(x, self.weight.data)
        who = type(self).__name__
        layout = "(N, C_in, L)" if self._nd == 1 else "(N, C_in, H, W)"
        _check_rank(who, x.data, (self._nd + 2,), layout.replace("C_in", f"{self.in_channels}"))
        if x.data.shape[1] != self.in_channels:
            raise ValueError(f"{who}: expected input of shape {layout} with C_in="
                             f"{self.in_channels}, got shape {x.data.shape}")
        op = ConvOp(self.stride, self.padding, self.dilation, self.groups)
        return op(x, self.weight, self.bias)

    def config(self):
        """Return the constructor arguments as JSON values (used by ``pydl.save_model``)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups,
                "bias": self.bias is not None, "dtype": self.weight.data.dtype.name}

    @staticmethod
    def weight_shape(config):
        """The weight shape a config describes (checked against a file before allocating)."""
        k = config["kernel_size"]
        k = list(k) if isinstance(k, (list, tuple)) else [k]
        return (config["out_channels"], config["in_channels"] // max(config["groups"], 1), *k)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding not in ((0,) * self._nd, "valid"):
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv1d(_ConvNd):
    """Apply a 1-d convolution over (N, C_in, L) inputs (PyTorch's Conv1d).

    Weight shape (out_channels, in_channels // groups, kernel_size); init as PyTorch
    (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, from pydl's seeded generator).

    Args:
        in_channels, out_channels: positive ints (both divisible by groups).
        kernel_size: int or 1-tuple. stride, dilation: default 1.
        padding: int, "valid" (= 0) or "same" (output length = input length; stride 1; an even
            kernel puts the extra zero at the end, as PyTorch). Default 0.
        groups: default 1. bias: default True. dtype: float32 (default) or float64.

    Raises:
        ValueError: bad sizes at construction; at call, an input that is not (N, C_in, L) - the
            message names expected and actual shapes - or a kernel larger than the padded input.
    """

    _nd = 1


class Conv2d(_ConvNd):
    """Apply a 2-d convolution over (N, C_in, H, W) inputs (PyTorch's Conv2d).

    Weight shape (out_channels, in_channels // groups, kH, kW). Arguments as :class:`Conv1d`,
    with int or 2-tuple kernel_size / stride / padding / dilation.

    Example:
        >>> pydl.nn.Conv2d(3, 8, 3, padding="same")(np.zeros((2, 3, 8, 8), np.float32)).shape
        (2, 8, 8, 8)
    """

    _nd = 2


# --- pooling ---------------------------------------------------------------------------------
class MaxPoolOp(Op):
    native = True
    dx = None

    @property
    def native_backward(self):
        # dx goes into an array the op keeps; the indices are the forward's: the same array on
        # every replay only when the forward was captured (a forward replayed from Python makes
        # new ones every step).
        return self.native

    def __init__(self, kernel_size, stride, padding):
        self.args = (kernel_size, stride, padding)

    def forward(self, x):
        self.shape = x.shape
        y, self.idx = kernels.max_pool_forward(x, *self.args)
        return y

    def backward(self, g):
        self.dx = kernels.max_pool_backward(g, self.idx, self.shape, out=self.dx)
        return (self.dx,)


class AvgPoolOp(Op):
    native = True
    native_backward = True
    dx = None

    def __init__(self, kernel_size, stride, padding):
        self.args = (kernel_size, stride, padding)

    def forward(self, x):
        self.shape = x.shape
        return kernels.avg_pool_forward(x, *self.args)

    def backward(self, g):
        self.dx = kernels.avg_pool_backward(g, self.shape, *self.args, out=self.dx)
        return (self.dx,)


class AdaptiveAvgPoolOp(Op):
    native = True
    native_backward = True
    dx = None

    def __init__(self, output_size):
        self.output_size = output_size

    def forward(self, x):
        self.shape = x.shape
        return kernels.adaptive_avg_pool_forward(x, self.output_size)

    def backward(self, g):
        self.dx = kernels.adaptive_avg_pool_backward(g, self.shape, out=self.dx)
        return (self.dx,)


class _PoolNd(Module):
    _nd = 0
    _op = None

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        who = type(self).__name__
        self.kernel_size = _tuple(who, "kernel_size", kernel_size, self._nd, 1)
        self.stride = self.kernel_size if stride is None else \
            _tuple(who, "stride", stride, self._nd, 1)
        self.padding = _tuple(who, "padding", padding, self._nd, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{who}: padding {self.padding} must be at most half of "
                             f"kernel_size {self.kernel_size}")

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        layout = "(N, C, L)" if self._nd == 1 else "(N, C, H, W)"
        _check_rank(type(self).__name__, x.data, (self._nd + 2,), layout)
        return type(self)._op(self.kernel_size, self.stride, self.padding)(x)

    def config(self):
        """Return the constructor arguments as JSON values (used by ``pydl.save_model``)."""
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding)}

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool1d(_PoolNd):
    """Take the maximum over sliding windows of (N, C, L) inputs (PyTorch's MaxPool1d).

    Args:
        kernel_size: window size. stride: default None (= kernel_size). padding: implicit -inf
            padding on both sides, at most kernel_size / 2. Default 0.
    """

    _nd = 1
    _op = MaxPoolOp


class MaxPool2d(_PoolNd):
    """Take the maximum over sliding windows of (N, C, H, W) inputs (PyTorch's MaxPool2d).

    Arguments as :class:`MaxPool1d`, int or 2-tuple each.
    """

    _nd = 2
    _op = MaxPoolOp


class AvgPool1d(_PoolNd):
    """Average over sliding windows of (N, C, L) inputs (PyTorch's AvgPool1d).

    Zero padding counts in the average (PyTorch's default ``count_include_pad=True``).

    Args:
        kernel_size: window size. stride: default None (= kernel_size). padding: zeros on both
            sides, at most kernel_size / 2. Default 0.
    """

    _nd = 1
    _op = AvgPoolOp


class AvgPool2d(_PoolNd):
    """Average over sliding windows of (N, C, H, W) inputs (PyTorch's AvgPool2d).

    Arguments as :class:`AvgPool1d`, int or 2-tuple each.
    """

    _nd = 2
    _op = AvgPoolOp


class _AdaptiveAvgPoolNd(Module):
    _nd = 0

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _tuple(type(self).__name__, "output_size", output_size, self._nd, 1)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        layout = "(N, C, L)" if self._nd == 1 else "(N, C, H, W)"
        _check_rank(type(self).__name__, x.data, (self._nd + 2,), layout)
        return AdaptiveAvgPoolOp(self.output_size)(x)

    def config(self):
        """Return the constructor arguments as JSON values (used by ``pydl.save_model``)."""
        return {"output_size": list(self.output_size)}

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average (N, C, L) inputs into ``output_size`` cells (PyTorch's AdaptiveAvgPool1d).

    Cell i averages inputs [floor(i * L / O), ceil((i + 1) * L / O)).

    Args:
        output_size: int >= 1.
    """

    _nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average (N, C, H, W) inputs into ``output_size`` cells (PyTorch's AdaptiveAvgPool2d).

    Args:
        output_size: int or 2-tuple of ints >= 1 (``AdaptiveAvgPool2d(1)`` is global average
            pooling).
    """

    _nd = 2


# --- normalisation ---------------------------------------------------------------------------
class BatchNormOp(Op):
    """Batch normalisation: operands x, weight (or None), bias (or None).

    The running statistics are attributes (arrays updated in place by the kernel on every run,
    also when the engine replays the op), not operands. The backward writes as ConvOp's does.
    """

    native = True
    dx = None

    @property
    def native_backward(self):
        return self.native  # reads the forward's mean / invstd (see MaxPoolOp)

    def __init__(self, use_batch_stats, momentum, eps, running_mean, running_var, counter):
        self.use_batch = use_batch_stats
        self.momentum = momentum
        self.eps = eps
        self.rm, self.rv, self.counter = running_mean, running_var, counter

    def forward(self, x, w, b):
        self.x, self.w = x, w
        # The kernel call advances the batch counter (and, for momentum=None, uses the
        # cumulative average 1 / count as PyTorch does), so a captured replay does too.
        y, self.mean, self.invstd = kernels.batch_norm_forward(
            x, w, b, self.rm, self.rv, training=self.use_batch,
            momentum=0.0 if self.momentum is None else self.momentum, eps=self.eps,
            num_batches_tracked=self.counter if self.use_batch else None,
            cumulative=self.momentum is None)
        return y

    def backward(self, g):
        nx, nw, nb = self.needs_grad
        into, dw_out, db_out = _param_outs(self)
        grads = kernels.batch_norm_backward(g, self.x, self.mean, self.invstd, self.w,
                                            training=self.use_batch, need_input_grad=nx,
                                            need_weight_grad=nw, need_bias_grad=nb,
                                            dx_out=self.dx, dw_out=dw_out, db_out=db_out)
        self.dx = grads[0]
        return _param_grads(self, grads, into)


class _BatchNorm(Module):
    _ranks = ()
    _layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        super().__init__()
        who = type(self).__name__
        self.num_features = _positive_int("num_features", num_features)
        self.eps = float(eps)
        if not self.eps >= 0.0:
            raise ValueError(f"{who}: eps must be >= 0, got {eps!r}")
        if momentum is not None:
            momentum = float(momentum)
            if not 0.0 <= momentum <= 1.0:
                raise ValueError(f"{who}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dt = _float_dtype(dtype)
        self._dtype = dt
        c = self.num_features
        self.weight = Parameter(np.ones(c, dt)) if self.affine else None
        self.bias = Parameter(np.zeros(c, dt)) if self.affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dt))
            self.register_buffer("running_var", np.ones(c, dt))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x):
        who = type(self).__name__
        like = self.weight.data if self.affine else (
            self.running_mean if self.track_running_stats else np.empty(0, self._dtype))
        x = _as_input(x, like)
        _check_rank(who, x.data, self._ranks, self._layout)
        if x.data.shape[1] != self.num_features:
            raise ValueError(f"{who}: expected input of shape {self._layout} with C="
                             f"{self.num_features}, got shape {x.data.shape}")
        if not self.track_running_stats:
            op = BatchNormOp(True, self.momentum, self.eps, None, None, None)
        elif self.training:  # batch statistics; the running ones are updated in place
            op = BatchNormOp(True, self.momentum, self.eps, self.running_mean, self.running_var,
                             self.num_batches_tracked)
        else:  # eval: the running statistics normalise and are only read
            op = BatchNormOp(False, self.momentum, self.eps, self.running_mean, self.running_var,
                             None)
        return op(x, self.weight, self.bias)

    def config(self):
        """Return the constructor arguments as JSON values (used by ``pydl.save_model``)."""
        dt = self.weight.data.dtype if self.affine else (
            self.running_mean.dtype if self.track_running_stats else self._dtype)
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats,
                "dtype": dt.name}

    @staticmethod
    def weight_shape(config):
        """The weight shape a config describes (checked against a file before allocating)."""
        return (config["num_features"],) if config.get("affine", True) else None

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Normalise each channel of (N, C) or (N, C, L) inputs over the batch (PyTorch's BatchNorm1d).

    Training: batch mean and biased variance normalise; the running estimates move by
    ``momentum`` toward the batch mean and UNBIASED variance (``momentum=None``: cumulative
    average). Eval: the running estimates normalise. ``state_dict`` keys: weight, bias,
    running_mean, running_var, num_batches_tracked.

    Args:
        num_features: C. eps: default 1e-5. momentum: default 0.1 (or None).
        affine: learn weight (ones) and bias (zeros). Default True.
        track_running_stats: keep running estimates (else batch statistics always). Default True.
        dtype: float32 (default) or float64.

    Raises:
        ValueError: wrong rank or channel count (expected and actual shapes named); training on a
            batch with one value per channel (as PyTorch).
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Normalise each channel of (N, C, H, W) inputs over the batch (PyTorch's BatchNorm2d).

    Arguments and behaviour as :class:`BatchNorm1d`.
    """

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class LayerNormOp(Op):
    """Layer normalisation over the trailing ``d`` values: operands x, weight, bias (or None)."""

    def __init__(self, size, param_dims, eps):
        self.size = size
        self.param_dims = param_dims
        self.eps = eps

    native = True

    def forward(self, x, w, b):
        self.shape = x.shape
        # reshape copies a non-contiguous x with numpy: such a call is not captured.
        self.native = x.flags.c_contiguous
        self.x2 = x.reshape(-1, self.size)
        self.w = None if w is None else w.reshape(-1)
        y, self.mean, self.rstd = kernels.layer_norm_forward(
            self.x2, self.w, None if b is None else b.reshape(-1), eps=self.eps)
        return y.reshape(self.shape)

    native_backward = False  # set per call (see backward)
    dx2 = dx = None

    def backward(self, g):
        # dx goes into an array the op keeps (handed on as one cached view), dw / db straight into
        # the parameters' gradient buffers (ConvOp's scheme), so a replayed step can run this from
        # C++ when g is contiguous (reshaping any other g copies it with numpy).
        nx, nw, nb = self.needs_grad
        self.native_backward = g.flags.c_contiguous and self.native  # see MaxPoolOp
        into, dw_out, db_out = _param_outs(self)
        dx2, dw, db = kernels.layer_norm_backward(
            g.reshape(-1, self.size), self.x2, self.mean, self.rstd, self.w, need_input_grad=nx,
            need_weight_grad=nw, need_bias_grad=nb, dx_out=self.dx2,
            dw_out=None if dw_out is None else dw_out.reshape(-1),
            db_out=None if db_out is None else db_out.reshape(-1))
        if dx2 is not self.dx2:
            self.dx2, self.dx = dx2, None if dx2 is None else dx2.reshape(self.shape)
        pshape = self.shape[len(self.shape) - self.param_dims:]
        dw = None if dw is None else (dw_out if dw_out is not None else dw.reshape(pshape))
        db = None if db is None else (db_out if db_out is not None else db.reshape(pshape))
        return _param_grads(self, (self.dx, dw, db), into)


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` axes of each sample (PyTorch's LayerNorm).

    y = (x - mean) / sqrt(biased var + eps) * weight + bias, statistics over the last
    ``len(normalized_shape)`` axes.

    Args:
        normalized_shape: int or tuple: the trailing shape normalised over.
        eps: default 1e-5. elementwise_affine: learn weight (ones) and bias (zeros). Default True.
        dtype: float32 (default) or float64.

    Raises:
        ValueError: an input whose trailing shape differs from normalized_shape (both named).
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, dtype=np.float32):
        super().__init__()
        shape = normalized_shape if isinstance(normalized_shape, (tuple, list)) \
            else (normalized_shape,)
        self.normalized_shape = tuple(_positive_int("normalized_shape", s) for s in shape)
        if not self.normalized_shape:
            raise ValueError("LayerNorm: normalized_shape must not be empty")
        self.eps = float(eps)
        if not self.eps >= 0.0:
            raise ValueError(f"LayerNorm: eps must be >= 0, got {eps!r}")
        self.elementwise_affine = bool(elementwise_affine)
        dt = _float_dtype(dtype)
        self._dtype = dt
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dt))
            self.bias = Parameter(np.zeros(self.normalized_shape, dt))
        else:
            self.weight = self.bias = None

    def forward(self, x):
        x = _as_input(x, self.weight.data if self.weight is not None else np.empty(0, self._dtype))
        k = len(self.normalized_shape)
        if x.data.ndim < k or x.data.shape[x.data.ndim - k:] != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input of shape (*, "
                             f"{', '.join(map(str, self.normalized_shape))}), got shape "
                             f"{x.data.shape}")
        return LayerNormOp(math.prod(self.normalized_shape), k, self.eps)(x, self.weight,
                                                                           self.bias)

    def config(self):
        """Return the constructor arguments as JSON values (used by ``pydl.save_model``)."""
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "dtype": self._dtype.name}

    @staticmethod
    def weight_shape(config):
        """The weight shape a config describes (checked against a file before allocating)."""
        if not config.get("elementwise_affine", True):
            return None
        s = config["normalized_shape"]
        return tuple(s) if isinstance(s, (list, tuple)) else (s,)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


# --- embedding -------------------------------------------------------------------------------
class EmbeddingOp(Op):
    """Row gather: operands indices (an integer array, not differentiable) and weight."""

    def __init__(self, padding_idx):
        self.padding_idx = -1 if padding_idx is None else padding_idx

    def forward(self, indices, w):
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be an integer array, got dtype {idx.dtype}"
                            f"; cast with .astype(numpy.int64)")
        self.idx = idx if idx.dtype in (np.int32, np.int64) else idx.astype(np.int64)
        return kernels.embedding_forward(w, self.idx)

    def backward(self, g):
        weight = self.inputs[1]
        if not self.needs_grad[1]:
            return None, None
        if weight._backward is None:
            kernels.embedding_backward(g, self.idx, leaf_grad_buffer(weight),
                                       padding_idx=self.padding_idx)
            return None, None
        dw = np.zeros_like(weight.data)
        kernels.embedding_backward(g, self.idx, dw, padding_idx=self.padding_idx)
        return None, dw


class Embedding(Module):
    """Look up rows of a (num_embeddings, embedding_dim) table (PyTorch's Embedding).

    ``weight`` ~ N(0, 1) as PyTorch, the ``padding_idx`` row zero and never updated (it gets no
    gradient). Input: integer indices of any shape; output: indices.shape + (embedding_dim,).

    Args:
        num_embeddings, embedding_dim: positive ints.
        padding_idx: None (default) or a row index (negative counts from the end).
        dtype: float32 (default) or float64.

    Raises:
        TypeError: non-integer indices. ValueError: an index outside [0, num_embeddings) (its
            position and value are named); padding_idx out of range at construction.

    Example:
        >>> pydl.nn.Embedding(10, 3)(np.array([[1, 2], [3, 9]])).shape
        (2, 2, 3)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32):
        super().__init__()
        self.num_embeddings = _positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
                raise TypeError(f"Embedding: padding_idx must be an int or None, got "
                                f"{padding_idx!r}")
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be in [-{self.num_embeddings}, "
                                 f"{self.num_embeddings}), got {padding_idx}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        dt = _float_dtype(dtype)
        w = _random.generator().standard_normal((self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            w[padding_idx] = 0.0
        self.weight = Parameter(w.astype(dt))

    def forward(self, indices):
        if isinstance(indices, Tensor):
            raise TypeError("Embedding: indices must be an integer numpy array, got a float "
                            "Tensor; pass the index array itself")
        return EmbeddingOp(self.padding_idx)(indices, self.weight)

    def config(self):
        """Return the constructor arguments as JSON values (used by ``pydl.save_model``)."""
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx, "dtype": self.weight.data.dtype.name}

    @staticmethod
    def weight_shape(config):
        """The weight shape a config describes (checked against a file before allocating)."""
        return (config["num_embeddings"], config["embedding_dim"])

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s if self.padding_idx is None else s + f", padding_idx={self.padding_idx}"


# --- shape and containers --------------------------------------------------------------------
class Flatten(Module):
    """Flatten axes ``start_dim..end_dim`` into one (PyTorch's Flatten).

    Args:
        start_dim: default 1 (keeps the batch axis). end_dim: default -1.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        shape = x.data.shape
        nd = max(len(shape), 1)
        s = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        e = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not 0 <= s <= e < nd:
            raise ValueError(f"Flatten: start_dim={self.start_dim}, end_dim={self.end_dim} do "
                             f"not select axes of an input of shape {shape}")
        return x.reshape(shape[:s] + (-1,) + shape[e + 1:]) if shape else x.reshape(1)

    def config(self):
        """Return the constructor arguments as JSON values (used by ``pydl.save_model``)."""
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """Return the input unchanged (a placeholder, e.g. for a removed head)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def config(self):
        """Return the constructor arguments as JSON values (none)."""
        return {}

    def forward(self, x):
        return x


class ModuleList(Module):
    """Hold sub-modules in a list, registered as ``"0"``, ``"1"``, ... (PyTorch's ModuleList).

    Supports ``len``, iteration, indexing (negative too), slicing (a new ModuleList of the same
    modules), ``append``, ``extend``, ``insert`` and item assignment.

    Args:
        modules: An optional iterable of Modules.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _check(self, m):
        if not isinstance(m, Module):
            raise TypeError(f"ModuleList: expected a pydl.nn.Module, got {type(m).__name__}")
        return m

    def _index(self, i):
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"ModuleList indices must be ints or slices, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"ModuleList index {i} is out of range for {n} modules")
        return str(int(i) % n)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return self._modules[self._index(i)]

    def __setitem__(self, i, m):
        setattr(self, self._index(i), self._check(m))

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, m):
        """Add a module at the end; return self."""
        setattr(self, str(len(self)), self._check(m))
        return self

    def extend(self, modules):
        """Append every module of an iterable; return self."""
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, m):
        """Insert a module before position ``index`` (renumbering the ones after it)."""
        mods = list(self._modules.values())
        mods.insert(index, self._check(m))
        for k in list(self._modules):
            delattr(self, k)
        for i, mod in enumerate(mods):
            setattr(self, str(i), mod)

    def forward(self, *args, **kwargs):
        raise TypeError("ModuleList is a container, not a layer: iterate over it in your "
                        "Module's forward")


class ModuleDict(Module):
    """Hold sub-modules by name (PyTorch's ModuleDict): ``d["head"]``, ``keys()``, ``items()``.

    Args:
        modules: An optional mapping (or iterable of pairs) from name to Module.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, m):
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f"ModuleDict: keys must be non-empty strings without '.', got {key!r}")
        if key not in self._modules and (hasattr(type(self), key) or key in self.__dict__):
            # (as PyTorch: a key such as "eval" or "training" would replace the Module's own)
            raise KeyError(f"ModuleDict: key {key!r} is an attribute of the module; choose "
                           f"another name")
        if not isinstance(m, Module):
            raise TypeError(f"ModuleDict: expected a pydl.nn.Module, got {type(m).__name__}")
        setattr(self, key, m)

    def __delitem__(self, key):
        if key not in self._modules:
            raise KeyError(key)
        delattr(self, key)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        """Add (or replace) modules from a mapping or an iterable of (name, Module) pairs."""
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self[k] = m

    def forward(self, *args, **kwargs):
        raise TypeError("ModuleDict is a container, not a layer: pick modules by name in your "
                        "Module's forward")


# Layer types pydl.io saves by name with their config(); containers hold their children.
LAYERS = {cls.__name__: cls for cls in (
    Conv1d, Conv2d, MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d,
    AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, LayerNorm, Embedding, Flatten, Identity)}
CONTAINERS = {"ModuleList": ModuleList, "ModuleDict": ModuleDict}
