"""A recorded training step for plain Sequential MLPs: the graph path's kernel calls, no graph.

``Trainer.fit`` uses :class:`SequentialStep` when the model is exactly an ``nn.Sequential`` of
``Linear`` layers (each optionally fused with the activation that follows it, as ``Sequential``
itself runs them) and ``Dropout`` layers, the loss is ``CrossEntropyLoss`` and the labels are an
int32/int64 vector. The step then makes the SAME kernel calls with the SAME operands in the same
order as the autograd path (``Sequential.forward`` + ``loss.backward()``), so every result is
bit-identical; what it saves is the per-batch Python work around them: no Tensors, closures or
topological sort, no gradient arrays re-allocated every step (each kernel writes into a buffer
reused across steps, passed as ``out=``; element-wise backward kernels run in place on those
buffers, which gives the same values), and dropout keys drawn in the same order.

Everything else stays with the Trainer: the loss check before the update, the regularizer's
gradients and ``optimizer.step()`` (which reads the gradients from ``p.grad`` as usual).

Gradient buffers: after a step ``p.grad`` holds that step's gradient, as on the graph path, but the
same array is overwritten by the next step (the graph path allocates a new one); copy it to keep it.
"""

import numpy as np

from .. import kernels
from .. import nn
from .. import random as _random
from ..losses import CrossEntropyLoss

__all__ = ["SequentialStep"]

_FUSABLE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh)

_ACT_BACKWARD = {
    "relu": lambda dy, y, slope, alpha, out: kernels.relu_backward(dy, y, out=out),
    "leaky_relu": lambda dy, y, slope, alpha, out: kernels.leaky_relu_backward(dy, y, slope,
                                                                                out=out),
    "elu": lambda dy, y, slope, alpha, out: kernels.elu_backward(dy, y, alpha, out=out),
    "sigmoid": lambda dy, y, slope, alpha, out: kernels.sigmoid_backward(dy, y, out=out),
    "tanh": lambda dy, y, slope, alpha, out: kernels.tanh_backward(dy, y, out=out),
}


class _Linear:
    __slots__ = ("layer", "act", "slope", "alpha", "act_backward", "last_out")

    def __init__(self, layer, act):
        self.layer = layer
        self.act = None if act is None else act._fused
        # The same defaults Linear._forward_fused passes for activations without the parameter.
        self.slope = getattr(act, "negative_slope", 0.01)
        self.alpha = getattr(act, "alpha", 1.0)
        self.act_backward = None if act is None else _ACT_BACKWARD[self.act]


class _Dropout:
    __slots__ = ("layer", "last_out")

    def __init__(self, layer):
        self.layer = layer


def _ops(model):
    """Return the step's op list for a supported Sequential, or None."""
    if type(model) is not nn.Sequential:
        return None
    ops = []
    for fn, act in model._plan:
        if act is not None:
            layer = getattr(fn, "__self__", None)
            if type(layer) is not nn.Linear or type(act) not in _FUSABLE:
                return None
            ops.append(_Linear(layer, act))
        elif type(fn) is nn.Linear:
            ops.append(_Linear(fn, None))
        elif type(fn) is nn.Dropout:
            ops.append(_Dropout(fn))
        else:
            return None
    if not ops or type(ops[0]) is not _Linear or type(ops[-1]) is not _Linear:
        return None
    return ops


class SequentialStep:
    """Forward + loss and backward of one batch, recorded for a supported model (see module doc)."""

    @classmethod
    def build(cls, model, loss, x, y):
        """Return a SequentialStep for (model, loss, x, y), or None when the graph path is needed.

        x is the Trainer's converted input array (C-contiguous, the model's dtype), y the labels.
        """
        if type(loss) is not CrossEntropyLoss or not model.training:
            return None
        ops = _ops(model)
        if ops is None:
            return None
        if not (isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype in (np.int64, np.int32)):
            return None
        if x.ndim != 2 or x.shape[1] != ops[0].layer.in_features:
            return None
        seen = set()
        for op in ops:
            if type(op) is _Linear:
                for p in (op.layer.weight, op.layer.bias):
                    if p is None:
                        continue
                    # Shared or frozen parameters, or another dtype: the graph path handles them.
                    if id(p) in seen or not p.requires_grad or p.data.dtype != x.dtype:
                        return None
                    seen.add(id(p))
        return cls(ops, loss)

    def __init__(self, ops, loss):
        self.ops = ops
        self.loss = loss
        self._buffers = {}  # rows -> (outputs, masks, input gradients, dlogits), reused every step
        # Gradient buffers, one per parameter, kept for the whole epoch.
        self._grads = [None if type(op) is not _Linear else
                       (np.empty_like(op.layer.weight.data),
                        None if op.layer.bias is None else np.empty_like(op.layer.bias.data))
                       for op in ops]
        self._xb = None  # the last forward's input (backward needs it)
        self._rows = 0

    def _buffers_for(self, rows, dtype):
        """Allocate the per-op buffers of a batch of `rows` samples."""
        outs, masks, dxs = [], [], []
        width = self.ops[0].layer.in_features
        for i, op in enumerate(self.ops):
            if type(op) is _Linear:
                dxs.append(np.empty((rows, width), dtype) if i > 0 else None)
                width = op.layer.out_features
                masks.append(None)
            else:
                dxs.append(None)
                masks.append(np.empty((rows, width), np.uint8))
            outs.append(np.empty((rows, width), dtype))
        bufs = self._buffers[rows] = (outs, masks, dxs, np.empty((rows, width), dtype))
        return bufs

    def forward(self, xb, yb, out=None):
        """Run forward and the loss on one batch; return the loss value as the graph path does.

        Args:
            xb: (rows, in_features) C-contiguous inputs of the model's dtype.
            yb: (rows,) int labels.
            out: Optional (rows, classes) array to receive the logits (e.g. a slice of an epoch's
                output buffer); default a reused buffer.
        """
        rows = xb.shape[0]
        bufs = self._buffers.get(rows)
        if bufs is None:
            bufs = self._buffers_for(rows, xb.dtype)
        outs, masks, _, dlogits = bufs
        if out is not None:
            outs = outs[:-1] + [out]
        linear, dropout = kernels.linear, kernels.dropout
        h = xb
        for op, y, mask in zip(self.ops, outs, masks):
            if mask is None:
                layer = op.layer
                bias = layer.bias
                linear(h, layer.weight.data, None if bias is None else bias.data, op.act,
                       negative_slope=op.slope, alpha=op.alpha, out=y)
            else:
                p = op.layer.p
                if p == 0.0:  # F.dropout returns its input: no key drawn, nothing recorded
                    y = h
                else:
                    seed, step = _random.next_dropout_key()
                    dropout(h, p, seed, step, out=y, mask_out=mask)
            op.last_out = y
            h = y
        loss = self.loss
        value, _ = kernels.softmax_cross_entropy(
            h, yb, label_smoothing=loss.label_smoothing, reduction=loss.reduction,
            dlogits=dlogits)
        self._xb = xb
        self._rows = rows
        # The graph path stores the loss as a 0-d array of the logits' dtype and reads it back.
        return float(xb.dtype.type(value))

    def backward(self):
        """Write every parameter's gradient for the last forward into ``p.grad`` (overwriting)."""
        _, masks, dxs, g = self._buffers[self._rows]
        ops = self.ops
        matmul, add_reduce = kernels.matmul, np.add.reduce
        for i in range(len(ops) - 1, -1, -1):
            op = ops[i]
            if masks[i] is None:
                if op.act_backward is not None:
                    g = op.act_backward(g, op.last_out, op.slope, op.alpha, g)
                h = ops[i - 1].last_out if i > 0 else self._xb
                layer = op.layer
                gw, gb = self._grads[i]
                if i > 0:
                    dx = dxs[i]
                    matmul(g, layer.weight.data, out=dx)
                matmul(g, h, trans_a=True, out=gw)
                layer.weight.grad = gw
                if gb is not None:
                    add_reduce(g, axis=0, out=gb)  # what the graph path's g.sum(axis=0) runs
                    layer.bias.grad = gb
                if i > 0:
                    g = dx
            else:
                p = op.layer.p
                if p != 0.0:
                    g = kernels.dropout_backward(g, masks[i], p, out=g)
