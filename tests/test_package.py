"""Package-level behaviour: version, cpu_info, thread settings and the PYDL_ARCH / PYDL_NUM_THREADS
environment variables (checked in fresh interpreters, since they are read at import)."""

import os
import subprocess
import sys

import pytest

import pydl
from pydl import _core


def run_python(code, **env):
    full_env = dict(os.environ)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                          text=True, timeout=120)


def test_version_is_a_string():
    assert isinstance(pydl.__version__, str) and pydl.__version__.count(".") >= 1


def test_cpu_info_reports_isa_and_threads():
    info = pydl.cpu_info()
    assert info["isa"] in ("avx512", "avx2", "generic")
    assert info["isa"] in info["supported"]
    assert "generic" in info["supported"]
    assert info["threads"] == pydl.get_num_threads() >= 1


def test_default_isa_is_the_best_supported():
    out = run_python("import pydl; print(pydl.cpu_info()['isa'])", PYDL_ARCH="")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _core.supported_isas()[-1]


@pytest.mark.parametrize("isa", list(_core.supported_isas()))
def test_pydl_arch_forces_an_isa(isa):
    out = run_python("import pydl; print(pydl.cpu_info()['isa'])", PYDL_ARCH=isa)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == isa


def test_pydl_arch_rejects_unknown_names():
    out = run_python("import pydl", PYDL_ARCH="sse9")
    assert out.returncode != 0
    assert "PYDL_ARCH=sse9" in out.stderr and "generic, avx2 or avx512" in out.stderr


def test_pydl_num_threads_sets_the_default():
    out = run_python("import pydl; print(pydl.get_num_threads())", PYDL_NUM_THREADS="3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_default_threads_is_the_core_count():
    out = run_python("import pydl; print(pydl.get_num_threads())", PYDL_NUM_THREADS="")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == os.cpu_count()


def test_set_num_threads_round_trips():
    previous = pydl.get_num_threads()
    try:
        pydl.set_num_threads(1)
        assert pydl.get_num_threads() == 1
        pydl.set_num_threads(5)
        assert pydl.get_num_threads() == 5
    finally:
        pydl.set_num_threads(previous)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                      ("2", TypeError), (True, TypeError), (None, TypeError)])
def test_set_num_threads_rejects_bad_values(bad, exc):
    previous = pydl.get_num_threads()
    with pytest.raises(exc, match="set_num_threads"):
        pydl.set_num_threads(bad)
    assert pydl.get_num_threads() == previous


def test_import_prints_nothing():
    out = run_python("import pydl")
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
