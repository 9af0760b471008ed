"""``with pydl.no_grad(): model(x)`` through the engine's recorded forward.

A top-level Module call without a graph (grad mode off, no recording running, one array or
Tensor argument of the model's dtype) runs through a :class:`pydl.engine.CompiledForward` of that
module, one per thread: the first such call runs eagerly and checks that the module returns a
Tensor, the next records, later calls with the same key (shape, dtype, mode, structure,
parameters) replay the recorded kernels with no per-layer Python. Results are the eager bits
(the engine's guarantee). Module calls made inside the model's forward always run eagerly: they
are part of the outer call's recording. Anything else (keyword arguments, several inputs, other
dtypes, a module returning something else than a Tensor, ``replayable = False``) runs eagerly.
"""

import threading

import numpy as np

from .tensor import Tensor, _tape



class _PerThread(threading.local):
    """This thread's CompiledForward of one module (``fwd``; False: not eligible).

    Per-thread state is freed with its thread (a server's connection threads come and go);
    copies of a module start without any.
    """

    fwd = None

    def __copy__(self):
        return _PerThread()

    def __deepcopy__(self, memo):
        return _PerThread()

    def __reduce__(self):
        return _PerThread, ()


def _first_call(module, x, per_thread):
    # Eager (inner Module calls must not come back here), to learn whether the module returns
    # a Tensor.
    previous, _tape.eager = _tape.eager, True
    try:
        out = module.forward(x)
    finally:
        _tape.eager = previous
    if isinstance(out, Tensor) and any(True for _ in module.parameters()):
        from .engine import CompiledForward
        per_thread.fwd = CompiledForward(module)
    else:
        per_thread.fwd = False
    return out


def forward(module, x):
    """Return ``module(x)`` (a Tensor) computed through the engine, or None to run it eagerly.

    The caller has checked that grad mode is off, nothing is being recorded and the module is
    replayable.
    """
    as_tensor = isinstance(x, Tensor)
    data = x.data if as_tensor else x
    if type(data) is not np.ndarray:
        return None
    per_thread = module.__dict__.get("_compiled_forwards")
    if per_thread is None:
        per_thread = _PerThread()
        object.__setattr__(module, "_compiled_forwards", per_thread)
    fwd = per_thread.fwd
    if fwd is None:
        return _first_call(module, x, per_thread)
    if fwd is False:
        return None
    y = fwd.replay(x, data, as_tensor)
    if y is None:
        return None
    if type(y) is not np.ndarray:
        return Tensor(y)
    t = object.__new__(Tensor)  # what Tensor(y) makes, without its checks
    t.data = y
    t.grad = None
    t.requires_grad = False
    t._parents = ()
    t._backward = None
    t._gbuf = None
    return t
