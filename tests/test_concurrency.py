"""Concurrency above the kernel layer: Python threads TRAINING separate models at once (with the
nn/optim/Trainer stack, not just kernel calls), changing the thread count while they train, and
os.fork() while the kernel thread pool is in the middle of a job in another thread.

tests/test_threading.py covers concurrent kernel calls, set_num_threads during kernel calls and
fork after the pool has started (with the pool idle).
"""

import os
import select
import sys
import threading

import numpy as np
import pytest

import pydl
from pydl import kernels as K
from pydl import nn
from pydl.train import Trainer

N_MODELS = 6


def dataset(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((512, 48)).astype(np.float32)
    y = (x[:, :4].argmax(axis=1)).astype(np.int64)
    return x, y


def build(seed):
    """A model and its optimizer; weight init draws from the global generator, so build serially."""
    pydl.manual_seed(seed)
    model = nn.Sequential(nn.Linear(48, 256), nn.ELU(), nn.Linear(256, 128), nn.Tanh(),
                          nn.Linear(128, 4))
    opt = (pydl.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4) if seed % 2
           else pydl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True))
    return model, opt


def train(model, opt, seed):
    """Two styles in turn: the Trainer (no shuffling: the shuffle stream is process-wide) and a
    hand-written loop with a functional loss and a regularizer."""
    x, y = dataset(seed)
    if seed % 3 == 0:
        trainer = Trainer(model, pydl.losses.CrossEntropyLoss(), opt,
                          regularizer=pydl.regularizers.ElasticNet(1e-4, 0.5))
        trainer.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0,
                    validation_data=(x[:64], y[:64]))
    else:
        reg = pydl.regularizers.L2(1e-3)
        for epoch in range(3):
            for b in range(0, len(x), 64):
                opt.zero_grad()
                out = model(pydl.tensor(x[b:b + 64]))
                loss = pydl.functional.cross_entropy(out, y[b:b + 64], label_smoothing=0.05)
                loss.backward()
                reg.add_gradients(model)
                opt.step()
                with pydl.no_grad():  # a running metric: grad mode must be per thread
                    model(pydl.tensor(x[:16]))
    model.eval()
    with pydl.no_grad():
        return model.state_dict(), model(pydl.tensor(x)).data.copy()


def serial_results(seeds):
    return [train(*build(s), s) for s in seeds]


def assert_same(got, want):
    (state_g, out_g), (state_w, out_w) = got, want
    assert list(state_g) == list(state_w)
    for k in state_w:
        np.testing.assert_array_equal(state_g[k], state_w[k], err_msg=k)
    np.testing.assert_array_equal(out_g, out_w)


def run_threads(target, n):
    """Run target(0..n-1) in n threads that start together and switch often."""
    errors = []
    start = threading.Barrier(n)

    def guarded(i):
        try:
            start.wait()
            target(i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads' Python code at a fine grain
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads), "a training thread hung"
    assert not errors, errors


def test_threads_training_separate_models_match_serial_training():
    seeds = list(range(N_MODELS))
    want = serial_results(seeds)
    built = [build(s) for s in seeds]
    results = [None] * N_MODELS
    run_threads(lambda i: results.__setitem__(i, train(*built[i], seeds[i])), N_MODELS)
    for got, expected in zip(results, want):
        assert_same(got, expected)


def test_changing_the_thread_count_while_threads_train():
    previous = pydl.get_num_threads()
    seeds = list(range(3))
    want = serial_results(seeds)
    built = [build(s) for s in seeds]
    results = [None] * len(seeds)
    stop = threading.Event()

    def churn():
        counts = [1, 2, 3, 4, 1, 8, 2]
        i = 0
        while not stop.is_set():
            pydl.set_num_threads(counts[i % len(counts)])
            i += 1
            stop.wait(0.002)

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        run_threads(lambda i: results.__setitem__(i, train(*built[i], seeds[i])), len(seeds))
    finally:
        stop.set()
        churner.join(timeout=60)
        pydl.set_num_threads(previous)
    for got, expected in zip(results, want):
        assert_same(got, expected)


# --- one Trainer or optimizer from two threads (issue 15, item 2) -------------------------------

def test_a_second_thread_calling_fit_on_the_same_trainer_gets_a_clear_runtime_error():
    # Thread A's fit pauses in a callback; meanwhile thread B calls fit, evaluate and predict on
    # the same Trainer. Before the fix B trained too: one thread died with KeyError('exp_avg')
    # and the step counts ended torn.
    x, y = dataset(0)
    model, _ = build(1)
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(),
                      pydl.optim.Adam(model.parameters(), lr=1e-2))
    inside, release = threading.Event(), threading.Event()
    errors = []

    class Pause(pydl.train.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                inside.set()
                release.wait(60)

    def second():
        inside.wait(60)
        for call in (lambda: trainer.fit(x, y, epochs=1, verbose=0),
                     lambda: trainer.evaluate(x, y), lambda: trainer.predict(x)):
            try:
                call()
            except Exception as e:  # noqa: BLE001 - inspected below
                errors.append(e)
        release.set()

    thread = threading.Thread(target=second)
    thread.start()
    trainer.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[Pause()])
    thread.join(60)
    assert [type(e) for e in errors] == [RuntimeError] * 3, errors
    assert all("already running" in str(e) and "another thread" in str(e) for e in errors)
    steps = {s["step"] for s in trainer.optimizer.state.values()}
    assert steps == {2 * 8}  # two epochs of 8 batches, nothing from the refused calls
    trainer.fit(x, y, epochs=1, batch_size=64, verbose=0)  # usable again afterwards


@pytest.mark.parametrize("make", [lambda ps: pydl.optim.Adam(ps, lr=1e-3),
                                  lambda ps: pydl.optim.SGD(ps, lr=0.01, momentum=0.9)])
def test_one_optimizer_stepped_from_four_threads_runs_the_steps_one_after_another(make):
    # With fixed gradients the result of n steps does not depend on who takes them, so four
    # threads taking 50 steps each must equal 200 serial steps, bit for bit, with every
    # parameter's step count at 200 (before the fix: KeyError('exp_avg') and torn counts).
    def setup():
        pydl.manual_seed(3)
        model = nn.Sequential(*[nn.Linear(32, 32) for _ in range(6)])
        rng = np.random.default_rng(1)
        for p in model.parameters():
            p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
        return model, make(model.parameters())

    model, opt = setup()
    run_threads(lambda i: [opt.step() for _ in range(50)], 4)
    ref_model, ref_opt = setup()
    for _ in range(200):
        ref_opt.step()
    for a, b in zip(model.parameters(), ref_model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    for i, s in ref_opt.state.items():
        for k, v in s.items():
            np.testing.assert_array_equal(opt.state[i][k], v)


def big_job():
    """A matmul long enough (tens of ms) that a fork lands while the pool is working on it."""
    a = np.ones((700, 700), np.float32)
    return K.matmul(a, a)


def child_check():
    """In the child: threaded kernels must run and give the right answer."""
    pydl.set_num_threads(2)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 200)).astype(np.float32)
    b = rng.standard_normal((200, 100)).astype(np.float32)
    ok = np.allclose(K.matmul(a, b), a.astype(np.float64) @ b, atol=1e-3)
    x = rng.standard_normal(1_000_000).astype(np.float32)
    ok = ok and np.array_equal(K.relu(x), np.maximum(x, 0))
    return ok and np.array_equal(big_job(), np.full((700, 700), 700, np.float32))


def fork_and_check():
    """Fork, run child_check() in the child, and return whether it passed (fail on a hang)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        ok = 0
        try:
            ok = int(bool(child_check()))
        finally:
            os.write(write_fd, bytes([ok]))
            os._exit(0)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 60)
        if not ready:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("child hung after fork")
        status = os.read(read_fd, 1)
    finally:
        os.close(read_fd)
    os.waitpid(pid, 0)
    return status == b"\x01"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python >= 3.12: fork with threads
@pytest.mark.parametrize("forker", ["main thread", "another thread"])
def test_fork_while_the_pool_is_mid_job(forker):
    previous = pydl.get_num_threads()
    pydl.set_num_threads(2)
    stop = threading.Event()
    errors = []

    def compute():
        try:
            while not stop.is_set():
                assert big_job()[0, 0] == 700
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    results = []
    try:
        if forker == "main thread":
            busy = threading.Thread(target=compute)
            busy.start()
            for _ in range(5):
                results.append(fork_and_check())
        else:
            def fork_repeatedly():
                for _ in range(5):
                    results.append(fork_and_check())
                stop.set()

            busy = threading.Thread(target=fork_repeatedly)
            busy.start()
            compute()  # the main thread keeps the pool busy while the other thread forks
    finally:
        stop.set()
        busy.join(timeout=300)
        pydl.set_num_threads(previous)
    assert not busy.is_alive()
    assert not errors, errors
    assert results == [True] * 5
    # The parent's pool is still healthy.
    assert big_job()[0, 0] == 700
