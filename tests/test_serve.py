"""examples/serve.py driven with real HTTP requests on a loopback port.

The server runs as a subprocess, as a user would start it. Answers are checked against a numpy
forward pass computed from the saved file's arrays (float64, independent of pydl) and, exactly,
against pydl's own eval-mode forward and Trainer.predict of the loaded model on the same batch.
"""

import http.client
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import pydl
from pydl import nn

ROOT = Path(__file__).resolve().parents[1]
SERVE = ROOT / "examples" / "serve.py"
N_FEATURES = 5
MAX_BODY = 4096


def _load_example():
    spec = importlib.util.spec_from_file_location("pydl_example_serve", SERVE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numpy_forward(path, x):
    """The saved Sequential (Linear, ReLU, Dropout, Linear, Tanh, Linear) in float64 numpy."""
    with np.load(path, allow_pickle=False) as f:
        w = {k: f[k].astype(np.float64) for k in f.files if k.startswith("model.")}
    h = np.maximum(x @ w["model.0.weight"].T + w["model.0.bias"], 0.0)  # Dropout: eval identity
    h = np.tanh(h @ w["model.3.weight"].T + w["model.3.bias"])
    return h @ w["model.5.weight"].T + w["model.5.bias"]


def _start(model_path, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, str(SERVE), str(model_path), "--port", "0", "--threads", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        line = ""
    if not line.startswith("serving on http://"):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the server did not start: {line!r} {err}")
    return proc, line.split()[-1]


def _post(url, body, headers=None):
    """POST bytes; return (status, decoded JSON answer)."""
    req = urllib.request.Request(url + "/predict", data=body, method="POST",
                                 headers=dict({"Content-Type": "application/json"},
                                              **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _predict(url, x):
    return _post(url, json.dumps({"inputs": np.asarray(x).tolist()}).encode())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A saved model (left in train mode, so the server must switch to eval) and its server."""
    pydl.manual_seed(3)
    model = nn.Sequential(nn.Linear(N_FEATURES, 16), nn.ReLU(), nn.Dropout(0.4),
                          nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    path = tmp_path_factory.mktemp("serve") / "model.npz"
    pydl.save_model(model, path)
    proc, url = _start(path, "--max-body-bytes", str(MAX_BODY))
    loaded = pydl.load_model(path).eval()
    yield path, loaded, url
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=30)


def _check(path, model, x, outputs):
    got = np.asarray(outputs, dtype=np.float32)
    assert got.shape == (len(x), 3)
    np.testing.assert_allclose(got, _numpy_forward(path, x.astype(np.float64)),
                               rtol=1e-5, atol=1e-6)
    with pydl.no_grad():
        expected = model(x).data
    np.testing.assert_array_equal(got, expected)  # JSON numbers round-trip float32 exactly
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
                                 pydl.optim.SGD(model.parameters(), lr=0.1))
    np.testing.assert_array_equal(got, trainer.predict(x))


def test_predicts_like_the_model_from_many_threads(served):
    path, model, url = served
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(int(rng.integers(1, 6)), N_FEATURES)).astype(np.float32)
               for _ in range(48)]
    answers = [None] * len(batches)

    def client(indices):
        for i in indices:
            answers[i] = _predict(url, batches[i])

    threads = [threading.Thread(target=client, args=(range(t, len(batches), 8),))
               for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for x, (status, answer) in zip(batches, answers):
        assert status == 200, answer
        _check(path, model, x, answer["outputs"])


def test_keeps_connections_alive(served):
    path, model, url = served
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    x = np.linspace(-1, 1, 2 * N_FEATURES, dtype=np.float32).reshape(2, N_FEATURES)
    try:
        for _ in range(3):
            conn.request("POST", "/predict", json.dumps({"inputs": x.tolist()}))
            r = conn.getresponse()
            assert r.status == 200
            _check(path, model, x, json.loads(r.read())["outputs"])
    finally:
        conn.close()


def test_health_and_empty_inputs(served):
    _, _, url = served
    with urllib.request.urlopen(url + "/health", timeout=30) as r:
        assert json.loads(r.read()) == {"status": "ok", "input_shape": [N_FEATURES],
                                        "dtype": "float32"}
    assert _post(url, b'{"inputs": []}') == (200, {"outputs": []})


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid UTF-8 JSON"),
    (b"\xff\xfe", "not valid UTF-8 JSON"),
    (b"[[1, 2, 3, 4, 5]]", '{"inputs"'),
    (b'{"input": [[1, 2, 3, 4, 5]]}', '{"inputs"'),
    (b'{"inputs": 3}', '{"inputs"'),
    (b'{"inputs": [[1, 2, 3, 4]]}', "shape [5]; the inputs are shape [4]"),
    (b'{"inputs": [1, 2, 3, 4, 5]}', "shape [5]; the inputs are shape []"),
    (b'{"inputs": [[[1, 2, 3, 4, 5]]]}', "shape [5]; the inputs are shape [1, 5]"),
    (b'{"inputs": [[1, 2, 3, 4, 5], [1, 2]]}', "ragged or non-numeric"),
    (b'{"inputs": [["1", 2, 3, 4, 5]]}', "ragged or non-numeric"),
    (b'{"inputs": [[true, false, true, false, true]]}', "ragged or non-numeric"),
    (b'{"inputs": [[NaN, 2, 3, 4, 5]]}', "not valid UTF-8 JSON"),
    (b'{"inputs": [[1e39, 2, 3, 4, 5]]}', "finite float32"),
    pytest.param(b"[" * 4000, "nests too deeply", id="deep-nesting"),
    pytest.param(b'{"inputs": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}", "of shape [5]",
                 id="beyond-numpy-dims"),
])
def test_malformed_requests_are_400_and_serving_goes_on(served, body, fragment):
    path, model, url = served
    status, answer = _post(url, body)
    assert status == 400
    assert fragment in answer["error"]
    x = np.ones((1, N_FEATURES), np.float32)
    status, answer = _predict(url, x)
    assert status == 200
    _check(path, model, x, answer["outputs"])


def test_oversized_body_is_413_and_serving_goes_on(served):
    path, model, url = served
    x = np.full((MAX_BODY // 10, N_FEATURES), 0.123456789, np.float32)
    body = json.dumps({"inputs": x.tolist()}).encode()
    assert len(body) > MAX_BODY
    status, answer = _post(url, body)
    assert status == 413
    assert str(MAX_BODY) in answer["error"] and str(len(body)) in answer["error"]
    status, answer = _predict(url, x[:3])
    assert status == 200
    _check(path, model, x[:3], answer["outputs"])


def test_missing_length_wrong_path_and_method(served):
    _, _, url = served
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", "/predict")
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 411 and "Content-Length" in json.loads(r.read())["error"]
    finally:
        conn.close()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "/nothing", timeout=30)
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "/predict", timeout=30)
    assert e.value.code == 405 and e.value.headers["Allow"] == "POST"


def test_sigterm_stops_the_server_cleanly(tmp_path):
    path = tmp_path / "m.npz"
    pydl.save_model(nn.Sequential(nn.Linear(2, 1)), path)
    proc, url = _start(path)
    assert _post(url, b'{"inputs": [[1, 2]]}')[0] == 200
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_bad_model_file_is_a_clear_startup_error(tmp_path):
    missing = tmp_path / "nope.npz"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(SERVE), str(missing), "--port", "0"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "nope.npz" in r.stderr


def test_input_shape_must_be_given_when_it_cannot_be_inferred():
    serve = _load_example()
    with pytest.raises(ValueError, match="first layer is ReLU.*input_shape"):
        serve.Predictor(nn.Sequential(nn.ReLU(), nn.Linear(3, 2)))
    predictor = serve.Predictor(nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), input_shape=(3,))
    assert predictor.input_shape == (3,)
    with pytest.raises(ValueError, match="positive ints"):
        serve.Predictor(nn.Sequential(nn.Linear(3, 2)), input_shape=(0,))
