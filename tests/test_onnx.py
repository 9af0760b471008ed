"""pydl.onnx.export: the files pass onnx.checker, and two independent ONNX runtimes (onnxruntime
and onnx's reference evaluator) reproduce pydl's eval-mode outputs to 1e-5 at batch 1 and 7."""

import os

import numpy as np
import pytest

import pydl
from pydl import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx.reference import ReferenceEvaluator  # noqa: E402

import pydl.onnx as pydl_onnx  # noqa: E402

TOL = 1e-5


def _pydl_eval(model, x):
    was = model.training
    model.eval()
    try:
        with pydl.no_grad():
            return np.asarray(model(x).data)
    finally:
        model.train(was)


def _onnxruntime(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


def _reference(path):
    evaluator = ReferenceEvaluator(onnx.load(str(path)))
    return lambda x: evaluator.run(None, {"input": x})[0]


RUNTIMES = {"onnxruntime": _onnxruntime, "onnx.reference": _reference}


def check_export(model, input_shape, tmp_path, opset=None, seed=0, tol=TOL,
                 runtimes=("onnxruntime", "onnx.reference")):
    """Export, check the file, and compare the runtimes with pydl at batch 1 and 7."""
    path = tmp_path / "model.onnx"
    proto = pydl_onnx.export(model, path, input_shape, opset=opset)
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded == proto
    dims = loaded.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == list(input_shape[1:])
    dtype = next(iter(model.parameters())).data.dtype if list(model.parameters()) else np.float32
    rng = np.random.default_rng(seed)
    for name in runtimes:
        run = RUNTIMES[name](path)
        for batch in (1, 7):
            x = rng.standard_normal((batch,) + tuple(input_shape[1:])).astype(dtype)
            np.testing.assert_allclose(run(x), _pydl_eval(model, x), rtol=tol, atol=tol,
                                       err_msg=f"{name} at batch {batch}")
    return loaded


def _ops(proto):
    return [n.op_type for n in proto.graph.node]


@pytest.mark.parametrize("layer, ops", [
    (nn.ReLU(), ["Relu"]),
    (nn.LeakyReLU(0.2), ["LeakyRelu"]),
    (nn.ELU(0.7), ["Elu"]),
    (nn.Sigmoid(), ["Sigmoid"]),
    (nn.Tanh(), ["Tanh"]),
    (nn.Softmax(), ["Softmax"]),
    (nn.Softmax(axis=0), ["Softmax"]),
    (nn.LogSoftmax(), ["LogSoftmax"]),
    (nn.SiLU(), ["Sigmoid", "Mul"]),
    (nn.Dropout(0.5), []),
])
def test_each_activation_after_a_linear(layer, ops, tmp_path):
    pydl.manual_seed(1)
    proto = check_export(nn.Sequential(nn.Linear(6, 5), layer), (None, 6), tmp_path)
    assert _ops(proto) == ["Gemm"] + ops


@pytest.mark.parametrize("bias", [True, False])
def test_linear_is_one_gemm_with_named_initializers(bias, tmp_path):
    pydl.manual_seed(2)
    layer = nn.Linear(9, 4, bias=bias)
    proto = check_export(nn.Sequential(layer), (None, 9), tmp_path)
    assert _ops(proto) == ["Gemm"]
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert sorted(stored) == (["0.bias", "0.weight"] if bias else ["0.weight"])
    np.testing.assert_array_equal(stored["0.weight"], layer.weight.data)


def test_a_bare_linear_and_a_bare_dropout(tmp_path):
    pydl.manual_seed(3)
    check_export(nn.Linear(3, 2), (None, 3), tmp_path)
    proto = check_export(nn.Dropout(0.3), (None, 4), tmp_path)
    assert _ops(proto) == ["Identity"]


def test_train_mode_model_exports_eval_semantics_and_stays_in_train_mode(tmp_path):
    pydl.manual_seed(4)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    assert model.training
    proto = check_export(model, (None, 8), tmp_path)
    assert model.training and all(m.training for m in model.modules())
    assert "Dropout" not in _ops(proto)


def test_inputs_of_rank_3(tmp_path):
    pydl.manual_seed(5)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2, bias=False))
    proto = check_export(model, (None, 4, 5), tmp_path)
    # F.linear merges the leading dimensions around its GEMM, so does the file
    assert _ops(proto) == ["Reshape", "Gemm", "Reshape", "Tanh", "Reshape", "Gemm", "Reshape"]


def test_float64_model(tmp_path):
    pydl.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 8, dtype=np.float64), nn.LeakyReLU(), nn.Sigmoid(),
                          nn.Linear(8, 5, dtype=np.float64), nn.Tanh(),
                          nn.Linear(5, 2, dtype=np.float64), nn.ReLU(), nn.Softmax())
    proto = check_export(model, (None, 4), tmp_path, tol=1e-12)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


def test_float64_elu_in_the_reference_runtime(tmp_path):
    # onnxruntime's CPU Elu kernel is float32-only (a runtime gap, not an invalid model).
    pydl.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 3, dtype=np.float64), nn.ELU(0.5))
    check_export(model, (None, 4), tmp_path, tol=1e-12, runtimes=("onnx.reference",))


def test_nested_sequentials_and_a_shared_layer(tmp_path):
    pydl.manual_seed(7)
    shared = nn.Linear(6, 6)
    model = nn.Sequential(nn.Sequential(shared, nn.ReLU()), shared, nn.Sequential(nn.Linear(6, 2)))
    proto = check_export(model, (None, 6), tmp_path)
    names = sorted(t.name for t in proto.graph.initializer)
    assert names == ["0.0.bias", "0.0.weight", "2.0.bias", "2.0.weight"]  # shared: stored once


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_opsets(opset, tmp_path):
    pydl.manual_seed(8)
    model = nn.Sequential(nn.Linear(5, 8), nn.LeakyReLU(0.1), nn.Linear(8, 3), nn.Softmax())
    proto = check_export(model, (None, 5), tmp_path, opset=opset)
    assert [o.version for o in proto.opset_import if o.domain == ""] == [opset]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("opset", [17, 20])
def test_gelu_as_its_operator_or_from_older_ones(approximate, opset, tmp_path):
    pydl.manual_seed(12)
    model = nn.Sequential(nn.Linear(5, 9), nn.GELU(approximate=approximate), nn.Linear(9, 2))
    proto = check_export(model, (None, 5), tmp_path, opset=opset)
    ops = _ops(proto)
    assert ("Gelu" in ops) == (opset >= 20)
    if opset < 20:
        assert ("Erf" in ops) == (approximate == "none")


def test_linear_with_a_fused_activation_argument(tmp_path):
    class Fused(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return pydl.functional.linear(x, self.lin.weight, self.lin.bias, "leaky_relu",
                                          negative_slope=0.2)

    pydl.manual_seed(13)
    proto = check_export(Fused(), (None, 4), tmp_path)
    assert _ops(proto) == ["Gemm", "LeakyRelu"]


def test_default_opset(tmp_path):
    proto = check_export(nn.Sequential(nn.Linear(2, 2)), (None, 2), tmp_path)
    assert proto.opset_import[0].version == pydl_onnx.DEFAULT_OPSET == 17


_LAYERS = [nn.ReLU, lambda: nn.LeakyReLU(0.3), lambda: nn.ELU(1.5), nn.Sigmoid, nn.Tanh,
           lambda: nn.Dropout(0.25), nn.GELU, lambda: nn.GELU("tanh"), nn.SiLU]


@pytest.mark.parametrize("seed", range(12))
def test_random_composite_models(seed, tmp_path):
    rng = np.random.default_rng(seed)
    pydl.manual_seed(seed)
    width = int(rng.integers(1, 20))
    first = width
    layers = []
    for _ in range(int(rng.integers(1, 5))):
        out = int(rng.integers(1, 20))
        layers.append(nn.Linear(width, out, bias=bool(rng.integers(0, 2))))
        width = out
        for _ in range(int(rng.integers(0, 3))):
            layers.append(_LAYERS[int(rng.integers(len(_LAYERS)))]())
    if rng.integers(0, 2):
        layers.append(nn.Softmax())
    model = nn.Sequential(*layers)
    if rng.integers(0, 2):
        model.eval()
    check_export(model, (None, first), tmp_path, seed=seed)


# --- bad input ------------------------------------------------------------------------------

def _mlp():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


@pytest.mark.parametrize("shape", [(None,), (4,), ()])
def test_wrong_rank_names_the_expected_rank(shape, tmp_path):
    with pytest.raises(ValueError, match="rank 2") as e:
        pydl_onnx.export(_mlp(), tmp_path / "m.onnx", shape)
    assert f"rank {len(shape)}" in str(e.value) or shape == ()
    assert not os.listdir(tmp_path)


def test_wrong_feature_count_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="expected input with 4 features"):
        pydl_onnx.export(_mlp(), tmp_path / "m.onnx", (None, 5))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("shape", [(None, 0), (None, -3), (None, 2.5), (None, None), (0, 4)])
def test_bad_input_shape_entries(shape, tmp_path):
    with pytest.raises(ValueError, match="input_shape"):
        pydl_onnx.export(_mlp(), tmp_path / "m.onnx", shape)


def test_input_shape_must_be_a_sequence(tmp_path):
    with pytest.raises(TypeError, match="input_shape"):
        pydl_onnx.export(_mlp(), tmp_path / "m.onnx", 4)


def test_a_number_as_batch_dimension_is_still_dynamic(tmp_path):
    pydl.manual_seed(9)
    check_export(_mlp(), (3, 4), tmp_path)


def test_path_in_a_missing_directory_names_the_path(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "m.onnx"
    with pytest.raises(OSError) as e:
        pydl_onnx.export(_mlp(), target, (None, 4))
    assert str(target) in str(e.value)
    assert not (tmp_path / "no").exists()


def test_an_existing_file_is_replaced(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    pydl_onnx.export(_mlp(), target, (None, 4))
    onnx.checker.check_model(onnx.load(str(target)))
    assert os.listdir(tmp_path) == ["m.onnx"]


class _Residual(nn.Module):
    """A custom forward: the engine's trace exports it op by op."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(6, 6)
        self.gate = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)
        self.scale = nn.Parameter(np.linspace(0.5, 1.5, 6).astype(np.float32))

    def forward(self, x):
        h = x + self.inner(x).relu() * self.scale
        g = self.gate(h).sigmoid()
        h = (h * g - h / 3.0) ** 2 + (-h).exp() - (g + 1.0).log()
        centred = h - h.mean(axis=1, keepdims=True)
        return self.head(centred).softmax(axis=-1)


def test_a_custom_forward_exports_through_the_engine_trace(tmp_path):
    pydl.manual_seed(10)
    proto = check_export(_Residual(), (None, 6), tmp_path)
    ops = set(_ops(proto))
    assert {"Gemm", "Add", "Mul", "Div", "Sub", "Pow", "Neg", "Exp", "Log", "ReduceSum",
            "Relu", "Sigmoid", "Softmax"} <= ops
    names = {t.name for t in proto.graph.initializer}
    assert {"inner.weight", "gate.bias", "head.weight", "scale"} <= names


class _Reshaping(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.mix = nn.Parameter(np.random.default_rng(0).standard_normal((12, 5), np.float32))

    def forward(self, x):  # (N, 12) -> (N, 3, 4) -> Linear on the last dim -> (N, 12) -> (N, 5)
        return self.lin(x.reshape(-1, 3, 4)).reshape(-1, 12) @ self.mix


def test_reshape_and_matmul_by_a_parameter(tmp_path):
    pydl.manual_seed(11)
    proto = check_export(_Reshaping(), (None, 12), tmp_path)
    assert "MatMul" in _ops(proto)


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(x)[:, :1]


def test_unsupported_op_names_it(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), _Custom())
    with pytest.raises(pydl_onnx.UnsupportedOpError, match=r"the op GetItem \(indexing\)"):
        pydl_onnx.export(model, tmp_path / "m.onnx", (None, 4))
    assert not os.listdir(tmp_path)


def test_an_op_without_replay_support_is_unsupported(tmp_path):
    class Opaque(nn.Module):
        def forward(self, x):
            return pydl.Tensor._make(x.data * 2, (x,), lambda g: (g * 2,))

    with pytest.raises(pydl_onnx.UnsupportedOpError, match="cannot be traced"):
        pydl_onnx.export(Opaque(), tmp_path / "m.onnx", (None, 4))


@pytest.mark.parametrize("opset", [12, 10 ** 6, "17", True])
def test_opset_out_of_range(opset, tmp_path):
    with pytest.raises(ValueError, match="opset must be an int from 13"):
        pydl_onnx.export(_mlp(), tmp_path / "m.onnx", (None, 4), opset=opset)


def test_model_must_be_a_module(tmp_path):
    with pytest.raises(TypeError, match="pydl.nn.Module"):
        pydl_onnx.export(lambda x: x, tmp_path / "m.onnx", (None, 4))


def test_mixed_dtypes_are_refused(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2, dtype=np.float64))
    with pytest.raises(ValueError, match="mixes parameter dtypes"):
        pydl_onnx.export(model, tmp_path / "m.onnx", (None, 4))


def test_missing_onnx_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # makes `import onnx` fail
    with pytest.raises(ImportError, match=r'pip install "pydl\[onnx\]"'):
        pydl_onnx.export(_mlp(), tmp_path / "m.onnx", (None, 4))


# --- op mappings of the layers beyond the MLP, checked against PyTorch's modules -------------

torch = pytest.importorskip("torch")


def _run_mapping(op, params, module, sample_shape, opset=17, integer_input=False, seed=0):
    """Emit one op with its mapping; compare both runtimes with the torch module at 1 and 7."""
    from onnx import TensorProto
    rng = np.random.default_rng(seed)

    def sample(batch):
        if integer_input:
            return rng.integers(0, params["weight"].shape[0], (batch,) + sample_shape)
        return rng.standard_normal((batch,) + sample_shape).astype(np.float32)

    module = module.eval()
    with torch.no_grad():
        out_shape = tuple(module(torch.from_numpy(sample(2))).shape)
    b = pydl_onnx.GraphBuilder(opset, np.float32)
    x = pydl_onnx.Value(b.fresh("input"), (2,) + sample_shape)
    y = pydl_onnx.Value(pydl_onnx._MAPPINGS[op](b, [x], out_shape, **params), out_shape)
    proto = b.finish(x, y, TensorProto.INT64 if integer_input else None)
    data = proto.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    reference = ReferenceEvaluator(proto)
    for batch in (1, 7):
        xb = sample(batch)
        with torch.no_grad():
            expected = module(torch.from_numpy(xb)).numpy()
        for name, got in (("onnxruntime", session.run(None, {x.name: xb})[0]),
                          ("onnx.reference", reference.run(None, {x.name: xb})[0])):
            np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL,
                                       err_msg=f"{op} {name} batch {batch}")
    return proto


def _np(t):
    return None if t is None else t.detach().numpy()


def _conv_params(m):
    return dict(weight=_np(m.weight), bias=_np(m.bias), stride=m.stride, padding=m.padding,
                dilation=m.dilation, groups=m.groups)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3), dict(kernel_size=4, stride=2, padding=1, bias=False),
    dict(kernel_size=3, dilation=2, padding="same"), dict(kernel_size=4, padding="same"),
    dict(kernel_size=2, padding="valid", groups=2), dict(kernel_size=5, stride=3, padding=2),
])
def test_conv1d_and_conv2d_mapping(kwargs):
    torch.manual_seed(0)
    conv1 = torch.nn.Conv1d(4, 6, **kwargs)
    _run_mapping("conv", _conv_params(conv1), conv1, (4, 11))
    conv2 = torch.nn.Conv2d(4, 6, **kwargs)
    _run_mapping("conv", _conv_params(conv2), conv2, (4, 9, 10))


@pytest.mark.parametrize("kind, kwargs", [
    ("max", dict(kernel_size=2)), ("max", dict(kernel_size=3, stride=2, padding=1)),
    ("avg", dict(kernel_size=2)), ("avg", dict(kernel_size=3, stride=1, padding=1)),
])
def test_pool_mappings(kind, kwargs):
    for dims, shape in ((1, (3, 12)), (2, (3, 8, 7))):
        cls = getattr(torch.nn, f"{kind.capitalize()}Pool{dims}d")
        params = dict(kernel_size=kwargs["kernel_size"], stride=kwargs.get("stride"),
                      padding=kwargs.get("padding", 0))
        _run_mapping(f"{kind}_pool", params, cls(**kwargs), shape)


@pytest.mark.parametrize("output_size, shape", [(1, (3, 8)), ((1, 1), (3, 6, 5)), (4, (2, 12)),
                                                ((2, 3), (2, 6, 9))])
def test_adaptive_avg_pool_mapping(output_size, shape):
    cls = torch.nn.AdaptiveAvgPool1d if len(shape) == 2 else torch.nn.AdaptiveAvgPool2d
    proto = _run_mapping("adaptive_avg_pool", dict(output_size=output_size), cls(output_size),
                         shape)
    ones = output_size in (1, (1, 1))
    assert _ops(proto) == (["GlobalAveragePool"] if ones else ["AveragePool"])


def test_adaptive_avg_pool_with_uneven_windows_is_unsupported():
    with pytest.raises(pydl_onnx.UnsupportedOpError, match=r"from \(10,\) to \(3,\)"):
        _run_mapping("adaptive_avg_pool", dict(output_size=3), torch.nn.AdaptiveAvgPool1d(3),
                     (2, 10))


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(5,), (5, 7), (5, 4, 6)])
def test_batch_norm_mapping_uses_running_statistics(shape, affine):
    torch.manual_seed(1)
    cls = torch.nn.BatchNorm2d if len(shape) == 3 else torch.nn.BatchNorm1d
    bn = cls(5, eps=1e-3, affine=affine)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        if affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
    params = dict(running_mean=_np(bn.running_mean), running_var=_np(bn.running_var),
                  weight=_np(bn.weight), bias=_np(bn.bias), eps=bn.eps)
    _run_mapping("batch_norm", params, bn, shape)


@pytest.mark.parametrize("normalized_shape, affine", [((6,), True), ((3, 6), True), ((6,), False)])
def test_layer_norm_mapping(normalized_shape, affine):
    torch.manual_seed(2)
    ln = torch.nn.LayerNorm(normalized_shape, eps=1e-4, elementwise_affine=affine)
    if affine:
        with torch.no_grad():
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-1, 1)
    params = dict(normalized_shape=normalized_shape, weight=_np(ln.weight), bias=_np(ln.bias),
                  eps=ln.eps)
    _run_mapping("layer_norm", params, ln, (4, 3, 6))


def test_layer_norm_needs_opset_17():
    ln = torch.nn.LayerNorm(6)
    with pytest.raises(pydl_onnx.UnsupportedOpError, match="opset 17.*opset 13"):
        _run_mapping("layer_norm", dict(normalized_shape=(6,), weight=_np(ln.weight),
                                        bias=_np(ln.bias)), ln, (6,), opset=13)


@pytest.mark.parametrize("start_dim, end_dim, op", [(1, -1, "Flatten"), (2, -1, "Reshape"),
                                                    (1, 2, "Reshape"), (-2, 3, "Reshape")])
def test_flatten_mapping(start_dim, end_dim, op):
    proto = _run_mapping("flatten", dict(start_dim=start_dim, end_dim=end_dim),
                         torch.nn.Flatten(start_dim, end_dim), (3, 4, 5))
    assert _ops(proto) == [op]


def test_flatten_of_the_batch_dimension_is_unsupported():
    with pytest.raises(pydl_onnx.UnsupportedOpError, match="start_dim=0"):
        _run_mapping("flatten", dict(start_dim=0), torch.nn.Flatten(0), (3, 4))


def test_embedding_mapping_is_a_gather_on_int64_indices():
    torch.manual_seed(3)
    emb = torch.nn.Embedding(11, 4)
    proto = _run_mapping("embedding", dict(weight=_np(emb.weight)), emb, (5,),
                         integer_input=True)
    assert _ops(proto) == ["Gather"]


# --- found by a review (2026-12-02); each failed before its fix ----------------------------------
class _BatchCentred(nn.Module):
    def __init__(self, reduction):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.reduction = reduction

    def forward(self, x):
        h = self.fc(x)
        if self.reduction == "mean0":
            return h - h.mean(axis=0, keepdims=True)
        return getattr(h, self.reduction)().reshape(1, 1) + h


@pytest.mark.parametrize("reduction", ["mean0", "sum", "mean"])
def test_a_reduction_over_the_batch_axis_is_unsupported_not_wrong(reduction, tmp_path):
    # It baked the traced batch of 2 into the file (wrong at batch 7), or failed in onnx.
    with pytest.raises(pydl_onnx.UnsupportedOpError, match="batch axis"):
        pydl_onnx.export(_BatchCentred(reduction), tmp_path / "m.onnx", (None, 4))


def test_per_sample_reductions_still_export(tmp_path):
    class PerSample(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            h = self.fc(x)
            return h - h.mean(axis=1, keepdims=True) + h.sum(axis=-1, keepdims=True)

    check_export(PerSample(), (None, 4), tmp_path)


def test_batch_norm_without_running_statistics_is_unsupported(tmp_path):
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(pydl_onnx.UnsupportedOpError, match="track_running_stats=False"):
        pydl_onnx.export(m, tmp_path / "m.onnx", (None, 4))


def test_export_keeps_each_modules_mode(tmp_path):
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    m.train()
    m[1].eval()
    pydl_onnx.export(m, tmp_path / "m.onnx", (None, 4))
    assert [layer.training for layer in m] == [True, False, True]


def test_an_embedding_registered_after_the_layer_it_feeds(tmp_path):
    class Text(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)  # registered first, applied second
            self.emb = nn.Embedding(10, 4)

        def forward(self, idx):
            return self.head(self.emb(idx)).sum(axis=1)

    pydl.manual_seed(0)
    m = Text()
    path = tmp_path / "m.onnx"
    pydl_onnx.export(m, path, (None, 3))
    run = _onnxruntime(path)
    idx = np.random.default_rng(0).integers(0, 10, (7, 3))
    with pydl.no_grad():
        expected = m.eval()(idx).data
    np.testing.assert_allclose(run(idx), expected, rtol=TOL, atol=TOL)


def test_a_bytes_path(tmp_path):
    path = os.fsencode(str(tmp_path / "m.onnx"))
    pydl_onnx.export(nn.Sequential(nn.Linear(4, 2)), path, (None, 4))
    assert os.path.exists(path)
