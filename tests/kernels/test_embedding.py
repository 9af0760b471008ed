"""pydl.kernels embedding_forward / embedding_backward vs numpy (gather, np.add.at) and PyTorch."""

import numpy as np
import pytest
import torch

import pydl
from pydl import kernels as K


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_and_scatter_add(isa, dtype, rng):
    w = rng.standard_normal((11, 5)).astype(dtype)
    idx = rng.integers(0, 11, (4, 7))
    out = K.embedding_forward(w, idx)
    assert out.shape == (4, 7, 5) and out.dtype == dtype
    assert np.array_equal(out, w[idx])
    dout = rng.standard_normal(out.shape).astype(dtype)
    dw = np.full_like(w, 0.5)
    res = K.embedding_backward(dout, idx, dw)
    assert res is dw
    ref = np.full(w.shape, 0.5)
    np.add.at(ref, idx.reshape(-1), dout.reshape(-1, 5).astype(np.float64))
    np.testing.assert_allclose(dw, ref, rtol=1e-5 if dtype == np.float32 else 1e-13)


def test_padding_idx_matches_torch(isa, rng):
    w = rng.standard_normal((6, 3))
    idx = np.array([[0, 2, 2, 5], [2, 1, 0, 0]])
    emb = torch.nn.Embedding(6, 3, padding_idx=2, dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(w))
    dout = rng.standard_normal((2, 4, 3))
    emb(torch.tensor(idx)).backward(torch.tensor(dout))
    dw = np.zeros_like(w)
    K.embedding_backward(dout, idx.astype(np.int32), dw, padding_idx=2)
    np.testing.assert_allclose(dw, emb.weight.grad.numpy(), rtol=1e-13)


def test_bit_identical_for_any_thread_count(rng):
    w = rng.standard_normal((50, 64)).astype(np.float32)
    idx = rng.integers(0, 50, 20000)
    dout = rng.standard_normal((20000, 64)).astype(np.float32)
    prev = pydl.get_num_threads()
    res = []
    try:
        for t in (1, 2):
            pydl.set_num_threads(t)
            res.append(K.embedding_backward(dout, idx, np.zeros_like(w)))
    finally:
        pydl.set_num_threads(prev)
    assert np.array_equal(res[0], res[1])


def test_bad_inputs():
    w = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"value 4 at flat position 1, out of range \[0, 4\)"):
        K.embedding_forward(w, np.array([1, 4]))
    with pytest.raises(ValueError, match="value -1"):
        K.embedding_forward(w, np.array([-1]))
    with pytest.raises(TypeError, match="integer array"):
        K.embedding_forward(w, np.array([1.0]))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3\)"):
        K.embedding_backward(np.zeros((2, 4)), np.array([0, 1]), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros((4, 3))
        ro.flags.writeable = False
        K.embedding_backward(np.zeros((1, 3)), np.array([0]), ro)
