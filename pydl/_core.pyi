"""Type stubs for pydl._core, the compiled kernels (public surface: pydl.kernels)."""

from typing import Literal, Optional, Tuple

import numpy as np

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
