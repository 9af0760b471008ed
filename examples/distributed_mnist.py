"""Data-parallel training of a digit classifier over MPI (the embedded 8x8 digits, no download).

Every rank loads the same data and builds the same model; ``Trainer.fit`` then trains on a
different shard of each epoch per rank and averages the gradients, so the weights stay identical
everywhere. ``batch_size`` is PER RANK: with N ranks one step sees N * BATCH_SIZE samples, and
the learning rate is scaled linearly with N (after a short warm-up), the usual rule for SGD.
Only rank 0 prints progress and writes the checkpoint.

Run:
    mpiexec -n 2 python examples/distributed_mnist.py            # one machine, two processes
    mpiexec -n 8 -f hosts python examples/distributed_mnist.py   # several machines (MPICH)
    python examples/distributed_mnist.py                         # also works as one process
"""

import os
import sys

import numpy as np

import pydl
import pydl.distributed as dist
from pydl import nn

BATCH_SIZE = 32   # per rank
BASE_LR = 0.05    # for one rank; scaled by the number of ranks
EPOCHS = 15
WARMUP_EPOCHS = 3


def main(out_dir="."):
    dist.init()
    world, rank = dist.world_size(), dist.rank()
    pydl.manual_seed(0)  # the same seed everywhere (rank 0's weights are broadcast anyway)

    x, y = pydl.datasets.load_digits(return_X_y=True)
    x = x / 16.0
    order = np.random.default_rng(0).permutation(len(x))  # the same split on every rank
    test, train = order[:360], order[360:]

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    lr = BASE_LR * world  # linear scaling: the global batch is world * BATCH_SIZE

    def schedule(epoch, _):  # warm up from BASE_LR to the scaled rate, then cosine decay
        if epoch < WARMUP_EPOCHS:
            return BASE_LR + (lr - BASE_LR) * epoch / WARMUP_EPOCHS
        progress = (epoch - WARMUP_EPOCHS) / max(1, EPOCHS - WARMUP_EPOCHS)
        return 0.5 * lr * (1 + np.cos(np.pi * progress))

    optimizer = pydl.optim.SGD(model.parameters(), lr=BASE_LR, momentum=0.9)
    trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), optimizer)
    checkpoint = os.path.join(out_dir, "digits_distributed.npz")
    callbacks = [pydl.train.LearningRateScheduler(schedule),
                 pydl.train.ModelCheckpoint(checkpoint, monitor="val_accuracy"),
                 pydl.train.EarlyStopping(monitor="val_accuracy", patience=5)]
    if rank == 0:
        print(f"{world} rank(s) x batch {BATCH_SIZE} = global batch {world * BATCH_SIZE}, "
              f"peak learning rate {lr:g}", flush=True)
    trainer.fit(x[train], y[train], epochs=EPOCHS, batch_size=BATCH_SIZE, validation_split=0.15,
                callbacks=callbacks, verbose=2)
    scores = trainer.evaluate(x[test], y[test])  # collective: every rank calls it
    if rank == 0:
        print(f"test accuracy {scores['accuracy']:.4f}, loss {scores['loss']:.4f}; best model "
              f"in {checkpoint}", flush=True)
    return scores


if __name__ == "__main__":
    main(*sys.argv[1:2])
