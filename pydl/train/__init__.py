"""Training loop and callbacks: ``Trainer`` (fit / evaluate / predict), ``History``, callbacks.

Keras's habits with pydl models: ``Trainer(model, loss, optimizer).fit(x, y, epochs=...,
validation_split=..., callbacks=[EarlyStopping(...)])`` returns a :class:`History`.

Example:
    >>> model = pydl.nn.Sequential(pydl.nn.Linear(64, 64), pydl.nn.ReLU(),
    ...                            pydl.nn.Dropout(0.2), pydl.nn.Linear(64, 10))
    >>> trainer = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(),
    ...                              pydl.optim.Adam(model.parameters(), lr=1e-3),
    ...                              regularizer=pydl.regularizers.L2(1e-4))
    >>> history = trainer.fit(x, y, epochs=100, validation_split=0.2,
    ...                       callbacks=[pydl.train.EarlyStopping(patience=10)])
    >>> history.plot("curves.png")
"""

from .callbacks import (Callback, CSVLogger, EarlyStopping, LambdaCallback,
                        LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau)
from .history import History
from .trainer import NonFiniteLossError, Trainer, accuracy
from ..transfer import ProgressiveUnfreezing

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LambdaCallback",
           "LearningRateScheduler",
           "ModelCheckpoint", "NonFiniteLossError", "ProgressiveUnfreezing", "ReduceLROnPlateau",
           "Trainer", "accuracy"]
