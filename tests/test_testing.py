"""pydl.testing.gradcheck: passes correct gradients, catches wrong ones, leaves inputs as found."""

import numpy as np
import pytest

import pydl
from pydl import Tensor
from pydl.testing import gradcheck


def f64(rng, *shape, requires_grad=True):
    return pydl.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=requires_grad)


def scaled_op(factor_in_backward):
    """y = 2 x, with a backward that uses the given factor (2 is right)."""

    def op(x):
        return Tensor._make(x.data * 2.0, (x,), lambda g: (g * factor_in_backward,))

    return op


def test_correct_gradients_pass(rng):
    x, w = f64(rng, 3, 4), f64(rng, 4, 2)
    assert gradcheck(lambda x, w: (x @ w).tanh(), [x, w]) is True
    assert gradcheck(scaled_op(2.0), x) is True  # a single Tensor is accepted


def test_wrong_gradient_raises_with_the_worst_element(rng):
    x = f64(rng, 3, 4)
    with pytest.raises(AssertionError, match=r"input 0 \(shape \(3, 4\)\) mismatches at index"):
        gradcheck(scaled_op(2.1), [x])


def test_wrong_gradient_in_one_element_is_located(rng):
    x = f64(rng, 5)

    def op(t):
        def backward(g):
            d = g * 2.0
            d[3] += 0.01
            return (d,)
        return Tensor._make(t.data * 2.0, (t,), backward)

    with pytest.raises(AssertionError, match=r"at index \(3,\)"):
        gradcheck(op, [x])


def test_tolerances_are_applied(rng):
    x = f64(rng, 4)
    op = scaled_op(2.0 * (1 + 1e-4))  # relative error 1e-4
    assert gradcheck(op, [x], rtol=1e-3, atol=0)
    with pytest.raises(AssertionError):
        gradcheck(op, [x], rtol=1e-6, atol=0)


def test_missing_gradient_is_caught(rng):
    x = f64(rng, 3)
    detached = lambda t: t.detach() * 2.0  # noqa: E731  (no graph: autograd says 0)
    with pytest.raises(AssertionError):
        gradcheck(detached, [x])


def test_only_inputs_requiring_grad_are_checked(rng):
    x, c = f64(rng, 3), f64(rng, 3, requires_grad=False)
    calls = []

    def fn(x, c):
        calls.append(1)
        return x * c

    assert gradcheck(fn, [x, c])
    assert len(calls) == 1 + 2 * 3  # one autograd pass + two evaluations per checked element


def test_inputs_and_grads_are_left_as_found(rng):
    x = f64(rng, 2, 3)
    before = x.data.copy()
    x.grad = np.full((2, 3), 7.0)
    grad = x.grad
    gradcheck(lambda t: (t * t).sum(), [x])
    np.testing.assert_array_equal(x.data, before)
    assert x.grad is grad and np.all(grad == 7.0)


def test_float32_input_is_a_type_error(rng):
    x = pydl.tensor(rng.standard_normal(3), dtype=np.float32, requires_grad=True)
    with pytest.raises(TypeError, match="float64 Tensors.*input 0 is float32"):
        gradcheck(lambda t: t * 2.0, [x])
    with pytest.raises(TypeError, match="input 0 is ndarray"):
        gradcheck(lambda t: t, [np.zeros(3)])


def test_no_input_requiring_grad_is_a_value_error(rng):
    with pytest.raises(ValueError, match="no input has requires_grad=True"):
        gradcheck(lambda t: t * 2.0, [f64(rng, 3, requires_grad=False)])


def test_non_tensor_output_is_a_type_error(rng):
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda t: t.data, [f64(rng, 3)])
