"""Low-level kernels: numpy arrays in, numpy arrays out (float32 and float64).

Every function validates its arguments once, releases the GIL and runs a compiled kernel chosen for
this CPU (see ``pydl.cpu_info()``). Errors follow one rule: a non-array or a wrong dtype raises
``TypeError``; a wrong ndim, mismatched shapes or an unusable ``out`` array (wrong shape, read-only,
not C-contiguous) raise ``ValueError`` naming both shapes. Inputs may be any strided view; ``out``
arrays are written in place and never replaced by a copy.
"""

from . import _core

__all__ = []

# --- gemm ---
from ._core import linear, matmul  # noqa: E402

__all__ += ["linear", "matmul"]

# --- activations ---
from ._core import (  # noqa: E402
    elu,
    elu_backward,
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
)

__all__ += [
    "elu",
    "elu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "log_softmax",
    "log_softmax_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]
