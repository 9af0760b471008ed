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
