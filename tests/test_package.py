"""Package-level behaviour: version, cpu_info, thread settings and the PYDL_ARCH / PYDL_NUM_THREADS
environment variables (checked in fresh interpreters, since they are read at import)."""

import os
import subprocess
import sys

import numpy as np
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


# --- what is bit-identical and what is only close (issue 15, item 9; README "Reliability") ----

TRAIN_DIGITS = """
import sys, numpy as np, pydl
from pydl import nn
dtype = np.dtype(sys.argv[1])
data = pydl.datasets.load_digits()
x, y = (data.data / 16.0).astype(dtype), data.target.astype(np.int64)
pydl.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 64, dtype=dtype), nn.Tanh(), nn.Dropout(0.1),
                      nn.Linear(64, 32, dtype=dtype), nn.ReLU(), nn.Linear(32, 10, dtype=dtype))
trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
                             pydl.optim.Adam(model.parameters(), lr=1e-2))
history = trainer.fit(x, y, epochs=1, batch_size=32, verbose=0)
np.savez(sys.argv[2], loss=history.history["loss"][0], *[p.data for p in model.parameters()])
"""

# The README's documented tolerances for one epoch of TRAIN_DIGITS (57 Adam steps), relative to
# the largest weight: measured 8e-6 (float32) and 7e-15 (float64) between generic and AVX2.
ISA_TOLERANCE = {"float32": 1e-4, "float64": 1e-12}


def train_digits(tmp_path, dtype, tag, **env):
    out = tmp_path / f"{tag}.npz"
    full_env = dict(os.environ, **env)
    subprocess.run([sys.executable, "-c", TRAIN_DIGITS, dtype, str(out)], env=full_env,
                   check=True, timeout=300, cwd=os.path.dirname(os.path.dirname(pydl.__file__)))
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_is_bit_identical_across_thread_counts_and_close_across_isas(tmp_path, dtype):
    best = train_digits(tmp_path, dtype, "t1", PYDL_ARCH="", PYDL_NUM_THREADS="1")
    two = train_digits(tmp_path, dtype, "t2", PYDL_ARCH="", PYDL_NUM_THREADS="2")
    for k in best:  # the same instruction set: any thread count gives the same bits
        np.testing.assert_array_equal(best[k], two[k], err_msg=k)
    generic = train_digits(tmp_path, dtype, "generic", PYDL_ARCH="generic", PYDL_NUM_THREADS="2")
    weights = [k for k in best if k != "loss"]
    scale = max(np.abs(best[k]).max() for k in weights)
    diff = max(np.abs(best[k] - generic[k]).max() for k in weights)
    assert diff <= ISA_TOLERANCE[dtype] * scale, (diff, scale)
    assert abs(float(best["loss"]) - float(generic["loss"])) <= ISA_TOLERANCE[dtype]
