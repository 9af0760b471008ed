"""Type stubs for pydl._core, the compiled kernels (public surface: pydl.kernels)."""

from typing import Literal, Optional, Sequence, Tuple, Union

import numpy as np

# --- runtime ---
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def isa() -> str: ...
def supported_isas() -> list[str]: ...
def _set_isa(name: str) -> None: ...
def _gemm_info() -> dict: ...

# --- native replay (pydl.engine): captured kernel calls ---
class _Program:
    @staticmethod
    def join(parts: Sequence["_Program"], fallback: object) -> "_Program": ...
    def __call__(self) -> None: ...
    def run_io(self, x: np.ndarray, input: np.ndarray, output: np.ndarray) -> Optional[np.ndarray]: ...
    def __len__(self) -> int: ...

def _capture_begin(defer: bool) -> None: ...
def _capture_end() -> Optional[_Program]: ...
def _add_into(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None: ...
def _dropout_keyed(
    x: np.ndarray,
    p: float,
    key: np.ndarray,
    *,
    out: Optional[np.ndarray] = None,
    mask_out: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]: ...

# --- losses ---
def softmax_cross_entropy(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    label_smoothing: float = 0.0,
    reduction: Literal["mean", "sum"] = "mean",
    dlogits: Optional[np.ndarray] = None,
) -> Tuple[float, np.ndarray]: ...
def bce_with_logits(
    logits: np.ndarray,
    targets: np.ndarray,
    *,
    reduction: Literal["mean", "sum"] = "mean",
    dlogits: Optional[np.ndarray] = None,
) -> Tuple[float, np.ndarray]: ...
def mse(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    reduction: Literal["mean", "sum"] = "mean",
    dpred: Optional[np.ndarray] = None,
) -> Tuple[float, np.ndarray]: ...

# --- optimizers ---
def sgd_update(
    param: np.ndarray,
    grad: np.ndarray,
    momentum_buffer: Optional[np.ndarray] = None,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    first_step: bool = False,
) -> None: ...
class NonFiniteUpdateError(FloatingPointError):
    item: int
    what: Literal["grad", "state"]

_PerItem = Union[float, Sequence[float]]

def sgd_update_multi(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    momentum_buffers: Optional[Sequence[Optional[np.ndarray]]] = None,
    *,
    lr: _PerItem,
    momentum: _PerItem = 0.0,
    dampening: _PerItem = 0.0,
    nesterov: Union[bool, Sequence[bool]] = False,
    weight_decay: _PerItem = 0.0,
    first_step: Union[bool, Sequence[bool]] = False,
) -> None: ...
def adam_update_multi(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    exp_avgs: Sequence[np.ndarray],
    exp_avg_sqs: Sequence[np.ndarray],
    *,
    steps: Union[int, Sequence[int]],
    lr: _PerItem = 1e-3,
    beta1: _PerItem = 0.9,
    beta2: _PerItem = 0.999,
    eps: _PerItem = 1e-8,
    weight_decay: _PerItem = 0.0,
) -> None: ...
def adamw_update_multi(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    exp_avgs: Sequence[np.ndarray],
    exp_avg_sqs: Sequence[np.ndarray],
    *,
    steps: Union[int, Sequence[int]],
    lr: _PerItem = 1e-3,
    beta1: _PerItem = 0.9,
    beta2: _PerItem = 0.999,
    eps: _PerItem = 1e-8,
    weight_decay: _PerItem = 1e-2,
) -> None: ...

# pydl.optim's step plan: a *_multi update checked once, run again by calling it
class _PreparedUpdate:
    def __call__(self) -> bool: ...

def _prepare_sgd_update(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    momentum_buffers: Optional[Sequence[Optional[np.ndarray]]],
    *,
    lr: _PerItem,
    momentum: _PerItem,
    dampening: _PerItem,
    nesterov: Union[bool, Sequence[bool]],
    weight_decay: _PerItem,
) -> Optional[_PreparedUpdate]: ...
def _prepare_adam_update(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    exp_avgs: Sequence[np.ndarray],
    exp_avg_sqs: Sequence[np.ndarray],
    states: Sequence[dict],
    *,
    decoupled: bool,
    lr: _PerItem,
    beta1: _PerItem,
    beta2: _PerItem,
    eps: _PerItem,
    weight_decay: _PerItem,
) -> Optional[_PreparedUpdate]: ...
def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    *,
    step: int,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> None: ...
def adamw_update(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    *,
    step: int,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> None: ...

# --- gemm ---
def matmul(
    a: np.ndarray,
    b: np.ndarray,
    *,
    trans_a: bool = False,
    trans_b: bool = False,
    out: Optional[np.ndarray] = None,
    accumulate: bool = False,
) -> np.ndarray: ...
def linear(
    x: np.ndarray,
    w: np.ndarray,
    b: Optional[np.ndarray] = None,
    activation: Optional[str] = None,
    *,
    negative_slope: float = 0.01,
    alpha: float = 1.0,
    out: Optional[np.ndarray] = None,
    preact: Optional[np.ndarray] = None,
) -> np.ndarray: ...

# --- activations ---
def relu(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray: ...
def relu_backward(
    dy: np.ndarray, y: np.ndarray, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def leaky_relu(
    x: np.ndarray, negative_slope: float = 0.01, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def leaky_relu_backward(
    dy: np.ndarray,
    y: np.ndarray,
    negative_slope: float = 0.01,
    *,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def elu(
    x: np.ndarray, alpha: float = 1.0, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def elu_backward(
    dy: np.ndarray, y: np.ndarray, alpha: float = 1.0, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def sigmoid(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray: ...
def sigmoid_backward(
    dy: np.ndarray, y: np.ndarray, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def tanh(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray: ...
def tanh_backward(
    dy: np.ndarray, y: np.ndarray, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def gelu(
    x: np.ndarray,
    approximate: Literal["none", "tanh"] = "none",
    *,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def gelu_backward(
    dy: np.ndarray,
    x: np.ndarray,
    approximate: Literal["none", "tanh"] = "none",
    *,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def silu(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray: ...
def silu_backward(
    dy: np.ndarray, x: np.ndarray, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def _erf(x: np.ndarray, complement: bool = False) -> np.ndarray: ...
def _dropout_act_backward(
    dy: np.ndarray,
    mask: np.ndarray,
    p: float,
    s: np.ndarray,
    activation: str,
    *,
    negative_slope: float = 0.01,
    alpha: float = 1.0,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def softmax(
    x: np.ndarray, axis: int = -1, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def softmax_backward(
    dy: np.ndarray, y: np.ndarray, axis: int = -1, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def log_softmax(
    x: np.ndarray, axis: int = -1, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def log_softmax_backward(
    dy: np.ndarray, y: np.ndarray, axis: int = -1, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...

# --- dropout ---
def dropout(
    x: np.ndarray,
    p: float,
    seed: int,
    step: int = 0,
    *,
    out: Optional[np.ndarray] = None,
    mask_out: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]: ...
def dropout_backward(
    dy: np.ndarray, mask: np.ndarray, p: float, *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...
def dropout_mask(
    shape: Union[int, Sequence[int]], p: float, seed: int, step: int = 0
) -> np.ndarray: ...
def philox4x32_10(counter: Sequence[int], key: Sequence[int]) -> Tuple[int, int, int, int]: ...

# --- penalties ---
def l1_penalty(w: np.ndarray, wd: float) -> float: ...
def l2_penalty(w: np.ndarray, wd: float) -> float: ...
def elastic_net_penalty(w: np.ndarray, wd: float, l1_ratio: float = 0.5) -> float: ...
def l1_penalty_backward(grad: np.ndarray, w: np.ndarray, wd: float) -> None: ...
def l2_penalty_backward(grad: np.ndarray, w: np.ndarray, wd: float) -> None: ...
def elastic_net_penalty_backward(
    grad: np.ndarray, w: np.ndarray, wd: float, l1_ratio: float = 0.5
) -> None: ...

# --- convolution ---
_IntOrTuple = Union[int, Sequence[int]]

def conv_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray] = None,
    *,
    stride: _IntOrTuple = 1,
    padding: Union[_IntOrTuple, Literal["valid", "same"]] = 0,
    dilation: _IntOrTuple = 1,
    groups: int = 1,
) -> np.ndarray: ...
def conv_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    *,
    stride: _IntOrTuple = 1,
    padding: Union[_IntOrTuple, Literal["valid", "same"]] = 0,
    dilation: _IntOrTuple = 1,
    groups: int = 1,
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
    need_bias_grad: bool = True,
    dx_out: Optional[np.ndarray] = None,
    dw_out: Optional[np.ndarray] = None,
    db_out: Optional[np.ndarray] = None,
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]: ...

# --- pooling ---
def max_pool_forward(
    x: np.ndarray,
    kernel_size: _IntOrTuple,
    stride: Optional[_IntOrTuple] = None,
    padding: _IntOrTuple = 0,
) -> Tuple[np.ndarray, np.ndarray]: ...
def max_pool_backward(
    dy: np.ndarray,
    indices: np.ndarray,
    input_shape: Sequence[int],
    *,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def avg_pool_forward(
    x: np.ndarray,
    kernel_size: _IntOrTuple,
    stride: Optional[_IntOrTuple] = None,
    padding: _IntOrTuple = 0,
) -> np.ndarray: ...
def avg_pool_backward(
    dy: np.ndarray,
    input_shape: Sequence[int],
    kernel_size: _IntOrTuple,
    stride: Optional[_IntOrTuple] = None,
    padding: _IntOrTuple = 0,
    *,
    out: Optional[np.ndarray] = None,
) -> np.ndarray: ...
def adaptive_avg_pool_forward(x: np.ndarray, output_size: _IntOrTuple) -> np.ndarray: ...
def adaptive_avg_pool_backward(
    dy: np.ndarray, input_shape: Sequence[int], *, out: Optional[np.ndarray] = None
) -> np.ndarray: ...

# --- normalisation ---
def batch_norm_forward(
    x: np.ndarray,
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
    running_mean: Optional[np.ndarray] = None,
    running_var: Optional[np.ndarray] = None,
    *,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: Optional[np.ndarray] = None,
    cumulative: bool = False,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def batch_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    weight: Optional[np.ndarray] = None,
    *,
    training: bool = True,
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
    need_bias_grad: bool = True,
    dx_out: Optional[np.ndarray] = None,
    dw_out: Optional[np.ndarray] = None,
    db_out: Optional[np.ndarray] = None,
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]: ...
def layer_norm_forward(
    x: np.ndarray,
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
    *,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def layer_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    rstd: np.ndarray,
    weight: Optional[np.ndarray] = None,
    *,
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
    need_bias_grad: bool = True,
    dx_out: Optional[np.ndarray] = None,
    dw_out: Optional[np.ndarray] = None,
    db_out: Optional[np.ndarray] = None,
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]: ...

# --- embedding ---
def embedding_forward(weight: np.ndarray, indices: np.ndarray) -> np.ndarray: ...
def embedding_backward(
    dout: np.ndarray, indices: np.ndarray, dweight: np.ndarray, *, padding_idx: int = -1
) -> np.ndarray: ...
