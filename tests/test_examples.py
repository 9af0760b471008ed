"""examples/transfer_cnn.py: a quick run end to end, PyTorch weights reproducing PyTorch's outputs
in pydl (torch is the oracle), and frozen blocks staying bit-identical through fine-tuning."""

import importlib.util
import pathlib

import numpy as np
import pytest
import torch

import pydl

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("transfer_cnn",
                                                  ROOT / "examples" / "transfer_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(example):
    return example.tasks()


def test_tasks_are_disjoint_and_labelled_0_to_4(example, data):
    source, target = data
    for task in (source, target):
        assert set(np.unique(task["y"])) == set(range(5)) == set(np.unique(task["y_test"]))
        assert task["x"].shape[1:] == (1, 8, 8) and task["x"].dtype == np.float32
    # the target images are the digits 5-9: none of them is a source image
    src = {a.tobytes() for a in np.concatenate([source["x"], source["x_test"]])}
    assert not any(a.tobytes() in src for a in np.concatenate([target["x"], target["x_test"]]))
    assert not {a.tobytes() for a in target["x"]} & {a.tobytes() for a in target["x_test"]}
    idx = example.labelled_subset(target, 3, seed=0)
    assert np.bincount(target["y"][idx]).tolist() == [3] * 5


def test_quick_run_learns_the_target_task(example, capsys):
    out = example.main(["--quick"])
    printed = capsys.readouterr().out
    assert "head only" in printed and "from scratch" in printed
    cfg = example.QUICK
    assert len(out["regimes"]) == len(cfg["regimes"]) * len(example.STRATEGIES)
    for accs in out["regimes"].values():
        assert len(accs) == cfg["seeds"]
        assert min(accs) > 0.4  # five classes: chance is 0.2
    t = out["torch"]
    assert t["max_abs_diff"] < 1e-5 and t["pydl_accuracy"] == t["torch_accuracy"]
    assert min(t["fine_tuned"]) > 0.6


@pytest.mark.parametrize("training", [False, True])
def test_torch_weights_reproduce_torch_outputs(example, data, training):
    source, _ = data
    torch.set_num_threads(1)
    torch_model = example.torch_pretrain(torch, source, epochs=1)
    model = example.build(5)
    model.load_state_dict(torch_model.state_dict())
    torch_model.train(training)
    model.train(training)
    x = source["x_test"]
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = model(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    if training:  # the batch statistics moved both models' running estimates alike
        for key, value in torch_model.state_dict().items():
            if "running" in key:
                np.testing.assert_allclose(model.state_dict()[key], value.numpy(), atol=1e-6)


@pytest.mark.parametrize("strategy, frozen", [
    ("small", ("0.", "1.", "4.", "5.")),
    ("medium", ("0.", "1.")),
    ("large", ()),
])
def test_fine_tuning_leaves_frozen_blocks_bit_identical(example, data, strategy, frozen):
    source, target = data
    pretrained, _ = example.pretrain(source, epochs=1)
    idx = example.labelled_subset(target, 3, seed=0)
    model = example.fine_tune(strategy, pretrained, target["x"][idx], target["y"][idx],
                              epochs=3, batch_size=8, seed=0)
    for name, p in model.named_parameters():
        is_frozen = name.startswith(frozen) if frozen else False
        assert p.requires_grad is not is_frozen, name
        if name.startswith(example.HEAD):
            continue
        if is_frozen:
            np.testing.assert_array_equal(p.data, pretrained[name], err_msg=name)
        else:
            assert not np.array_equal(p.data, pretrained[name]), name
