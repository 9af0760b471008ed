"""The main job (``python -m pydl``) runs end to end with its default recipe, reaches the promised
digits test accuracy and writes a model that reproduces its reported predictions, and a plot."""

import re
import subprocess
import sys

import numpy as np
import pytest

import pydl
from pydl.__main__ import main, split_digits


def test_demo_default_recipe_end_to_end(tmp_path):
    # The timeout only guards against a hang; speed is reported by the demo, not asserted here.
    out = subprocess.run([sys.executable, "-m", "pydl", "--output-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "training:" in out.stderr and "epoch" in out.stderr  # the tqdm progress bar
    acc = float(re.search(r"test accuracy ([0-9.]+)", out.stdout).group(1))
    f1 = float(re.search(r"test macro F1 ([0-9.]+)", out.stdout).group(1))
    assert acc >= 0.96, out.stdout

    # The saved model gives exactly the predictions the demo reported on (seed 0's test split).
    model = pydl.load_model(tmp_path / "digits_mlp.npz")
    _, _, x_test, y_test = split_digits(0)
    pred = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
                              pydl.optim.SGD(model.parameters(), lr=0.1)).predict(x_test)
    pred = pred.argmax(axis=1)
    assert f"{np.mean(pred == y_test):.4f}" == f"{acc:.4f}"
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (y_test, pred), 1)
    printed = [[int(v) for v in line.split(":")[1].split()]
               for line in out.stdout.splitlines() if re.match(r"\s+\d: ", line)]
    np.testing.assert_array_equal(printed, cm)
    per_class = [2 * cm[k, k] / (cm[k].sum() + cm[:, k].sum()) for k in range(10)]
    assert f"{np.mean(per_class):.4f}" == f"{f1:.4f}"
    assert (tmp_path / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_without_matplotlib_prints_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main(["--epochs", "2", "--output-dir", str(tmp_path / "out"), "--verbose", "0",
                 "--seed", "3"]) == 0
    out, err = capsys.readouterr()
    assert 'no plot: matplotlib is not installed (pip install "pydl[plot]")' in out
    assert "trained 2 epochs" in out and err == ""
    assert (tmp_path / "out" / "digits_mlp.npz").exists()
    assert not (tmp_path / "out" / "learning_curves.png").exists()


@pytest.mark.parametrize("args, option", [
    (["--epochs", "0"], "--epochs"), (["--batch-size", "-1"], "--batch-size"),
    (["--seed", "-5"], "--seed"), (["--epochs", "x"], "--epochs")])
def test_demo_rejects_bad_options(args, option):
    out = subprocess.run([sys.executable, "-m", "pydl", *args], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and option in out.stderr
