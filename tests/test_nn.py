"""pydl.nn: initialisation, forward values against numpy, float64 gradchecks, Dropout statistics,
Sequential indexing and fusion, parameters/state_dict (with PyTorch interop), freezing, and small
MLPs learning XOR and two moons."""

import copy
from collections import OrderedDict

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.testing import gradcheck

F64 = np.float64


def t64(a, requires_grad=True):
    return pydl.tensor(np.asarray(a, F64), dtype="float64", requires_grad=requires_grad)


# --- Parameter and Linear ---------------------------------------------------------------------

def test_parameter_is_a_trainable_tensor():
    p = nn.Parameter(np.arange(6.0).reshape(2, 3).T)  # a non-contiguous view gets copied
    assert isinstance(p, pydl.Tensor) and p.requires_grad and p.grad is None
    assert p.data.flags.c_contiguous and p.data.flags.writeable and p.data.dtype == F64
    assert nn.Parameter([1, 2]).data.dtype == np.float32
    assert not nn.Parameter(np.zeros(2), requires_grad=False).requires_grad


def test_linear_shapes_dtype_and_init_bound():
    pydl.manual_seed(0)
    layer = nn.Linear(300, 200)
    assert layer.weight.shape == (200, 300) and layer.bias.shape == (200,)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    bound = 1 / np.sqrt(300)
    w = layer.weight.data.astype(F64)
    assert np.abs(w).max() <= bound and np.abs(layer.bias.data).max() <= bound
    # U(-b, b): mean 0, variance b^2 / 3 (60000 draws: generous 5-sigma-ish bounds)
    assert abs(w.mean()) < 5 * bound / np.sqrt(3 * w.size)
    assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.03
    assert abs(layer.bias.data.mean()) < 0.5 * bound
    assert nn.Linear(3, 2, dtype=np.float64).weight.dtype == F64
    assert nn.Linear(3, 2, bias=False).bias is None


def test_linear_init_is_reproducible_with_manual_seed():
    pydl.manual_seed(42)
    a = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2))
    pydl.manual_seed(42)
    b = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2))
    c = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2))
    for (ka, va), (kb, vb), (_, vc) in zip(a.state_dict().items(), b.state_dict().items(),
                                           c.state_dict().items()):
        assert ka == kb and np.array_equal(va, vb)
        assert not np.array_equal(va, vc)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_linear_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(bad, 3)
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(3, bad)


@pytest.mark.parametrize("dtype", [np.float32, F64])
def test_linear_forward_matches_numpy(rng, dtype):
    layer = nn.Linear(7, 5, dtype=dtype)
    x = rng.standard_normal((6, 7)).astype(dtype)
    expected = x.astype(F64) @ layer.weight.data.T.astype(F64) + layer.bias.data
    out = layer(pydl.tensor(x, dtype=dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out.data, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-12)
    no_bias = nn.Linear(7, 5, bias=False, dtype=dtype)
    np.testing.assert_allclose(no_bias(x).data, x.astype(F64) @ no_bias.weight.data.T,
                               rtol=1e-5, atol=1e-5)


def test_linear_converts_plain_arrays_to_its_dtype(rng):
    layer = nn.Linear(3, 2)
    out = layer(rng.standard_normal((4, 3)))  # float64 numpy into a float32 layer
    assert out.dtype == np.float32


def test_linear_wrong_width_names_expected_and_actual(rng):
    layer = nn.Linear(4, 2)
    with pytest.raises(ValueError, match=r"4.*\(3, 5\)"):
        layer(rng.standard_normal((3, 5)).astype(np.float32))
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"4.*\(2, 6\)"):
        model(np.zeros((2, 6), np.float32))


def test_linear_gradcheck(rng):
    layer = nn.Linear(4, 3, dtype=F64)
    x = t64(rng.standard_normal((5, 4)))
    assert gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])


# --- activations ------------------------------------------------------------------------------

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


ACTIVATIONS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(), lambda x: np.where(x > 0, x, 0.01 * x)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.ELU(), lambda x: np.where(x > 0, x, np.expm1(x))),
    (nn.ELU(alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    (nn.Sigmoid(), sigmoid),
    (nn.Tanh(), np.tanh),
    (nn.Softmax(), lambda x: np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)),
    (nn.Softmax(axis=0), lambda x: np.exp(x) / np.exp(x).sum(axis=0, keepdims=True)),
]


@pytest.mark.parametrize("module,ref", ACTIVATIONS, ids=lambda v: repr(v) if
                         isinstance(v, nn.Module) else "")
def test_activation_modules_match_numpy_and_gradcheck(rng, module, ref):
    x = rng.standard_normal((4, 6))
    x[np.abs(x) < 0.05] = 0.3  # keep the gradcheck away from kinks
    np.testing.assert_allclose(module(t64(x, False)).data, ref(x), rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda t: module(t), [t64(x)])


def test_activation_parameters_are_validated():
    with pytest.raises(ValueError, match="negative_slope"):
        nn.LeakyReLU(-0.1)
    with pytest.raises(ValueError, match="alpha"):
        nn.ELU(float("nan"))


# --- Dropout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(p)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_statistics_in_training(p):
    n = 200_000
    layer = nn.Dropout(p)
    y = layer(pydl.tensor(np.ones(n, np.float32))).data
    kept = y != 0
    # kept fraction within 5 binomial standard deviations of 1 - p
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-6)


def test_dropout_eval_is_identity_and_p0_is_identity(rng):
    x = pydl.tensor(rng.standard_normal((8, 5)))
    layer = nn.Dropout(0.5).eval()
    assert np.array_equal(layer(x).data, x.data)
    assert np.array_equal(nn.Dropout(0.0)(x).data, x.data)
    layer.train()
    assert not np.array_equal(layer(x).data, x.data)


def test_dropout_is_deterministic_under_manual_seed(rng):
    x = pydl.tensor(rng.standard_normal((64, 32)))
    model = nn.Sequential(nn.Dropout(0.3), nn.Dropout(0.3))
    pydl.manual_seed(7)
    a, b = model(x).data, model(x).data
    pydl.manual_seed(7)
    c, d = model(x).data, model(x).data
    assert np.array_equal(a, c) and np.array_equal(b, d)
    assert not np.array_equal(a, b)  # a new mask per call


def test_dropout_backward_uses_the_forward_mask(rng):
    x = pydl.tensor(rng.standard_normal((16, 8)), requires_grad=True)
    y = nn.Dropout(0.5)(x)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, (y.data != 0) * np.float32(2.0))


# --- Sequential -------------------------------------------------------------------------------

def make_mlp(dtype=np.float32):
    return nn.Sequential(nn.Linear(4, 8, dtype=dtype), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(8, 6, dtype=dtype), nn.Tanh(), nn.Linear(6, 3, dtype=dtype))


def test_sequential_container_protocol():
    model = make_mlp()
    layers = list(model)
    assert len(model) == 6 and isinstance(layers[0], nn.Linear)
    assert model[0] is layers[0] and model[-1] is layers[5]
    part = model[1:4]
    assert isinstance(part, nn.Sequential) and len(part) == 3
    assert all(a is b for a, b in zip(part, layers[1:4]))
    # slices keep the layers' names, as torch.nn.Sequential does
    assert list(part.state_dict()) == ["3.weight", "3.bias"]
    assert part[2] is layers[3]
    with pytest.raises(IndexError, match="out of range"):
        model[6]
    with pytest.raises(TypeError, match="Module"):
        nn.Sequential(nn.Linear(2, 2), lambda x: x)
    model.append(nn.Sigmoid())
    assert len(model) == 7 and isinstance(model[6], nn.Sigmoid)


def test_sequential_slices_share_parameters(rng):
    model = make_mlp().eval()
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(model[2:](model[:2](x)).data, model(x).data)
    model[3].weight.data[...] = 0  # seen through every slice: only the bias is left
    expected = np.broadcast_to(np.tanh(model[3].bias.data), (3, 6))
    np.testing.assert_allclose(model[:5](x).data, expected, rtol=1e-6)
    np.testing.assert_allclose(model[3:5](x[:, :1].repeat(8, 1)).data, expected, rtol=1e-6)


def test_sequential_ordered_dict_names():
    model = nn.Sequential(OrderedDict([("hidden", nn.Linear(2, 3)), ("act", nn.ReLU()),
                                       ("out", nn.Linear(3, 1))]))
    assert list(model.state_dict()) == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]


@pytest.mark.parametrize("dtype", [np.float32, F64])
@pytest.mark.parametrize("act", [nn.ReLU, lambda: nn.LeakyReLU(0.1), lambda: nn.ELU(0.7),
                                 nn.Sigmoid, nn.Tanh])
def test_fused_linear_activation_is_bit_identical_to_separate_layers(rng, dtype, act):
    pydl.manual_seed(3)
    lin = nn.Linear(33, 17, dtype=dtype)
    a = act()
    fused = nn.Sequential(lin, a)
    x = rng.standard_normal((29, 33)).astype(dtype)
    y_sep = a(lin(pydl.tensor(x, dtype=dtype)))
    g = rng.standard_normal(y_sep.shape).astype(dtype)
    y_sep.backward(g)
    sep_grads = [lin.weight.grad.copy(), lin.bias.grad.copy()]
    lin.zero_grad()
    y_fused = fused(pydl.tensor(x, dtype=dtype))
    y_fused.backward(g)
    assert y_fused.data.tobytes() == y_sep.data.tobytes()
    assert lin.weight.grad.tobytes() == sep_grads[0].tobytes()
    assert lin.bias.grad.tobytes() == sep_grads[1].tobytes()


def test_sequential_gradcheck(rng):
    model = nn.Sequential(nn.Linear(3, 5, dtype=F64), nn.Tanh(), nn.Linear(5, 4, dtype=F64),
                          nn.ELU(), nn.Linear(4, 2, dtype=F64), nn.Sigmoid())
    x = t64(rng.standard_normal((6, 3)))
    assert gradcheck(lambda x, *ps: model(x), [x, *model.parameters()])


# --- Module: parameters, modes, grads, state --------------------------------------------------

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        self.scale = nn.Parameter(np.ones(4, np.float32))
        self.head = nn.Linear(4, 2)
        self.tied = self.head  # the same module under a second name

    def forward(self, x):
        return self.head(self.encoder(x) * self.scale)


def test_named_parameters_are_dotted_in_registration_order_without_duplicates():
    block = Block()
    names = [n for n, _ in block.named_parameters()]
    assert names == ["scale", "encoder.0.weight", "encoder.0.bias", "head.weight", "head.bias"]
    assert len(list(block.parameters())) == 5
    assert [n for n, _ in block.named_modules()] == ["", "encoder", "encoder.0", "encoder.1",
                                                     "head", "tied"]
    assert len(list(block.children())) == 3
    # state_dict lists a shared parameter under each name, as PyTorch does
    assert "tied.weight" in block.state_dict()


def test_module_attribute_rules():
    class NoInit(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match="super"):
        NoInit()
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="weight"):
        layer.weight = np.zeros((2, 2))
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_train_eval_propagate():
    model = Block()
    assert model.training and model.encoder[1].training
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(rng, set_to_none):
    model = make_mlp()
    model(rng.standard_normal((3, 4))).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.any() for g in grads)
    model.zero_grad(set_to_none=set_to_none)
    for p, g in zip(model.parameters(), grads):
        if set_to_none:
            assert p.grad is None
        else:
            assert p.grad is g and not g.any()


def test_gradients_accumulate_across_backward_calls(rng):
    model = make_mlp().eval()
    x = rng.standard_normal((3, 4))
    model(x).sum().backward()
    first = [p.grad.copy() for p in model.parameters()]
    model(x).sum().backward()
    for p, g in zip(model.parameters(), first):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-6)


def test_state_dict_is_a_copy_and_round_trips(rng):
    model = make_mlp()
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    assert sd["0.weight"].shape == (8, 4) and sd["5.bias"].shape == (3,)
    sd["0.weight"][...] = 0
    assert model[0].weight.data.any()
    other = make_mlp()
    weight_array = other[0].weight.data
    result = other.load_state_dict(model.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert other[0].weight.data is weight_array  # copied in place
    x = rng.standard_normal((2, 4))
    assert np.array_equal(other.eval()(x).data, model.eval()(x).data)


def test_load_state_dict_casts_float64_into_float32():
    model = make_mlp()
    sd = {k: v.astype(F64) + 1 for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    assert model[0].weight.dtype == np.float32
    np.testing.assert_allclose(model[0].weight.data, sd["0.weight"], rtol=1e-6)


def _broken(sd, edit):
    sd = copy.deepcopy(sd)
    edit(sd)
    return sd


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.pop("3.bias"), r"missing key.*3\.bias"),
    (lambda d: d.update({"7.weight": np.zeros(2)}), r"unexpected key.*7\.weight"),
    (lambda d: d.update({"3.weight": np.zeros((8, 6), np.float32)}),
     r"'3\.weight' has shape \(8, 6\).*\(6, 8\)"),
    (lambda d: d.update({"0.bias": d["0.bias"].astype(np.complex64)}), r"'0\.bias'.*complex64"),
    (lambda d: d.update({"0.bias": d["0.bias"].astype(str)}), r"'0\.bias'.*dtype"),
    (lambda d: d.update({"5.bias": [0.0, 0.0, 0.0]}), r"'5\.bias' must be an array"),
])
def test_strict_load_state_dict_rejects_and_leaves_model_unchanged(edit, match):
    model = make_mlp()
    before = model.state_dict()
    source = {k: v + 1 for k, v in before.items()}  # valid entries would all change the model
    with pytest.raises(ValueError, match=match):
        model.load_state_dict(_broken(source, edit))
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), k


def test_non_strict_load_reports_keys_but_checks_shapes():
    model = make_mlp()
    before = model.state_dict()
    partial = {"0.weight": np.zeros((8, 4), np.float32), "extra": np.zeros(1)}
    result = model.load_state_dict(partial, strict=False)
    assert result.unexpected_keys == ["extra"]
    assert result.missing_keys == ["0.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    assert not model[0].weight.data.any()
    assert np.array_equal(model[3].weight.data, before["3.weight"])
    with pytest.raises(ValueError, match="0.bias"):
        model.load_state_dict({"0.bias": np.zeros(9)}, strict=False)
    with pytest.raises(TypeError, match="dict"):
        model.load_state_dict([("0.bias", np.zeros(8))])


def test_loads_a_pytorch_sequential_and_gives_the_same_outputs(rng):
    import torch
    tnn = torch.nn
    torch.manual_seed(0)
    tmodel = tnn.Sequential(tnn.Linear(5, 16), tnn.ReLU(), tnn.Dropout(0.2), tnn.Linear(16, 8),
                            tnn.Tanh(), tnn.Linear(8, 8), tnn.LeakyReLU(0.05), tnn.Linear(8, 3),
                            tnn.Sigmoid()).double().eval()
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 8),
                          nn.Tanh(), nn.Linear(8, 8), nn.LeakyReLU(0.05), nn.Linear(8, 3),
                          nn.Sigmoid()).eval()
    tsd = {k: v.numpy() for k, v in tmodel.state_dict().items()}
    assert list(model.state_dict()) == list(tsd)
    for k, v in model.state_dict().items():
        assert v.shape == tsd[k].shape
    model.load_state_dict(tsd)  # float64 torch weights into the float32 model
    x = rng.standard_normal((7, 5))
    with torch.no_grad():
        expected = tmodel(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model(x).data, expected, rtol=1e-5, atol=1e-6)
    # float64 model: same outputs to float64 precision
    model64 = nn.Sequential(nn.Linear(5, 16, dtype=F64), nn.ReLU(), nn.Dropout(0.2),
                            nn.Linear(16, 8, dtype=F64), nn.Tanh(), nn.Linear(8, 8, dtype=F64),
                            nn.LeakyReLU(0.05), nn.Linear(8, 3, dtype=F64), nn.Sigmoid()).eval()
    model64.load_state_dict(tsd)
    np.testing.assert_allclose(model64(x).data, expected, rtol=1e-12, atol=1e-14)


def test_pydl_weights_load_into_pytorch(rng):
    import torch
    model = make_mlp(F64).eval()
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                 torch.nn.Linear(8, 6), torch.nn.Tanh(),
                                 torch.nn.Linear(6, 3)).double().eval()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    x = rng.standard_normal((4, 4))
    with torch.no_grad():
        np.testing.assert_allclose(model(x).data, tmodel(torch.tensor(x)).numpy(), rtol=1e-12)


def test_repr_looks_like_pytorch():
    text = repr(make_mlp())
    assert text.startswith("Sequential(\n  (0): Linear(in_features=4, out_features=8, bias=True)")
    assert "(2): Dropout(p=0.5)" in text and "(4): Tanh()" in text
    assert "(tied): Linear" in repr(Block())


# --- freezing ---------------------------------------------------------------------------------

def test_freeze_and_unfreeze_return_self_and_set_requires_grad():
    model = make_mlp()
    assert model[0].freeze() is model[0]
    assert [p.requires_grad for p in model.parameters()] == [False, False] + [True] * 4
    assert model.unfreeze() is model
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_layers_get_no_gradient(rng):
    model = make_mlp()
    model[0].freeze()
    model[3].weight.requires_grad = False
    model(rng.standard_normal((5, 4))).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["0.weight"] is None and grads["0.bias"] is None and grads["3.weight"] is None
    assert grads["3.bias"] is not None and grads["5.weight"] is not None


@pytest.mark.parametrize("make_opt", [
    lambda ps: pydl.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: pydl.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: pydl.optim.Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: pydl.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
])
def test_frozen_module_is_bit_identical_through_training(rng, make_opt):
    model = make_mlp()
    opt = make_opt(model.parameters())
    criterion = pydl.losses.CrossEntropyLoss()
    x = rng.standard_normal((16, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    reg = pydl.regularizers.L2(0.01)

    def train(steps):
        for _ in range(steps):
            opt.zero_grad()
            loss = criterion(model(x), y) + reg(model)
            loss.backward()
            reg.add_gradients(model)
            opt.step()

    train(2)  # the first layer has optimizer state before it is frozen
    model[0].freeze()
    frozen = {k: v for k, v in model.state_dict().items() if k.startswith("0.")}
    moving = {k: v for k, v in model.state_dict().items() if not k.startswith("0.")}
    train(4)
    after = model.state_dict()
    for k, v in frozen.items():
        assert after[k].tobytes() == v.tobytes(), k
    for k, v in moving.items():
        assert not np.array_equal(after[k], v), k
    model.unfreeze()
    train(1)
    assert not np.array_equal(model.state_dict()["0.weight"], frozen["0.weight"])


# --- learning ---------------------------------------------------------------------------------

def fit(model, x, y, epochs, lr, batch=None, seed=0):
    opt = pydl.optim.Adam(model.parameters(), lr=lr)
    criterion = pydl.losses.CrossEntropyLoss()
    order = np.random.default_rng(seed)
    n = len(x)
    batch = batch or n
    for _ in range(epochs):
        idx = order.permutation(n)
        for s in range(0, n, batch):
            b = idx[s:s + batch]
            opt.zero_grad()
            criterion(model(x[b]), y[b]).backward()
            opt.step()
    with pydl.no_grad():
        return (model.eval()(x).data.argmax(axis=1) == y).mean()


def test_mlp_learns_xor():
    pydl.manual_seed(0)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([0, 1, 1, 0])
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    assert fit(model, x, y, epochs=300, lr=0.05) == 1.0


def two_moons(n, noise, rng):
    t = rng.uniform(0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    label = rng.integers(0, 2, n)
    x = np.where(label[:, None] == 0, upper, lower) + noise * rng.standard_normal((n, 2))
    return x.astype(np.float32), label


def test_mlp_learns_two_moons():
    pydl.manual_seed(1)
    rng = np.random.default_rng(1)
    x, y = two_moons(600, 0.1, rng)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 32),
                          nn.ReLU(), nn.Linear(32, 2))
    assert fit(model, x, y, epochs=60, lr=0.01, batch=32) >= 0.97


def test_replacing_a_layer_updates_the_fused_plan(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    setattr(model, "1", nn.Tanh())
    x = rng.standard_normal((5, 3)).astype(np.float32)
    expected = model[2](np.tanh(model[0](x).data)).data
    np.testing.assert_allclose(model(x).data, expected, rtol=1e-6, atol=1e-6)


def test_deepcopy_gives_an_independent_model(rng):
    model = make_mlp().eval()
    clone = copy.deepcopy(model)
    x = rng.standard_normal((2, 4))
    assert np.array_equal(clone(x).data, model(x).data)
    clone[0].weight.data[...] = 0
    assert model[0].weight.data.any()
    assert not np.array_equal(clone(x).data, model(x).data)


# --- PyTorch conveniences: to/double/float, apply, requires_grad_, num_parameters ----------------

def test_num_parameters_matches_pytorch_and_counts_shared_once():
    import torch
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                 torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    model = make_mlp()
    assert model.num_parameters() == sum(p.numel() for p in tmodel.parameters())
    model[0].freeze()
    assert model.num_parameters(trainable_only=True) == model.num_parameters() - (8 * 4 + 8)
    block = Block()  # "tied" shares a Linear: its parameters are counted once
    assert block.num_parameters() == sum(p.data.size for p in block.parameters())
    assert block.num_parameters() < sum(v.size for v in block.state_dict().values())


def test_requires_grad_freezes_and_unfreezes_and_returns_self():
    model = make_mlp()
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    assert model.num_parameters(trainable_only=True) == 0
    model[3].requires_grad_()
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True, False,
                                                            False]


def test_apply_visits_children_before_parents_like_pytorch():
    import torch
    order = []
    model = make_mlp()
    assert model.apply(lambda m: order.append(type(m).__name__)) is model
    torder = []
    torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                        torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).apply(
        lambda m: torder.append(type(m).__name__))
    assert order == torder


def test_to_double_float_cast_parameters_and_grads_in_place(rng):
    model = make_mlp()
    x = rng.standard_normal((3, 4))
    model(x).sum().backward()
    before = {k: v.astype(F64) for k, v in model.state_dict().items()}
    params = list(model.parameters())
    assert model.double() is model
    assert list(model.parameters()) == params  # same Parameter objects, new arrays
    for k, v in model.state_dict().items():
        assert v.dtype == F64 and np.array_equal(v, before[k])
    assert all(p.grad.dtype == F64 and p.data.flags.c_contiguous for p in params)
    model.eval()
    out64 = model(x).data
    assert out64.dtype == F64
    assert model.to("float32") is model and model(x).data.dtype == np.float32
    assert model.float().double().state_dict()["0.weight"].dtype == F64
    with pytest.raises(TypeError, match="float32 or float64"):
        model.to(np.int32)
    with pytest.raises(TypeError, match="float32 or float64"):
        model.to("cuda")


def test_double_model_trains_with_a_new_optimizer_and_matches_torch(rng):
    import torch
    model = make_mlp().double()
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                 torch.nn.Linear(8, 6), torch.nn.Tanh(),
                                 torch.nn.Linear(6, 3)).double().eval()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    model.eval()
    opt = pydl.optim.SGD(model.parameters(), lr=0.1)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1)
    x = rng.standard_normal((5, 4))
    for _ in range(3):
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()
        topt.zero_grad()
        (tmodel(torch.tensor(x)) ** 2).mean().backward()
        topt.step()
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-12, atol=1e-14)


def test_load_state_dict_takes_torch_tensors_directly(rng):
    import torch
    torch.manual_seed(3)
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                 torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    model = make_mlp().eval()
    model.load_state_dict(tmodel.state_dict())  # torch tensors, no .numpy() needed
    x = rng.standard_normal((3, 4)).astype(np.float32)
    with torch.no_grad():
        expected = tmodel.eval()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model(x).data, expected, rtol=1e-5, atol=1e-6)
    # parameters that require grad, and objects that only offer __array__ or .numpy()
    model.load_state_dict(dict(tmodel.named_parameters()))

    class OnlyNumpy:
        def __init__(self, a):
            self.a = a

        def numpy(self):
            return self.a

    class OnlyArray:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a

    sd = {k: (OnlyNumpy if i % 2 else OnlyArray)(np.full_like(v, i))
          for i, (k, v) in enumerate(model.state_dict().items())}
    model.load_state_dict(sd)
    assert all((v == i).all() for i, v in enumerate(model.state_dict().values()))


def test_load_state_dict_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, numpy as np, pydl\n"
            "m = pydl.nn.Sequential(pydl.nn.Linear(2, 2))\n"
            "m.load_state_dict({k: v for k, v in m.state_dict().items()})\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_module_to_none_is_a_type_error():
    m = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="float32 or float64"):
        m.to(None)
    assert m[0].weight.data.dtype == np.float32


def test_module_dict_refuses_keys_that_are_module_attributes():
    d = nn.ModuleDict()
    for key in ("eval", "training", "parameters", "_modules"):
        with pytest.raises(KeyError, match="attribute"):
            d[key] = nn.Linear(2, 2)
    d["head"] = nn.Linear(2, 2)
    d["head"] = nn.Linear(2, 3)  # replacing an entry is fine
    assert d["head"].out_features == 3
    with pytest.raises(KeyError):
        del d["missing"]
    del d["head"]
    assert len(d) == 0
    assert d.eval() is d
