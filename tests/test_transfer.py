"""pydl.transfer: which parameters each strategy trains, bad arguments, frozen parameters staying
bit-identical through real training, and ProgressiveUnfreezing over epochs."""

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.train import Callback, Trainer
from pydl.transfer import ProgressiveUnfreezing, freeze_for


def mlp():
    pydl.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(8, 3))


def trainable(model):
    return [name for name, p in model.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("strategy, n, expected", [
    ("small", None, ["5.weight", "5.bias"]),
    ("medium", None, ["2.weight", "2.bias", "5.weight", "5.bias"]),
    ("medium", 1, ["5.weight", "5.bias"]),
    ("medium", 3, ["0.weight", "0.bias", "2.weight", "2.bias", "5.weight", "5.bias"]),
    ("large", None, ["0.weight", "0.bias", "2.weight", "2.bias", "5.weight", "5.bias"]),
])
def test_freeze_for_strategies(strategy, n, expected):
    model = mlp()
    model[5].freeze()  # the previous state does not matter
    assert freeze_for(model, strategy, n) is model
    assert trainable(model) == expected


def test_freeze_for_nested_modules_and_bias_free_layers():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 4, bias=False))
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            return self.head(self.body(x))

    net = Net()
    assert trainable(freeze_for(net, "small")) == ["head.weight", "head.bias"]
    assert trainable(freeze_for(net, "medium")) == ["body.2.weight", "head.weight", "head.bias"]


@pytest.mark.parametrize("args, match", [
    (("tiny",), "strategy must be one of"),
    (("medium", 0), "n_trainable must be an int >= 1"),
    (("medium", 1.5), "n_trainable"),
    (("medium", True), "n_trainable"),
    (("medium", 4), "n_trainable=4 but the model has only 3"),
    (("small", 2), "applies to the 'medium' strategy only"),
    (("large", 1), "applies to the 'medium' strategy only"),
])
def test_freeze_for_bad_arguments(args, match):
    model = mlp()
    with pytest.raises(ValueError, match=match):
        freeze_for(model, *args)
    assert len(trainable(model)) == 6  # unchanged


def test_freeze_for_model_without_parameters():
    with pytest.raises(ValueError, match="no parameters"):
        freeze_for(nn.Sequential(nn.ReLU()), "small")


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, rng.integers(0, 3, n)


class EpochStates(Callback):
    """Keep (trainable names at epoch begin, weights at epoch end) per epoch."""

    def __init__(self):
        self.trainable, self.states = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.trainable.append(trainable(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(self.model.state_dict())


def test_frozen_parameters_stay_bit_identical_through_training():
    x, y = data()
    model = freeze_for(mlp(), "small")
    before = model.state_dict()
    opt = pydl.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    Trainer(model, pydl.losses.CrossEntropyLoss(), opt,
            regularizer=pydl.regularizers.L2(1e-2, include_bias=True)).fit(
        x, y, epochs=3, batch_size=16, verbose=0)
    after = model.state_dict()
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert not np.array_equal(after["5.weight"], before["5.weight"])


def test_progressive_unfreezing_over_epochs():
    x, y = data()
    model = mlp()
    initial = model.state_dict()
    opt = pydl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    record = EpochStates()
    schedule = ProgressiveUnfreezing({0: "small", 2: ("medium", 2), 4: "large"})
    Trainer(model, pydl.losses.CrossEntropyLoss(), opt).fit(
        x, y, epochs=6, batch_size=16, callbacks=[schedule, record], verbose=0)
    small, medium, large = (["5.weight", "5.bias"],
                            ["2.weight", "2.bias", "5.weight", "5.bias"],
                            ["0.weight", "0.bias", "2.weight", "2.bias", "5.weight", "5.bias"])
    assert record.trainable == [small, small, medium, medium, large, large]
    states = [initial] + record.states
    for epoch in range(6):
        prev, now = states[epoch], states[epoch + 1]
        for name in now:
            layer_trains = name in record.trainable[epoch]
            unchanged = np.array_equal(prev[name], now[name])
            assert unchanged != layer_trains, (epoch, name)


def test_progressive_unfreezing_keeps_the_model_before_the_first_entry():
    model = mlp()
    cb = ProgressiveUnfreezing({2: "small"})
    assert cb.strategy_at(0) is None and cb.strategy_at(5) == ("small", None)
    x, y = data()
    record = EpochStates()
    Trainer(model, pydl.losses.CrossEntropyLoss(), pydl.optim.SGD(model.parameters(), lr=0.1)
            ).fit(x, y, epochs=3, callbacks=[cb, record], verbose=0)
    assert [len(t) for t in record.trainable] == [6, 6, 2]


def test_progressive_unfreezing_needs_every_parameter_in_the_optimizer():
    x, y = data()
    model = freeze_for(mlp(), "small")
    opt = pydl.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    trainer = Trainer(model, pydl.losses.CrossEntropyLoss(), opt)
    with pytest.raises(ValueError, match=r"does not hold the parameters \['0.weight'"):
        trainer.fit(x, y, epochs=2, callbacks=[ProgressiveUnfreezing({0: "small", 1: "large"})],
                    verbose=0)


@pytest.mark.parametrize("schedule, match", [
    ({}, "non-empty dict"), ([(0, "small")], "non-empty dict"), ({-1: "small"}, "epochs"),
    ({1.0: "small"}, "epochs"), ({0: "huge"}, "strategy"), ({0: ("medium", 0)}, "n_trainable"),
    ({0: ("small", 2)}, "'medium' strategy only")])
def test_progressive_unfreezing_bad_schedules(schedule, match):
    with pytest.raises(ValueError, match=match):
        ProgressiveUnfreezing(schedule)


def test_reexported_from_train():
    assert pydl.train.ProgressiveUnfreezing is ProgressiveUnfreezing
