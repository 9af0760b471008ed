"""Tensors with reverse-mode automatic differentiation, and the op protocol.

A :class:`Tensor` wraps a float32 or float64 numpy array (``.data``). Every operation on tensors
that require gradients records one graph node: the output tensor keeps its operands and its op,
whose ``backward`` sits right beside its ``forward``. ``loss.backward()`` walks the graph once in
reverse topological order (computed iteratively, so deep graphs do not hit the recursion limit),
runs each node's backward after all of its consumers, accumulates into the ``.grad`` of leaf
tensors and then frees the graph.

Defining an op (the protocol every op of pydl follows)
-------------------------------------------------------
An op is a subclass of :class:`Op`. Its constructor takes the op's parameters; calling the
instance on operands runs it and returns the output Tensor::

    class ScaleShift(Op):                       # y = x * w + c
        def __init__(self, c=1.0):
            self.c = c                          # parameters: plain attributes

        def forward(self, x, w):                # numpy arrays in (Tensor operands unwrapped)
            self.x, self.w = x, w               # keep what backward needs, as attributes
            self.y = np.multiply(x, w, out=self.y)
            self.y += self.c
            return self.y                       # one ndarray out

        def backward(self, g):                  # g = dL/dy, shaped like y; never modify it
            dx = g * self.w if self.needs_grad[0] else None
            dw = (g * self.x).sum() if self.needs_grad[1] else None
            return dx, dw                       # one entry per operand (None = no gradient)

    y = ScaleShift(c=1.0)(x, w)                 # x, w: Tensors (or arrays: constants)

- Operands are Tensors (differentiable when they require grad) or plain numpy arrays / None for
  non-differentiable inputs such as integer labels or embedding indices (convert and validate
  those INSIDE ``forward``, so each replay checks the new batch exactly as eager code does).
- ``self.needs_grad`` (one bool per operand) and ``self.inputs`` (the operands) are set before
  ``forward`` runs. Skip gradient work for operands that do not need it: that is how frozen
  parameters cost nothing.
- Everything backward needs (several saved arrays, masks, statistics) is just an attribute.
- Buffers: class attributes default to None, so ``self.y = kernel(x, out=self.y)`` allocates on
  the first run and writes in place when the same instance runs again. The engine
  (:mod:`pydl.engine`) records a step as the list of op instances it ran and REPLAYS it by calling
  their ``forward`` and ``backward`` again on the same (refilled) input arrays; ops that reuse
  their buffers this way make the replay allocation-free, and any op gives the same bits as eager
  execution because it is the same code.
- Ops whose output is a view of an input set ``view = True`` (replay need not re-run them).
- A backward may add a gradient straight into a LEAF operand's buffer with
  :func:`accumulate_grad` (or a kernel writing into ``leaf_grad_buffer(t)``) and return None for
  it; the linear op does this so dW is accumulated by the GEMM itself.
- Under :class:`no_grad`, or when no operand requires grad, no node is recorded.

``Tensor._make(data, parents, backward)`` remains for one-off ops written as a forward result
plus a backward closure; the engine cannot re-run such a closure, so a step that uses one runs
eagerly every time (logged at debug level by :mod:`pydl.engine`).

Grad mode is thread-local: ``with no_grad():`` in one thread does not affect another.
"""

import abc
import functools
import math
import threading

import numpy as np

from . import _core, kernels

__all__ = ["Op", "Tensor", "tensor", "no_grad", "is_grad_enabled", "accumulate_grad",
           "leaf_grad_buffer"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _GradMode(threading.local):
    # Class attributes are the per-thread defaults of threading.local subclasses.
    enabled = True

    def __init__(self):
        self.stack = []


_grad_mode = _GradMode()


class _Tape(threading.local):
    # The engine's recorder while it records a step in this thread (see pydl.engine), else None.
    recorder = None
    # True while the engine runs a model eagerly itself (its modules must not replay again).
    eager = False


_tape = _Tape()


def is_grad_enabled():
    """Return True unless the calling thread is inside a ``no_grad()`` block."""
    return _grad_mode.enabled


class no_grad:
    """Build no autograd graph inside a ``with`` block (or a decorated function).

    The setting is per thread, so other threads keep recording graphs. Tensors created inside
    have ``requires_grad=False``.

    Example:
        >>> with pydl.no_grad():
        ...     y = model(x)          # no graph, no saved activations
        >>> @pydl.no_grad()
        ... def predict(x): return model(x)
    """

    def __enter__(self):
        mode = _grad_mode
        mode.stack.append(mode.enabled)
        mode.enabled = False
        return self

    def __exit__(self, *exc):
        mode = _grad_mode
        mode.enabled = mode.stack.pop()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)

        return wrapper


def _to_array(data, dtype, copy):
    """Convert data to a float32/float64 array (float32 unless data is a float64 array)."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"tensor: dtype must be float32 or float64, got {dtype!r}") from None
        if dt not in _FLOAT_DTYPES:
            raise TypeError(f"tensor: dtype must be float32 or float64, got {dt}")
    from_array = isinstance(data, (np.ndarray, np.generic))
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as e:
        raise TypeError(f"tensor: cannot convert {type(data).__name__} to an array ({e})") from None
    kind = arr.dtype.kind
    # Other float widths are converted only when asked for explicitly with dtype=.
    if kind not in "biuf" or (kind == "f" and dtype is None and arr.dtype not in _FLOAT_DTYPES):
        raise TypeError(f"tensor: only float32 and float64 are supported, got {arr.dtype} "
                        f"(pass dtype='float32' or convert with .astype(np.float32))")
    if dtype is not None:
        dt_target = dt
    else:
        dt_target = arr.dtype if (from_array and kind == "f") else np.dtype(np.float32)
    if arr.dtype != dt_target:
        return arr.astype(dt_target)
    return arr.copy() if copy and arr is data else arr


def _unbroadcast(g, shape):
    """Sum the gradient g over the axes that broadcasting expanded to reach `shape`."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def accumulate_grad(t, g):
    """Add gradient g into the leaf tensor t's ``.grad`` (in place once the buffer exists).

    The first gradient is copied into a fresh C-contiguous buffer of t's dtype (or into the
    buffer the engine lends while it replays a step), so ``.grad`` never aliases an array that
    some op still holds.
    """
    if t.grad is None:
        buf = t._gbuf
        if buf is None:
            t.grad = np.array(g, dtype=t.data.dtype)
        else:
            np.copyto(buf, g, casting="unsafe")
            t.grad = buf
    else:
        t.grad += g


def writes_leaf_grad(t):
    """True when t is a leaf without a gradient yet: a kernel may then write t's whole gradient
    straight into ``t._gbuf`` (the buffer the engine lends while it replays a step; None outside
    one: the kernel makes a new array), and the op hands the result to :func:`set_leaf_grad`
    instead of returning it. Otherwise the op returns the gradient for :func:`accumulate_grad`.
    """
    return t._backward is None and t.grad is None


def set_leaf_grad(t, g):
    """Make g, written by a kernel as :func:`writes_leaf_grad` says, leaf t's gradient; return
    None (the op has nothing left to hand on for t)."""
    t.grad = g
    return None


def leaf_grad_buffer(t):
    """Return the leaf tensor t's ``.grad`` buffer, creating a zero one if it has none yet.

    For backward closures and kernels that accumulate into the gradient in place
    (e.g. ``kernels.l2_penalty_backward(leaf_grad_buffer(w), w.data, wd)``).
    """
    if t.grad is None:
        buf = t._gbuf
        if buf is None:
            t.grad = np.zeros_like(t.data)
        else:
            buf.fill(0)
            t.grad = buf
    return t.grad


def _matmul_into_grad(t, a, b, trans_a=False, trans_b=False):
    """Accumulate op(a) @ op(b) into leaf t's gradient with the GEMM itself (no temporary)."""
    buf = t.grad
    if buf is None:
        t.grad = kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=t._gbuf)
    elif buf.flags.c_contiguous and buf.flags.writeable and buf.dtype == a.dtype:
        kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=buf, accumulate=True)
    else:
        buf += kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b)


_ONES = {}  # dtype -> a read-only (1, capacity) row of ones, grown by doubling


def _ones_row(n, dtype):
    """A read-only (1, n) view of ones of the given dtype (shared; never written)."""
    row = _ONES.get(dtype)
    if row is None or row.shape[1] < n:
        row = np.ones((1, max(n, 64, 2 * (0 if row is None else row.shape[1]))), dtype)
        row.flags.writeable = False
        _ONES[dtype] = row
    return row[:, :n]


def _sum_rows_into_grad(t, g):
    """Accumulate the column sums of the 2-D g into leaf t's gradient (a bias's gradient).

    The sums are the product ones @ g: the GEMM adds each column in its fixed order (the same
    bits for any thread count), writes into the engine's lent buffer or onto an existing
    gradient without a temporary, and stays quiet when a sum overflows (the step's finiteness
    check reports that), where a numpy reduction would print a RuntimeWarning.
    """
    if g.ndim != 2 or g.dtype != t.data.dtype:
        accumulate_grad(t, g.sum(axis=0))
        return
    ones = _ones_row(g.shape[0], g.dtype)
    buf = t.grad
    if buf is None:
        lent = t._gbuf
        if lent is None:
            t.grad = kernels.matmul(ones, g).reshape(-1)
        else:
            kernels.matmul(ones, g, out=lent.reshape(1, -1))
            t.grad = lent
    elif buf.flags.c_contiguous and buf.flags.writeable and buf.dtype == g.dtype:
        kernels.matmul(ones, g, out=buf.reshape(1, -1), accumulate=True)
    else:
        buf += kernels.matmul(ones, g).reshape(-1)


def _freed(g):
    raise RuntimeError("backward: trying to backward through a graph a second time (its saved "
                       "values were freed by the first backward); pass retain_graph=True to the "
                       "first call if you need to")


def _as_operand(x, like):
    """Wrap a Python number or array as a constant Tensor of like's dtype."""
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"unsupported operand of type {type(x).__name__} ({arr.dtype}) for a "
                        f"Tensor operation")
    if arr.dtype != like.data.dtype:
        arr = arr.astype(like.data.dtype)
    t = Tensor(arr)
    rec = _tape.recorder
    if rec is not None and type(x) in (int, float):
        rec.constant(t)  # a number written in the code: the same in every replay
    return t


def _arr(v):
    """Return v as an ndarray (numpy gives scalars, not 0-d arrays, for 0-d results)."""
    return v if type(v) is np.ndarray else np.asarray(v)


class Op(abc.ABC):
    """One differentiable operation: ``forward`` on arrays with ``backward`` beside it.

    Subclasses define ``forward(*arrays) -> ndarray`` and ``backward(g) -> tuple`` (one gradient
    or None per operand); the module docstring gives the full protocol and an example. Call an
    instance on its operands to run it: ``Exp()(x)``. Each call needs a NEW instance (it holds the
    values saved for backward); the engine re-runs recorded instances on refilled buffers.

    Attributes:
        needs_grad: One bool per operand: whether backward must produce its gradient.
        inputs: The operands of the call (Tensors, arrays or None).
        view: Class flag; True when the output is a view of an input (replay skips forward).
        native: True when ``forward`` does all its array work in pydl kernels writing into the
            array it returns (or arrays it keeps), with no numpy arithmetic, random draws or
            other Python side effects: the engine may then capture its kernel calls and replay
            them from C++. ``forward`` may set it to False for one call (e.g. when it had to
            copy a non-contiguous input with numpy). An op that must do something in Python
            before its kernels on every call (dropout draws its key) defines ``prepare()`` for
            that and ``compute(*arrays)`` for the rest, with ``forward`` calling both: the engine
            calls ``prepare`` before each replay of the captured kernels, in tape order.
        native_backward: True when ``backward`` likewise does all its array work in pydl
            kernels writing into arrays it keeps (the same ones every call) or into a leaf's
            lent gradient buffer, and returns those arrays: the engine may then replay the
            backward of a recorded step from C++ (it checks the result against the Python
            backward once before relying on it).
    """

    view = False
    native = False
    native_backward = False
    needs_grad = ()
    inputs = ()

    @abc.abstractmethod
    def forward(self, *arrays):
        """Return the output array for the operands' arrays (save what backward needs)."""

    @abc.abstractmethod
    def backward(self, g):
        """Return one gradient (or None) per operand for the output gradient g."""

    def __call__(self, *operands):
        grad_on = _grad_mode.enabled
        arrays = []
        needs = []
        record = False
        for o in operands:
            if isinstance(o, Tensor):
                arrays.append(o.data)
                n = grad_on and o.requires_grad
                record = record or n
                needs.append(n)
            else:
                arrays.append(o)
                needs.append(False)
        self.needs_grad = tuple(needs)
        self.inputs = operands
        rec = _tape.recorder
        if rec is not None and self.native:
            _core._capture_begin(False)  # the kernels run now and are kept for the replay
            try:
                y = self.forward(*arrays)
            finally:
                program = _core._capture_end()
            if program is None:  # a kernel call could not be captured (e.g. a copied input)
                self.native = False
        else:
            program = None
            y = self.forward(*arrays)
        t = object.__new__(Tensor)
        t.data = y if type(y) is np.ndarray else np.asarray(y)
        t.grad = None
        t._gbuf = None
        if record:
            t.requires_grad = True
            t._parents = operands
            t._backward = self.backward
        else:
            t.requires_grad = False
            t._parents = ()
            t._backward = None
        if rec is not None:
            rec.log(self, t, program if self.native else None)
        return t

    def __repr__(self):
        return f"{type(self).__name__}()"


class _Add(Op):
    # Two C-contiguous operands of one shape and float dtype are added by a pydl kernel (the bits
    # of numpy's a + b), which the engine can capture; anything else (broadcasting, mixed dtypes,
    # strides) by numpy.
    native = True
    y = None

    @property
    def native_backward(self):
        return self.shapes[0] == self.shapes[1]  # hands g on as it is (no broadcast sums)

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        if (a.shape == b.shape and a.dtype == b.dtype and a.dtype in _FLOAT_DTYPES
                and a.flags.c_contiguous and b.flags.c_contiguous):
            if self.y is None:
                self.y = np.empty(a.shape, a.dtype)
            _core._add_into(self.y, a, b)
            return self.y
        self.native = False
        self.y = _arr(np.add(a, b, out=self.y))
        return self.y

    def backward(self, g):
        na, nb = self.needs_grad
        return (_unbroadcast(g, self.shapes[0]) if na else None,
                _unbroadcast(g, self.shapes[1]) if nb else None)


class _Sub(Op):
    y = None

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        self.y = _arr(np.subtract(a, b, out=self.y))
        return self.y

    def backward(self, g):
        na, nb = self.needs_grad
        return (_unbroadcast(g, self.shapes[0]) if na else None,
                -_unbroadcast(g, self.shapes[1]) if nb else None)


class _Mul(Op):
    y = None

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = _arr(np.multiply(a, b, out=self.y))
        return self.y

    def backward(self, g):
        na, nb = self.needs_grad
        return (_unbroadcast(g * self.b, self.a.shape) if na else None,
                _unbroadcast(g * self.a, self.b.shape) if nb else None)


class _Div(Op):
    y = None

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = _arr(np.true_divide(a, b, out=self.y))
        return self.y

    def backward(self, g):
        na, nb = self.needs_grad
        b = self.b
        return (_unbroadcast(g / b, self.a.shape) if na else None,
                _unbroadcast(-g * self.y / b, b.shape) if nb else None)


class _Neg(Op):
    y = None

    def forward(self, a):
        self.y = _arr(np.negative(a, out=self.y))
        return self.y

    def backward(self, g):
        return (-g,)


class _Pow(Op):
    y = None

    def __init__(self, exponent):
        self.p = exponent

    def forward(self, a):
        self.a = a
        self.y = _arr(np.power(a, self.p, out=self.y))
        return self.y

    def backward(self, g):
        p = self.p
        return (g * (p * self.a ** (p - 1)),)


class _MatMul2d(Op):
    """2-D ``a @ b`` through the GEMM kernel; dB of a leaf accumulates inside the GEMM."""

    y = None

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = kernels.matmul(a, b, out=self.y)
        return self.y

    def backward(self, g):
        na, nb = self.needs_grad
        da = kernels.matmul(g, self.b, trans_b=True) if na else None
        if not nb:
            return da, None
        bt = self.inputs[1]
        if bt._backward is None:
            _matmul_into_grad(bt, self.a, g, trans_a=True)
            return da, None
        return da, kernels.matmul(self.a, g, trans_a=True)


class _MatMul(Op):
    """numpy's ``a @ b`` for 1-D and batched operands (broadcast batch dims reduced)."""

    y = None

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = _arr(np.matmul(a, b, out=self.y))
        return self.y

    def backward(self, g):
        ad, bd = self.a, self.b
        # Lift 1-D operands to matrices as numpy does, then reduce broadcast batch dims.
        a2 = ad[None, :] if ad.ndim == 1 else ad
        b2 = bd[:, None] if bd.ndim == 1 else bd
        g2 = np.expand_dims(g, -1) if bd.ndim == 1 else g
        if ad.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        da = db = None
        if self.needs_grad[0]:
            da = _unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(ad.shape)
        if self.needs_grad[1]:
            db = _unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(bd.shape)
        return da, db


class _Sum(Op):
    y = None

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        self.shape = a.shape
        self.y = _arr(np.sum(a, axis=self.axis, keepdims=self.keepdims, out=self.y))
        return self.y

    def backward(self, g):
        if self.axis is not None and not self.keepdims:
            g = np.expand_dims(g, self.axis)
        return (np.broadcast_to(g, self.shape),)


class _Reshape(Op):
    """A new shape for the same values (reshape, flatten, squeeze, unsqueeze).

    A view of the input unless numpy had to copy (a non-contiguous input): only a view may be
    skipped when the engine replays the tape. backward hands on g reshaped back, the same view
    object while g is the same array: for a C-contiguous g that is a view, so a replayed step
    hands on the very array it recorded and its backward can run from C++ (``native_backward``);
    any other g is copied by numpy, which only the Python backward repeats.
    """

    native_backward = False
    _g = _dx = None

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        self.in_shape = a.shape
        y = a.reshape(self.shape)
        self.view = np.may_share_memory(y, a)
        return y

    def backward(self, g):
        if g is not self._g:
            self.native_backward = g.flags.c_contiguous
            self._g, self._dx = g, g.reshape(self.in_shape)
        return (self._dx,)


class _Transpose(Op):
    view = True

    def forward(self, a):
        return a.T

    def backward(self, g):
        return (g.T,)


class _GetItem(Op):
    def __init__(self, index):
        self.index = index

    def forward(self, a):
        self.a = a
        y = a[self.index]
        self.view = np.may_share_memory(y, a)  # basic indexing: a view of the input
        return y

    def backward(self, g):
        da = np.zeros_like(self.a)
        np.add.at(da, self.index, g)
        return (da,)


class _Exp(Op):
    y = None

    def forward(self, a):
        self.y = _arr(np.exp(a, out=self.y))
        return self.y

    def backward(self, g):
        return (g * self.y,)


class _Log(Op):
    y = None

    def forward(self, a):
        self.a = a
        self.y = _arr(np.log(a, out=self.y))
        return self.y

    def backward(self, g):
        return (g / self.a,)


class Tensor:
    """An n-dimensional float32/float64 array that records operations for autograd.

    Args:
        data: Array-like. Python lists/numbers and integer/bool arrays become float32; float32
            and float64 arrays keep their dtype and are wrapped without a copy
            (use :func:`tensor` for a copy).
        requires_grad: Record operations on this tensor so ``backward()`` fills ``.grad``.
            Default False.
        dtype: Optional ``float32`` or ``float64`` to convert to. Default None.

    Raises:
        TypeError: data (or dtype) is not convertible to float32/float64 (e.g. float16, complex,
            strings).
    """

    # _gbuf: a gradient buffer the engine lends for reuse while it replays a step (else None).
    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_gbuf", "__weakref__")
    # Make numpy defer to our reflected operators for ``ndarray + Tensor``.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _to_array(data, dtype, copy=False)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None
        self._gbuf = None
        rec = _tape.recorder
        if rec is not None:
            rec.created(self)

    @staticmethod
    def _make(data, parents, backward):
        """Return a Tensor holding `data`, recorded as an op of `parents` (see the module doc)."""
        t = object.__new__(Tensor)
        # numpy returns scalars, not 0-d arrays, from most ops on 0-d inputs.
        t.data = data if type(data) is np.ndarray else np.asarray(data)
        t.grad = None
        t._gbuf = None
        rec = _tape.recorder
        if rec is not None:
            rec.opaque(t, "Tensor._make (a closure the engine cannot re-run)")
        if _grad_mode.enabled:
            for p in parents:
                if p.requires_grad:
                    t.requires_grad = True
                    t._parents = parents
                    t._backward = backward
                    return t
        t.requires_grad = False
        t._parents = ()
        t._backward = None
        return t

    # --- properties -------------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def is_leaf(self):
        """True for tensors not produced by a recorded op (parameters, inputs, constants)."""
        return self._backward is None

    def _read(self):
        rec = _tape.recorder
        if rec is not None:
            rec.read(self)

    def numpy(self):
        """Return the underlying array (shared, not copied)."""
        self._read()
        return self.data

    def item(self):
        """Return the value of a one-element tensor as a Python float."""
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors can be converted to a Python "
                             f"number, got shape {self.data.shape}")
        self._read()
        return self.data.item()

    def detach(self):
        """Return a tensor sharing this one's data, cut from the graph (requires_grad=False)."""
        return Tensor(self.data)

    def __array__(self, dtype=None, copy=None):
        self._read()
        if dtype is not None and dtype != self.data.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        extra = ", dtype=float64" if self.data.dtype == np.float64 else ""
        if self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    # --- backward ---------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Compute the gradients of this tensor w.r.t. every leaf that requires grad.

        Gradients are ADDED to the leaves' ``.grad`` (they accumulate across calls until zeroed,
        e.g. by ``Module.zero_grad()`` or ``optimizer.zero_grad()``).

        Args:
            grad: Gradient of the final objective w.r.t. this tensor, shaped like it. Default
                None, allowed only for one-element tensors (then 1.0).
            retain_graph: Keep the graph so backward can run through it again. Default False
                (the graph is freed).

        Raises:
            RuntimeError: this tensor does not require grad; grad is None for a tensor with more
                than one element; the graph was already freed by an earlier backward.
            ValueError: grad's shape differs from this tensor's.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input has "
                               "requires_grad=True, or it was computed under no_grad())")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be omitted only for a one-element "
                                   f"(scalar) output, got shape {self.data.shape}; pass "
                                   f"grad= with that shape or reduce first (e.g. .sum())")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad,
                              dtype=self.data.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward: grad has shape {grad.shape}, expected the "
                                 f"tensor's shape {self.data.shape}")
        if self._backward is None:
            accumulate_grad(self, grad)
            return

        grads = {self: grad}
        for node in self._topological_order():
            g = grads.pop(node, None)
            if g is not None:
                pgrads = node._backward(g)
                for p, pg in zip(node._parents, pgrads):
                    if pg is None or not p.requires_grad:
                        continue
                    if type(pg) is not np.ndarray:
                        pg = np.asarray(pg)
                    pdata = p.data
                    if pg.shape != pdata.shape:
                        raise RuntimeError(f"backward: an op returned a gradient of shape "
                                           f"{pg.shape} for an input of shape {pdata.shape}")
                    if p._backward is None:
                        accumulate_grad(p, pg)
                        continue
                    if pg.dtype != pdata.dtype:
                        pg = pg.astype(pdata.dtype)
                    prev = grads.get(p)
                    grads[p] = pg if prev is None else prev + pg
            if not retain_graph:
                node._backward = _freed
                node._parents = ()

    def _topological_order(self):
        """Return the non-leaf nodes reachable from self, each before all of its parents."""
        order = []
        seen = {self}
        stack = [(self, iter(self._parents))]
        while stack:
            node, parents = stack[-1]
            for p in parents:
                if (isinstance(p, Tensor) and p._backward is not None and p.requires_grad
                        and p not in seen):
                    seen.add(p)
                    stack.append((p, iter(p._parents)))
                    break
            else:
                stack.pop()
                order.append(node)
        order.reverse()
        return order

    # --- arithmetic (each operator is one Op from above) -------------------------------------
    def __add__(self, other):
        return _Add()(self, _as_operand(other, self))

    def __radd__(self, other):
        return _Add()(_as_operand(other, self), self)

    def __sub__(self, other):
        return _Sub()(self, _as_operand(other, self))

    def __rsub__(self, other):
        return _Sub()(_as_operand(other, self), self)

    def __mul__(self, other):
        return _Mul()(self, _as_operand(other, self))

    def __rmul__(self, other):
        return _Mul()(_as_operand(other, self), self)

    def __truediv__(self, other):
        return _Div()(self, _as_operand(other, self))

    def __rtruediv__(self, other):
        return _Div()(_as_operand(other, self), self)

    def __neg__(self):
        return _Neg()(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float, np.number)):
            raise TypeError(f"pow: only Python/numpy scalar exponents are supported, got "
                            f"{type(exponent).__name__}")
        return _Pow(exponent)(self)

    def __matmul__(self, other):
        return _matmul(self, _as_operand(other, self))

    def __rmatmul__(self, other):
        return _matmul(_as_operand(other, self), self)

    # --- reductions and shape ---------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over `axis` (None = all, an int or a tuple), keeping reduced dims if `keepdims`."""
        return _Sum(axis, keepdims)(self)

    def mean(self, axis=None, keepdims=False):
        """Average over `axis` (None = all, an int or a tuple), keeping reduced dims if asked."""
        shape = self.data.shape
        if axis is None:
            count = self.data.size
        else:
            axes = axis if isinstance(axis, tuple) else (axis,)
            count = 1
            for ax in axes:
                count *= shape[ax]
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / count if count else math.nan)

    def reshape(self, *shape):
        """Return a tensor with the same data and a new shape: ``reshape(2, 3)`` or ``((2, 3))``."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _Reshape(shape)(self)

    @property
    def T(self):
        """The tensor with its axes reversed (the transpose of a matrix)."""
        return _Transpose()(self)

    def __getitem__(self, index):
        """Index like numpy (basic and advanced indexing); repeated indices accumulate grads."""
        return _GetItem(index)(self)

    # --- elementwise math ---------------------------------------------------------------------
    def exp(self):
        """Return e ** x elementwise."""
        return _Exp()(self)

    def log(self):
        """Return the natural logarithm elementwise."""
        return _Log()(self)

    # The activations (relu, leaky_relu, elu, sigmoid, tanh, softmax, log_softmax, gelu, silu)
    # are methods too; pydl.ops adds them from its table.


def _matmul(a, b):
    ad, bd = a.data, b.data
    if ad.ndim == 2 and bd.ndim == 2 and ad.dtype == bd.dtype:
        return _MatMul2d()(a, b)
    if ad.ndim == 0 or bd.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes "
                         f"{ad.shape} and {bd.shape}")
    return _MatMul()(a, b)


def tensor(data, requires_grad=False, dtype=None):
    """Create a Tensor holding a copy of `data`.

    Args:
        data: Array-like (list, number, numpy array or Tensor).
        requires_grad: Record operations for autograd. Default False.
        dtype: ``float32`` or ``float64`` (any numpy spelling). Default None: float64 arrays stay
            float64, everything else (lists, Python numbers, int/bool arrays) becomes float32.

    Returns:
        A new leaf Tensor.

    Raises:
        TypeError: unsupported dtype (e.g. float16, complex, strings).

    Example:
        >>> pydl.tensor([1, 2]).dtype
        dtype('float32')
    """
    return Tensor(_to_array(data, dtype, copy=True), requires_grad)
