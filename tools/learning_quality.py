"""Compare how well pydl and PyTorch learn with the same recipe, over many seeds.

Usage:
    python tools/learning_quality.py [--seeds 10] [--epochs 200] [--datasets digits,wine,...]

For each dataset and seed: one stratified train/validation/test split (60/20/20, features
standardised on the training part, diabetes targets too), then the cheat sheet's recipe in both
frameworks: an MLP in -> 64 -> 64 -> out with ReLU and Dropout(0.2), the L2 penalty
``1e-4 * sum(w^2)`` on the weights (not biases), Adam(lr=1e-3), batch 32, shuffled, at most
``--epochs`` epochs, early stopping on the validation DATA loss (Keras's rule: patience 10,
min_delta 0) restoring the best weights. Each framework draws its own initial weights, dropout
masks and batch order from the seed (PyTorch's default Linear init; pydl's is the same
distribution). Test metric: accuracy (digits, breast cancer, wine; cross-entropy) or R^2
(diabetes; MSE). Prints mean +- standard error (std / sqrt(seeds)) per framework, the mean
best epoch, the paired difference pydl - PyTorch (same split per seed) with its standard error,
and whether pydl is within one standard error of PyTorch or better
(``pydl_mean >= torch_mean - max(SE_pydl, SE_torch)``).

Data: pydl.datasets.load_digits (embedded) and scikit-learn's bundled breast cancer, wine and
diabetes sets (no download). Both frameworks run on one thread.
"""

import argparse
import math
import time

import numpy as np
import torch
from sklearn import datasets as skd
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

import pydl
from pydl import nn

HIDDEN = 64
DROPOUT = 0.2
WD = 1e-4
LR = 1e-3
BATCH = 32
PATIENCE = 10


def load(name):
    """Return (x, y, task) with task "classification" or "regression"."""
    if name == "digits":
        d = pydl.datasets.load_digits()
        return d.data.astype(np.float64), d.target, "classification"
    loader = {"breast_cancer": skd.load_breast_cancer, "wine": skd.load_wine,
              "diabetes": skd.load_diabetes}[name]
    x, y = loader(return_X_y=True)
    return x, y, "regression" if name == "diabetes" else "classification"


def split(x, y, task, seed):
    strat = y if task == "classification" else None
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed,
                                              stratify=strat)
    strat = y_tr if task == "classification" else None
    x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.25, random_state=seed,
                                              stratify=strat)
    mu, sd = x_tr.mean(0), x_tr.std(0)
    sd[sd == 0] = 1.0  # constant columns (digits' border pixels) stay 0, as StandardScaler does
    xs = [((a - mu) / sd).astype(np.float32) for a in (x_tr, x_va, x_te)]
    if task == "regression":
        ym, ys = y_tr.mean(), y_tr.std()
        ys_ = [((b - ym) / ys).astype(np.float32)[:, None] for b in (y_tr, y_va, y_te)]
    else:
        ys_ = [b.astype(np.int64) for b in (y_tr, y_va, y_te)]
    return xs, ys_


def score(task, y_true, out):
    if task == "classification":
        return float(np.mean(out.argmax(axis=1) == y_true))
    return float(r2_score(y_true[:, 0], out[:, 0]))


def run_pydl(xs, ys, task, n_out, seed, epochs):
    pydl.manual_seed(seed)
    d = xs[0].shape[1]
    model = nn.Sequential(nn.Linear(d, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT),
                          nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT),
                          nn.Linear(HIDDEN, n_out))
    loss = pydl.losses.CrossEntropyLoss() if task == "classification" else pydl.losses.MSELoss()
    trainer = pydl.train.Trainer(model, loss, pydl.optim.Adam(model.parameters(), lr=LR),
                                 regularizer=pydl.regularizers.L2(WD), metrics=None)
    stop = pydl.train.EarlyStopping(patience=PATIENCE)
    trainer.fit(xs[0], ys[0], epochs=epochs, batch_size=BATCH, validation_data=(xs[1], ys[1]),
                callbacks=[stop], verbose=0)
    return score(task, ys[2], trainer.predict(xs[2])), stop.best_epoch


def run_torch(xs, ys, task, n_out, seed, epochs):
    torch.manual_seed(seed)
    d = xs[0].shape[1]
    tnn = torch.nn
    model = tnn.Sequential(tnn.Linear(d, HIDDEN), tnn.ReLU(), tnn.Dropout(DROPOUT),
                           tnn.Linear(HIDDEN, HIDDEN), tnn.ReLU(), tnn.Dropout(DROPOUT),
                           tnn.Linear(HIDDEN, n_out))
    loss_fn = tnn.CrossEntropyLoss() if task == "classification" else tnn.MSELoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    x_tr, x_va, x_te = (torch.from_numpy(a) for a in xs)
    y_tr, y_va = torch.from_numpy(ys[0]), torch.from_numpy(ys[1])
    n = len(x_tr)
    best, best_epoch, best_state, wait = math.inf, 0, None, 0
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(n).split(BATCH):
            opt.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx]) + WD * sum((w * w).sum() for w in weights)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = loss_fn(model(x_va), y_va).item()  # the data loss, as pydl logs it
        if val < best:
            best, best_epoch, wait = val, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            wait += 1
            if wait >= PATIENCE:
                break
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        out = model(x_te).numpy()
    return score(task, ys[2], out), best_epoch


def mean_se(values):
    v = np.asarray(values, dtype=np.float64)
    return v.mean(), v.std(ddof=1) / math.sqrt(len(v))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--datasets", default="digits,breast_cancer,wine,diabetes")
    args = parser.parse_args()
    pydl.set_num_threads(1)
    torch.set_num_threads(1)
    rows = []
    for name in args.datasets.split(","):
        x, y, task = load(name)
        n_out = int(y.max()) + 1 if task == "classification" else 1
        results = {"pydl": [], "torch": []}
        epochs_at = {"pydl": [], "torch": []}
        start = time.perf_counter()
        for seed in range(args.seeds):
            xs, ys = split(x, y, task, seed)
            for fw, run in (("pydl", run_pydl), ("torch", run_torch)):
                s, e = run(xs, ys, task, n_out, seed, args.epochs)
                results[fw].append(s)
                epochs_at[fw].append(e)
        (pm, ps), (tm, ts) = mean_se(results["pydl"]), mean_se(results["torch"])
        dm, ds = mean_se(np.subtract(results["pydl"], results["torch"]))  # same splits: paired
        ok = pm >= tm - max(ps, ts)
        metric = "accuracy" if task == "classification" else "R^2"
        rows.append((name, metric, f"{pm:.4f} +- {ps:.4f}", f"{tm:.4f} +- {ts:.4f}",
                     f"{dm:+.4f} +- {ds:.4f}",
                     f"{np.mean(epochs_at['pydl']):.0f} / {np.mean(epochs_at['torch']):.0f}",
                     "yes" if ok else "NO"))
        print(f"{name}: done in {time.perf_counter() - start:.0f}s", flush=True)
    header = ("dataset", "test metric", f"pydl ({args.seeds} seeds)",
              f"PyTorch ({args.seeds} seeds)", "paired difference", "best epoch pydl / torch",
              "within 1 SE")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
