"""The main job (`python -m pydl`) runs end to end and learns the task it reports on."""

import re
import subprocess
import sys


def test_demo_trains_to_high_accuracy():
    out = subprocess.run([sys.executable, "-m", "pydl", "--epochs", "40", "--seed", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    acc = float(re.search(r"final test accuracy ([0-9.]+)", out.stdout).group(1))
    # Three spirals are not linearly separable (a linear model gets ~0.4); the MLP must learn them.
    assert acc >= 0.9, out.stdout


def test_demo_rejects_bad_options():
    out = subprocess.run([sys.executable, "-m", "pydl", "--epochs", "0"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--epochs" in out.stderr
