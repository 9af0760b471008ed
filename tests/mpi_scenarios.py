"""Programs that tests/test_distributed.py runs under ``mpiexec -n W``: one scenario per call.

Usage: ``mpiexec -n W python tests/mpi_scenarios.py <scenario> <output directory>``. Each rank
writes what it saw to ``<output directory>/<scenario>-rank<r>.npz`` (or prints it); the test
compares the files with each other and with a single-process oracle computed in the test.

The training set-ups live here so the test's oracle builds exactly the same models and data.
"""

import os
import signal
import sys

import numpy as np

import pydl
import pydl.distributed as dist
from pydl import nn

EPOCHS = 4
PER_RANK_BATCH = 4


def classifier_data(n, seed=1):
    """Return (x, y, x_val, y_val): a float64 three-class problem with 6 features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 11, 6))
    y = (np.argmax(x[:, :3] + 0.5 * x[:, 3:], axis=1)).astype(np.int64)
    return x[:n], y[:n], x[n:], y[n:]


def regression_data(n, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    return x, np.sin(x @ rng.normal(size=(5, 2)))


def build_classifier(seed):
    """A float64 MLP (the Trainer's recorded fast path) and Adam, after one warm-up step on
    seed-dependent data (so ranks start with different weights AND optimizer state)."""
    pydl.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16, dtype=np.float64), nn.Tanh(),
                          nn.Linear(16, 3, dtype=np.float64))
    opt = pydl.optim.Adam(model.parameters(), lr=0.02)
    x = np.random.default_rng(100 + seed).normal(size=(5, 6))
    loss = pydl.losses.CrossEntropyLoss()(model(pydl.tensor(x, dtype=np.float64)),
                                          np.array([0, 1, 2, 0, 1]))
    loss.backward()
    opt.step()
    opt.zero_grad()
    return model, opt


def build_regressor(seed):
    """A float64 model with a frozen layer, MSE (the autograd-graph path), SGD with momentum."""
    pydl.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8, dtype=np.float64), nn.ReLU(),
                          nn.Linear(8, 8, dtype=np.float64), nn.ELU(),
                          nn.Linear(8, 2, dtype=np.float64))
    for p in model[2].parameters():
        p.requires_grad = False
    opt = pydl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    return model, opt


def fit_classifier(model, opt, x, y, x_val, y_val, batch_size, callbacks=(), verbose=0):
    stopper = pydl.train.EarlyStopping(monitor="val_loss", min_delta=0.02, patience=1)
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), opt)
    history = trainer.fit(x, y, epochs=EPOCHS * 3, batch_size=batch_size,
                          validation_data=(x_val, y_val), callbacks=[stopper, *callbacks],
                          verbose=verbose)
    return trainer, history, stopper


def fit_regressor(model, opt, x, y, batch_size):
    trainer = pydl.train.Trainer(model, pydl.losses.MSELoss(), opt,
                                 regularizer=pydl.regularizers.L2(1e-3), metrics=None)
    history = trainer.fit(x, y, epochs=EPOCHS, batch_size=batch_size, shuffle=False, verbose=0)
    return trainer, history


def _weights(model, prefix):
    return {f"{prefix}{k}": v for k, v in model.state_dict().items()}


def _save(out, name, **arrays):
    np.savez(os.path.join(out, f"{name}-rank{dist.rank()}.npz"), **arrays)


def scenario_train(out):
    """Data-parallel fits (both Trainer paths), files, evaluate/predict, the public API."""
    dist.init()
    dist.init()  # idempotent
    world, r = dist.world_size(), dist.rank()
    n = world * PER_RANK_BATCH * 3  # a multiple of the global batch
    x, y, x_val, y_val = classifier_data(n)
    # Each rank seeds differently: weights, optimizer state and shuffling must come from rank 0.
    model, opt = build_classifier(seed=r)
    files = [pydl.train.ModelCheckpoint(os.path.join(out, f"ckpt-rank{r}.npz"),
                                        save_best_only=False),
             pydl.train.CSVLogger(os.path.join(out, f"log-rank{r}.csv"))]
    trainer, history, stopper = fit_classifier(model, opt, x, y, x_val, y_val, PER_RANK_BATCH,
                                               files, verbose=2)
    history.plot(os.path.join(out, f"plot-rank{r}.png"))
    res = {"stopped_epoch": stopper.stopped_epoch, "best_epoch": stopper.best_epoch,
           "evaluate": np.array([trainer.evaluate(x_val, y_val)[k] for k in ("loss", "accuracy")]),
           "predict": trainer.predict(x_val, batch_size=3), "predict1": trainer.predict(x_val[:1])}
    res.update({f"h_{k}": np.array(v) for k, v in history.history.items()})
    res.update(_weights(model, "c_"))

    xr, yr = regression_data(n + world - 1)  # not a multiple of W: the epoch is padded
    model, opt = build_regressor(seed=r)
    dist.broadcast_parameters(model)  # fit does it too; done here to record the frozen weight
    frozen = model[2].weight.data.copy()
    _, history = fit_regressor(model, opt, xr, yr, PER_RANK_BATCH)
    res["frozen_changed"] = np.array(not np.array_equal(frozen, model[2].weight.data))
    res.update({f"r_h_{k}": np.array(v) for k, v in history.history.items()})
    res.update(_weights(model, "r_"))

    # Collectives against values every rank can compute (numpy oracle in the test).
    per_rank = [np.arange(7, dtype=np.float64) * (k + 1) - k for k in range(world)]
    for op in ("mean", "sum", "max", "min"):
        res[f"allreduce_{op}"] = dist.allreduce_(per_rank[r].copy(), op=op)
    res["allreduce_int"] = dist.allreduce_(np.arange(4, dtype=np.int64) * (r + 1), op="sum")
    t = pydl.tensor(np.full((2, 3), float(r), np.float32))
    res["allreduce_tensor"] = dist.allreduce_(t).data
    res["allreduce_strided"] = dist.allreduce_(np.arange(12.0).reshape(3, 4).T * r)

    # DistributedOptimizer alone: per-rank gradients, several small buckets, a frozen parameter.
    pydl.manual_seed(0)
    layers = [nn.Linear(40, 30), nn.Linear(30, 20), nn.Linear(20, 3)]
    layers[1].bias.requires_grad = False
    params = [p for layer in layers for p in layer.parameters()]
    opt = dist.DistributedOptimizer(pydl.optim.SGD(params, lr=1.0), bucket_bytes=4096)
    for i, p in enumerate(params):
        p.grad = np.full(p.data.shape, (r + 1) * (i + 1), p.data.dtype)
    layers[2].bias.grad = None if r == 0 else layers[2].bias.grad  # present on some ranks only
    opt.step()
    res.update({f"do_{i}": p.data for i, p in enumerate(params)})
    dist.barrier()
    _save(out, "train", **res)


def scenario_nan(out):
    """A NaN in one rank's shard: every rank raises NonFiniteLossError at the same step."""
    dist.init()
    r = dist.rank()
    n = dist.world_size() * PER_RANK_BATCH * 3
    x, y, x_val, y_val = classifier_data(n)
    if r == 1:
        x = x.copy()
        x[n - 3] = np.nan  # reached late in the first epoch
    model, opt = build_classifier(seed=0)
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), opt)
    try:
        trainer.fit(x, y, epochs=2, batch_size=PER_RANK_BATCH, shuffle=False, verbose=0)
    except pydl.train.NonFiniteLossError as exc:
        _save(out, "nan", epoch=exc.epoch, batch=exc.batch,
              finite=all(np.isfinite(p.data).all() for p in model.parameters()),
              **_weights(model, "w_"))


def scenario_bad(out):
    """Bad inputs raise ValueError on EVERY rank (naming the problem), and nothing hangs."""
    dist.init()
    r = dist.rank()
    messages = []

    def expect(fn):
        try:
            fn()
        except ValueError as exc:
            messages.append(str(exc))
        else:
            messages.append("no error")

    width = 5 if r == 0 else 6
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, width))
    expect(lambda: dist.broadcast_parameters(model))
    expect(lambda: dist.broadcast_parameters(nn.Sequential(*([nn.Linear(2, 2)] * (r + 1)))))
    expect(lambda: dist.allreduce_(np.zeros(3 + r)))
    model = nn.Sequential(nn.Linear(4, 2))
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
                                 pydl.optim.SGD(model.parameters(), lr=0.1))
    expect(lambda: trainer.fit(np.zeros((8 + r, 4)), np.zeros(8 + r, np.int64), verbose=0))
    expect(lambda: dist.broadcast_parameters(model, root=dist.world_size()))
    dist.barrier()  # everyone got here: no rank is stuck in a collective
    _save(out, "bad", messages=np.array(messages))


def scenario_crash(out):
    """One rank fails mid-training (exception or SIGKILL) while the others are in a collective."""
    how = os.environ["PYDL_TEST_CRASH"]
    dist.init()
    x, y, _, _ = classifier_data(64 * dist.world_size())

    class Fail(pydl.train.Callback):
        def on_batch_end(self, batch, logs=None):
            if dist.rank() == 1 and batch == 3:
                if how == "raise":
                    raise RuntimeError("deliberate failure on rank 1")
                os.kill(os.getpid(), signal.SIGKILL)

    model, opt = build_classifier(seed=0)
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), opt)
    trainer.fit(x, y, epochs=1000, batch_size=4, callbacks=[Fail()], verbose=0)


def scenario_example(out):
    """examples/distributed_mnist.py, writing its checkpoint into ``out``."""
    import runpy

    runpy.run_path(os.environ["PYDL_EXAMPLE"])["main"](out)


if __name__ == "__main__":
    globals()[f"scenario_{sys.argv[1]}"](sys.argv[2])
