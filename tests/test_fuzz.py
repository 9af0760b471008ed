"""Fuzzing the two boundaries that take untrusted input: the kernels' argument validation and the
checkpoint loader. Whatever goes in, the only outcomes allowed are a result or a documented
exception - TypeError/ValueError (and MemoryError for allocations that cannot be satisfied) from
the kernels, ValueError from the loader - never a crash, a hang, a SystemError, a pybind11
RuntimeError or an uncaught KeyError/RecursionError.

Three layers: a deterministic sweep that puts every value of a catalogue of bad values into every
argument of every kernel; hypothesis-driven random combinations of bad arguments and of
byte-level and structural file corruptions; and regression tests for the bugs this fuzzing found.
tools/fuzz_loader.py runs the same mutators for many more iterations outside the test suite.
"""

import faulthandler
import io
import json
import random
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pydl
from pydl import nn, optim
from pydl import kernels as K

# NonFiniteUpdateError: the all-or-nothing optimizer updates refusing a NaN/Inf gradient.
KERNEL_ERRORS = (TypeError, ValueError, MemoryError, K.NonFiniteUpdateError)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def no_hang():
    """A call that never returns dumps every thread's stack and fails the run instead of hanging."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# --- the kernels' argument validation -----------------------------------------------------------

def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def valid_calls():
    """name -> a function returning valid keyword arguments for that kernel (fresh arrays)."""
    act = {"relu": {}, "leaky_relu": {"negative_slope": 0.1}, "elu": {"alpha": 1.0},
           "sigmoid": {}, "tanh": {}}
    calls = {
        "matmul": lambda: dict(a=f32(4, 5), b=f32(5, 3), trans_a=False, trans_b=False,
                               out=np.zeros((4, 3), np.float32), accumulate=True),
        "linear": lambda: dict(x=f32(4, 5), w=f32(3, 5), b=f32(3), activation="relu",
                               negative_slope=0.1, alpha=1.0, out=np.zeros((4, 3), np.float32)),
        "dropout": lambda: dict(x=f32(4, 5), p=0.3, seed=1, step=2,
                                out=np.zeros((4, 5), np.float32),
                                mask_out=np.zeros((4, 5), np.uint8)),
        "dropout_backward": lambda: dict(dy=f32(4, 5), mask=np.ones((4, 5), np.uint8), p=0.3,
                                         out=np.zeros((4, 5), np.float32)),
        "dropout_mask": lambda: dict(shape=(4, 5), p=0.3, seed=1, step=2),
        "philox4x32_10": lambda: dict(counter=[0, 1, 2, 3], key=[4, 5]),
        "l1_penalty": lambda: dict(w=f32(4, 5), wd=0.1),
        "l2_penalty": lambda: dict(w=f32(4, 5), wd=0.1),
        "elastic_net_penalty": lambda: dict(w=f32(4, 5), wd=0.1, l1_ratio=0.5),
        "l1_penalty_backward": lambda: dict(grad=f32(4, 5), w=f32(4, 5, seed=1), wd=0.1),
        "l2_penalty_backward": lambda: dict(grad=f32(4, 5), w=f32(4, 5, seed=1), wd=0.1),
        "elastic_net_penalty_backward": lambda: dict(grad=f32(4, 5), w=f32(4, 5, seed=1),
                                                     wd=0.1, l1_ratio=0.5),
        "softmax_cross_entropy": lambda: dict(logits=f32(4, 5), labels=np.array([0, 4, 2, 1]),
                                              label_smoothing=0.1, reduction="mean",
                                              dlogits=np.zeros((4, 5), np.float32)),
        "bce_with_logits": lambda: dict(logits=f32(4, 5), targets=np.full((4, 5), 0.5, np.float32),
                                        reduction="sum", dlogits=np.zeros((4, 5), np.float32)),
        "mse": lambda: dict(pred=f32(4, 5), target=f32(4, 5, seed=1), reduction="mean",
                            dpred=np.zeros((4, 5), np.float32)),
        "sgd_update_multi": lambda: dict(params=[f32(4, 5), f32(3)],
                                         grads=[f32(4, 5, seed=1), f32(3, seed=2)],
                                         momentum_buffers=[np.zeros((4, 5), np.float32),
                                                           np.zeros(3, np.float32)],
                                         lr=0.1, momentum=0.9, dampening=0.0, nesterov=True,
                                         weight_decay=0.01, first_step=True),
        "sgd_update": lambda: dict(param=f32(4, 5), grad=f32(4, 5, seed=1),
                                   momentum_buffer=np.zeros((4, 5), np.float32), lr=0.1,
                                   momentum=0.9, dampening=0.0, nesterov=True, weight_decay=0.01,
                                   first_step=True),
    }
    calls["sgd_update_multi"] = lambda: dict(
        params=[f32(4, 5), f32(3)], grads=[f32(4, 5, seed=1), f32(3, seed=1)],
        momentum_buffers=[np.zeros((4, 5), np.float32), np.zeros(3, np.float32)], lr=0.1,
        momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.01, first_step=True)
    for name in ("adam_update", "adamw_update"):
        calls[name] = lambda: dict(param=f32(4, 5), grad=f32(4, 5, seed=1),
                                   exp_avg=np.zeros((4, 5), np.float32),
                                   exp_avg_sq=np.zeros((4, 5), np.float32), step=1, lr=1e-3,
                                   beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    for name in ("adam_update_multi", "adamw_update_multi"):
        calls[name] = lambda: dict(
            params=[f32(4, 5), f32(3)], grads=[f32(4, 5, seed=1), f32(3, seed=1)],
            exp_avgs=[np.zeros((4, 5), np.float32), np.zeros(3, np.float32)],
            exp_avg_sqs=[np.zeros((4, 5), np.float32), np.zeros(3, np.float32)], steps=[1, 2],
            lr=[1e-3, 2e-3], beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    for name, kw in act.items():
        calls[name] = lambda kw=kw: dict(x=f32(4, 5), out=np.zeros((4, 5), np.float32), **kw)
        calls[name + "_backward"] = lambda kw=kw: dict(
            dy=f32(4, 5), y=f32(4, 5, seed=1), out=np.zeros((4, 5), np.float32), **kw)
    for name, kw in (("gelu", {"approximate": "tanh"}), ("silu", {})):  # backward reads x
        calls[name] = lambda kw=kw: dict(x=f32(4, 5), out=np.zeros((4, 5), np.float32), **kw)
        calls[name + "_backward"] = lambda kw=kw: dict(
            dy=f32(4, 5), x=f32(4, 5, seed=1), out=np.zeros((4, 5), np.float32), **kw)
    # Layer kernels (convolution, pooling, normalisation, embedding).
    calls["conv_forward"] = lambda: dict(x=f32(2, 4, 6, 5), weight=f32(6, 2, 3, 2), bias=f32(6),
                                         stride=(2, 1), padding=1, dilation=1, groups=2)
    calls["conv_backward"] = lambda: dict(dy=f32(2, 6, 3, 6), x=f32(2, 4, 6, 5),
                                          weight=f32(6, 2, 3, 2), stride=(2, 1), padding=1,
                                          dilation=1, groups=2, need_input_grad=True,
                                          need_weight_grad=True, need_bias_grad=True)
    calls["max_pool_forward"] = lambda: dict(x=f32(2, 3, 6, 5), kernel_size=2, stride=None,
                                             padding=1)
    calls["max_pool_backward"] = lambda: dict(dy=f32(2, 3, 2, 2),
                                              indices=np.zeros((2, 3, 2, 2), np.int64),
                                              input_shape=(2, 3, 4, 4))
    calls["avg_pool_forward"] = lambda: dict(x=f32(2, 3, 6, 5), kernel_size=(3, 2), stride=1,
                                             padding=(1, 0))
    calls["avg_pool_backward"] = lambda: dict(dy=f32(2, 3, 6, 4), input_shape=(2, 3, 6, 5),
                                              kernel_size=(3, 2), stride=1, padding=(1, 0))
    calls["adaptive_avg_pool_forward"] = lambda: dict(x=f32(2, 3, 7), output_size=3)
    calls["adaptive_avg_pool_backward"] = lambda: dict(dy=f32(2, 3, 3), input_shape=(2, 3, 7))
    calls["batch_norm_forward"] = lambda: dict(
        x=f32(4, 3, 5), weight=f32(3), bias=f32(3), running_mean=np.zeros(3, np.float32),
        running_var=np.ones(3, np.float32), training=True, momentum=0.1, eps=1e-5)
    calls["batch_norm_backward"] = lambda: dict(
        dy=f32(4, 3, 5), x=f32(4, 3, 5, seed=1), mean=f32(3), invstd=np.ones(3, np.float32),
        weight=f32(3), training=True, need_input_grad=True, need_weight_grad=True,
        need_bias_grad=True)
    calls["layer_norm_forward"] = lambda: dict(x=f32(4, 5), weight=f32(5), bias=f32(5), eps=1e-5)
    calls["layer_norm_backward"] = lambda: dict(
        dy=f32(4, 5), x=f32(4, 5, seed=1), mean=f32(4), rstd=np.ones(4, np.float32),
        weight=f32(5), need_input_grad=True, need_weight_grad=True, need_bias_grad=True)
    calls["embedding_forward"] = lambda: dict(weight=f32(6, 3), indices=np.array([[0, 5], [2, 2]]))
    calls["embedding_backward"] = lambda: dict(dout=f32(2, 2, 3), indices=np.array([[0, 5], [2, 2]]),
                                               dweight=np.zeros((6, 3), np.float32), padding_idx=2)
    for name in ("softmax", "log_softmax"):
        calls[name] = lambda: dict(x=f32(4, 5), axis=0, out=np.zeros((4, 5), np.float32))
        calls[name + "_backward"] = lambda: dict(dy=f32(4, 5), y=f32(4, 5, seed=1), axis=-1,
                                                 out=np.zeros((4, 5), np.float32))
    return calls


CALLS = valid_calls()
OUTPUT_ARGS = ("out", "dlogits", "dpred", "mask_out", "dweight")
# Arrays a kernel updates in place without returning them: a misaligned one is refused (a copy
# would lose the update), as tests/kernels/test_norm.py checks.
IN_PLACE_ARGS = ("running_mean", "running_var")


def misaligned(shape, dtype=np.float32):
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(bytearray(n + 1), np.uint8)[1:].view(dtype).reshape(shape)


def bad_values(like):
    """The catalogue of bad (or unusual) values to put in place of the valid argument `like`."""
    values = [None, True, False, 0, -1, 1, 2 ** 31, 2 ** 63, -2 ** 63 - 1, 2 ** 64, 10 ** 30,
              float("nan"), float("inf"), -float("inf"), -0.0, 1e308, 5e-324, "", "relu",
              "mean", b"mean", [1.0, 2.0], [[1.0]], (), (4, 5), (-1,), (2 ** 62, 2 ** 62), {},
              object(), np.float32(1.0), np.int64(3), pydl.tensor(np.ones((4, 5), np.float32))]
    if isinstance(like, np.ndarray):
        shape = like.shape
        values += [like.astype(t) for t in (np.float64, np.float16, np.int32, np.int64, np.uint8,
                                             np.bool_, np.complex64, ">f4", object)]
        values += [np.zeros(shape + (1,), like.dtype), np.zeros(shape[:-1], like.dtype),
                   np.zeros(shape[:-1] + (shape[-1] + 1,), like.dtype),
                   np.zeros((0,) + shape[1:], like.dtype), np.zeros((), like.dtype),
                   np.zeros((1, 0), like.dtype), like.tolist(),
                   np.repeat(like, 2, axis=-1)[..., ::2],  # non-contiguous
                   np.ascontiguousarray(np.swapaxes(like, 0, -1)).swapaxes(0, -1),  # transposed
                   np.broadcast_to(like.flat[0], shape),  # stride 0, read-only
                   misaligned(shape, like.dtype)]
        with np.errstate(invalid="ignore"):  # NaN cast to an int dtype (labels, masks)
            values += [np.full(shape, v).astype(like.dtype)
                       for v in (np.nan, np.inf, -1, 10 ** 9)]
        ro = like.copy()
        ro.flags.writeable = False
        values.append(ro)
    elif isinstance(like, list) and like and isinstance(like[0], np.ndarray):
        # Lists of arrays (sgd_update_multi): each bad array as the first item, wrong lengths,
        # the same array twice, a tuple instead of a list.
        values += [[bad] + like[1:] for bad in bad_values(like[0])]
        values += [like[:1], like + like[:1], [like[0], like[0]], tuple(like), [], [None] * 2]
    return values


def call_kernel(name, kwargs):
    """Call a kernel; return its result or the documented exception it raised."""
    try:
        result = getattr(K, name)(**kwargs)
    except KERNEL_ERRORS as e:
        if not isinstance(e, MemoryError):
            assert name in str(e), f"{name}: the message does not name the operation: {e}"
        return e
    # Outputs are written in place, never replaced by a copy.
    returned = result if isinstance(result, tuple) else (result,)
    for arg in OUTPUT_ARGS:
        if isinstance(kwargs.get(arg), np.ndarray):
            assert any(r is kwargs[arg] for r in returned), f"{name}: {arg} was replaced"
    return result


def test_valid_calls_succeed():
    for name, make in CALLS.items():
        assert not isinstance(call_kernel(name, make()), Exception), name
    # every public kernel is fuzzed
    assert set(CALLS) == set(K.__all__) - {"NonFiniteUpdateError"}


def test_every_bad_value_in_every_argument():
    count = 0
    for name, make in CALLS.items():
        for arg, like in make().items():
            for bad in bad_values(like):
                kwargs = make()
                kwargs[arg] = bad
                call_kernel(name, kwargs)
                count += 1
    assert count > 1500, count  # the report quotes this number; keep it honest


def test_bad_thread_counts():
    previous = pydl.get_num_threads()
    try:
        for bad in bad_values(None):
            try:
                pydl.set_num_threads(bad)
            except (TypeError, ValueError) as e:
                assert "set_num_threads" in str(e)
            else:
                assert type(bad) is int and 1 <= bad <= 1024
    finally:
        pydl.set_num_threads(previous)
    assert pydl.get_num_threads() == previous


@st.composite
def random_array(draw):
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.integers(0, 6)) for _ in range(ndim))
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64, np.int64, np.uint8,
                                  np.float16, ">f8"]))
    a = np.random.default_rng(draw(st.integers(0, 99))).standard_normal(shape).astype(dtype)
    layout = draw(st.sampled_from(["plain", "plain", "view", "readonly", "misaligned"]))
    if layout == "view" and ndim:
        a = np.repeat(a, 2, axis=0)[::2]
    elif layout == "readonly":
        a.flags.writeable = False
    elif layout == "misaligned" and a.dtype.itemsize > 1:
        m = misaligned(shape, a.dtype)
        m[...] = a
        a = m
    return a


@FUZZ
@given(st.sampled_from(sorted(CALLS)), st.data())
def test_random_bad_argument_combinations(name, data):
    kwargs = CALLS[name]()
    names = sorted(kwargs)
    for arg in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        kwargs[arg] = data.draw(st.one_of(
            random_array(), st.sampled_from(bad_values(kwargs[arg])),
            st.sampled_from([kwargs[a] for a in names])))  # another argument: aliasing
    call_kernel(name, kwargs)


# --- regressions: bugs found by the fuzzing above -----------------------------------------------

@pytest.mark.parametrize("n", [2 ** 64, 2 ** 70, -2 ** 70])
def test_set_num_threads_beyond_64_bits_is_a_value_error(n):
    # Was a pybind11 RuntimeError ("Unable to cast Python instance ...").
    with pytest.raises(ValueError, match=r"set_num_threads: n must be in \[1, 1024\]"):
        pydl.set_num_threads(n)


@pytest.mark.parametrize("arg", ["seed", "step"])
def test_non_integer_arrays_as_seed_or_step_name_the_argument(arg):
    # Was numpy's anonymous "only integer scalar arrays can be converted to a scalar index".
    kwargs = dict(seed=0, step=0)
    for bad in (np.array(0.5), np.array([1, 2]), np.float64(1.0)):
        kwargs[arg] = bad
        with pytest.raises(TypeError, match=f"dropout_mask: {arg} must be an int, got"):
            K.dropout_mask(4, 0.5, **kwargs)
    with pytest.raises(TypeError, match="dropout_mask: shape must be"):
        K.dropout_mask(np.array([2.0, 3.0]), 0.5, 0)
    np.testing.assert_array_equal(K.dropout_mask(4, 0.5, np.array(7), step=np.int32(2)),
                                  K.dropout_mask(4, 0.5, 7, step=2))


def test_philox_counter_without_a_length_names_the_argument():
    # Was numpy's anonymous "len() of unsized object" (found by tools/fuzz_loader.py).
    with pytest.raises(TypeError, match="philox4x32_10: counter must be a sequence of 4 ints"):
        K.philox4x32_10(np.array(3), [0, 0])
    assert K.philox4x32_10(np.zeros(4, np.int64), np.zeros(2, np.uint32)) == \
        K.philox4x32_10([0] * 4, [0, 0])


@pytest.mark.parametrize("buffers", [[], ()])
def test_sgd_update_multi_with_an_empty_buffer_list_is_a_value_error(buffers):
    # Was a segfault: the length check skipped empty buffer lists and the update read a buffer
    # that did not exist.
    params = [f32(4), f32(3)]
    with pytest.raises(ValueError, match="must have the same length, got 2, 2 and 0"):
        K.sgd_update_multi(params, [f32(4), f32(3)], buffers, lr=0.1, momentum=0.9)
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match="same length"):
        K.sgd_update_multi(params, [f32(4), f32(3)], buffers, lr=0.1)  # no momentum either
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    K.sgd_update_multi([], [], buffers, lr=0.1, momentum=0.9)  # nothing to update: fine


def test_misaligned_outputs_are_rejected():
    # Were written through a misaligned T* (undefined behaviour, reported by UBSan).
    with pytest.raises(ValueError, match="matmul: out is not aligned"):
        K.matmul(f32(2, 3), f32(3, 2), out=misaligned((2, 2)))
    with pytest.raises(ValueError, match="relu: out is not aligned"):
        K.relu(f32(5), out=misaligned((5,)))
    with pytest.raises(ValueError, match="adam_update: exp_avg is not aligned"):
        K.adam_update(f32(3), f32(3), misaligned((3,)), np.zeros(3, np.float32), step=1)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_misaligned_inputs_give_the_aligned_result(name):
    kwargs, moved = CALLS[name](), CALLS[name]()
    for arg, value in kwargs.items():
        if (arg not in OUTPUT_ARGS + IN_PLACE_ARGS and isinstance(value, np.ndarray) and value.dtype.itemsize > 1
                and name not in ("sgd_update", "adam_update", "adamw_update",
                                 "l1_penalty_backward", "l2_penalty_backward",
                                 "elastic_net_penalty_backward") or arg == "w"):
            m = misaligned(value.shape, value.dtype)
            m[...] = value
            moved[arg] = m
    want, got = call_kernel(name, kwargs), call_kernel(name, moved)
    for w, g in zip(want if isinstance(want, tuple) else (want,),
                    got if isinstance(got, tuple) else (got,)):
        np.testing.assert_array_equal(g, w)


# --- the checkpoint loader ----------------------------------------------------------------------

def small_model():
    pydl.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.25),
                         nn.Sequential(nn.Linear(8, 3), nn.Tanh()), nn.Softmax(axis=-1))


def valid_files(directory):
    """Bytes of a save_model file (with Adam state after one step) and of a pydl.save tree."""
    model = small_model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    loss = (model(np.ones((2, 4), np.float32)) ** 2).sum()
    loss.backward()
    opt.step()
    pydl.save_model(model, directory / "model.npz", optimizer=opt)
    pydl.save({"model": model, "optimizer": opt, "epoch": 3, "history": [0.5, 0.25],
               "note": "x", "flags": (True, None), "step": np.int64(7)}, directory / "tree.npz")
    return [(directory / n).read_bytes() for n in ("model.npz", "tree.npz")]


def zip_members(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def npy(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


JSON_SCALARS = [None, True, 0, -1, 7, 2 ** 40, 10 ** 30, 0.5, -1e300, 1e-300, "", "list",
                "Linear", "Sequential", "model.0.weight", "float32", "<f4", "\udcff"]
JSON_KEYS = ["type", "items", "key", "dtype", "shape", "layers", "value", "in_features", "params"]


def random_json(rnd, depth=0):
    r = rnd.random()
    if depth >= 3 or r < 0.6:
        return rnd.choice(JSON_SCALARS + [[], {}])
    if r < 0.8:
        return [random_json(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {rnd.choice(JSON_KEYS): random_json(rnd, depth + 1) for _ in range(rnd.randrange(4))}


def json_nodes(node, path=()):
    """Every (container, key) position in a JSON document."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for k, v in items:
        yield node, k
        yield from json_nodes(v)


def mutate_header(rnd, header):
    for _ in range(rnd.randrange(1, 4)):
        positions = list(json_nodes(header))
        container, key = rnd.choice(positions)
        action = rnd.randrange(4)
        if action == 0:
            container[key] = random_json(rnd)
        elif action == 1 and isinstance(container, dict):
            del container[key]
        elif action == 2 and isinstance(container[key], int) and not isinstance(
                container[key], bool):
            container[key] = rnd.choice([container[key] + 1, -container[key], 2 ** 31,
                                         container[key] * 1000])
        else:
            other_container, other_key = rnd.choice(positions)
            container[key] = json.loads(json.dumps(other_container[other_key]))
    return json.dumps(header).encode()


def mutate_bytes(rnd, blob):
    """One random corruption of a saved file: header, member, zip-level or raw-byte surgery."""
    members = zip_members(blob)
    kind = rnd.randrange(7)
    if kind == 0:  # structural edit of the JSON header
        i = next(i for i, (n, _) in enumerate(members) if n == "__pydl__.npy")
        header = json.loads(np.lib.format.read_array(io.BytesIO(members[i][1])).tobytes())
        members[i] = ("__pydl__.npy", npy(np.frombuffer(mutate_header(rnd, header), np.uint8)))
        return zip_bytes(members)
    if kind == 1:  # replace one member's array by a random one
        i = rnd.randrange(len(members))
        shape = tuple(rnd.randrange(5) for _ in range(rnd.randrange(3)))
        dtype = rnd.choice([np.float32, np.float64, np.int64, np.uint8, np.bool_, ">f4",
                            np.complex64, "U3", "V4"])
        members[i] = (members[i][0], npy(np.zeros(shape, dtype)))
        return zip_bytes(members)
    if kind == 2:  # drop, duplicate, rename or add a member
        i = rnd.randrange(len(members))
        choice = rnd.randrange(4)
        if choice == 0:
            del members[i]
        elif choice == 1:
            members.append(members[i])
        elif choice == 2:
            members[i] = (rnd.choice(["x.npy", "x", "__pydl__.npy", "../x.npy", "a/b.npy"]),
                          members[i][1])
        else:
            members.append(("extra.npy", npy(np.arange(3))))
        return zip_bytes(members)
    if kind == 3:  # corrupt the .npy header of a member
        i = rnd.randrange(len(members))
        name, data = members[i]
        data = bytearray(data)
        for _ in range(rnd.randrange(1, 4)):
            data[rnd.randrange(min(len(data), 128))] = rnd.randrange(256)
        members[i] = (name, bytes(data))
        return zip_bytes(members)
    data = bytearray(blob)
    if kind == 4:  # flip random bytes anywhere (data, local headers, central directory)
        for _ in range(rnd.randrange(1, 8)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
    elif kind == 5:  # truncate
        del data[rnd.randrange(len(data)):]
    else:  # splice garbage in
        at = rnd.randrange(len(data))
        data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 64)))
    return bytes(data)


def load_everything(path):
    """Every way of reading a file; return how many succeeded. Only ValueError may escape."""
    ok = 0
    for read in (pydl.load, pydl.load_model,
                 lambda p: pydl.load_model(p, with_optimizer=True)):
        try:
            result = read(path)
        except ValueError:
            continue
        ok += 1
        if isinstance(result, tuple):
            result = result[0]
        if isinstance(result, nn.Module):  # a model that loads must also run
            try:
                result(np.ones((2, 4), np.float32))
            except ValueError:
                pass  # e.g. an input width the (valid but altered) architecture rejects
    return ok


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    return valid_files(tmp_path_factory.mktemp("fuzz"))


def test_unmodified_files_load(originals, tmp_path):
    path = tmp_path / "f.npz"
    path.write_bytes(originals[0])
    assert load_everything(path) == 3
    path.write_bytes(originals[1])
    assert load_everything(path) == 1  # a pydl.save tree is not a model file


@FUZZ
@given(st.sampled_from([0, 1]), st.randoms(use_true_random=False))
def test_corrupted_files_raise_only_value_error(originals, tmp_path, which, rnd):
    path = tmp_path / "f.npz"
    path.write_bytes(mutate_bytes(rnd, originals[which]))
    load_everything(path)


# --- regressions: loader bugs found by the fuzzing above ----------------------------------------

def edited(originals, tmp_path, edit):
    members = zip_members(originals[0])
    header = json.loads(np.lib.format.read_array(io.BytesIO(dict(members)["__pydl__.npy"]))
                        .tobytes())
    text = edit(header)
    text = text if isinstance(text, bytes) else json.dumps(text).encode()
    members = [(n, npy(np.frombuffer(text, np.uint8)) if n == "__pydl__.npy" else d)
               for n, d in members]
    path = tmp_path / "edited.npz"
    path.write_bytes(zip_bytes(members))
    return path


@pytest.mark.parametrize("depth", [500, 100_000])
def test_deeply_nested_header_is_a_value_error(originals, tmp_path, depth):
    # Was RecursionError from json.loads (deep) or from the tree decoder (depth ~500).
    node = '{"type":"list","items":[' * depth + '{"type":"none"}' + "]}" * depth
    path = edited(originals, tmp_path,
                  lambda h: json.dumps(dict(h, tree="@")).replace('"@"', node).encode())
    with pytest.raises(ValueError, match="nests deeper|not valid JSON"):
        pydl.load(path)


def test_deeply_nested_architecture_is_a_value_error(originals, tmp_path):
    node = '{"type":"Sequential","layers":[["0",' * 250 + '{"type":"ReLU"}' + "]]}" * 250
    path = edited(originals, tmp_path,
                  lambda h: json.dumps(dict(h, architecture="@")).replace('"@"', node).encode())
    with pytest.raises(ValueError, match="nest deeper than 100"):
        pydl.load_model(path)


def test_header_claiming_a_huge_layer_does_not_allocate_it(originals, tmp_path):
    # Was: a 600-byte edit made load_model allocate and initialise a 20000 x 20000 layer (GBs,
    # seconds) before noticing the stored weight is (8, 4).
    def grow(h):
        h["architecture"]["layers"][0][1].update(in_features=20000, out_features=20000)
        return h

    path = edited(originals, tmp_path, grow)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"'model.0.weight' of shape \(20000, 20000\)"):
            pydl.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2 ** 20, peak


def test_zip_claiming_an_unsupported_version_is_a_value_error(originals, tmp_path):
    # Was NotImplementedError from zipfile ("zip file version 11.7"), found by
    # tools/fuzz_loader.py: a corrupt "version needed to extract" in the central directory.
    blob = bytearray(originals[0])
    central = blob.rfind(b"PK\x01\x02")  # the last central-directory entry
    blob[central + 6] = 117  # version needed to extract: 11.7
    path = tmp_path / "f.npz"
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="not a valid .npz file"):
        pydl.load(path)


def test_mixed_key_types_at_the_top_level_are_a_value_error(originals, tmp_path):
    # Was TypeError from sorting int and str keys for the error message (tools/fuzz_loader.py).
    def add_int_key(h):
        h["tree"]["items"].append([0, {"type": "none"}])
        return h

    with pytest.raises(ValueError, match="unexpected or missing top-level entries"):
        pydl.load_model(edited(originals, tmp_path, add_int_key))


def test_int_key_among_the_weights_is_a_value_error(originals, tmp_path):
    # Was TypeError ("can only concatenate str") while naming the unexpected key.
    def add_int_weight(h):
        model_node = dict(h["tree"]["items"])["model"]
        model_node["items"].append([7, {"type": "none"}])
        return h

    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['model.7'\]"):
        pydl.load_model(edited(originals, tmp_path, add_int_weight))


@pytest.mark.parametrize("name", ["training", "_modules", "__class__", "forward", "", "a.b"])
def test_layer_names_that_would_clobber_the_module_are_a_value_error(originals, tmp_path, name):
    # "_modules"/"__class__" were TypeErrors; "training"/"forward" silently replaced attributes.
    def rename(h):
        h["architecture"]["layers"][1][0] = name
        return h

    with pytest.raises(ValueError, match="invalid layer name"):
        pydl.load_model(edited(originals, tmp_path, rename))


def test_duplicate_layer_names_are_a_value_error(originals, tmp_path):
    def dup(h):
        h["architecture"]["layers"][1][0] = h["architecture"]["layers"][2][0]
        return h

    with pytest.raises(ValueError, match="invalid layer name"):
        pydl.load_model(edited(originals, tmp_path, dup))


@pytest.mark.parametrize("edit, message", [
    # Was TypeError (unhashable list used as a dict key).
    (lambda h: (h["optimizer"].update(type=["Adam"]), h)[1], r"unknown type \['Adam'\]"),
    # Was OverflowError from float(10**400).
    (lambda h: (h["architecture"]["layers"][2][1].update(p=10 ** 400), h)[1], "Dropout"),
])
def test_odd_header_values_are_value_errors(originals, tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        pydl.load_model(edited(originals, tmp_path, edit), with_optimizer=True)


def test_mutations_change_the_file_and_mostly_break_it(originals, tmp_path):
    # The fuzz test is only as strong as its mutators: they must alter the file, and most
    # alterations must be caught (a mutator that always produced loadable files tests nothing).
    rnd = random.Random(0)
    path = tmp_path / "f.npz"
    changed = loaded = 0
    for _ in range(100):
        blob = mutate_bytes(rnd, originals[0])
        changed += blob != originals[0]
        path.write_bytes(blob)
        loaded += load_everything(path) == 3
    assert changed >= 95 and loaded <= 30, (changed, loaded)


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # zipfile: "Duplicate name"
