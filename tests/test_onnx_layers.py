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


def test_embedding_input_model_is_refused_clearly(tmp_path):
    # The exported graph takes a float input; a model whose input is Embedding indices cannot be
    # traced with one, and export says why instead of writing a wrong file.
    pydl.manual_seed(2)
    model = nn.Sequential(nn.Embedding(11, 4), nn.Flatten(), nn.Linear(20, 3)).eval()
    with pytest.raises(ValueError, match="Embedding: indices must be an integer"):
        pydl.onnx.export(model, tmp_path / "emb.onnx", (None, 5))
    assert not (tmp_path / "emb.onnx").exists()
