"""``python -m pydl``: train an MLP on the embedded handwritten digits and report how it does.

``--cnn`` trains a small convolutional network on the 8x8 images instead (same recipe otherwise).

The recipe: the 1797 8x8 digits (``pydl.datasets.load_digits``, pixels scaled to [0, 1]) split
into a held-out test set (20 %) and a training set whose last 15 % validates; an MLP
64 -> 256 -> 10 with ReLU and dropout 0.3, softmax cross-entropy plus an L2 penalty (1e-4), Adam
(lr 1e-3), mini-batches of 32, and early stopping on the validation loss (patience 30, best
weights restored). It prints the test accuracy, macro F1 and confusion matrix, and writes the
model (with its optimizer state) and, when matplotlib is installed, the learning curves.
"""

import argparse
import os
import sys
import time

import numpy as np

import pydl
from pydl import metrics, nn

TEST_FRACTION = 0.2
VALIDATION_SPLIT = 0.15
HIDDEN = 256
DROPOUT = 0.3
L2 = 1e-4
LR = 1e-3
PATIENCE = 30


def build_model():
    """Return the demo's MLP (weights drawn from pydl.random's generator)."""
    return nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT),
                         nn.Linear(HIDDEN, 10))


def build_cnn():
    """Return the ``--cnn`` model: two 3x3 conv blocks (batch norm, ReLU), 2x2 max pooling, a head."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(DROPOUT),
                         nn.Linear(32 * 4 * 4, 10))


def split_digits(seed):
    """Return (x_train, y_train, x_test, y_test): a seeded random 80/20 split, pixels in [0, 1]."""
    x, y = pydl.datasets.load_digits(return_X_y=True)
    x = x / np.float32(16.0)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {value}")
    return value


def _seed(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {value}")
    return value


class EpochProgress(pydl.train.Callback):
    """Show one progress bar over all epochs with the latest losses (tqdm, on stderr)."""

    def __init__(self, epochs):
        self.epochs = epochs
        self.bar = None

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.epochs, desc="training", unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.set_postfix({k: f"{logs[k]:.4f}" for k in ("loss", "val_loss", "val_accuracy")
                              if k in logs}, refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pydl", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=_positive, default=200,
                        help="maximum passes over the training set (early stopping usually ends "
                             "sooner; default 200)")
    parser.add_argument("--batch-size", type=_positive, default=32, help="default 32")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seeds the split, the weights, dropout and shuffling (default 0)")
    parser.add_argument("--output-dir", default="pydl-output",
                        help="where the model and the plot go (default ./pydl-output)")
    parser.add_argument("--cnn", action="store_true",
                        help="train a small CNN on the 8x8 images instead of the MLP")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="0 quiet, 1 one progress bar over the epochs (default), 2 the "
                             "trainer's progress bar per epoch")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    x_train, y_train, x_test, y_test = split_digits(args.seed)
    pydl.manual_seed(args.seed)
    model = build_cnn() if args.cnn else build_model()
    if args.cnn:  # (N, 64) pixels -> (N, 1, 8, 8) images
        x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
    optimizer = pydl.optim.Adam(model.parameters(), lr=LR)
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), optimizer,
                                 regularizer=pydl.regularizers.L2(L2))
    stop = pydl.train.EarlyStopping(monitor="val_loss", patience=PATIENCE)

    info = pydl.cpu_info()
    n_val = len(x_train) - int(len(x_train) * (1 - VALIDATION_SPLIT))
    print(f"pydl {pydl.__version__}: kernels {info['isa']}, {info['threads']} threads")
    print(f"digits: {len(x_train) - n_val} training / {n_val} validation / {len(x_test)} test "
          f"samples; " + ("CNN conv16-conv32-pool-10" if args.cnn else f"MLP 64-{HIDDEN}-10")
          + f", dropout {DROPOUT}, L2 {L2}, Adam lr {LR}")
    callbacks = [stop] + ([EpochProgress(args.epochs)] if args.verbose == 1 else [])
    history = trainer.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                          validation_split=VALIDATION_SPLIT, callbacks=callbacks,
                          verbose=1 if args.verbose == 2 else 0)
    ran = len(history.epoch)
    print(f"trained {ran} epochs" + (f" (early stop at epoch {stop.stopped_epoch + 1})"
                                     if stop.stopped_epoch else "")
          + f"; restored the best epoch {stop.best_epoch + 1} (val_loss {stop.best:.4f})")

    pred = trainer.predict(x_test).argmax(axis=1)
    print(f"test accuracy {metrics.accuracy_score(y_test, pred):.4f}")
    print(f"test macro F1 {metrics.f1_score(y_test, pred, average='macro'):.4f}")
    print("confusion matrix (rows: true digit, columns: predicted digit):")
    cm = metrics.confusion_matrix(y_test, pred, labels=list(range(10)))
    print("     " + " ".join(f"{d:3d}" for d in range(10)))
    for d, row in enumerate(cm):
        print(f"  {d:1d}: " + " ".join(f"{v:3d}" for v in row))

    os.makedirs(args.output_dir, exist_ok=True)
    model_path = os.path.join(args.output_dir, "digits_cnn.npz" if args.cnn else "digits_mlp.npz")
    pydl.save_model(model, model_path, optimizer=optimizer)
    print(f"model written to {model_path} (pydl.load_model)")
    try:
        plot_path = os.path.join(args.output_dir, "learning_curves.png")
        history.plot(plot_path)
        print(f"learning curves written to {plot_path}")
    except ImportError:
        print('no plot: matplotlib is not installed (pip install "pydl[plot]")')
    print(f"finished in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. `python -m pydl | head`: stop quietly like other CLI tools
        sys.stdout = open(os.devnull, "w")
        sys.exit(1)
