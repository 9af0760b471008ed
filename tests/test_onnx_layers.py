"""ONNX export of pydl's layers (Conv, pooling, BatchNorm, LayerNorm, Embedding, Flatten) traced
through the engine: onnxruntime and onnx.reference reproduce pydl's eval-mode outputs."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

import pydl
from pydl import nn


def _outputs(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x})[0], ReferenceEvaluator(str(path)).run(None, {name: x})[0]


def _train_a_step(model, shape):
    # Train mode once, so BatchNorm's running statistics differ from their initial 0 / 1.
    x = np.random.default_rng(5).standard_normal((8,) + shape).astype(np.float32)
    model.train()
    model(pydl.tensor(x)).sum().backward()
    model.eval()


MODELS = {
    "conv1d-bn-maxpool": (lambda: nn.Sequential(
        nn.Conv1d(3, 8, 5, padding="same"), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(8, 4, 3, stride=2, dilation=2), nn.Flatten(), nn.Linear(4 * 3, 5)), (3, 20)),
    "conv2d-groups-avgpool": (lambda: nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.GELU(),
        nn.AvgPool2d(2, padding=1), nn.Conv2d(8, 6, (3, 2), stride=(2, 1)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)), (4, 9, 8)),
    "conv2d-valid-adaptive": (lambda: nn.Sequential(
        nn.Conv2d(1, 4, 3, padding="valid", bias=False), nn.Tanh(), nn.MaxPool2d(2, stride=1),
        nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.LayerNorm(16), nn.Linear(16, 2)),
     (1, 7, 7)),
    "layernorm-mlp": (lambda: nn.Sequential(
        nn.Linear(6, 10), nn.LayerNorm(10), nn.SiLU(), nn.Dropout(0.3), nn.Linear(10, 4)), (6,)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_layer_models_export_and_match(name, tmp_path):
    build, shape = MODELS[name]
    pydl.manual_seed(1)
    model = build()
    _train_a_step(model, shape)
    path = tmp_path / "m.onnx"
    pydl.onnx.export(model, path, (None,) + shape)
    for n in (1, 7):
        x = np.random.default_rng(n).standard_normal((n,) + shape).astype(np.float32)
        with pydl.no_grad():
            want = model(pydl.tensor(x)).data
        for got in _outputs(path, x):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


class _Bag(nn.Module):
    """Embedding -> mean over positions -> LayerNorm -> Linear: a custom forward."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(13, 6, padding_idx=0)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3)

    def forward(self, idx):
        return self.head(self.norm(self.emb(idx).sum(axis=1) * (1.0 / 5)))


@pytest.mark.parametrize("build", [
    lambda: nn.Sequential(nn.Embedding(11, 4), nn.Flatten(), nn.Linear(20, 3)), _Bag])
def test_embedding_input_models_take_int64_indices(build, tmp_path):
    pydl.manual_seed(2)
    model = build().eval()
    path = tmp_path / "emb.onnx"
    proto = pydl.onnx.export(model, path, (None, 5))
    assert proto.graph.input[0].type.tensor_type.elem_type == 7  # TensorProto.INT64
    for n in (1, 7):
        idx = np.random.default_rng(n).integers(0, 11, (n, 5), dtype=np.int64)
        with pydl.no_grad():
            want = model(idx).data
        for got in _outputs(path, idx):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
