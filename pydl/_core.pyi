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
