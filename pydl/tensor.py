"""Tensors with reverse-mode automatic differentiation.

A :class:`Tensor` wraps a float32 or float64 numpy array (``.data``). Every operation on tensors
that require gradients records one graph node: the output tensor keeps its parents and a backward
closure that sits right beside the forward code. ``loss.backward()`` walks the graph once in
reverse topological order (computed iteratively, so deep graphs do not hit the recursion limit),
runs each node's closure after all of its consumers, accumulates into the ``.grad`` of leaf tensors
and then frees the graph (closures and parent links are dropped).

Adding an op (the extension mechanism)
--------------------------------------
``Tensor._make(data, parents, backward) -> Tensor`` records a new op::

    def scale_shift(x, w):                      # y = x * w + 1
        y = x.data * w.data + 1

        def backward(g):                        # g: dL/dy, an array shaped like y
            dx = g * w.data if x.requires_grad else None
            dw = (g * x.data).sum() if w.requires_grad else None
            return dx, dw                       # one entry per parent, None = no gradient

        return Tensor._make(y, (x, w), backward)

- ``data``: the forward result (an ndarray, float32 or float64); ``parents``: a tuple of Tensors.
- ``backward(g)`` is called at most once, with the gradient of the loss w.r.t. the output. It
  returns a tuple with one gradient per parent (shaped like that parent; any float dtype, cast to
  the parent's dtype) or ``None`` for parents that need none. Skip work for parents whose
  ``requires_grad`` is False: that is how frozen parameters cost nothing. ``g`` may be read-only or
  shared with other nodes: never modify it in place.
- A backward may instead add a gradient straight into a LEAF parent's buffer with
  :func:`accumulate_grad` (or a kernel writing into ``leaf_grad_buffer(p)``) and return ``None``
  for it; F.linear does this so dW is accumulated by the GEMM itself.
- If no parent requires grad, or grad mode is off (:class:`no_grad`), no node is recorded and the
  closure is simply dropped.

Grad mode is thread-local: ``with no_grad():`` in one thread does not affect another.
"""

import functools
import threading

import numpy as np

from . import kernels

__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "accumulate_grad",
           "leaf_grad_buffer"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _GradMode(threading.local):
    # Class attributes are the per-thread defaults of threading.local subclasses.
    enabled = True

    def __init__(self):
        self.stack = []


_grad_mode = _GradMode()


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
    if kind not in "biuf" or (kind == "f" and arr.dtype not in _FLOAT_DTYPES):
        raise TypeError(f"tensor: only float32 and float64 are supported, got {arr.dtype} "
                        f"(convert with .astype(np.float32))")
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

    The first gradient is copied into a fresh C-contiguous buffer of t's dtype, so ``.grad`` never
    aliases an array that some op still holds.
    """
    if t.grad is None:
        t.grad = np.array(g, dtype=t.data.dtype)
    else:
        t.grad += g


def leaf_grad_buffer(t):
    """Return the leaf tensor t's ``.grad`` buffer, creating a zero one if it has none yet.

    For backward closures and kernels that accumulate into the gradient in place
    (e.g. ``kernels.l2_penalty_backward(leaf_grad_buffer(w), w.data, wd)``).
    """
    if t.grad is None:
        t.grad = np.zeros_like(t.data)
    return t.grad


def _matmul_into_grad(t, a, b, trans_a=False, trans_b=False):
    """Accumulate op(a) @ op(b) into leaf t's gradient with the GEMM itself (no temporary)."""
    buf = t.grad
    if buf is None:
        t.grad = kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    elif buf.flags.c_contiguous and buf.flags.writeable and buf.dtype == a.dtype:
        kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=buf, accumulate=True)
    else:
        buf += kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b)


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
    return Tensor(arr)


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

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "__weakref__")
    # Make numpy defer to our reflected operators for ``ndarray + Tensor``.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _to_array(data, dtype, copy=False)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None

    @staticmethod
    def _make(data, parents, backward):
        """Return a Tensor holding `data`, recorded as an op of `parents` (see the module doc)."""
        t = object.__new__(Tensor)
        # numpy returns scalars, not 0-d arrays, from most ops on 0-d inputs.
        t.data = data if type(data) is np.ndarray else np.asarray(data)
        t.grad = None
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

    def numpy(self):
        """Return the underlying array (shared, not copied)."""
        return self.data

    def item(self):
        """Return the value of a one-element tensor as a Python float."""
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors can be converted to a Python "
                             f"number, got shape {self.data.shape}")
        return self.data.item()

    def detach(self):
        """Return a tensor sharing this one's data, cut from the graph (requires_grad=False)."""
        return Tensor(self.data)

    def __array__(self, dtype=None, copy=None):
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
                if p._backward is not None and p.requires_grad and p not in seen:
                    seen.add(p)
                    stack.append((p, iter(p._parents)))
                    break
            else:
                stack.pop()
                order.append(node)
        order.reverse()
        return order

    # --- arithmetic -------------------------------------------------------------------------
    def __add__(self, other):
        a, b = self, _as_operand(other, self)

        def backward(g):
            return (_unbroadcast(g, a.data.shape) if a.requires_grad else None,
                    _unbroadcast(g, b.data.shape) if b.requires_grad else None)

        return Tensor._make(a.data + b.data, (a, b), backward)

    def __radd__(self, other):
        return _as_operand(other, self).__add__(self)

    def __sub__(self, other):
        a, b = self, _as_operand(other, self)

        def backward(g):
            return (_unbroadcast(g, a.data.shape) if a.requires_grad else None,
                    -_unbroadcast(g, b.data.shape) if b.requires_grad else None)

        return Tensor._make(a.data - b.data, (a, b), backward)

    def __rsub__(self, other):
        return _as_operand(other, self).__sub__(self)

    def __mul__(self, other):
        a, b = self, _as_operand(other, self)

        def backward(g):
            return (_unbroadcast(g * b.data, a.data.shape) if a.requires_grad else None,
                    _unbroadcast(g * a.data, b.data.shape) if b.requires_grad else None)

        return Tensor._make(a.data * b.data, (a, b), backward)

    def __rmul__(self, other):
        return _as_operand(other, self).__mul__(self)

    def __truediv__(self, other):
        a, b = self, _as_operand(other, self)
        out = a.data / b.data

        def backward(g):
            return (_unbroadcast(g / b.data, a.data.shape) if a.requires_grad else None,
                    _unbroadcast(-g * out / b.data, b.data.shape) if b.requires_grad else None)

        return Tensor._make(out, (a, b), backward)

    def __rtruediv__(self, other):
        return _as_operand(other, self).__truediv__(self)

    def __neg__(self):
        return Tensor._make(-self.data, (self,), lambda g: (-g,))

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float, np.number)):
            raise TypeError(f"pow: only Python/numpy scalar exponents are supported, got "
                            f"{type(exponent).__name__}")
        a, p = self, exponent

        def backward(g):
            return (g * (p * a.data ** (p - 1)),)

        return Tensor._make(a.data ** p, (a,), backward)

    def __matmul__(self, other):
        a, b = self, _as_operand(other, self)
        ad, bd = a.data, b.data
        if ad.ndim == 2 and bd.ndim == 2 and ad.dtype == bd.dtype:
            def backward(g):
                da = kernels.matmul(g, bd, trans_b=True) if a.requires_grad else None
                if not b.requires_grad:
                    return da, None
                if b._backward is None:
                    _matmul_into_grad(b, ad, g, trans_a=True)
                    return da, None
                return da, kernels.matmul(ad, g, trans_a=True)

            return Tensor._make(kernels.matmul(ad, bd), (a, b), backward)

        if ad.ndim == 0 or bd.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes "
                             f"{ad.shape} and {bd.shape}")

        def backward(g):
            # Lift 1-D operands to matrices as numpy does, then reduce broadcast batch dims.
            a2 = ad[None, :] if ad.ndim == 1 else ad
            b2 = bd[:, None] if bd.ndim == 1 else bd
            g2 = np.expand_dims(g, -1) if bd.ndim == 1 else g
            if ad.ndim == 1:
                g2 = np.expand_dims(g2, -2)
            da = db = None
            if a.requires_grad:
                da = _unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(ad.shape)
            if b.requires_grad:
                db = _unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(bd.shape)
            return da, db

        return Tensor._make(ad @ bd, (a, b), backward)

    def __rmatmul__(self, other):
        return _as_operand(other, self).__matmul__(self)

    # --- reductions and shape ---------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over `axis` (None = all, an int or a tuple), keeping reduced dims if `keepdims`."""
        a = self
        shape = a.data.shape

        def backward(g):
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            return (np.broadcast_to(g, shape),)

        return Tensor._make(a.data.sum(axis=axis, keepdims=keepdims), (a,), backward)

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
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / count if count else np.nan)

    def reshape(self, *shape):
        """Return a tensor with the same data and a new shape (``reshape(2, 3)`` or ``((2, 3))``)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        in_shape = self.data.shape
        return Tensor._make(self.data.reshape(shape), (self,),
                            lambda g: (g.reshape(in_shape),))

    @property
    def T(self):
        """The tensor with its axes reversed (the transpose of a matrix)."""
        return Tensor._make(self.data.T, (self,), lambda g: (g.T,))

    def __getitem__(self, index):
        """Index like numpy (basic and advanced indexing); repeated indices accumulate grads."""
        a = self

        def backward(g):
            da = np.zeros_like(a.data)
            np.add.at(da, index, g)
            return (da,)

        return Tensor._make(a.data[index], (a,), backward)

    # --- elementwise math ---------------------------------------------------------------------
    def exp(self):
        """Return e ** x elementwise."""
        y = np.exp(self.data)
        return Tensor._make(y, (self,), lambda g: (g * y,))

    def log(self):
        """Return the natural logarithm elementwise."""
        x = self.data
        return Tensor._make(np.log(x), (self,), lambda g: (g / x,))

    # --- activations (C++ forward kernel, backward kernel from the forward output) -----------
    def _activation(self, forward, backward_kernel, *params):
        y = forward(self.data, *params)
        return Tensor._make(y, (self,), lambda g: (backward_kernel(g, y, *params),))

    def relu(self):
        """Return max(x, 0) elementwise (the gradient at 0 is 0)."""
        return self._activation(kernels.relu, kernels.relu_backward)

    def leaky_relu(self, negative_slope=0.01):
        """Return x for x > 0 and negative_slope * x otherwise (negative_slope >= 0)."""
        return self._activation(kernels.leaky_relu, kernels.leaky_relu_backward,
                                negative_slope)

    def elu(self, alpha=1.0):
        """Return x for x > 0 and alpha * (exp(x) - 1) otherwise (alpha >= 0)."""
        return self._activation(kernels.elu, kernels.elu_backward, alpha)

    def sigmoid(self):
        """Return 1 / (1 + exp(-x)) elementwise."""
        return self._activation(kernels.sigmoid, kernels.sigmoid_backward)

    def tanh(self):
        """Return tanh(x) elementwise."""
        return self._activation(kernels.tanh, kernels.tanh_backward)

    def softmax(self, axis=-1):
        """Return exp(x) / sum(exp(x)) along `axis` (default -1), computed stably."""
        return self._activation(kernels.softmax, kernels.softmax_backward, axis)

    def log_softmax(self, axis=-1):
        """Return x - logsumexp(x) along `axis` (default -1), computed stably."""
        return self._activation(kernels.log_softmax, kernels.log_softmax_backward, axis)


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
