"""Process-wide random state: one seed drives weight init, dropout masks and shuffling.

``manual_seed(s)`` makes a run bit-reproducible whatever the kernel thread count:

- weight initialisation draws from :func:`generator` (a numpy ``Generator``);
- data shuffling draws from :func:`shuffle_generator` (a separate stream, so building one more
  model does not change the batch order);
- each dropout call takes the next ``(seed, step)`` pair from :func:`next_dropout_key`; the
  dropout kernel's Philox mask depends only on that pair and the element index.

Thread safety: the step counter and the generator swap in ``manual_seed`` are guarded by a lock,
and numpy Generators serialize their own draws, so concurrent use never corrupts state. Draws from
several Python threads at once are still taken in whatever order the threads arrive, so only
single-threaded Python code (any number of kernel threads) is bit-reproducible.
"""

import operator
import secrets
import threading

import numpy as np

__all__ = ["manual_seed", "initial_seed", "generator", "shuffle_generator", "next_dropout_key"]

_lock = threading.Lock()
_seed = 0
_init_gen = None
_shuffle_gen = None
_dropout_step = 0


def _reset(seed):
    global _seed, _init_gen, _shuffle_gen, _dropout_step
    init_seq, shuffle_seq = np.random.SeedSequence(seed).spawn(2)
    with _lock:
        _seed = seed
        _init_gen = np.random.Generator(np.random.PCG64(init_seq))
        _shuffle_gen = np.random.Generator(np.random.PCG64(shuffle_seq))
        _dropout_step = 0


def manual_seed(seed):
    """Seed weight initialisation, dropout and shuffling for a reproducible run.

    Args:
        seed: An int in [0, 2**64).

    Raises:
        TypeError: seed is not an int.
        ValueError: seed is negative or >= 2**64.

    Example:
        >>> pydl.manual_seed(0)
    """
    if isinstance(seed, bool):
        raise TypeError("manual_seed: seed must be an int, got bool")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}") from None
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"manual_seed: seed must be in [0, 2**64), got {seed}")
    _reset(seed)


def initial_seed():
    """Return the current seed (the last ``manual_seed`` value, or the random one drawn at import)."""
    return _seed


def generator():
    """Return the numpy Generator used for weight initialisation (reset by ``manual_seed``)."""
    return _init_gen


def shuffle_generator():
    """Return the numpy Generator used to shuffle training data (reset by ``manual_seed``)."""
    return _shuffle_gen


def next_dropout_key():
    """Return the (seed, step) pair for the next dropout mask and advance the step counter."""
    global _dropout_step
    with _lock:
        step = _dropout_step
        _dropout_step = step + 1
        return _seed, step


_reset(secrets.randbits(63))
