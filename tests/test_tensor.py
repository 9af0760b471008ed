"""Tensor construction, every differentiable op (float64 gradcheck), and the backward engine."""

import gc
import threading
import weakref

import numpy as np
import pytest

import pydl
from pydl.tensor import Tensor, accumulate_grad, leaf_grad_buffer
from pydl.testing import gradcheck


@pytest.fixture
def t64(rng):
    """Return a factory of float64 leaf tensors with standard-normal values."""

    def make(*shape, requires_grad=True, low=None):
        data = rng.standard_normal(shape)
        if low is not None:  # keep values away from a kink / out of a domain edge
            data = np.sign(data) * (np.abs(data) + low)
        return pydl.tensor(data, dtype=np.float64, requires_grad=requires_grad)

    return make


# --- construction -----------------------------------------------------------------------------
@pytest.mark.parametrize("data", [[1, 2], [1.5, 2.5], 3, 2.5, [True, False],
                                  np.arange(3), np.arange(3, dtype=np.uint8),
                                  np.ones(2, np.float32)])
def test_default_dtype_is_float32(data):
    t = pydl.tensor(data)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=np.float32))


def test_float64_array_stays_float64_and_dtype_overrides():
    assert pydl.tensor(np.zeros(3)).dtype == np.float64
    assert pydl.tensor(np.float64(2.0)).dtype == np.float64
    assert pydl.tensor(np.zeros(3), dtype="float32").dtype == np.float32
    assert pydl.tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert Tensor(np.zeros(3)).dtype == np.float64


@pytest.mark.parametrize("data", [np.zeros(2, np.float16), np.zeros(2, np.complex64),
                                  ["a", "b"], np.array([object()])])
def test_unsupported_data_dtype_is_type_error(data):
    with pytest.raises(TypeError, match="float32 and float64"):
        pydl.tensor(data)


@pytest.mark.parametrize("dtype", [np.int32, "float16", "complex128"])
def test_unsupported_dtype_argument_is_type_error(dtype):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        pydl.tensor([1.0], dtype=dtype)


def test_tensor_copies_but_Tensor_wraps():
    a = np.zeros(3, np.float32)
    copied, wrapped = pydl.tensor(a), Tensor(a)
    a[0] = 7
    assert copied.data[0] == 0 and wrapped.data[0] == 7
    t = pydl.tensor([1.0, 2.0])
    assert pydl.tensor(t).data is not t.data


def test_accessors(t64):
    t = pydl.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    assert t.shape == (1, 3) and t.ndim == 2 and len(t) == 1 and t.requires_grad
    assert t.numpy() is t.data and t.grad is None and t.is_leaf
    assert pydl.tensor([4.0]).item() == 4.0 and isinstance(pydl.tensor(4.0).item(), float)
    with pytest.raises(ValueError, match=r"one-element.*\(1, 3\)"):
        t.item()
    assert np.asarray(t) is t.data
    assert "requires_grad=True" in repr(t) and "float64" in repr(t64(2))


# --- gradcheck of every op --------------------------------------------------------------------
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (4,)), ((2, 3, 4), (3, 1)),
                                    ((), (2, 2))])
def test_binary_ops_gradcheck_with_broadcasting(op, shapes, t64):
    a, b = t64(*shapes[0]), t64(*shapes[1], low=0.5)
    assert gradcheck(BINARY[op], [a, b])
    out = BINARY[op](a, b)
    np.testing.assert_allclose(out.data, BINARY[op](a.data, b.data), rtol=1e-15)


def test_broadcast_gradients_are_reduced_to_operand_shapes():
    a = pydl.tensor(np.ones((3, 1)), requires_grad=True)
    b = pydl.tensor(np.ones(4), requires_grad=True)
    (a + b * 2.0).sum().backward()
    np.testing.assert_array_equal(a.grad, np.full((3, 1), 4.0))
    np.testing.assert_array_equal(b.grad, np.full(4, 6.0))


@pytest.mark.parametrize("op", [lambda t: 2.0 + t, lambda t: t + 2, lambda t: 3.0 - t,
                                lambda t: t - 1.5, lambda t: 2.0 * t, lambda t: t / 4,
                                lambda t: 2.0 / t, lambda t: np.full(3, 2.0) * t,
                                lambda t: np.ones(3) - t, lambda t: np.arange(3.0) / t,
                                lambda t: -t, lambda t: t ** 3, lambda t: t ** 0.5,
                                lambda t: t ** -1])
def test_ops_with_constants_gradcheck(op, rng):
    t = pydl.tensor(rng.uniform(0.5, 2.0, 3), dtype=np.float64, requires_grad=True)
    out = op(t)
    assert isinstance(out, Tensor) and out.dtype == np.float64
    np.testing.assert_allclose(out.data, op(t.data), rtol=1e-15)
    assert gradcheck(op, [t])


def test_constants_adopt_the_tensor_dtype():
    t = pydl.tensor([1.0, 2.0], requires_grad=True)
    assert (t + np.ones(2)).dtype == np.float32
    assert (np.ones(2) * t).dtype == np.float32
    assert (t * 2.5).dtype == np.float32 and (1 - t).dtype == np.float32
    with pytest.raises(TypeError, match="unsupported operand"):
        t + "x"


def test_pow_needs_a_scalar_exponent():
    t = pydl.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="scalar exponents"):
        t ** t
    with pytest.raises(TypeError, match="scalar exponents"):
        t ** np.ones(2)


@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((1, 1), (1, 7)), ((4,), (4, 3)),
                                    ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)),
                                    ((2, 3, 4), (1, 4, 2))])
def test_matmul_gradcheck(shapes, t64):
    a, b = t64(*shapes[0]), t64(*shapes[1])
    np.testing.assert_allclose((a @ b).data, a.data @ b.data, rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda a, b: a @ b, [a, b])


def test_matmul_with_arrays_and_float32(rng):
    a = rng.standard_normal((5, 3)).astype(np.float32)
    w = pydl.tensor(rng.standard_normal((3, 2)), dtype="float32", requires_grad=True)
    out = a @ w
    assert isinstance(out, Tensor) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, a @ w.data, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    np.testing.assert_allclose(w.grad, a.T @ np.ones((5, 2), np.float32), rtol=1e-5)
    buffer = w.grad
    (pydl.tensor(a) @ w).sum().backward()  # accumulated by the GEMM into the same buffer
    assert w.grad is buffer
    np.testing.assert_allclose(w.grad, 2 * a.T @ np.ones((5, 2), np.float32), rtol=1e-5)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        pydl.tensor(2.0) @ w


@pytest.mark.parametrize("axis,keepdims", [(None, False), (None, True), (0, False), (1, True),
                                           (-1, False), ((0, 2), False), ((0, 2), True)])
def test_sum_and_mean_gradcheck(axis, keepdims, t64):
    a = t64(2, 3, 4)
    s, m = a.sum(axis=axis, keepdims=keepdims), a.mean(axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(s.data, a.data.sum(axis=axis, keepdims=keepdims), rtol=1e-14)
    np.testing.assert_allclose(m.data, a.data.mean(axis=axis, keepdims=keepdims), rtol=1e-14)
    assert gradcheck(lambda a: a.sum(axis=axis, keepdims=keepdims), [a])
    assert gradcheck(lambda a: a.mean(axis=axis, keepdims=keepdims), [a])


def test_mean_gradient_value():
    a = pydl.tensor(np.ones((2, 5)), requires_grad=True)
    a.mean().backward()
    np.testing.assert_array_equal(a.grad, np.full((2, 5), 0.1))


@pytest.mark.parametrize("fn", [lambda a: a.reshape(4, 6), lambda a: a.reshape((2, -1)),
                                lambda a: a.reshape(24), lambda a: a.T,
                                lambda a: a.reshape(6, 4).T * 2])
def test_shape_ops_gradcheck(fn, t64):
    a = t64(2, 3, 4)
    np.testing.assert_array_equal(fn(a).data, fn(a.data))
    assert gradcheck(fn, [a])


@pytest.mark.parametrize("index", [1, slice(1, 3), (slice(None), 2), (0, slice(None, None, 2)),
                                   np.array([0, 2, 2, 1]), (np.array([0, 0]), np.array([1, 1])),
                                   np.array([True, False, True, True])])
def test_getitem_gradcheck_including_repeated_indices(index, t64):
    a = t64(4, 3)
    np.testing.assert_array_equal(a[index].data, a.data[index])
    assert gradcheck(lambda a: a[index], [a])


def test_getitem_repeated_index_accumulates():
    a = pydl.tensor(np.zeros(3), requires_grad=True)
    a[np.array([1, 1, 2])].sum().backward()
    np.testing.assert_array_equal(a.grad, [0.0, 2.0, 1.0])


def test_exp_log_gradcheck(rng):
    a = pydl.tensor(rng.uniform(0.2, 3.0, (3, 4)), dtype=np.float64, requires_grad=True)
    np.testing.assert_allclose(a.exp().data, np.exp(a.data), rtol=1e-15)
    np.testing.assert_allclose(a.log().data, np.log(a.data), rtol=1e-15)
    assert gradcheck(lambda a: a.exp(), [a])
    assert gradcheck(lambda a: a.log(), [a])


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ACTIVATIONS = {
    "relu": (lambda t: t.relu(), lambda x: np.maximum(x, 0)),
    "leaky_relu": (lambda t: t.leaky_relu(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    "elu": (lambda t: t.elu(0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    "sigmoid": (lambda t: t.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (lambda t: t.tanh(), np.tanh),
    "softmax": (lambda t: t.softmax(), lambda x: _np_softmax(x, -1)),
    "softmax_axis0": (lambda t: t.softmax(axis=0), lambda x: _np_softmax(x, 0)),
    "log_softmax": (lambda t: t.log_softmax(), lambda x: np.log(_np_softmax(x, -1))),
    "log_softmax_axis0": (lambda t: t.log_softmax(0), lambda x: np.log(_np_softmax(x, 0))),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_methods_match_numpy_and_gradcheck(name, t64):
    method, reference = ACTIVATIONS[name]
    a = t64(5, 3, low=0.05)  # away from the kinks at 0
    np.testing.assert_allclose(method(a).data, reference(a.data), rtol=1e-12, atol=1e-14)
    assert gradcheck(method, [a])


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_methods_float32(name, rng):
    method, reference = ACTIVATIONS[name]
    x = rng.standard_normal((4, 6)).astype(np.float32)
    t = pydl.tensor(x, requires_grad=True)
    out = method(t)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, reference(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert t.grad.dtype == np.float32 and t.grad.shape == x.shape


def test_relu_gradient_at_zero_is_zero():
    a = pydl.tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    a.relu().sum().backward()
    np.testing.assert_array_equal(a.grad, [0.0, 0.0, 1.0])


# --- the backward engine ----------------------------------------------------------------------
def test_diamond_graph_sums_both_paths():
    x = pydl.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * x
    (y + y * x + x).sum().backward()  # d/dx (x^2 + x^3 + x) = 2x + 3x^2 + 1
    np.testing.assert_allclose(x.grad, 2 * x.data + 3 * x.data ** 2 + 1)


def test_gradients_accumulate_across_backward_calls_in_place():
    x = pydl.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    buffer = x.grad
    (x * x).sum().backward()
    assert x.grad is buffer
    np.testing.assert_array_equal(x.grad, 3.0 + 2 * x.data)
    x.grad = None
    (x * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_leaf_grad_never_aliases_a_shared_gradient():
    a = pydl.tensor(np.zeros(3), requires_grad=True)
    b = pydl.tensor(np.zeros(3), requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad, b.grad)
    a.grad += 1
    np.testing.assert_array_equal(b.grad, np.ones(3))


def test_non_leaf_grads_are_not_kept():
    x = pydl.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2.0
    h.sum().backward()
    assert h.grad is None and not h.is_leaf
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_backward_on_non_scalar_without_grad_is_runtime_error():
    x = pydl.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\)"):
        (x * 2.0).backward()


def test_backward_with_explicit_grad():
    x = pydl.tensor(np.ones((2, 3)), requires_grad=True)
    (x * 2.0).backward(np.full((2, 3), 0.5))
    np.testing.assert_array_equal(x.grad, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        (x * 2.0).backward(np.ones(3))


def test_backward_without_requires_grad_is_runtime_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        pydl.tensor([1.0]).backward()
    x = pydl.tensor([1.0], requires_grad=True)
    with pydl.no_grad():
        y = x * 2.0
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_backward_twice_needs_retain_graph():
    x = pydl.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_array_equal(x.grad, 4 * x.data)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_backward_on_a_leaf():
    x = pydl.tensor(3.0, requires_grad=True)
    x.backward()
    assert x.grad == 1.0


def test_graph_is_freed_after_backward():
    x = pydl.tensor(np.ones(1000), requires_grad=True)
    h = x * 2.0
    ref = weakref.ref(h)
    loss = h.exp().sum()
    del h
    gc.collect()
    assert ref() is not None  # the graph keeps it alive until backward
    loss.backward()
    gc.collect()
    assert ref() is None


def test_deep_graph_needs_no_recursion():
    x = pydl.tensor([1.0], dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 20000], rtol=1e-9)


def test_inputs_without_requires_grad_get_nothing():
    x = pydl.tensor([1.0, 2.0])
    w = pydl.tensor([3.0, 4.0], requires_grad=True)
    (x * w).sum().backward()
    assert x.grad is None
    np.testing.assert_array_equal(w.grad, [1.0, 2.0])


def test_frozen_leaf_set_after_forward_gets_no_grad():
    w = pydl.tensor([3.0, 4.0], requires_grad=True)
    v = pydl.tensor([1.0, 1.0], requires_grad=True)
    loss = (w * v).sum()
    w.requires_grad = False
    loss.backward()
    assert w.grad is None and v.grad is not None


def test_mixed_dtypes_give_each_leaf_its_own_dtype():
    a = pydl.tensor([1.0, 2.0], requires_grad=True)
    b = pydl.tensor(np.array([3.0, 4.0]), requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(a.grad, [3.0, 4.0])


def test_detach_shares_data_and_cuts_the_graph():
    x = pydl.tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2.0).detach()
    assert not d.requires_grad and d.is_leaf
    y = x * 2.0
    (y.detach() * x).sum().backward()
    np.testing.assert_array_equal(x.grad, y.data)  # no gradient through the detached factor
    e = x.detach()
    e.data[0] = 9.0
    assert x.data[0] == 9.0


# --- no_grad ----------------------------------------------------------------------------------
def test_no_grad_builds_no_graph_and_restores():
    x = pydl.tensor([1.0], requires_grad=True)
    with pydl.no_grad():
        y = (x * 2.0).relu().sum()
        with pydl.no_grad():
            pass
        z = x + 1.0  # still off after the inner block
    assert not y.requires_grad and y.is_leaf and not z.requires_grad
    assert (x * 2.0).requires_grad


def test_no_grad_as_decorator():
    x = pydl.tensor([1.0], requires_grad=True)

    @pydl.no_grad()
    def f(t):
        return t * 2.0

    assert not f(x).requires_grad
    assert (x * 2.0).requires_grad


def test_no_grad_restores_on_exception():
    from pydl.tensor import is_grad_enabled
    with pytest.raises(KeyError):
        with pydl.no_grad():
            assert not is_grad_enabled()
            raise KeyError
    assert is_grad_enabled()


def test_no_grad_is_thread_local():
    x = pydl.tensor([1.0], requires_grad=True)
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def worker():
        seen["in_other_thread"] = (x * 2.0).requires_grad
        entered.set()
        release.wait(5)
        with pydl.no_grad():
            seen["worker_no_grad"] = (x * 2.0).requires_grad

    with pydl.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        assert entered.wait(5)
        seen["main"] = (x * 2.0).requires_grad
    release.set()
    t.join(5)
    assert seen == {"in_other_thread": True, "main": False, "worker_no_grad": False}
    assert (x * 2.0).requires_grad


# --- the extension mechanism ------------------------------------------------------------------
def _cube(x):
    y = x.data ** 3
    return Tensor._make(y, (x,), lambda g: (3 * x.data ** 2 * g,))


def test_custom_op_with_make_gradchecks(t64):
    x = t64(4)
    assert gradcheck(_cube, [x])
    with pydl.no_grad():
        assert not _cube(x).requires_grad


def test_custom_op_returning_a_wrong_shape_is_caught(t64):
    x = t64(4)
    bad = Tensor._make(x.data * 2, (x,), lambda g: (g.sum(),))
    with pytest.raises(RuntimeError, match=r"gradient of shape \(\).*\(4,\)"):
        bad.sum().backward()


def test_custom_op_may_accumulate_into_leaf_buffers():
    w = pydl.tensor([1.0, 2.0], requires_grad=True)

    def backward(g):
        accumulate_grad(w, g * 2.0)
        return (None,)

    Tensor._make(w.data * 2.0, (w,), backward).sum().backward()
    np.testing.assert_array_equal(w.grad, [2.0, 2.0])
    buf = leaf_grad_buffer(pydl.tensor([1.0, 2.0]))
    np.testing.assert_array_equal(buf, [0.0, 0.0])
