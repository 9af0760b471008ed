"""Testing helpers: numerical gradient checks for autograd ops."""

import numpy as np

from .tensor import Tensor, no_grad

__all__ = ["gradcheck"]


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Check fn's autograd gradients against float64 central differences.

    The scalar ``sum(fn(*inputs) * r)``, with a fixed random projection r, is differentiated
    both ways w.r.t. every input that has ``requires_grad=True``; an element passes when
    ``|analytic - numeric| <= atol + rtol * |numeric|``. Inputs' ``.grad`` are left as they were.

    Args:
        fn: Callable taking the inputs and returning a Tensor (any shape).
        inputs: A Tensor or a sequence of Tensors, all float64; those with requires_grad are
            checked (the others are held constant).
        eps: Finite-difference step. Default 1e-6.
        atol: Absolute tolerance. Default 1e-5.
        rtol: Relative tolerance. Default 1e-3.

    Returns:
        True when every element passes.

    Raises:
        TypeError: an input is not a float64 Tensor, or fn does not return a Tensor.
        ValueError: no input requires grad.
        AssertionError: a gradient mismatches; the message names the input, the worst element,
            both values and the tolerance.

    Example:
        >>> x = pydl.tensor(np.random.rand(3, 4), dtype="float64", requires_grad=True)
        >>> pydl.testing.gradcheck(lambda t: (t * t).sum(), [x])
        True
    """
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or t.data.dtype != np.float64:
            got = t.data.dtype if isinstance(t, Tensor) else type(t).__name__
            raise TypeError(f"gradcheck: inputs must be float64 Tensors (float32 differences are "
                            f"too coarse), input {i} is {got}; use "
                            f"pydl.tensor(..., dtype='float64')")
    checked = [i for i, t in enumerate(inputs) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True; nothing to check")

    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    projection = np.random.default_rng(0).standard_normal(out.data.shape)

    saved = [t.grad for t in inputs]
    try:
        for t in inputs:
            t.grad = None
        if out.requires_grad:
            out.backward(projection.astype(out.data.dtype))
        analytic = [inputs[i].grad if inputs[i].grad is not None
                    else np.zeros_like(inputs[i].data) for i in checked]
    finally:
        for t, g in zip(inputs, saved):
            t.grad = g

    def objective():
        with no_grad():
            return float(np.sum(fn(*inputs).data * projection))

    for i, a in zip(checked, analytic):
        x = inputs[i].data
        numeric = np.zeros_like(x)
        flat = x.reshape(-1)  # a view: perturbing it perturbs the input in place
        if not np.shares_memory(flat, x):
            raise ValueError(f"gradcheck: input {i} must be contiguous so it can be perturbed")
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            plus = objective()
            flat[j] = orig - eps
            minus = objective()
            flat[j] = orig
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        excess = np.abs(a - numeric) - (atol + rtol * np.abs(numeric))
        if excess.size and (np.max(excess) > 0 or not np.all(np.isfinite(a))):
            worst = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(excess), excess,
                                                               np.inf))), x.shape)
            raise AssertionError(
                f"gradcheck: gradient of input {i} (shape {x.shape}) mismatches at index "
                f"{tuple(int(k) for k in worst)}: autograd {a[worst]!r}, numerical "
                f"{numeric[worst]!r} (allowed |diff| <= {atol} + {rtol} * |numerical|)")
    return True
