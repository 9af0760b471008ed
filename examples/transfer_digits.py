"""Transfer learning on the embedded digits: pretrain on one half, fine-tune on the other.

1. Source task: recognise the 10 digits, on half of the samples (part A): an MLP 64-128-64-10.
2. Target task, on the other half (part B): tell odd from even digits, with only ``n`` labelled
   samples; half of part B is the test set (never used for training).
3. Compare, with the same optimizer, learning rate, epochs and batch size:
   - "frozen (small)": the pretrained body frozen, a new 64-2 head trained
     (``pydl.transfer.freeze_for(model, "small")``);
   - "fine-tune all (large)": the pretrained body and a new head, everything trained;
   - "from scratch": the same architecture freshly initialised, everything trained.
   Each cell is the mean (and standard deviation) of the test accuracy over several seeds; a seed
   picks the labelled subset, the head/scratch initialisation and the shuffling; the last column
   counts the seeds (same labelled subset) where the frozen model beat the one from scratch.

With little labelled data the frozen body wins: its features already separate the digits, so a
linear head needs few labels. (A harder transfer - pretraining on the digits 0-4 and learning
5-9 from a few samples per class - does NOT favour freezing with this small MLP: features
trained to tell 0-4 apart lose what 5-9 need, and training from scratch on raw pixels wins.)

Run: ``python examples/transfer_digits.py`` (a few seconds).
"""

import numpy as np

import pydl
from pydl import nn

LABELLED = (10, 30, 100)
SEEDS = range(10)
EPOCHS = 200
BATCH_SIZE = 16
LR = 3e-3


def body():
    """The feature extractor: 64 -> 128 -> 64, ReLU."""
    return [nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU()]


def trainer_for(model):
    return pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
                              pydl.optim.Adam(model.parameters(), lr=LR))


def pretrain(x, y):
    """Train the body plus a 10-class head on (x, y); return the body's state dict."""
    pydl.manual_seed(1234)
    model = nn.Sequential(*body(), nn.Linear(64, 10))
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
                                 pydl.optim.Adam(model.parameters(), lr=1e-3))
    trainer.fit(x, y, epochs=100, batch_size=32, validation_split=0.2, verbose=0,
                callbacks=[pydl.train.EarlyStopping(patience=10)])
    acc = trainer.history.history["val_accuracy"][-1]
    print(f"source task: digits 0-9 on part A ({len(x)} samples), validation accuracy "
          f"{acc:.3f}")
    return {k: v for k, v in model.state_dict().items() if not k.startswith("4.")}


def fine_tune(strategy, pretrained, x, y, x_test, y_test, seed):
    """Train one model on the small set with ``strategy``; return its test accuracy."""
    pydl.manual_seed(seed)
    model = nn.Sequential(*body(), nn.Linear(64, 2))
    if strategy != "scratch":
        model.load_state_dict(pretrained, strict=False)  # the new head keeps its fresh init
        pydl.transfer.freeze_for(model, strategy)
    trainer = trainer_for(model)
    trainer.fit(x, y, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
    return trainer.evaluate(x_test, y_test)["accuracy"]


def main():
    x, y = pydl.datasets.load_digits(return_X_y=True)
    x = x / np.float32(16.0)
    order = np.random.default_rng(0).permutation(len(x))
    part_a, part_b = order[: len(x) // 2], order[len(x) // 2:]
    pretrained = pretrain(x[part_a], y[part_a])

    x_new, y_new = x[part_b], y[part_b] % 2  # target task: odd (1) or even (0)
    test, pool = np.arange(len(x_new) // 2), np.arange(len(x_new) // 2, len(x_new))
    print(f"target task: odd vs even on part B, {len(test)} test samples; labelled training "
          f"samples drawn from the other {len(pool)}")
    print(f"same budget for all: Adam lr {LR}, {EPOCHS} epochs, batch {BATCH_SIZE}; "
          f"mean +- std test accuracy over {len(SEEDS)} seeds\n")
    strategies = (("small", "frozen (small)"), ("large", "fine-tune all (large)"),
                  ("scratch", "from scratch"))
    print(f"{'labelled samples':>16} | " + " | ".join(f"{label:>21}" for _, label in strategies)
          + " | frozen > scratch")
    for n in LABELLED:
        results = {name: [] for name, _ in strategies}
        for seed in SEEDS:
            subset = np.random.default_rng(seed).choice(pool, n, replace=False)
            for name, _ in strategies:
                results[name].append(fine_tune(name, pretrained, x_new[subset], y_new[subset],
                                               x_new[test], y_new[test], seed))
        cells = [f"{np.mean(results[name]):.3f} +- {np.std(results[name]):.3f}".rjust(21)
                 for name, _ in strategies]
        wins = sum(f > r for f, r in zip(results["small"], results["scratch"]))
        print(f"{n:>16} | " + " | ".join(cells) + f" | {wins}/{len(SEEDS)} seeds")


if __name__ == "__main__":
    main()
