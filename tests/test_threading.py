"""Thread and process safety of the kernel layer: concurrent Python threads, changing the thread
count mid-flight, and fork() after the thread pool has started."""

import os
import threading

import numpy as np
import pytest

import pydl
from pydl import kernels as K


def workload(seed):
    """A mix of threaded kernels whose results are fully determined by `seed`."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((300, 200), dtype=np.float32)
    b = rng.standard_normal((200, 250), dtype=np.float32)
    x = rng.standard_normal(300_000).astype(np.float32)
    c = K.matmul(a, b)
    r = K.relu(x)
    s = K.softmax(c)
    y, mask = K.dropout(x, 0.3, seed=seed, step=1)
    return c, r, s, y, mask


def assert_same(got, want):
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_eight_python_threads_match_serial_results():
    seeds = list(range(8))
    serial = [workload(s) for s in seeds]
    results = [None] * len(seeds)
    errors = []

    def run(i):
        try:
            for _ in range(3):
                results[i] = workload(seeds[i])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(seeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for got, want in zip(results, serial):
        assert_same(got, want)


def test_set_num_threads_while_another_thread_computes():
    previous = pydl.get_num_threads()
    want = workload(3)
    stop = threading.Event()
    errors = []

    def compute():
        try:
            while not stop.is_set():
                assert_same(workload(3), want)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=compute)
    t.start()
    try:
        for n in [1, 2, 3, 1, 2, 4, 2] * 3:
            pydl.set_num_threads(n)
            K.matmul(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32))
    finally:
        stop.set()
        t.join(timeout=120)
        pydl.set_num_threads(previous)
    assert not t.is_alive()
    assert not errors, errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kernels_work_in_a_child_after_fork():
    previous = pydl.get_num_threads()
    pydl.set_num_threads(2)
    try:
        want = workload(5)  # starts the thread pool in the parent
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: must not deadlock on the parent's pool and must compute correctly
            ok = 0
            try:
                got = workload(5)
                ok = int(all(np.array_equal(g, w) for g, w in zip(got, want)))
            finally:
                os.write(write_fd, bytes([ok]))
                os._exit(0)
        os.close(write_fd)
        # A deadlocked child never writes; poll with a timeout instead of blocking forever.
        import select
        ready, _, _ = select.select([read_fd], [], [], 60)
        if not ready:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("child process hung after fork")
        status = os.read(read_fd, 1)
        os.close(read_fd)
        os.waitpid(pid, 0)
        assert status == b"\x01"
        # The parent's pool still works too.
        assert_same(workload(5), want)
    finally:
        pydl.set_num_threads(previous)
