"""pydl.layers (re-exported by pydl.nn): PyTorch parity in float64, gradcheck, state_dict
loading from torch modules, save/load, freezing, engine replay and bad input."""

import numpy as np
import pytest
import torch

import pydl
from pydl import nn
from pydl.engine import compile_step
from pydl.layers import (AdaptiveAvgPoolOp, AvgPoolOp, BatchNormOp, ConvOp, EmbeddingOp,
                         LayerNormOp, MaxPoolOp)
from pydl.tensor import Tensor
from pydl.testing import gradcheck

F64 = np.float64


def t64(a, grad=True):
    return pydl.tensor(np.asarray(a, F64), requires_grad=grad, dtype=F64)


def copy_from_torch(model, tmodel):
    model.load_state_dict(tmodel.state_dict())  # torch tensors load as they are


def check_parity(model, tmodel, x, rtol=1e-10, atol=1e-10, load=True):
    """Forward, input gradient and every parameter gradient against PyTorch (after loading the
    torch module's state into the pydl one unless load=False)."""
    if load:
        copy_from_torch(model, tmodel)
    xp = t64(x)
    xt = torch.tensor(x, requires_grad=True)
    y = model(xp)
    yt = tmodel(xt)
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(g)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xp.grad, xt.grad.numpy(), rtol=rtol, atol=atol)
    tparams = dict(tmodel.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tparams[name].grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=name)


# --- convolution ---------------------------------------------------------------------------
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", range(8))
def test_conv_parity_random_configs(nd, seed):
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2, 3]))
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 4, nd))
    stride = tuple(int(v) for v in rng.integers(1, 3, nd))
    dil = tuple(int(v) for v in rng.integers(1, 3, nd))
    pad = tuple(int(rng.integers(0, 3)) for _ in range(nd))
    size = tuple(int(dil[i] * (k[i] - 1) + 1 + rng.integers(0, 6)) for i in range(nd))
    n = int(rng.choice([1, 3]))
    bias = bool(seed % 2)
    cls, tcls = (nn.Conv1d, torch.nn.Conv1d) if nd == 1 else (nn.Conv2d, torch.nn.Conv2d)
    model = cls(cin, cout, k, stride, pad, dil, groups, bias, dtype=F64)
    tmodel = tcls(cin, cout, k, stride, pad, dil, groups, bias, dtype=torch.float64)
    assert [n_ for n_, _ in model.named_parameters()] == [n_ for n_, _ in
                                                         tmodel.named_parameters()]
    check_parity(model, tmodel, rng.standard_normal((n, cin) + size))


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("k", [2, 3, 4])
def test_conv_same_and_valid_padding(k):
    rng = np.random.default_rng(k)
    for pad in ("same", "valid"):
        model = nn.Conv2d(2, 3, (k, k + 1), padding=pad, dilation=(1, 2), dtype=F64)
        tmodel = torch.nn.Conv2d(2, 3, (k, k + 1), padding=pad, dilation=(1, 2),
                                 dtype=torch.float64)
        x = rng.standard_normal((2, 2, 9, 10))
        check_parity(model, tmodel, x)
        if pad == "same":
            assert model(x).shape == (2, 3, 9, 10)


def test_conv_gradcheck():
    rng = np.random.default_rng(0)
    x, w, b = t64(rng.standard_normal((2, 4, 5, 6))), t64(rng.standard_normal((4, 2, 2, 3))), \
        t64(rng.standard_normal(4))
    assert gradcheck(lambda x, w, b: ConvOp((2, 1), (1, 1), (1, 2), 2)(x, w, b), [x, w, b])
    x1, w1 = t64(rng.standard_normal((3, 2, 7))), t64(rng.standard_normal((3, 2, 3)))
    assert gradcheck(lambda x, w: ConvOp(2, 1, 1, 1)(x, w, None), [x1, w1])


def test_conv_init_and_float32_default():
    pydl.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3)
    assert conv.weight.dtype == np.float32 and conv.weight.shape == (8, 3, 3, 3)
    bound = 1 / np.sqrt(27)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert conv.weight.data.std() > bound / 3  # spread over the range, not all zeros
    y = conv(np.zeros((2, 3, 8, 8)))  # a float64 array is converted to the layer's dtype
    assert y.dtype == np.float32 and y.shape == (2, 8, 6, 6)


def test_conv_bad_inputs():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"C_in=3, got shape \(2, 5, 8, 8\)"):
        conv(np.zeros((2, 5, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got shape \(3, 8, 8\)"):
        conv(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        nn.Conv1d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        nn.Conv1d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="'valid' or 'same'"):
        nn.Conv1d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        nn.Conv1d(3, 4, 0)
    with pytest.raises(TypeError, match="kernel_size"):
        nn.Conv2d(3, 4, 2.5)
    with pytest.raises(TypeError):
        nn.Conv2d(3, 4, 3, dtype=F64)(Tensor(np.zeros((1, 3, 4, 4), np.float32)))


# --- pooling -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"])
@pytest.mark.parametrize("seed", range(4))
def test_pool_parity(name, seed):
    rng = np.random.default_rng(seed)
    nd = int(name[-2])
    k = int(rng.integers(1, 4))
    stride = None if seed % 2 else int(rng.integers(1, 3))
    pad = int(rng.integers(0, k // 2 + 1))
    model, tmodel = getattr(nn, name)(k, stride, pad), getattr(torch.nn, name)(k, stride, pad)
    x = rng.standard_normal((int(rng.choice([1, 2])), 3) + (k + int(rng.integers(0, 6)),) * nd)
    check_parity(model, tmodel, x)


@pytest.mark.parametrize("nd", [1, 2])
def test_adaptive_avg_pool_parity_and_gradcheck(nd):
    rng = np.random.default_rng(nd)
    model = nn.AdaptiveAvgPool1d(3) if nd == 1 else nn.AdaptiveAvgPool2d((2, 3))
    tmodel = torch.nn.AdaptiveAvgPool1d(3) if nd == 1 else torch.nn.AdaptiveAvgPool2d((2, 3))
    x = rng.standard_normal((2, 3) + (7,) * nd)
    check_parity(model, tmodel, x)
    assert gradcheck(lambda t: AdaptiveAvgPoolOp(model.output_size)(t), [t64(x)])


def test_pool_gradcheck():
    rng = np.random.default_rng(3)
    x = t64(rng.standard_normal((2, 2, 6, 5)))
    assert gradcheck(lambda t: AvgPoolOp((3, 2), (2, 1), (1, 1))(t), [x])
    assert gradcheck(lambda t: MaxPoolOp(2, 1, 1)(t), [x])  # distinct values: no ties


def test_pool_bad_inputs():
    with pytest.raises(ValueError, match="at most half"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got shape \(4, 4\)"):
        nn.AvgPool2d(2)(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        nn.MaxPool1d(5)(np.zeros((1, 1, 3)))


# --- normalisation -------------------------------------------------------------------------
@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (5, 4)), ("BatchNorm1d", (3, 4, 7)),
                                       ("BatchNorm2d", (2, 4, 3, 5)), ("BatchNorm2d", (1, 4, 2, 2))])
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batch_norm_parity_with_running_stats(cls, shape, momentum):
    rng = np.random.default_rng(7)
    model = getattr(nn, cls)(4, eps=1e-3, momentum=momentum, dtype=F64)
    tmodel = getattr(torch.nn, cls)(4, eps=1e-3, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        tmodel.weight.uniform_(0.5, 1.5)
        tmodel.bias.uniform_(-1, 1)
    for step in range(3):
        model.zero_grad()
        tmodel.zero_grad()
        check_parity(model, tmodel, rng.standard_normal(shape) * 2 + 1, load=step == 0)
        np.testing.assert_allclose(model.running_mean, tmodel.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(model.running_var, tmodel.running_var.numpy(), rtol=1e-12)
        assert int(model.num_batches_tracked) == int(tmodel.num_batches_tracked) == step + 1
    model.eval()
    tmodel.eval()
    model.zero_grad()
    tmodel.zero_grad()
    check_parity(model, tmodel, rng.standard_normal(shape), load=False)
    assert int(model.num_batches_tracked) == 3  # eval leaves the statistics alone


def test_batch_norm_options_and_gradcheck():
    rng = np.random.default_rng(2)
    for affine, track in [(False, True), (True, False), (False, False)]:
        model = nn.BatchNorm1d(3, affine=affine, track_running_stats=track, dtype=F64)
        tmodel = torch.nn.BatchNorm1d(3, affine=affine, track_running_stats=track,
                                      dtype=torch.float64)
        assert list(model.state_dict()) == list(tmodel.state_dict())
        check_parity(model, tmodel, rng.standard_normal((6, 3, 2)))
        model.eval()
        tmodel.eval()
        model.zero_grad()
        tmodel.zero_grad()
        check_parity(model, tmodel, rng.standard_normal((6, 3, 2)), load=False)
    x, w, b = t64(rng.standard_normal((4, 3, 2))), t64(rng.random(3) + 0.5), t64(rng.random(3))
    assert gradcheck(lambda x, w, b: BatchNormOp(True, 0.1, 1e-5, None, None, None)(x, w, b),
                     [x, w, b])
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    assert gradcheck(lambda x, w, b: BatchNormOp(False, 0.1, 1e-5, rm, rv, None)(x, w, b),
                     [x, w, b])


def test_batch_norm_bad_inputs():
    bn = nn.BatchNorm1d(4)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(np.zeros((1, 4), np.float32))
    bn.eval()
    assert bn(np.ones((1, 4), np.float32)).shape == (1, 4)  # fine in eval, as in PyTorch
    with pytest.raises(ValueError, match=r"C=4, got shape \(2, 3\)"):
        bn(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got shape \(2, 4\)"):
        nn.BatchNorm2d(4)(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(4, momentum=2.0)


@pytest.mark.parametrize("shape,norm", [((3, 5), 5), ((2, 3, 4), (3, 4)), ((1, 7), (7,))])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_parity_and_gradcheck(shape, norm, affine):
    rng = np.random.default_rng(5)
    model = nn.LayerNorm(norm, eps=1e-4, elementwise_affine=affine, dtype=F64)
    tmodel = torch.nn.LayerNorm(norm, eps=1e-4, elementwise_affine=affine, dtype=torch.float64)
    if affine:
        with torch.no_grad():
            tmodel.weight.uniform_(0.5, 1.5)
            tmodel.bias.uniform_(-1, 1)
    check_parity(model, tmodel, rng.standard_normal(shape) * 3)
    if affine:
        x = t64(rng.standard_normal(shape))
        w, b = t64(model.weight.data), t64(model.bias.data)
        d = int(np.prod(norm))
        k = 1 if isinstance(norm, int) else len(norm)
        assert gradcheck(lambda x, w, b: LayerNormOp(d, k, 1e-4)(x, w, b), [x, w, b])
    with pytest.raises(ValueError, match="expected input of shape"):
        model(np.zeros((2, 9)))


# --- embedding -----------------------------------------------------------------------------
def test_embedding_parity_padding_idx_and_accumulation():
    rng = np.random.default_rng(0)
    model = nn.Embedding(7, 3, padding_idx=2, dtype=F64)
    tmodel = torch.nn.Embedding(7, 3, padding_idx=2, dtype=torch.float64)
    model.load_state_dict(tmodel.state_dict())
    idx = np.array([[0, 2, 6], [6, 6, 1]])
    g = rng.standard_normal((2, 3, 3))
    for _ in range(2):  # gradients accumulate across backward calls
        model(idx).backward(g)
        tmodel(torch.tensor(idx)).backward(torch.tensor(g))
    np.testing.assert_allclose(model(idx).data, tmodel(torch.tensor(idx)).detach().numpy())
    np.testing.assert_allclose(model.weight.grad, tmodel.weight.grad.numpy(), rtol=1e-13)
    assert not model.weight.grad[2].any()
    assert not nn.Embedding(5, 2, padding_idx=-1).weight.data[4].any()


def test_embedding_gradcheck_and_bad_inputs():
    w = t64(np.random.default_rng(1).standard_normal((5, 2)))
    idx = np.array([1, 1, 4, 0])
    assert gradcheck(lambda w: EmbeddingOp(None)(idx, w), [w])
    emb = nn.Embedding(5, 2)
    with pytest.raises(ValueError, match=r"value 5 at flat position 2, out of range \[0, 5\)"):
        emb(np.array([0, 1, 5]))
    with pytest.raises(TypeError, match="integer array"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(5, 2, padding_idx=5)


# --- shape layers and containers -----------------------------------------------------------
def test_flatten_identity_and_containers():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    t = Tensor(x)
    assert nn.Identity()(t) is t
    ml = nn.ModuleList([nn.Linear(2, 3), nn.ReLU()])
    ml.append(nn.Linear(3, 1))
    assert len(ml) == 3 and isinstance(ml[-1], nn.Linear) and len(ml[:2]) == 2
    ml.insert(0, nn.Identity())
    assert [type(m).__name__ for m in ml] == ["Identity", "Linear", "ReLU", "Linear"]
    assert [k for k in ml.state_dict()] == ["1.weight", "1.bias", "3.weight", "3.bias"]
    md = nn.ModuleDict({"enc": nn.Linear(2, 2), "head": nn.Linear(2, 1)})
    assert list(md.keys()) == ["enc", "head"] and "head" in md
    assert list(md.state_dict()) == ["enc.weight", "enc.bias", "head.weight", "head.bias"]
    with pytest.raises(TypeError):
        ml.append(3)
    with pytest.raises(IndexError):
        ml[7]


# --- a CNN end to end: torch weights, save/load, freezing, replay ----------------------------
def cnn(dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding="same", dtype=dtype), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(), nn.LayerNorm(24, dtype=dtype), nn.Linear(24, 5, dtype=dtype))


def torch_cnn():
    T = torch.nn
    return T.Sequential(T.Conv2d(1, 4, 3, padding=1), T.BatchNorm2d(4), T.ReLU(), T.MaxPool2d(2),
                        T.Conv2d(4, 6, 3, padding="same"), T.ReLU(), T.AvgPool2d(2), T.Flatten(),
                        T.LayerNorm(24), T.Linear(24, 5)).double()


def test_cnn_loads_torch_weights_and_matches():
    torch.manual_seed(0)
    tm = torch_cnn()
    model = cnn(F64)
    tm.train()
    check_parity(model, tm, np.random.default_rng(0).standard_normal((6, 1, 8, 8)))
    np.testing.assert_allclose(model[1].running_var, tm[1].running_var.numpy(), rtol=1e-12)


def test_save_load_round_trip(tmp_path):
    pydl.manual_seed(0)
    model = cnn()
    model(np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32))
    model[0].weight.requires_grad = False
    model.eval()
    path = tmp_path / "cnn.npz"
    pydl.save_model(model, path)
    loaded = pydl.load_model(path)
    assert repr(loaded) == repr(model) and not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and np.array_equal(a, b)
    assert not loaded[0].weight.requires_grad
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    with pydl.no_grad():
        assert np.array_equal(model(x).data, loaded(x).data)
    other = nn.ModuleList([nn.Embedding(4, 2, padding_idx=0), nn.Conv1d(2, 2, 2, groups=2),
                           nn.AdaptiveAvgPool1d(1), nn.Identity(), nn.BatchNorm1d(2, affine=False)])
    pydl.save_model(other, tmp_path / "o.npz")
    back = pydl.load_model(tmp_path / "o.npz")
    assert repr(back) == repr(other) and list(back.state_dict()) == list(other.state_dict())


def test_load_model_checks_conv_weight_before_allocating(tmp_path):
    import json
    path = tmp_path / "m.npz"
    pydl.save_model(nn.Sequential(nn.Conv2d(1, 2, 3)), path)
    with np.load(path) as f:
        arrays = dict(f)
    header = json.loads(arrays["__pydl__"].tobytes().decode())
    header["architecture"]["layers"][0][1]["config"]["out_channels"] = 99999999
    arrays["__pydl__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"Conv2d needs key 'model.0.weight' of shape"):
        pydl.load_model(path)


def test_freeze_for_counts_a_conv_block_as_one_layer():
    model = cnn()
    pydl.transfer.freeze_for(model, "small")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["9.weight", "9.bias"]
    pydl.transfer.freeze_for(model, "medium", n_trainable=2)
    # The LayerNorm (8) counts with the parameterised layer before it (conv 4).
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["4.weight", "4.bias", "8.weight", "8.bias", "9.weight", "9.bias"]
    pydl.transfer.freeze_for(model, "medium", n_trainable=3)
    assert all(p.requires_grad for p in model.parameters())  # conv 0 + its BatchNorm 1 too


@pytest.mark.parametrize("threads", [1, 2])
def test_replay_is_bit_identical_to_eager(threads):
    prev = pydl.get_num_threads()
    pydl.set_num_threads(threads)
    try:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((24, 1, 8, 8)).astype(np.float32)
        y = rng.integers(0, 5, 24)
        pydl.manual_seed(3)
        m1 = cnn()
        pydl.manual_seed(3)
        m2 = cnn()
        loss1, loss2 = pydl.losses.CrossEntropyLoss(), pydl.losses.CrossEntropyLoss()
        step = compile_step(m2, loss2)
        for it in range(3):
            xb, yb = x[it * 8:(it + 1) * 8], y[it * 8:(it + 1) * 8]
            m1.zero_grad()
            v1 = loss1(m1(Tensor(xb)), yb)
            v1.backward()
            v2 = step.forward(xb, yb)
            step.backward()
            assert float(v1.item()) == v2
            for (n, p), q in zip(m1.named_parameters(), m2.parameters()):
                assert np.array_equal(p.grad, q.grad), (n, it)
                p.data -= 0.1 * p.grad
                q.data -= 0.1 * q.grad
            for a, b in zip(m1.buffers(), m2.buffers()):
                assert np.array_equal(a, b)
        assert all(t is not None for t in step._tapes.values())  # really replayed
    finally:
        pydl.set_num_threads(prev)


def test_trainer_fits_a_cnn_on_digits():
    pydl.manual_seed(0)
    x, y = pydl.datasets.load_digits(return_X_y=True)
    x = np.asarray(x, np.float32).reshape(-1, 1, 8, 8)[:600]
    y = np.asarray(y)[:600]
    model = cnn()
    opt = pydl.optim.Adam(model.parameters(), lr=1e-2)
    hist = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), opt).fit(
        x[:500], y[:500] % 5, epochs=3, batch_size=32, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
