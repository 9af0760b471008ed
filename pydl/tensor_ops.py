"""Tensor ops beyond arithmetic: joining, reductions by max/min, clipping, axes and comparisons.

Each differentiable op is an :class:`pydl.tensor.Op` (forward beside backward), exposed as a
``pydl.Tensor`` method or, for joins, as ``pydl.cat`` / ``pydl.stack``:

    >>> x = pydl.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    >>> pydl.cat([x, x.abs()], axis=1).max(axis=1).sum().backward()
    >>> (x > 1).dtype
    dtype('bool')

Comparisons return bool Tensors that carry no gradient. Shape ops whose result is a view of the
input (transpose, permute, unsqueeze, squeeze, flatten of a contiguous array) are marked as views
for the engine.
"""

import numpy as np

from .tensor import Op, Tensor, _arr, _as_operand, _Reshape, _tape

__all__ = ["cat", "stack"]


def _axis(who, axis, ndim):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{who}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{who}: axis {axis} is out of range for a tensor with {ndim} "
                         f"dimension(s)")
    return int(axis) % ndim


class _Cat(Op):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *arrays):
        self.sizes = [a.shape[self.axis] for a in arrays]
        return np.concatenate(arrays, axis=self.axis)

    def backward(self, g):
        cuts = np.cumsum(self.sizes)[:-1]
        parts = np.split(g, cuts, axis=self.axis)
        return tuple(p if n else None for p, n in zip(parts, self.needs_grad))


class _Stack(Op):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *arrays):
        return np.stack(arrays, axis=self.axis)

    def backward(self, g):
        parts = np.moveaxis(g, self.axis, 0)
        return tuple(p if n else None for p, n in zip(parts, self.needs_grad))


def _join(who, tensors, axis, op_class, extra):
    if isinstance(tensors, Tensor) or not hasattr(tensors, "__iter__"):
        raise TypeError(f"{who}: expected a sequence of Tensors, got {type(tensors).__name__}")
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{who}: expected a non-empty sequence of Tensors")
    first = next((t for t in tensors if isinstance(t, Tensor)), None)
    if first is None:
        first = Tensor(tensors[0])
    ts = [_as_operand(t, first) for t in tensors]
    dtypes = {t.data.dtype for t in ts}
    if len(dtypes) > 1:
        raise TypeError(f"{who}: all tensors must have the same dtype, got "
                        f"{sorted(str(d) for d in dtypes)}")
    ndim = ts[0].data.ndim + extra
    ax = _axis(who, axis, ndim)
    ref = list(ts[0].data.shape)
    for i, t in enumerate(ts):
        shape = list(t.data.shape)
        if len(shape) != len(ref) or any(a != b for k, (a, b) in enumerate(zip(shape, ref))
                                         if extra or k != ax):
            raise ValueError(f"{who}: tensor {i} has shape {tuple(shape)}, incompatible with "
                             f"tensor 0's shape {tuple(ref)} along the other axes")
    return op_class(ax)(*ts)


def cat(tensors, axis=0):
    """Concatenate tensors along an existing axis (``torch.cat``); gradients split back.

    Args:
        tensors: A non-empty sequence of Tensors (arrays become constants) of one dtype whose
            shapes agree except along ``axis``.
        axis: Default 0.

    Raises:
        TypeError: not a sequence, or mixed dtypes. ValueError: empty, a bad axis or shapes that
            differ along another axis (both shapes named).
    """
    return _join("cat", tensors, axis, _Cat, 0)


def stack(tensors, axis=0):
    """Stack equally shaped tensors along a new axis (``torch.stack``).

    Args:
        tensors: A non-empty sequence of Tensors of one shape and dtype. axis: Default 0.

    Raises:
        TypeError, ValueError: as :func:`cat`.
    """
    return _join("stack", tensors, axis, _Stack, 1)


class _Abs(Op):
    def forward(self, x):
        self.x = x
        return _arr(np.abs(x))

    def backward(self, g):
        return (g * np.sign(self.x),)


class _MaxMin(Op):
    """max or min over axis (None = all); the gradient goes to the first extreme element."""

    def __init__(self, axis, keepdims, is_max):
        self.axis, self.keepdims, self.is_max = axis, keepdims, is_max

    def forward(self, x):
        self.shape = x.shape
        arg = np.argmax if self.is_max else np.argmin
        if self.axis is None:
            self.pos = arg(x.reshape(-1))
            y = x.reshape(-1)[self.pos]
            return _arr(np.reshape(y, (1,) * x.ndim) if self.keepdims else y)
        self.pos = np.expand_dims(arg(x, axis=self.axis), self.axis)
        y = np.take_along_axis(x, self.pos, axis=self.axis)
        return y if self.keepdims else np.squeeze(y, axis=self.axis)

    def backward(self, g):
        dx = np.zeros(self.shape, g.dtype)
        if self.axis is None:
            dx.reshape(-1)[self.pos] = np.reshape(g, ())
        else:
            gk = g if self.keepdims else np.expand_dims(g, self.axis)
            np.put_along_axis(dx, self.pos, gk, axis=self.axis)
        return (dx,)


class _Clip(Op):
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        self.x = x
        return _arr(np.clip(x, self.lo, self.hi))

    def backward(self, g):
        inside = np.ones(self.x.shape, bool)
        if self.lo is not None:
            inside &= self.x >= self.lo
        if self.hi is not None:
            inside &= self.x <= self.hi
        return (g * inside,)


class _Permute(Op):
    view = True

    def __init__(self, axes):
        self.axes = axes
        self.inverse = tuple(np.argsort(axes))

    def forward(self, x):
        return np.transpose(x, self.axes)

    def backward(self, g):
        return (np.transpose(g, self.inverse),)


def _abs(self):
    """Return |x| elementwise (gradient sign(x); 0 at 0, as PyTorch)."""
    return _Abs()(self)


def _reduce_axis(self, who, axis):
    if axis is None:
        if self.data.size == 0:
            raise ValueError(f"{who}: cannot reduce an empty tensor")
        return None
    ax = _axis(who, axis, self.data.ndim)
    if self.data.shape[ax] == 0:
        raise ValueError(f"{who}: cannot reduce over axis {axis} of size 0 "
                         f"(shape {self.data.shape})")
    return ax


def _max(self, axis=None, keepdims=False):
    """Return the maximum over ``axis`` (None = all elements), keeping it if ``keepdims``.

    The gradient goes to the first maximal element (as ``torch.max(x, dim)``).
    """
    return _MaxMin(_reduce_axis(self, "max", axis), bool(keepdims), True)(self)


def _min(self, axis=None, keepdims=False):
    """Return the minimum over ``axis`` (None = all elements), keeping it if ``keepdims``."""
    return _MaxMin(_reduce_axis(self, "min", axis), bool(keepdims), False)(self)


def _clip(self, lo=None, hi=None):
    """Clamp values to [lo, hi] (either may be None); gradient 1 inside, 0 where clamped."""
    if lo is None and hi is None:
        raise ValueError("clip: give lo, hi or both")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip: lo={lo} is greater than hi={hi}")
    return _Clip(lo, hi)(self)


def _flatten(self, start_dim=0):
    """Flatten the axes from ``start_dim`` on into one (default 0: a 1-D tensor)."""
    shape = self.data.shape
    if not shape:
        return _Reshape((1,))(self)
    s = _axis("flatten", start_dim, len(shape))
    return _Reshape(shape[:s] + (-1,))(self)


def _transpose(self, a, b):
    """Swap axes ``a`` and ``b``."""
    nd = self.data.ndim
    axes = list(range(nd))
    a, b = _axis("transpose", a, nd), _axis("transpose", b, nd)
    axes[a], axes[b] = axes[b], axes[a]
    return _Permute(tuple(axes))(self)


def _permute(self, *axes):
    """Reorder the axes: ``x.permute(0, 2, 1)`` or ``x.permute((0, 2, 1))``."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    nd = self.data.ndim
    norm = tuple(_axis("permute", a, nd) for a in axes)
    if sorted(norm) != list(range(nd)):
        raise ValueError(f"permute: axes {axes} are not a permutation of the {nd} axes of a "
                         f"tensor of shape {self.data.shape}")
    return _Permute(norm)(self)


def _unsqueeze(self, axis):
    """Insert an axis of size 1 at position ``axis`` (negative counts from the end)."""
    shape = self.data.shape
    ax = _axis("unsqueeze", axis, len(shape) + 1)
    return _Reshape(shape[:ax] + (1,) + shape[ax:])(self)


def _squeeze(self, axis=None):
    """Remove axes of size 1 (all of them, or only ``axis``, which must have size 1)."""
    shape = self.data.shape
    if axis is None:
        new = tuple(n for n in shape if n != 1)
    else:
        ax = _axis("squeeze", axis, len(shape))
        if shape[ax] != 1:
            raise ValueError(f"squeeze: axis {axis} has size {shape[ax]}, not 1 (shape {shape})")
        new = shape[:ax] + shape[ax + 1:]
    return _Reshape(new)(self)


def _bool_tensor(data):
    t = Tensor.__new__(Tensor)
    t.data = data
    t.grad = None
    t.requires_grad = False
    t._parents = ()
    t._backward = None
    t._gbuf = None
    rec = _tape.recorder
    if rec is not None:
        rec.created(t)  # made from data inside a recorded step: the engine must not freeze it
    return t


def _comparison(ufunc):
    def compare(self, other):
        o = other.data if isinstance(other, Tensor) else other
        return _bool_tensor(_arr(ufunc(self.data, o)))

    compare.__doc__ = f"Return a bool Tensor (no gradient): elementwise ``{ufunc.__name__}``."
    return compare


Tensor.abs = _abs
Tensor.max = _max
Tensor.min = _min
Tensor.clip = _clip
Tensor.flatten = _flatten
Tensor.transpose = _transpose
Tensor.permute = _permute
Tensor.unsqueeze = _unsqueeze
Tensor.squeeze = _squeeze
Tensor.__lt__ = _comparison(np.less)
Tensor.__le__ = _comparison(np.less_equal)
Tensor.__gt__ = _comparison(np.greater)
Tensor.__ge__ = _comparison(np.greater_equal)
Tensor.__eq__ = _comparison(np.equal)
Tensor.__ne__ = _comparison(np.not_equal)
Tensor.__hash__ = object.__hash__  # tensors stay usable as dict keys (the autograd walk)
