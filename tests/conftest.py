"""Shared fixtures: run kernel tests on every instruction set this CPU has and at 1 and 2 threads.

The oracles the test extra promises (``pip install -e ".[test]"``) must import: a missing one
fails the run at start-up instead of silently skipping the parity tests that need it.
"""

import importlib

import numpy as np
import pytest

import pydl
from pydl import _core

ISAS = list(_core.supported_isas())

# Module name -> the requirement in pyproject.toml's test extra that provides it.
ORACLES = {"torch": "torch==2.13.0", "sklearn": "scikit-learn", "pandas": "pandas",
           "matplotlib": "matplotlib", "hypothesis": "hypothesis",
           "threadpoolctl": "threadpoolctl"}


def pytest_configure(config):
    # pytest-xdist registers this marker too; registered here as well so that a run without
    # xdist does not warn about it.
    config.addinivalue_line("markers", "xdist_group(name): run the group's tests on one worker")
    missing = []
    for module, requirement in ORACLES.items():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{requirement} ({exc})")
    if missing:
        raise pytest.UsageError("the test oracles " + ", ".join(missing) + " are missing; "
                                "install them with: pip install -e \".[test]\"")


# Test files that launch whole process groups (MPI ranks, a QEMU-emulated interpreter, the demo).
# Under pytest-xdist with --dist loadgroup (as .ci/run runs the suite) they share one group, so they
# run one after another on one worker instead of piling several process groups onto the cores.
PROCESS_GROUP_FILES = {"test_distributed.py", "test_older_cpus.py", "test_main.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in PROCESS_GROUP_FILES:
            item.add_marker(pytest.mark.xdist_group("processes"))


@pytest.fixture(params=ISAS)
def isa(request):
    """Dispatch every kernel call in the test to one instruction set, then restore the default."""
    previous = _core.isa()
    _core._set_isa(request.param)
    yield request.param
    _core._set_isa(previous)


@pytest.fixture(params=[1, 2])
def threads(request):
    """Run the test with the kernels limited to 1 or 2 threads, then restore the setting."""
    previous = pydl.get_num_threads()
    pydl.set_num_threads(request.param)
    yield request.param
    pydl.set_num_threads(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
