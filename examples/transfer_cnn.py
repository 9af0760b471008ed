"""Transfer learning with a small CNN on the embedded 8x8 digits, and PyTorch weights in pydl.

Part 1 - the three regimes of the transfer-learning rule of thumb, measured:

1. Source task: tell the digits 0-4 apart (all their ~900 samples): a CNN of two conv blocks
   (Conv2d 3x3 - BatchNorm2d - ReLU - MaxPool2d 2) and a linear head, trained with Adam.
2. Target task: tell the digits 5-9 apart - classes the body has never seen - from 3, 20 or all
   (~100) labelled samples per class; 400 other samples of 5-9 are the test set.
3. Each target model gets the pretrained body and a new 5-class head, and is fine-tuned with
   ``pydl.transfer.freeze_for``, whose "layers" are the conv blocks (a Conv2d and its BatchNorm2d
   count as one) and the head:
   - "head only" (``"small"``): both conv blocks frozen;
   - "last block + head" (``"medium"``, ``n_trainable=2``): the first conv block frozen;
   - "all" (``"large"``): everything trains, from the pretrained weights;
   - "from scratch": the same architecture freshly initialised.
   Same optimizer, learning rate, epochs and batch size for the four in a row; each cell is the
   mean +- standard deviation of the test accuracy over several seeds (a seed picks the labelled
   subset, the head's initialisation and the shuffling).

A frozen block's BatchNorm keeps normalising with batch statistics in train mode and its running
statistics follow the new data (as in PyTorch; only its weight and bias are frozen).

Part 2 - PyTorch-trained weights: the same CNN trained on the source task with a plain PyTorch
loop is loaded with ``model.load_state_dict(torch_model.state_dict())``; the eval-mode outputs of
both agree (max abs difference printed) and so do their accuracies; then the loaded model is
fine-tuned on the target task in pydl ("last block + head", 20 samples per class).

Run: ``python examples/transfer_cnn.py`` (``--quick``: fewer seeds and epochs, for the tests).
"""

import argparse
import time

import numpy as np

import pydl
from pydl import nn

FULL = {"seeds": 5, "pretrain_epochs": 15, "regimes": ((3, 60, 16), (20, 20, 16),
                                                        (None, 8, 32))}
QUICK = {"seeds": 2, "pretrain_epochs": 3, "regimes": ((3, 20, 16), (20, 5, 16), (None, 2, 32))}
# regime: (labelled samples per class (None: all), epochs, batch size)
N_TEST = 400
LR = 3e-3
STRATEGIES = (("small", "head only"), ("medium", "last block + head"), ("large", "all"),
              ("scratch", "from scratch"))
HEAD = "9."  # state_dict prefix of the head in build()'s Sequential


def build(n_classes, lib=nn):
    """Return the CNN with an ``n_classes`` head; ``lib`` is ``pydl.nn`` or ``torch.nn``."""
    return lib.Sequential(
        lib.Conv2d(1, 16, 3, padding=1), lib.BatchNorm2d(16), lib.ReLU(), lib.MaxPool2d(2),
        lib.Conv2d(16, 32, 3, padding=1), lib.BatchNorm2d(32), lib.ReLU(), lib.MaxPool2d(2),
        lib.Flatten(), lib.Linear(32 * 2 * 2, n_classes))


def tasks():
    """Return (source, target): each a dict of float32 (N, 1, 8, 8) images and int64 labels.

    source: the digits 0-4 as "train" (80 %) and "test"; target: the digits 5-9 relabelled 0-4,
    "test" (N_TEST samples) and the "pool" the labelled subsets are drawn from.
    """
    x, y = pydl.datasets.load_digits(return_X_y=True)
    x = (x / np.float32(16.0)).reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(0)
    src = rng.permutation(np.flatnonzero(y < 5))
    tgt = rng.permutation(np.flatnonzero(y >= 5))
    n_src = int(0.8 * len(src))
    source = {"x": x[src[:n_src]], "y": y[src[:n_src]],
              "x_test": x[src[n_src:]], "y_test": y[src[n_src:]]}
    target = {"x": x[tgt[N_TEST:]], "y": y[tgt[N_TEST:]] - 5,
              "x_test": x[tgt[:N_TEST]], "y_test": y[tgt[:N_TEST]] - 5}
    return source, target


def trainer_for(model, lr):
    return pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
                              pydl.optim.Adam(model.parameters(), lr=lr))


def pretrain(source, epochs):
    """Train the CNN on the source task in pydl; return (state dict without head, test acc)."""
    pydl.manual_seed(1234)
    model = build(5)
    trainer = trainer_for(model, 1e-3)
    trainer.fit(source["x"], source["y"], epochs=epochs, batch_size=32, verbose=0)
    acc = trainer.evaluate(source["x_test"], source["y_test"])["accuracy"]
    return {k: v for k, v in model.state_dict().items() if not k.startswith(HEAD)}, acc


def labelled_subset(target, per_class, seed):
    """Indices into target["x"]: ``per_class`` samples of each class (None: all)."""
    if per_class is None:
        return np.arange(len(target["y"]))
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(target["y"] == c), per_class,
                                      replace=False) for c in range(5)])


def fine_tune(strategy, pretrained, x, y, epochs, batch_size, seed):
    """Train a target model with ``strategy`` ("small"/"medium"/"large"/"scratch"); return it."""
    pydl.manual_seed(seed)
    model = build(5)
    if strategy != "scratch":
        model.load_state_dict(pretrained, strict=False)  # the new head keeps its fresh init
        pydl.transfer.freeze_for(model, strategy, 2 if strategy == "medium" else None)
    trainer_for(model, LR).fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def accuracy(model, x, y):
    """Test accuracy of ``model`` in eval mode (its BatchNorms use their running statistics)."""
    model.eval()
    with pydl.no_grad():
        return float((model(x).numpy().argmax(axis=1) == y).mean())


def regimes_table(cfg, source, target):
    """Part 1: return {(per_class, strategy): [test accuracy per seed]} and print the table."""
    pretrained, src_acc = pretrain(source, cfg["pretrain_epochs"])
    print(f"source task: digits 0-4, {len(source['y'])} training samples; pydl CNN "
          f"conv16-conv32-head, test accuracy {src_acc:.3f}")
    print(f"target task: digits 5-9, {len(target['y_test'])} test samples; Adam lr {LR}; "
          f"mean +- std test accuracy over {cfg['seeds']} seeds\n")
    results = {}
    header = f"{'labelled / class':>16} | {'epochs, batch':>13} | " + " | ".join(
        f"{label:>17}" for _, label in STRATEGIES)
    print(header)
    print("-" * len(header), flush=True)
    for per_class, epochs, batch in cfg["regimes"]:
        cells = []
        for name, _ in STRATEGIES:
            accs = []
            for seed in range(cfg["seeds"]):
                idx = labelled_subset(target, per_class, seed)
                model = fine_tune(name, pretrained, target["x"][idx], target["y"][idx], epochs,
                                  batch, seed)
                accs.append(accuracy(model, target["x_test"], target["y_test"]))
            results[(per_class, name)] = accs
            cells.append(f"{np.mean(accs):.3f} +- {np.std(accs):.3f}".rjust(17))
        n = "all" if per_class is None else str(per_class)
        if per_class is None:
            n += f" (~{len(target['y']) // 5})"
        print(f"{n:>16} | {f'{epochs}, {batch}':>13} | " + " | ".join(cells))
    return results


def torch_pretrain(torch, source, epochs, seed=0):
    """Train build(5, torch.nn) on the source task with a plain PyTorch loop; return it (eval)."""
    torch.manual_seed(seed)
    model = build(5, torch.nn)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(source["x"]), torch.from_numpy(source["y"])
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 32):
            idx = order[start:start + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def from_torch(cfg, source, target):
    """Part 2: load PyTorch-trained weights into pydl, compare, fine-tune; return the numbers."""
    import torch

    torch.set_num_threads(1)  # this tiny CNN: more threads only add synchronisation
    torch_model = torch_pretrain(torch, source, cfg["pretrain_epochs"])
    with torch.no_grad():
        torch_out = torch_model(torch.from_numpy(source["x_test"])).numpy()
    model = build(5)
    model.load_state_dict(torch_model.state_dict())
    model.eval()
    with pydl.no_grad():
        pydl_out = model(source["x_test"]).numpy()
    diff = float(np.abs(pydl_out - torch_out).max())
    torch_acc = float((torch_out.argmax(1) == source["y_test"]).mean())
    pydl_acc = accuracy(model, source["x_test"], source["y_test"])
    print(f"\nPyTorch-trained CNN loaded into pydl (source test set, eval mode): max abs "
          f"difference of the outputs {diff:.2e}; accuracy PyTorch {torch_acc:.3f}, pydl "
          f"{pydl_acc:.3f}")
    per_class, epochs, batch = cfg["regimes"][1]
    pretrained = {k: v for k, v in torch_model.state_dict().items() if not k.startswith(HEAD)}
    accs = []
    for seed in range(cfg["seeds"]):
        idx = labelled_subset(target, per_class, seed)
        tuned = fine_tune("medium", pretrained, target["x"][idx], target["y"][idx], epochs,
                          batch, seed)
        accs.append(accuracy(tuned, target["x_test"], target["y_test"]))
    print(f"fine-tuned in pydl on digits 5-9 (last block + head, {per_class} per class): test "
          f"accuracy {np.mean(accs):.3f} +- {np.std(accs):.3f} over {cfg['seeds']} seeds")
    return {"max_abs_diff": diff, "torch_accuracy": torch_acc, "pydl_accuracy": pydl_acc,
            "fine_tuned": accs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 seeds and a few epochs (a smoke run: the numbers are not the "
                             "README's)")
    parser.add_argument("--no-torch", action="store_true", help="skip part 2 (PyTorch weights)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    start = time.perf_counter()
    source, target = tasks()
    out = {"regimes": regimes_table(cfg, source, target)}
    if not args.no_torch:
        out["torch"] = from_torch(cfg, source, target)
    print(f"\nfinished in {time.perf_counter() - start:.1f} s")
    return out


if __name__ == "__main__":
    main()
