"""One training step of a 40-256-256-10 MLP (ReLU, dropout 0.2, cross-entropy, SGD momentum 0.9):
pydl's Sequential + CrossEntropyLoss + SGD next to the same step written by hand in numpy.

All steps do the same work: forward with dropout masks, mean softmax cross-entropy, backward,
and the momentum update of all six parameters, in float32.

- "pydl-eager": the plain autograd loop (zero_grad, forward, loss, backward, step);
- "pydl-replay": ``pydl.compile_step(model, loss, opt)``, the engine's recorded step replayed
  (what ``Trainer.fit`` runs), including its loss and gradient finiteness checks;
- "numpy": the same step by hand.

``test_finiteness_check`` times the gradient check alone (``step.non_finite_gradient()``: one
pass over the gradient arena) beside the replayed step, so its share of a step can be read off the table
(target: under 3% at batch 32).
"""

import numpy as np
import pytest

import pydl
from pydl import nn

SIZES = (40, 256, 256, 10)
P_DROP = 0.2
LR, MOMENTUM = 0.01, 0.9


def make_batch(batch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], batch)
    return x, y


def pydl_step_fn(batch, replay=False):
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Dropout(P_DROP),
                          nn.Linear(256, 256), nn.ReLU(), nn.Dropout(P_DROP),
                          nn.Linear(256, 10))
    criterion = pydl.losses.CrossEntropyLoss()
    opt = pydl.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = make_batch(batch)
    if replay:
        return pydl.compile_step(model, criterion, opt), x, y

    def step():
        opt.zero_grad()
        loss = criterion(model(x), y)
        loss.item()
        loss.backward()
        opt.step()

    return step


class NumpyMLP:
    """The same MLP and step in plain numpy, in place where numpy allows it."""

    def __init__(self, batch):
        rng = np.random.default_rng(0)
        self.rng = rng
        self.w = []
        self.b = []
        for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
            bound = 1.0 / np.sqrt(fan_in)
            self.w.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
            self.b.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))
        self.vw = [np.zeros_like(w) for w in self.w]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.first = True
        self.x, self.y = make_batch(batch)
        self.scale = np.float32(1.0 / (1.0 - P_DROP))

    def step(self):
        x, y = self.x, self.y
        n = x.shape[0]
        w1, w2, w3 = self.w
        b1, b2, b3 = self.b
        # forward
        h1 = x @ w1.T
        h1 += b1
        np.maximum(h1, 0, out=h1)
        m1 = (self.rng.random(h1.shape, dtype=np.float32) >= P_DROP) * self.scale
        h1 *= m1
        h2 = h1 @ w2.T
        h2 += b2
        np.maximum(h2, 0, out=h2)
        m2 = (self.rng.random(h2.shape, dtype=np.float32) >= P_DROP) * self.scale
        h2 *= m2
        z = h2 @ w3.T
        z += b3
        # softmax cross-entropy (mean), gradient in place of the probabilities
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        loss = -np.log(z[np.arange(n), y]).mean()
        z[np.arange(n), y] -= 1.0
        z /= n
        # backward (the dropout mask is zero where the scaled ReLU output is zero)
        gw3 = z.T @ h2
        gb3 = z.sum(axis=0)
        d2 = z @ w3
        d2 *= m2
        d2 *= h2 > 0
        gw2 = d2.T @ h1
        gb2 = d2.sum(axis=0)
        d1 = d2 @ w2
        d1 *= m1
        d1 *= h1 > 0
        gw1 = d1.T @ x
        gb1 = d1.sum(axis=0)
        # SGD with momentum (PyTorch rule: the first step's buffer is the gradient)
        for p, v, g in zip(self.w + self.b, self.vw + self.vb, [gw1, gw2, gw3, gb1, gb2, gb3]):
            if self.first:
                v[...] = g
            else:
                v *= MOMENTUM
                v += g
            p -= LR * v
        self.first = False
        return loss


@pytest.mark.parametrize("impl", ["pydl-eager", "pydl-replay", "numpy"])
@pytest.mark.parametrize("batch", [32, 512])
def test_train_step(benchmark, threads, impl, batch):
    benchmark.group = f"train-step-b{batch}[{threads}t]"
    if impl == "pydl-replay":
        compiled, x, y = pydl_step_fn(batch, replay=True)

        def step():
            compiled(x, y)
    elif impl == "pydl-eager":
        step = pydl_step_fn(batch)
    else:
        step = NumpyMLP(batch).step
    step()  # warm up (records the step, allocates the momentum buffers)
    benchmark(step)


@pytest.mark.parametrize("impl", ["check", "pydl-replay"])
@pytest.mark.parametrize("batch", [32])
def test_finiteness_check(benchmark, threads, impl, batch):
    benchmark.group = f"finite-check-b{batch}[{threads}t]"
    compiled, x, y = pydl_step_fn(batch, replay=True)
    compiled(x, y)
    compiled(x, y)
    if impl == "check":
        benchmark(compiled.non_finite_gradient)
    else:
        benchmark(lambda: compiled(x, y))
