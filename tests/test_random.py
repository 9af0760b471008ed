"""pydl.random: manual_seed resets every stream; the dropout step counter is thread-safe."""

import threading

import numpy as np
import pytest

import pydl
from pydl import random as prandom


def test_same_seed_same_streams():
    pydl.manual_seed(42)
    a = (prandom.generator().random(5), prandom.shuffle_generator().permutation(10),
         prandom.next_dropout_key(), prandom.next_dropout_key())
    pydl.manual_seed(42)
    b = (prandom.generator().random(5), prandom.shuffle_generator().permutation(10),
         prandom.next_dropout_key(), prandom.next_dropout_key())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2:] == b[2:] == ((42, 0), (42, 1))
    assert prandom.initial_seed() == 42


def test_different_seeds_differ():
    pydl.manual_seed(1)
    a = prandom.generator().random(4)
    pydl.manual_seed(2)
    assert not np.array_equal(a, prandom.generator().random(4))


def test_init_draws_do_not_move_the_shuffle_stream():
    pydl.manual_seed(3)
    expected = prandom.shuffle_generator().permutation(20)
    pydl.manual_seed(3)
    prandom.generator().random(1000)  # e.g. one more model built
    np.testing.assert_array_equal(prandom.shuffle_generator().permutation(20), expected)


def test_largest_seed_is_accepted():
    pydl.manual_seed(2 ** 64 - 1)
    assert prandom.next_dropout_key() == (2 ** 64 - 1, 0)
    pydl.manual_seed(np.uint32(5))
    assert prandom.initial_seed() == 5


@pytest.mark.parametrize("seed", [1.0, "1", None, True])
def test_non_int_seed_is_type_error(seed):
    with pytest.raises(TypeError, match="seed must be an int"):
        pydl.manual_seed(seed)


@pytest.mark.parametrize("seed", [-1, 2 ** 64])
def test_out_of_range_seed_is_value_error(seed):
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        pydl.manual_seed(seed)


def test_dropout_steps_are_unique_across_threads():
    pydl.manual_seed(0)
    per_thread = 2000
    results = [[] for _ in range(8)]

    def worker(out):
        for _ in range(per_thread):
            out.append(prandom.next_dropout_key()[1])

    threads = [threading.Thread(target=worker, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = sorted(s for r in results for s in r)
    assert steps == list(range(8 * per_thread))
