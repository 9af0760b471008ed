"""pydl on CPUs without AVX-512 (and with PYDL_ARCH=generic there), run under QEMU's user-mode
emulation of a Haswell CPU (AVX2+FMA, no AVX-512). Skipped when qemu-x86_64 is not installed.

The check script exercises every kernel family against numpy in the emulated process, so an
AVX-512 instruction reached on the way (at import, while building dispatch tables, or in a
kernel) fails the test with SIGILL instead of crashing a user's machine.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

QEMU = shutil.which("qemu-x86_64")

CHECK = textwrap.dedent("""
    import numpy as np, pydl
    from pydl import kernels as K
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    for (m, n, k) in [(1, 1, 1), (67, 45, 33), (200, 130, 300)]:
        a, b = f32(m, k), f32(k, n)
        np.testing.assert_allclose(K.matmul(a, b), a @ b, rtol=1e-4, atol=1e-4 * k)
        np.testing.assert_allclose(K.matmul(a.T.copy(), b, trans_a=True), a @ b,
                                   rtol=1e-4, atol=1e-4 * k)
    x, w, bias = f32(37, 50), f32(20, 50), f32(20)
    np.testing.assert_allclose(K.linear(x, w, bias, "relu"), np.maximum(x @ w.T + bias, 0),
                               rtol=1e-4, atol=1e-4)
    v = f32(1029)
    np.testing.assert_allclose(K.tanh(v), np.tanh(v), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(K.sigmoid(v), 1 / (1 + np.exp(-v)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(K.elu(v), np.where(v > 0, v, np.expm1(v)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(K.relu_backward(v, K.relu(v)), v * (v > 0))
    s = f32(7, 13)
    e = np.exp(s - s.max(1, keepdims=True))
    np.testing.assert_allclose(K.softmax(s), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    loss, d = K.softmax_cross_entropy(s, np.arange(7) % 13)
    ref = -np.log((e / e.sum(1, keepdims=True))[np.arange(7), np.arange(7) % 13]).mean()
    assert abs(loss - ref) < 1e-5 * max(1, ref), (loss, ref)
    np.testing.assert_allclose(K.l2_penalty(v, 0.1), 0.1 * np.sum(v.astype(np.float64) ** 2),
                               rtol=1e-6)
    p, g = f32(100), f32(100)
    p0 = p.copy()
    K.sgd_update(p, g, None, lr=0.1)
    np.testing.assert_allclose(p, p0 - np.float32(0.1) * g, rtol=1e-6, atol=1e-7)
    y, mask = K.dropout(v, 0.3, seed=7, step=2)
    print(pydl.cpu_info()["isa"], mask.tobytes().hex())
""")


def native_mask():
    import numpy as np
    from pydl import kernels as K
    v = np.random.default_rng(0).standard_normal(1029).astype(np.float32)
    return K.dropout(v, 0.3, seed=7, step=2)[1].tobytes().hex()


@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 (Debian package qemu-user) not installed")
@pytest.mark.parametrize("arch, expected_isa", [("", "avx2"), ("generic", "generic")])
def test_kernels_on_an_emulated_cpu_without_avx512(arch, expected_isa):
    env = dict(os.environ, PYDL_ARCH=arch)
    pkg_root = os.path.dirname(os.path.dirname(__import__("pydl").__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [pkg_root, env.get("PYTHONPATH")] if p)
    # Not realpath(): a virtual environment's python is a symlink, and resolving it would lose the
    # environment (and an editable install's import hook) in the emulated process.
    python = sys.executable
    out = subprocess.run([QEMU, "-cpu", "Haswell", python, "-c", CHECK], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]  # (qemu may warn about unemulated features)
    isa, mask = out.stdout.split()
    assert isa == expected_isa
    # Dropout masks depend only on (seed, step, index): identical to this process's ISA.
    assert mask == native_mask()
