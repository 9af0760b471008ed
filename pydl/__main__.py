"""``python -m pydl``: train a small MLP with pydl's kernels and report what it learned.

The data are three interleaved spirals generated from the seed (nothing is downloaded). The
network (2 -> 64 -> 64 -> 3, ReLU, dropout, L2 penalty, softmax cross-entropy, SGD with Nesterov
momentum) is written directly against ``pydl.kernels``: every forward and backward product goes
through the fused linear / GEMM kernels.
"""

import argparse
import sys
import time

import numpy as np

import pydl
from pydl import kernels as K


def make_spirals(n_per_class, n_classes, noise, rng):
    """Return (x, y): `n_classes` interleaved spiral arms in 2-D, float32 points, int64 labels."""
    t = np.sqrt(rng.random(n_per_class * n_classes)) * 3.0 * np.pi
    y = np.repeat(np.arange(n_classes), n_per_class)
    angle = t + y * (2.0 * np.pi / n_classes)
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (3.0 * np.pi)
    x += noise * rng.standard_normal(x.shape)
    return x.astype(np.float32), y.astype(np.int64)


class MLP:
    """Linear layers with ReLU and dropout between them, trained with explicit kernel calls."""

    def __init__(self, sizes, rng, p_drop, l2):
        self.layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = np.sqrt(6.0 / fan_in)  # He-uniform, suited to ReLU
            w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
            b = np.zeros(fan_out, np.float32)
            self.layers.append([w, b, np.zeros_like(w), np.zeros_like(b)])
        self.p_drop, self.l2 = p_drop, l2

    def forward(self, x, training, seed=0, step=0):
        acts, masks = [x], []
        for i, (w, b, _, _) in enumerate(self.layers):
            last = i == len(self.layers) - 1
            h = K.linear(acts[-1], w, b, activation=None if last else "relu")
            if training and not last and self.p_drop > 0:
                h, mask = K.dropout(h, self.p_drop, seed=seed, step=step * 16 + i)
                masks.append(mask)
            acts.append(h)
        return acts, masks

    def train_step(self, x, y, lr, step, seed):
        acts, masks = self.forward(x, training=True, seed=seed, step=step)
        loss, grad = K.softmax_cross_entropy(acts[-1], y)
        for i in reversed(range(len(self.layers))):
            w, b, vw, vb = self.layers[i]
            dw = K.matmul(grad, acts[i], trans_a=True)  # dY.T @ X
            db = grad.sum(axis=0)
            loss += K.l2_penalty(w, self.l2)
            K.l2_penalty_backward(dw, w, self.l2)
            if i > 0:
                grad = K.matmul(grad, w)  # dY @ W
                if self.p_drop > 0:
                    grad = K.dropout_backward(grad, masks[i - 1], self.p_drop)
                grad = K.relu_backward(grad, acts[i])
            K.sgd_update(w, dw, vw, lr=lr, momentum=0.9, nesterov=True, first_step=step == 0)
            K.sgd_update(b, db, vb, lr=lr, momentum=0.9, nesterov=True, first_step=step == 0)
        return loss

    def predict(self, x):
        return self.forward(x, training=False)[0][-1].argmax(axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pydl", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        parser.error("--epochs, --batch-size and --lr must be positive")

    rng = np.random.default_rng(args.seed)
    x, y = make_spirals(600, 3, 0.02, rng)
    order = rng.permutation(len(x))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    model = MLP([2, 64, 64, 3], rng, p_drop=0.1, l2=1e-5)

    info = pydl.cpu_info()
    print(f"pydl {pydl.__version__}: kernels {info['isa']}, {info['threads']} threads")
    print(f"spirals: {len(train)} train / {len(test)} test points, MLP 2-64-64-3")
    start, step = time.perf_counter(), 0
    for epoch in range(args.epochs):
        perm = rng.permutation(train)
        total = 0.0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
            total += model.train_step(x[idx], y[idx], args.lr, step, args.seed) * len(idx)
            step += 1
        if epoch % 10 == 0 or epoch == args.epochs - 1:
            acc = np.mean(model.predict(x[test]) == y[test])
            print(f"epoch {epoch + 1:3d}  loss {total / len(perm):.4f}  test accuracy {acc:.3f}")
    elapsed = time.perf_counter() - start
    acc = np.mean(model.predict(x[test]) == y[test])
    print(f"final test accuracy {acc:.3f} after {step} steps in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
