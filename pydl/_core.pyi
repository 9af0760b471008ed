"""Type stubs for pydl._core (the compiled kernels; use pydl.kernels)."""

from typing import Optional

import numpy as np

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
