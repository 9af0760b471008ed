"""Memory: long training loops, error paths and short-lived threads do not grow the resident set,
and results that cannot be allocated raise MemoryError (or ValueError when the size is not even
addressable) instead of crashing.

Resident memory is read from /proc/self/statm after a warm-up, so allocator pools, the kernel
thread pool and per-thread GEMM scratch are already at their steady size. The bounds are
generous (allocator noise is a few MB); a leak of one small array per step exceeds them.
"""

import gc
import os
import threading

import numpy as np
import pytest

import pydl
from pydl import kernels as K
from pydl import nn

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 2 ** 20


def asan_loaded():
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


# AddressSanitizer (tools/sanitize) holds freed memory in a quarantine and maps shadow memory, so
# the resident set grows by design there; it checks memory errors itself instead.
measures_rss = pytest.mark.skipif(not os.path.exists("/proc/self/statm") or asan_loaded(),
                                  reason="needs /proc/self/statm and no AddressSanitizer")


def rss():
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def growth(fn, warmup, steps):
    """Resident-memory growth over `steps` calls of fn(i), after `warmup` calls."""
    for i in range(warmup):
        fn(i)
    before = rss()
    for i in range(steps):
        fn(warmup + i)
    return rss() - before


@measures_rss
def test_thousands_of_training_steps_do_not_grow_memory():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 32)).astype(np.float32)
    y = rng.integers(0, 5, 256)
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 64),
                          nn.Tanh(), nn.Linear(64, 5))
    opt = pydl.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = pydl.losses.CrossEntropyLoss(label_smoothing=0.1)
    reg = pydl.regularizers.ElasticNet(1e-4, 0.5)
    losses = []

    def step(i):
        b = (i * 32) % 256
        opt.zero_grad()
        loss = loss_fn(model(pydl.tensor(x[b:b + 32])), y[b:b + 32])
        loss.backward()
        reg.add_gradients(model)
        opt.step()
        if i % 100 == 0:
            losses.append(loss.item())  # a logged float, as a training loop would keep

    # A leak of one 64x64 float32 gradient per step would be 16 KB x 4000 = 64 MB.
    assert growth(step, warmup=500, steps=4000) < 12 * MB
    assert losses[-1] < losses[0]  # it really trained


@measures_rss
def test_trainer_fit_repeatedly_does_not_grow_memory():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    pydl.manual_seed(1)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
                                 pydl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))

    def fit(i):
        trainer.fit(x, y, epochs=2, batch_size=20, validation_split=0.2, verbose=0,
                    callbacks=[pydl.train.EarlyStopping(monitor="val_loss", patience=1)])

    assert growth(fit, warmup=5, steps=100) < 12 * MB  # 100 fits = 2000 steps


@measures_rss
def test_kernel_calls_and_their_error_paths_do_not_grow_memory():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((64, 48)).astype(np.float32)
    b = rng.standard_normal((48, 32)).astype(np.float32)
    out = np.empty((64, 32), np.float32)
    wrong = np.empty((3, 3), np.float32)
    labels = rng.integers(0, 48, 64)

    def calls(i):
        K.matmul(a, b, out=out)
        K.linear(a[:, :32], b, activation="tanh")
        K.softmax(a, axis=i % 2)
        K.softmax_cross_entropy(a, labels, label_smoothing=0.1)
        K.dropout(a, 0.5, seed=1, step=i)
        for bad in (lambda: K.matmul(a, a), lambda: K.relu(a, out=wrong),
                    lambda: K.softmax(a.astype(np.float16)), lambda: K.dropout(a, 2.0, 0),
                    lambda: K.adam_update(a, a.copy(), a.copy(), a.copy(), step=0)):
            try:
                bad()
            except (TypeError, ValueError):
                pass

    # Leaking one exception object, message or output array per call would show.
    assert growth(calls, warmup=500, steps=10_000) < 12 * MB


@measures_rss
def test_short_lived_threads_free_their_kernel_scratch():
    # Each thread that runs a GEMM gets per-thread packing buffers; they must go with the thread.
    a = np.ones((256, 256), np.float32)

    def one_thread(i):
        t = threading.Thread(target=K.matmul, args=(a, a))
        t.start()
        t.join()

    assert growth(one_thread, warmup=20, steps=300) < 12 * MB


# --- allocations that cannot succeed ------------------------------------------------------------

def broadcast(shape, dtype=np.float32):
    """A read-only view of one element with a huge shape (stride 0): costs no memory."""
    return np.broadcast_to(np.ones((), dtype), shape)


# Each result needs 2**48 bytes or more: beyond the 47-bit user address space of x86-64 Linux, so
# allocating it fails even where the kernel overcommits memory (it is never touched).
HUGE = [
    ("matmul", lambda: K.matmul(broadcast((2 ** 23, 1)), broadcast((1, 2 ** 23)))),
    ("matmul trans", lambda: K.matmul(broadcast((1, 2 ** 23)), broadcast((2 ** 23, 1)),
                                      trans_a=True, trans_b=True)),
    ("linear", lambda: K.linear(broadcast((2 ** 23, 1)), broadcast((2 ** 23, 1)))),
    ("relu", lambda: K.relu(broadcast((2 ** 24, 2 ** 22)))),
    ("sigmoid_backward", lambda: K.sigmoid_backward(broadcast((2 ** 46,)), broadcast((2 ** 46,)))),
    ("softmax", lambda: K.softmax(broadcast((2 ** 24, 2 ** 22)))),
    ("softmax axis 0", lambda: K.softmax(broadcast((2 ** 24, 2 ** 22)), axis=0)),
    ("log_softmax", lambda: K.log_softmax(broadcast((2 ** 22, 2 ** 24)))),
    ("dropout", lambda: K.dropout(broadcast((2 ** 46,)), 0.5, seed=0)),
    ("dropout_mask", lambda: K.dropout_mask((2 ** 24, 2 ** 24), 0.5, seed=0)),
    ("mse", lambda: K.mse(broadcast((2 ** 46,)), broadcast((2 ** 46,)))),
    ("bce_with_logits", lambda: K.bce_with_logits(broadcast((2 ** 46,)), broadcast((2 ** 46,)))),
    ("softmax_cross_entropy", lambda: K.softmax_cross_entropy(
        broadcast((4, 2 ** 46)), np.zeros(4, np.int64))),
]


@pytest.mark.parametrize("name, call", HUGE, ids=[h[0] for h in HUGE])
def test_results_too_large_to_allocate_raise_memory_error(name, call):
    with pytest.raises(MemoryError):
        call()


@pytest.mark.parametrize("call", [
    lambda: K.matmul(broadcast((2 ** 32, 1)), broadcast((1, 2 ** 32))),  # 2**66 bytes
    lambda: K.linear(broadcast((2 ** 33, 1)), broadcast((2 ** 31, 1))),
    lambda: K.dropout_mask((2 ** 40, 2 ** 40), 0.5, seed=0),  # 2**80 elements
])
def test_results_beyond_the_address_space_raise_value_error(call):
    with pytest.raises(ValueError, match="than can be addressed"):
        call()


def test_a_model_too_large_for_memory_raises_memory_error():
    with pytest.raises(MemoryError):
        nn.Linear(2 ** 24, 2 ** 23)  # 2**47 floats
