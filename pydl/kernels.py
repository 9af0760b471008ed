"""Low-level kernels: numpy arrays in, numpy arrays out (float32 and float64).

Every function validates its arguments once, releases the GIL and runs a compiled kernel chosen for
this CPU (see ``pydl.cpu_info()``). Errors follow one rule: a non-array or a wrong dtype raises
``TypeError``; a wrong ndim, mismatched shapes or an unusable ``out`` array (wrong shape, read-only,
not C-contiguous, misaligned) raise ``ValueError`` naming both shapes. Inputs may be any strided
(or misaligned) view; ``out`` arrays are written in place and never replaced by a copy.
"""

from . import _core

__all__ = []

# --- losses ---
from ._core import (
    bce_with_logits,
    mse,
    softmax_cross_entropy,
)

__all__ += ["softmax_cross_entropy", "bce_with_logits", "mse"]

# --- optimizers ---
# The *_multi updates are all or nothing: a NaN/Inf gradient (or, for Adam, a state that would
# overflow) raises NonFiniteUpdateError (a FloatingPointError) before anything is written.
from ._core import (
    NonFiniteUpdateError,
    adam_update,
    adam_update_multi,
    adamw_update,
    adamw_update_multi,
    sgd_update,
    sgd_update_multi,
)

__all__ += ["NonFiniteUpdateError", "sgd_update", "sgd_update_multi", "adam_update",
            "adam_update_multi", "adamw_update", "adamw_update_multi"]

# --- gemm ---
from ._core import linear, matmul

__all__ += ["linear", "matmul"]

# --- activations ---
from ._core import (
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
)

__all__ += [
    "elu",
    "elu_backward",
    "gelu",
    "gelu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "log_softmax",
    "log_softmax_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]

# --- dropout ---
from ._core import dropout, dropout_backward, dropout_mask, philox4x32_10

__all__ += ["dropout", "dropout_backward", "dropout_mask", "philox4x32_10"]

# --- penalties ---
from ._core import (
    elastic_net_penalty,
    elastic_net_penalty_backward,
    l1_penalty,
    l1_penalty_backward,
    l2_penalty,
    l2_penalty_backward,
)

__all__ += [
    "elastic_net_penalty",
    "elastic_net_penalty_backward",
    "l1_penalty",
    "l1_penalty_backward",
    "l2_penalty",
    "l2_penalty_backward",
]
