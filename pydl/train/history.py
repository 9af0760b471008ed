"""History: the per-epoch record of a ``fit`` call, and its learning-curve plot."""

from .. import distributed as _dist
from .callbacks import Callback

__all__ = ["History"]


class History(Callback):
    """Record the logs of every epoch; ``Trainer.fit`` returns one.

    Attributes:
        history: A dict from log name (``"loss"``, ``"accuracy"``, ``"val_loss"``,
            ``"val_accuracy"``, ``"lr"``, and anything callbacks added) to a list with one value
            per finished epoch.
        epoch: The list of finished epoch indices (0-based).
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def plot(self, path=None, metrics=None):
        """Draw training and validation curves per epoch: the loss and each metric.

        Uses matplotlib's object-oriented API (no pyplot, no window, no global backend change);
        saving renders with the Agg backend.

        Args:
            path: Where to save the figure (the extension picks the format, e.g. ``.png``);
                in a data-parallel run only rank 0 writes it. Default None: only return the
                figure.
            metrics: Names to draw, one panel each (``"loss"``, ``"accuracy"``, ...; the
                ``val_`` curve is drawn with its training curve). Default None: the loss and every
                other recorded quantity that has a training curve, except ``lr``.

        Returns:
            The ``matplotlib.figure.Figure``.

        Raises:
            ImportError: matplotlib is not installed (``pip install "pydl[plot]"``).
            ValueError: a requested name was not recorded, or there is nothing to plot.

        Example:
            >>> history = trainer.fit(x, y, epochs=20, validation_split=0.2, verbose=0)
            >>> history.plot("curves.png")
        """
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError('History.plot needs matplotlib; install it with '
                              'pip install "pydl[plot]"') from None
        if metrics is None:
            names = [k for k in self.history if not k.startswith("val_") and k != "lr"]
            names.sort(key=lambda k: k != "loss")  # loss first, the rest in logged order
        else:
            names = [metrics] if isinstance(metrics, str) else list(metrics)
            for name in names:
                if name not in self.history and "val_" + name not in self.history:
                    raise ValueError(f"History.plot: {name!r} was not recorded; available: "
                                     f"{sorted(self.history)}")
        if not names or not self.epoch:
            raise ValueError("History.plot: nothing to plot (no finished epoch)")
        fig = Figure(figsize=(5.0 * len(names), 3.8), layout="constrained")
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        xs = [e + 1 for e in self.epoch]
        for ax, name in zip(axes, names):
            for key, label, style in ((name, "train", "-"), ("val_" + name, "validation", "--")):
                if key in self.history:
                    ax.plot(xs, self.history[key], style, label=label)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend()
        if path is not None and _dist.is_root():  # data-parallel: rank 0 writes the file
            fig.savefig(path, dpi=100)
        return fig

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
