"""Transfer learning: how much of a pretrained model to fine-tune, by the size of the new data.

The usual rule of thumb as code:

=========  =====================================================================
strategy   trainable parameters
=========  =====================================================================
"small"    only the last layer (little data: keep the pretrained features)
"medium"   the last ``n_trainable`` layers (default 2)
"large"    every layer, starting from the pretrained weights
=========  =====================================================================

"Layer" means a module that owns parameters directly (e.g. a ``Linear`` or ``Conv2d``), in
registration order (for a ``Sequential``, its order of execution); activations, pooling and Dropout
do not count, and a BatchNorm/LayerNorm counts with the layer before it (a Conv + BatchNorm block
is one layer).

Frozen parameters (``requires_grad = False``) get no gradient and pydl's optimizers skip them
entirely; an optimizer creates a parameter's state (momentum, Adam moments) at its first update,
so an optimizer built over ``model.parameters()`` - frozen ones included - trains parameters that
are unfrozen later. :class:`ProgressiveUnfreezing` relies on that and checks it.

Example:
    >>> model = pretrained_body.append(pydl.nn.Linear(64, 5))   # a new head
    >>> pydl.transfer.freeze_for(model, "small")                  # train the head only
    >>> opt = pydl.optim.Adam(model.parameters(), lr=1e-3)
    >>> unfreeze = pydl.transfer.ProgressiveUnfreezing({0: "small", 5: "medium", 10: "large"})
    >>> pydl.train.Trainer(model, loss, opt).fit(x, y, epochs=20, callbacks=[unfreeze])
"""

from .train.callbacks import Callback

__all__ = ["ProgressiveUnfreezing", "STRATEGIES", "freeze_for", "parameterised_layers"]

STRATEGIES = ("small", "medium", "large")


def parameterised_layers(model):
    """Return the modules of ``model`` that own parameters directly, in registration order."""
    return [m for m in model.modules() if any(p is not None for p in m._parameters.values())]


def _blocks(model):
    """Group parameterised layers into the units the strategies count.

    A normalisation layer (BatchNorm, LayerNorm) belongs to the layer before it, so a
    Conv + BatchNorm block (or Linear + LayerNorm) counts as ONE layer: freezing a convolution
    while its batch norm trains (or the reverse) is never what "train the last layer" means.
    """
    from .layers import LayerNorm, _BatchNorm

    blocks = []
    for m in parameterised_layers(model):
        if blocks and isinstance(m, (_BatchNorm, LayerNorm)):
            blocks[-1].append(m)
        else:
            blocks.append([m])
    return blocks


def _check_strategy(who, strategy, n_trainable):
    if strategy not in STRATEGIES:
        raise ValueError(f"{who}: strategy must be one of {STRATEGIES}, got {strategy!r}")
    if n_trainable is not None:
        if strategy != "medium":
            raise ValueError(f"{who}: n_trainable applies to the 'medium' strategy only, got "
                             f"n_trainable={n_trainable!r} with {strategy!r}")
        if isinstance(n_trainable, bool) or not isinstance(n_trainable, int) or n_trainable < 1:
            raise ValueError(f"{who}: n_trainable must be an int >= 1, got {n_trainable!r}")


def freeze_for(model, strategy, n_trainable=None):
    """Freeze ``model``'s layers for a transfer-learning strategy; return the model.

    Args:
        model: A ``pydl.nn.Module`` (typically a pretrained Sequential with a new last layer).
        strategy: "small" (train only the last parameterised layer), "medium" (the last
            ``n_trainable``) or "large" (all).
        n_trainable: For "medium": how many of the last parameterised layers train, int >= 1 and
            at most the number of such layers. Default None (2).

    Returns:
        The model (its parameters' ``requires_grad`` set).

    Raises:
        ValueError: an unknown strategy, a bad n_trainable (or one given with another
            strategy), or a model without parameters.

    Example:
        >>> pydl.transfer.freeze_for(model, "medium", n_trainable=2)
        >>> [name for name, p in model.named_parameters() if p.requires_grad]
        ['2.weight', '2.bias', '4.weight', '4.bias']
    """
    _check_strategy("freeze_for", strategy, n_trainable)
    layers = _blocks(model)
    if not layers:
        raise ValueError("freeze_for: the model has no parameters")
    if strategy == "small":
        n = 1
    elif strategy == "large":
        n = len(layers)
    else:
        n = 2 if n_trainable is None else n_trainable
        if n > len(layers):
            raise ValueError(f"freeze_for: n_trainable={n} but the model has only {len(layers)} "
                             f"layers with parameters (use 'large' to train all)")
    model.freeze()
    for block in layers[len(layers) - n:]:
        for layer in block:
            layer.unfreeze()
    return model


class ProgressiveUnfreezing(Callback):
    """Apply transfer strategies at given epochs, e.g. small -> medium -> large.

    At the start of each epoch the entry with the largest epoch <= the current one is applied
    with :func:`freeze_for` (epochs before the first entry keep the model as it is). Newly
    unfrozen parameters start training at once: the optimizer must hold all of the model's
    parameters (build it over ``model.parameters()``, frozen ones included), which is checked
    when training begins.

    Args:
        schedule: A dict ``{epoch: strategy}``, epoch an int >= 0 (0-based, as the callback
            hooks), strategy "small", "medium", "large" or a pair ``("medium", n_trainable)``.

    Raises:
        ValueError: an empty schedule, a bad epoch or strategy; (on train begin) an optimizer
            that does not hold every model parameter.

    Example:
        >>> cb = pydl.transfer.ProgressiveUnfreezing({0: "small", 3: "medium", 6: "large"})
    """

    def __init__(self, schedule):
        if not isinstance(schedule, dict) or not schedule:
            raise ValueError(f"ProgressiveUnfreezing: schedule must be a non-empty dict "
                             f"{{epoch: strategy}}, got {schedule!r}")
        steps = []
        for epoch, entry in schedule.items():
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise ValueError(f"ProgressiveUnfreezing: epochs must be ints >= 0, got "
                                 f"{epoch!r}")
            strategy, n = (entry if isinstance(entry, tuple) and len(entry) == 2
                           else (entry, None))
            _check_strategy("ProgressiveUnfreezing", strategy, n)
            steps.append((epoch, strategy, n))
        self.schedule = dict(schedule)
        self._steps = sorted(steps)

    def strategy_at(self, epoch):
        """Return the (strategy, n_trainable) in force at ``epoch``, or None before the first."""
        current = None
        for start, strategy, n in self._steps:
            if start <= epoch:
                current = (strategy, n)
        return current

    def on_train_begin(self, logs=None):
        held = {id(p) for group in self.trainer.optimizer.param_groups for p in group["params"]}
        missing = [name for name, p in self.model.named_parameters() if id(p) not in held]
        if missing:
            raise ValueError(f"ProgressiveUnfreezing: the optimizer does not hold the "
                             f"parameters {missing}, so they could never train once unfrozen; "
                             f"build it over model.parameters() (frozen ones are skipped)")

    def on_epoch_begin(self, epoch, logs=None):
        current = self.strategy_at(epoch)
        if current is not None:
            freeze_for(self.model, *current)
