"""Benchmark fixtures: pydl and numpy run side by side in one pytest-benchmark group per case.

Group names are "<case>[<threads>t]"; each group holds a "pydl" and a "numpy" entry so the ratio
can be read straight off the table (see benches/report.py for the README table).
"""

import pytest

import pydl

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # numpy's BLAS then keeps its own thread count
    threadpool_limits = None


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}t")
def threads(request):
    """Limit pydl and numpy's BLAS to 1 or 2 threads for the benchmark."""
    n = request.param
    previous = pydl.get_num_threads()
    pydl.set_num_threads(n)
    if threadpool_limits is not None:
        with threadpool_limits(limits=n):
            yield n
    else:
        yield n
    pydl.set_num_threads(previous)
