"""Record a step once, replay it: pydl's training and inference fast path.

The first call for a given *key* runs the step eagerly (ordinary autograd) while every op that
runs is logged (:class:`pydl.tensor.Op` instances, in execution order). Later calls with the same
key REPLAY the log: the batch is copied into the recorded input buffer and each op's ``forward``
and then ``backward`` run again on the same arrays, in the same order, so results are
bit-identical to eager execution (dropout keys are drawn in the same order too) while the
per-batch Python work (Tensors, graph nodes, topological sort, allocations) disappears.

The key is: the input's shape and dtype, the target's shape and dtype, the train/eval mode of
every module (``model.training`` and its submodules'), which
parameters require grad (and their array objects), the structure version that
``Module.__setattr__`` bumps (assigning any layer or attribute of any Module records anew), and
the loss object and its options. A changed key records anew.

Rewrites on the recorded tape (same bits as the eager ops they replace):

- a Linear whose only consumer is a fusable activation (:mod:`pydl.ops`) becomes ONE kernel call
  with the activation in the GEMM epilogue;
- consecutive ops whose kernel calls were captured while recording (``Op.native``: Linear,
  activations, convolution, pooling, batch norm in eval mode, layer norm) replay as ONE call into
  C++ (``pydl._core._Program``) that runs those kernels in order with the GIL released once: no
  Python between them (dropout's key draws run just before the program, in tape order). Ops
  that do numpy work (element-wise arithmetic, the loss) replay from Python between such runs;
- the backward of a step whose ops all do their backward in pydl kernels (``Op.native_backward``:
  Linear, convolution, pooling, batch norm, activations, dropout, the fused losses, same-shape
  additions, reshapes of contiguous gradients; gradients of a tensor with several consumers are
  summed by a kernel into a kept buffer) is captured
  during one replay and, once checked bit for bit against the Python backward on the next one,
  runs as ONE C++ call too (:class:`_NativeBackward`);
- gradients of leaf parameters are written into buffers allocated once and lent to the ops while
  a step replays (the weight gradient is accumulated by the GEMM itself, the bias gradient by one
  row reduction), so ``p.grad`` after a replayed step is overwritten by the next one: copy it to
  keep it.

What cannot be replayed runs eagerly every time, never wrongly: a step that reads a tensor's
value into Python (``item()``, ``numpy()``, ``float()``, comparisons used in ``if``), wraps an
array computed inside the step as a new Tensor, or uses an op defined with ``Tensor._make`` is
marked as not replayable for its key, with one ``logging.debug`` line on the ``"pydl.engine"``
logger saying why. A Module whose ``forward`` has Python side effects that must happen on every
batch (logging, counting) sets the class attribute ``replayable = False``. Like any tracer, the
engine cannot see Python numbers computed from tensor
data through ``.data`` (``float(x.data.std())``); write such code with tensor ops.

Public entry point for hand-written loops: :func:`compile_step`. ``Trainer.fit``, ``evaluate``
and ``predict`` use the same machinery.
"""

import logging
import math
import operator
import threading

import numpy as np

from . import _core, nn
from .losses import _Loss
from .optim import NonFiniteUpdateError, Optimizer
from .tensor import Tensor, _tape, no_grad

__all__ = ["NonFiniteLossError", "compile_step", "CompiledStep", "CompiledForward",
           "first_non_finite"]

_log = logging.getLogger("pydl.engine")
_requires_grad_of = operator.attrgetter("requires_grad")
_MAX_KEYS = 16  # recorded tapes kept per compiled step (least recently recorded dropped first)


class NonFiniteLossError(RuntimeError):
    """A training step's loss or gradient was NaN or infinite; nothing was updated.

    Attributes:
        history: The History of the finished epochs (``Trainer.fit``), else None.
        epoch: The epoch (0-based) of the bad batch (``Trainer.fit``), else None.
        batch: The batch index within that epoch (``Trainer.fit``), else None.
    """

    def __init__(self, message, history=None, epoch=None, batch=None):
        super().__init__(message)
        self.history = history
        self.epoch = epoch
        self.batch = batch


def _all_finite(g):
    # One read of the array: the dot product is finite iff every element is, except when
    # squares of huge finite values overflow, which the exact test then settles.
    flat = g.reshape(-1)
    if math.isfinite(np.dot(flat, flat)):
        return True
    return bool(np.isfinite(flat).all())


def first_non_finite(params):
    """Return the first parameter whose gradient holds a NaN/Inf, else None.

    Args:
        params: An iterable of Parameters.
    """
    for p in params:
        g = p.grad
        if g is not None and not _all_finite(g):
            return p
    return None


# --- recording -----------------------------------------------------------------------------------
class _Recorder:
    """Logs the ops of one eager step and what would stop it from replaying."""

    def __init__(self, persistent):
        self.entries = []          # (op, output Tensor) in execution order
        self.outputs = {}          # id(output Tensor) -> entry index
        self.made = {}             # id -> leaf Tensor created while recording
        self.constants = set()     # ids of leaf Tensors holding numbers written in the code
        self.persistent = persistent  # arrays refilled by the engine before each replay
        self.programs = {}         # id(op) -> its kernel calls captured while recording
        self.watched = set()       # ids of parameters: their values change between steps
        self.problem = None

    def fail(self, why):
        if self.problem is None:
            self.problem = why

    # hooks called by pydl.tensor
    def log(self, op, out, program=None):
        self.outputs[id(out)] = len(self.entries)
        self.entries.append((op, out))
        if program is not None:
            self.programs[id(op)] = program

    def created(self, t):
        self.made[id(t)] = t

    def constant(self, t):
        self.constants.add(id(t))

    def opaque(self, t, why):
        self.fail(why)

    def read(self, t):
        if (id(t) in self.outputs or id(t) in self.watched
                or (id(t) in self.made and id(t) not in self.constants)):
            self.fail("a tensor's value was read into Python (item(), numpy(), float(), bool())")

    # checks
    def _known_array(self, a):
        while a is not None:
            for p in self.persistent:
                if a is p:
                    return True
            a = a.base
        return False

    def check_operand(self, o):
        if isinstance(o, Tensor):
            if id(o) in self.outputs:
                return
            if (id(o) in self.made and id(o) not in self.constants
                    and not self._known_array(o.data)):  # (a wrapped input array is fine)
                self.fail("a Tensor was made from an array inside the step (its value would be "
                          "frozen at the recorded batch)")
            elif o._backward is not None:
                self.fail("an operand comes from an op recorded before the step")
        elif isinstance(o, np.ndarray):
            if not self._known_array(o):
                self.fail("an array computed inside the step was passed to an op")
        elif o is not None and not isinstance(o, (int, float, bool, str)):
            self.fail(f"an operand of type {type(o).__name__} cannot be replayed")


class _Tape:
    """A recorded step: prebound forward calls, backward targets and buffers."""

    __slots__ = ("trainable", "calls", "forward", "backward", "nslots", "loss", "output", "inputs",
                 "grad_buffers", "arena", "ones", "native_backward", "sums", "io", "bound",
                 "isa", "folds")


def _index_arrays(op):
    """Arrays an op holds as parameters (an index array), which must be refilled buffers too."""
    index = getattr(op, "index", None)
    if index is None:
        return ()
    parts = index if isinstance(index, tuple) else (index,)
    return [p for p in parts if isinstance(p, np.ndarray)]


def _fuse(entries, outputs, keep):
    """Rewrite Linear + activation pairs as one fused Linear op; return the new entry list.

    keep: ids of output Tensors read after the step (model output, loss), never fused away.
    """
    from .functional import LinearOp
    from .ops import ActivationOp

    uses = {}
    for op, _ in entries:
        for o in op.inputs:
            if isinstance(o, Tensor):
                uses[id(o)] = uses.get(id(o), 0) + 1
    drop = set()
    out = list(entries)
    for i, (op, t) in enumerate(entries):
        if type(op) is not ActivationOp or op.row.epilogue is None:
            continue
        j = outputs.get(id(op.inputs[0]))
        if j is None:
            continue
        lin, lin_out = entries[j]
        if (type(lin) is not LinearOp or lin.act is not None or uses.get(id(lin_out)) != 1
                or id(lin_out) in keep or lin_out.data.dtype != t.data.dtype):
            continue
        fused = LinearOp(op.row, op.params)
        fused.needs_grad = lin.needs_grad
        fused.inputs = lin.inputs
        fused.y = t.data  # write straight into the activation's output buffer
        out[i] = (fused, t, lin)
        drop.add(j)
    return [e for k, e in enumerate(out) if k not in drop]


def _build(rec, loss_t, out_t, order):
    """Turn a clean recording into a _Tape (None when the step cannot be replayed)."""
    for op, _ in rec.entries:
        for o in op.inputs:
            rec.check_operand(o)
        for a in _index_arrays(op):
            if not rec._known_array(a):
                rec.fail("an index array computed inside the step")
    if rec.problem is not None:
        return None
    keep = {id(out_t)} if loss_t is None else {id(out_t), id(loss_t)}
    entries = _fuse(rec.entries, rec.outputs, keep)
    slot_of = {}
    for k, e in enumerate(entries):
        slot_of[id(e[1])] = k
    tape = _Tape()
    tape.nslots = len(entries)
    tape.grad_buffers = None  # lent after the first backward (see _lend_arena)
    tape.arena = None
    tape.native_backward = None  # see _NativeBackward
    tape.isa = _core.isa()  # the instruction set its forward programs were captured under
    tape.sums = {}  # slot -> the buffer its gradients from several consumers are summed into
    # Tensors read as constants (not parameters: replacing a parameter's array bumps the
    # structure version), with the arrays the tape is bound to (see _stale).
    bound = {}
    for op, _ in rec.entries:
        for o in op.inputs:
            if (isinstance(o, Tensor) and o._backward is None and id(o) not in rec.outputs
                    and not isinstance(o, nn.Parameter) and not rec._known_array(o.data)):
                bound[id(o)] = (o, o.data)
    tape.bound = list(bound.values())
    calls = []
    for e in entries:
        op, t = e[0], e[1]
        if op.view:
            continue
        args = [o.data if isinstance(o, Tensor) else o for o in op.inputs]
        program = rec.programs.get(id(op)) if len(e) == 2 else _capture_rewritten(op, args, t)
        calls.append((op.forward, args, t.data, program))
    tape.calls = calls  # per op, for inspection (tests)
    tape.forward = _native_runs(calls)
    # A forward that is one program: CompiledForward.replay copies in, runs and copies out in
    # one C++ call.
    only = tape.forward[0][0] if len(tape.forward) == 1 else None
    tape.io = only if isinstance(only, _core._Program) else None
    tape.output = out_t.data
    tape.loss = None if loss_t is None else loss_t.data
    tape.backward = None
    tape.folds = None
    if order is not None:
        # Eager backward's order (a topological order from the loss), with fused pairs mapped
        # to their fused op: gradient sums then happen in the same order, so the same bits.
        by_out = {id(e[1]): e for e in entries}
        steps = []
        for node in order:
            e = by_out.get(id(node))
            if e is None:
                continue  # a Linear fused into its activation: its work moved there
            op, t = e[0], e[1]
            targets = []
            for o, need in zip(op.inputs, op.needs_grad):
                if not need:
                    targets.append(None)
                elif o._backward is None:
                    targets.append(o)  # a leaf: accumulate into .grad
                else:
                    targets.append((slot_of[id(o)], o.data.dtype))
            steps.append((op.backward, slot_of[id(t)], targets))
        tape.backward, tape.folds = _fold_backward(steps, entries, keep)
        tape.ones = np.ones_like(loss_t.data)
    return tape


def _fold_backward(steps, entries, keep):
    """Fold a Dropout's backward into the fused Linear + activation before it.

    A dropout whose input is a fused Linear + activation's output, read by nothing else, hands
    its gradient on masked, and the Linear then runs the activation's backward on it. Instead
    the Linear's step reads the dropout's gradient and does both in one kernel pass
    (``_core._dropout_act_backward``, the same bits as the two kernels one after the other),
    and the dropout's step goes.

    Returns the new steps and the (op, attribute, value) settings that make the ops' backward do
    so: set before the first replayed backward (see CompiledStep._backward), never on the
    recording run, whose eager backward still runs every op's own step.
    """
    from .functional import DropoutOp, LinearOp

    uses = {}
    for op, _ in ((e[0], e[1]) for e in entries):
        for o in op.inputs:
            if isinstance(o, Tensor):
                uses[id(o)] = uses.get(id(o), 0) + 1
    step_of = {slot: k for k, (_, slot, _) in enumerate(steps)}
    drop = set()
    out = list(steps)
    folds = []
    for k, (bwd, slot, targets) in enumerate(steps):
        op = getattr(bwd, "__self__", None)
        if type(op) is not DropoutOp or type(targets[0]) is not tuple:
            continue
        src = targets[0][0]
        lin, lin_out = entries[src][0], entries[src][1]
        j = step_of.get(src)
        if (type(lin) is not LinearOp or lin.act is None or j is None or j <= k
                or uses.get(id(lin_out)) != 1 or id(lin_out) in keep):
            continue
        folds.append((lin, "dropout", op))
        out[j] = (steps[j][0], slot, steps[j][2])
        drop.add(k)
    return [st for k, st in enumerate(out) if k not in drop], folds


def _stale(tape):
    """True when a Tensor the tape reads as a constant holds another array than when it was
    recorded (``t.data = new_array`` on a non-Parameter Tensor): the step must record anew."""
    for t, a in tape.bound:
        if t.data is not a:
            return True
    return False


def _capture_rewritten(op, args, t):
    """The kernel calls of an op the tape rewrote (never run eagerly), captured without running.

    Returns None when the op cannot be replayed natively.
    """
    if not op.native:
        return None
    _core._capture_begin(True)
    try:
        y = op.forward(*args)
    finally:
        program = _core._capture_end()
    return program if y is t.data and op.native else None


def _run_calls(calls):
    copyto = np.copyto
    for fwd, args, out in calls:
        y = fwd(*args)
        if y is not out:
            copyto(out, y)


def _native_runs(calls):
    """The forward calls with each run of natively captured ops merged into one C++ program.

    calls: (forward, args, output array, program or None) per op, in order. Returns
    (callable, args, output or None) entries for :meth:`_Compiled._run_forward`.
    """
    out = []
    run = []

    def close():
        if run:
            # An op with side effects before its kernels (dropout's key draw) has them in
            # ``prepare``, run before the program in tape order; its Python fallback is then the
            # rest of its forward, ``compute``.
            ops = [c[0].__self__ for c in run]
            prepare = [op.prepare for op in ops if hasattr(op, "prepare")]
            slow = [(op.compute if hasattr(op, "prepare") else c[0], c[1], c[2])
                    for op, c in zip(ops, run)]
            program = _core._Program.join([c[3] for c in run], lambda: _run_calls(slow))
            out.append((_prepared(prepare, program) if prepare else program, (), None))
            run.clear()

    for call in calls:
        if call[3] is not None:
            run.append(call)
        else:
            close()
            out.append(call[:3])
    close()
    return out


def _prepared(prepare, program):
    """program, after each of the ``prepare`` hooks of its ops (in tape order)."""

    def run():
        for f in prepare:
            f()
        program()

    return run


def model_input(a):
    """The batch array as a model receives it: a Tensor, except integer and boolean arrays
    (token or class indices, e.g. for an Embedding first layer), which stay arrays (a Tensor
    would hold them as floats)."""
    return a if a.dtype.kind in "iub" else Tensor(a)


def _hashable(value):
    try:
        hash(value)
        return value
    except TypeError:
        return ("id", id(value))


def _loss_key(loss):
    if isinstance(loss, _Loss):  # its attribute assignments bump nn._structure_version
        return id(loss)
    options = getattr(loss, "__dict__", None)
    if not options:
        return (id(loss),)
    return (id(loss),) + tuple((k, _hashable(v)) for k, v in options.items())


class _Compiled:
    """What a compiled step and a compiled forward share: keys, tapes, the recorder."""

    _hit = None  # CompiledForward: (shape, dtype, as_tensor, mode version, structure version,
    #              tape, modes)
    _modes_seen = None

    def __init__(self, model):
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected a pydl.nn.Module, got {type(model).__name__}")
        self.model = model
        self._tapes = {}
        self._lock = threading.Lock()
        self._version = None
        self._params = []

    def __getstate__(self):
        # A copy (pickle, deepcopy) starts with no recorded tapes and its own lock: tapes hold
        # buffers tied to this object's parameters.
        state = self.__dict__.copy()
        del state["_lock"]
        state["_tapes"] = {}
        state["_version"] = None
        state["_params"] = []
        for key in ("_pending", "_arena", "output", "_hit", "_modes_seen"):
            if key in state:
                state[key] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _parameters(self):
        """Return the model's parameters (listed again only when its structure changed)."""
        if self._version != nn._structure_version:
            self._params = list(self.model.parameters())
            self._version = nn._structure_version
        return self._params

    def _modes(self):
        """The train/eval mode of every module of the model, as a tuple (walked again only after
        a mode or the structure changed)."""
        seen = (nn._mode_version, nn._structure_version)
        if self._modes_seen != seen:
            self._modes_key = tuple(m.training for m in self.model.modules())
            self._modes_seen = seen
        return self._modes_key

    def _params_key(self):
        # (Replaced parameter arrays bump nn._structure_version, which every key holds.)
        return tuple(map(_requires_grad_of, self._parameters()))

    def _enter(self):
        if not self._lock.acquire(False):  # (non-blocking; the keyword form costs ~0.3 us more)
            raise RuntimeError(f"{type(self).__name__} of {type(self.model).__name__} is already "
                               f"running in another thread; use one per thread")

    def _store(self, key, tape):
        if len(self._tapes) >= _MAX_KEYS:
            self._tapes.pop(next(iter(self._tapes)))
        self._tapes[key] = tape

    @staticmethod
    def _record_begin(persistent, watched=()):
        """Start recording; persistent: the input buffers the engine refills; reading the value
        of a ``watched`` Tensor (the input, parameters) into Python makes the step unreplayable
        (it would be frozen at the recorded batch / weights)."""
        if _tape.recorder is not None:
            raise RuntimeError("the engine cannot record a step inside another recording")
        rec = _Recorder(persistent)
        rec.watched.update(id(t) for t in watched)
        _tape.recorder = rec
        return rec

    @staticmethod
    def _record_end():
        _tape.recorder = None

    def _explain(self, key, tape, rec):
        if tape is None:
            _log.debug("%s of %s: key %r runs eagerly every time: %s", type(self).__name__,
                       type(self.model).__name__, key[:2], rec.problem)
        else:
            _log.debug("%s of %s: recorded %d ops (%d forward calls) for key %r",
                       type(self).__name__, type(self.model).__name__, len(rec.entries),
                       len(tape.forward), key[:2])

    @staticmethod
    def _run_forward(tape):
        copyto = np.copyto
        for fwd, args, out in tape.forward:
            y = fwd(*args)
            if y is not out:  # an op that allocates: keep its consumers' bindings valid
                copyto(out, y)


class CompiledStep(_Compiled):
    """Forward, loss and backward of one batch, recorded once per key and replayed after.

    Use :func:`compile_step` to make one. ``step.forward(x, y)`` returns the loss value;
    ``step.backward()`` then writes every trainable parameter's gradient into ``p.grad``
    (overwriting, as ``zero_grad()`` + ``backward()``); ``step(x, y)`` does both with the
    finiteness checks (and the optimizer's update when one was given).
    """

    def __init__(self, model, loss, optimizer=None):
        super().__init__(model)
        if not callable(loss):
            raise TypeError(f"compile_step: loss must be a callable (pred, target) -> scalar "
                            f"Tensor, got {type(loss).__name__}")
        self.loss = loss
        self.optimizer = optimizer
        self.output = None  # the model's output array of the last forward (reused buffer)
        self._pending = None
        self._arena = None

    def forward(self, x, y):
        """Run forward and the loss on one batch; return the loss value as a float.

        Args:
            x: The batch of inputs (an array of the model's dtype for the fast path).
            y: The targets (array).

        Returns:
            The loss value (float), exactly as ``float(loss_fn(model(x), y).item())``.
        """
        self._enter()
        try:
            return self._forward(x, y)
        finally:
            self._lock.release()

    def _forward(self, x, y):
        x = x.data if isinstance(x, Tensor) else np.asarray(x)
        y_tensor = isinstance(y, Tensor)  # the loss gets a Tensor target again (as eager)
        if y_tensor:
            y = y.data
        key = (x.shape, x.dtype, getattr(y, "shape", None), getattr(y, "dtype", type(y)),
               y_tensor, self._modes(), nn._structure_version, self._params_key(),
               _loss_key(self.loss))
        tape = self._tapes.get(key, False)
        if tape and _stale(tape):
            tape = False
        if tape is False or tape is None:
            self._trainable = [p for p in self._params if p.requires_grad]
            if tape is None:
                return self._eager(x, Tensor(y) if y_tensor else y)
            return self._record(key, x, y, y_tensor)
        params = self._trainable = tape.trainable
        np.copyto(tape.inputs[0], x)
        if tape.inputs[1] is not None:
            np.copyto(tape.inputs[1], y)
        self._run_forward(tape)
        self.output = tape.output
        self._pending = (tape, params)
        self._arena = tape.arena
        return float(tape.loss)

    def _eager(self, x, y):
        self._arena = None
        out = self.model(model_input(x))
        loss = self.loss(out, y)
        self.output = out.data
        self._pending = (loss, None)
        return float(loss.item())

    def _record(self, key, x, y, y_tensor=False):
        self._arena = None
        x_buf = np.array(x, order="C")
        y_buf = np.array(y) if isinstance(y, np.ndarray) else None
        xt = model_input(x_buf)
        opt = self.optimizer
        extra = [p for g in opt.param_groups for p in g["params"]] \
            if isinstance(opt, Optimizer) else []
        rec = self._record_begin([a for a in (x_buf, y_buf) if a is not None],
                                 [xt] + self._parameters() + extra)
        try:
            out = self.model(xt)
            target = y if y_buf is None else (Tensor(y_buf) if y_tensor else y_buf)
            loss = self.loss(out, target)
        finally:
            self._record_end()
        if not isinstance(loss, Tensor) or not isinstance(out, Tensor):
            rec.fail("the model or the loss did not return a Tensor")
        elif loss.data.size != 1:
            rec.fail("the loss is not a scalar")
        tape = None
        if rec.problem is None:
            order = loss._topological_order() if loss.requires_grad else None
            tape = _build(rec, loss, out, order)
        if tape is not None:
            tape.inputs = (x_buf, y_buf)
            # Leaves outside the model that get gradients (e.g. a custom loss's own Parameter)
            # are written through the arena like the model's.
            known = {id(p) for p in self._trainable}
            for _, _, targets in tape.backward or ():
                for t in targets:
                    if isinstance(t, Tensor) and id(t) not in known:
                        known.add(id(t))
                        self._trainable.append(t)
            tape.trainable = self._trainable
        self._explain(key, tape, rec)
        self._store(key, tape)
        self.output = out.data
        self._pending = (loss, tape)
        return float(loss.item())

    def trainable(self):
        """Return the parameters the last forward computes gradients for (requires_grad)."""
        return self._trainable

    def non_finite_gradient(self):
        """Return the first trainable parameter whose gradient holds a NaN/Inf, else None.

        After a replayed step all gradients live in one buffer: one pass over it decides.
        """
        arena = self._arena
        if arena is not None and _all_finite(arena):
            return None
        return first_non_finite(self._trainable)

    def backward(self):
        """Write the gradients of the last forward into ``p.grad`` (overwriting them)."""
        self._enter()
        try:
            self._backward()
        finally:
            self._lock.release()

    def _backward(self):
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("backward: call forward(x, y) first (once per backward)")
        params = self._trainable
        for p in self._params:
            p.grad = None
        for p in params:  # (leaves outside the model the last replay wrote)
            p.grad = None
        opt = self.optimizer
        if isinstance(opt, Optimizer):  # its parameters outside the model too (as zero_grad())
            for g in opt.param_groups:
                for p in g["params"]:
                    p.grad = None
        first, tape = pending
        if isinstance(first, Tensor):  # the eager / recording run: ordinary autograd
            if first.requires_grad:
                first.backward()
            if tape is not None:
                _lend_arena(tape, [p for p in params if p.grad is not None])
            return
        tape = first
        if tape.folds:  # the backward rewrite (_fold_backward), from the first replay on
            for op, name, value in tape.folds:
                setattr(op, name, value)
            tape.folds = None
        lent = tape.grad_buffers
        if lent is None:  # the recording run stopped before its backward (e.g. a NaN loss)
            _replay_backward(tape)
            _lend_arena(tape, [p for p in params if p.grad is not None])
            return
        native = tape.native_backward
        if type(native) is _NativeBackward and native.verified:
            native.run()
            return
        if native is None and tape.isa != _core.isa():
            # The forward programs fall back to the ops' Python forwards, which make new saved
            # arrays (pooling indices, batch statistics) every step: a backward captured now
            # would read this step's. It stays in Python.
            tape.native_backward = False
            _python_backward(tape, lent)
        elif native is None:
            tape.native_backward = _NativeBackward.capture(tape, lent)
        elif native:
            tape.native_backward = native.verify(tape, lent)
        else:
            _python_backward(tape, lent)

    def __call__(self, x, y):
        """Run one training step; return the loss value (float).

        Forward + loss, then (only if the loss is finite) backward, then (only if every
        gradient is finite) the optimizer's update when the step has one. pydl's optimizers
        check the gradients in the update's own pass; for any other optimizer (or none) the
        step reads its gradient buffer once.

        Raises:
            NonFiniteLossError: the loss or a gradient is NaN/Inf; parameters and optimizer
                state are untouched (gradients hold the bad values for inspection).
        """
        value = self.forward(x, y)
        if not math.isfinite(value):
            raise NonFiniteLossError(f"compile_step: the loss became {value}; nothing was "
                                     f"updated")
        self.backward()
        opt = self.optimizer
        if isinstance(opt, Optimizer):
            # pydl's optimizers check every gradient (and the new state) in the same pass as
            # the update and change nothing when one is not finite.
            try:
                opt.step()
            except NonFiniteUpdateError as e:
                name = _param_name(self.model, e.param)
                what = "gradient" if e.what == "grad" else "optimizer state"
                raise NonFiniteLossError(f"compile_step: the {what} of {name!r} became "
                                         f"non-finite although the loss {value} is finite; "
                                         f"nothing was updated") from e
            return value
        bad = self.non_finite_gradient()
        if bad is not None:
            name = _param_name(self.model, bad)
            raise NonFiniteLossError(f"compile_step: the gradient of {name!r} became non-finite "
                                     f"although the loss {value} is finite; nothing was updated")
        if opt is not None:
            opt.step()
        return value


def _param_name(model, p):
    return next((n for n, q in model.named_parameters() if q is p), "a parameter outside the model")


_ALIGN = 16  # elements between gradient buffers in the arena: each starts 64-byte aligned


def _lend_arena(tape, params):
    """Move the recorded step's gradients into one zero-padded buffer the replays write into.

    One buffer lets the finiteness check read every gradient in a single pass. With mixed
    dtypes each gradient keeps its own array (and the check reads them one by one).
    """
    tape.arena = None
    if len({p.grad.dtype for p in params}) != 1:
        tape.grad_buffers = [(p, p.grad) for p in params]
        return
    sizes = [-(-p.grad.size // _ALIGN) * _ALIGN for p in params]
    arena = np.zeros(sum(sizes) + _ALIGN, params[0].grad.dtype)
    start = (-arena.ctypes.data // arena.itemsize) % _ALIGN  # first 64-byte boundary
    lent = []
    for p, size in zip(params, sizes):
        view = arena[start:start + p.grad.size].reshape(p.grad.shape)
        np.copyto(view, p.grad)
        p.grad = view
        lent.append((p, view))
        start += size
    tape.grad_buffers = lent
    tape.arena = arena


def _python_backward(tape, lent, trace=None):
    """The replayed backward from Python, with the arena's buffers lent to the parameters."""
    for p, buf in lent:
        p._gbuf = buf
    try:
        _replay_backward(tape, trace)
    finally:
        for p, _ in lent:
            p._gbuf = None


def _trace_step(trace, bwd, results, targets, grads):
    """Log one backward step of a replay for _NativeBackward: the arrays it handed on, then
    None if the step does work a captured program would not repeat."""
    ok = getattr(getattr(bwd, "__self__", None), "native_backward", False)
    for tgt, pg in zip(targets, results):
        if pg is None or tgt is None:
            continue
        trace.append(pg)
        if type(tgt) is tuple:
            # A slot's gradient must be handed on as it is or summed by a kernel (a cast is
            # numpy work).
            ok = ok and type(pg) is np.ndarray and pg.dtype == tgt[1]
        else:
            ok = False  # a leaf's gradient copied or added in numpy
    if not ok:
        trace.append(None)


class _NativeBackward:
    """A recorded step's backward as one C++ program (no Python between its kernels).

    Ops whose ``backward`` does all its array work in pydl kernels writing into arrays they keep
    (``Op.native_backward``) have those kernel calls captured during one replay (the gradient
    routing between them must be hand-overs or sums by ``_core._add_into`` into the tape's
    buffers, and every leaf gradient written by a kernel into the arena). The next replay runs
    the program AND the Python backward on the same batch and compares: the program is used from
    then on only if both wrote the same bits and the ops handed on the same arrays. Otherwise the
    key keeps the Python backward, with one ``logging.debug`` line saying why.
    """

    __slots__ = ("program", "trace", "grads", "verified", "keep")

    @classmethod
    def capture(cls, tape, lent):
        """Run the replayed backward once while capturing it; return a candidate or False."""
        from .tensor import _ONES

        trace = []
        _core._capture_begin(False)
        try:
            _python_backward(tape, lent, trace)
        finally:
            program = _core._capture_end()
        why = None
        if any(t is None for t in trace):
            why = "an op's backward (or the gradient routing) does work outside pydl kernels"
        elif program is None:
            why = "a kernel call could not be captured"
        grads = [(p, buf) for p, buf in lent if p.grad is not None]
        if why is None and any(p.grad is not buf for p, buf in grads):
            why = "a gradient was not written into the engine's buffer"
        if why is not None:
            _log.debug("backward of a recorded step stays in Python: %s", why)
            return False
        self = cls()
        self.program = _core._Program.join([program], lambda: _python_backward(tape, lent))
        self.trace = trace
        self.grads = grads
        self.verified = False
        self.keep = list(_ONES.values())  # rows of ones the program reads
        return self

    def run(self):
        self.program()
        for p, buf in self.grads:
            p.grad = buf

    def verify(self, tape, lent):
        """Run the program, then the Python backward; return self if they agree, else False."""
        self.run()
        written = [buf.tobytes() for _, buf in self.grads]
        for p, _ in self.grads:
            p.grad = None
        trace = []
        _python_backward(tape, lent, trace)
        same = (len(trace) == len(self.trace) and all(a is b for a, b in zip(trace, self.trace))
                and [p for p, _ in lent if p.grad is not None] == [p for p, _ in self.grads]
                and all(w == buf.tobytes() for w, (_, buf) in zip(written, self.grads)))
        if not same:
            _log.debug("backward of a recorded step stays in Python: its captured kernels did "
                       "not reproduce the Python backward")
            return False
        self.verified = True
        self.trace = None
        return self


def _replay_backward(tape, trace=None):
    from .tensor import accumulate_grad

    if not tape.backward:  # nothing requires grad (every parameter frozen)
        return
    grads = [None] * tape.nslots
    grads[tape.backward[0][1]] = tape.ones
    for bwd, slot, targets in tape.backward:
        g = grads[slot]
        if g is None:
            continue
        grads[slot] = None
        results = bwd(g)
        if trace is not None:
            _trace_step(trace, bwd, results, targets, grads)
        for tgt, pg in zip(targets, results):
            if pg is None or tgt is None:
                continue
            if type(pg) is not np.ndarray:
                pg = np.asarray(pg)
            if type(tgt) is tuple:
                i, dtype = tgt
                if pg.dtype != dtype:
                    pg = pg.astype(dtype)
                prev = grads[i]
                if prev is None:
                    grads[i] = pg
                else:  # a second consumer: sum into the slot's kept buffer (capturable)
                    buf = tape.sums.get(i)
                    if buf is None:
                        buf = tape.sums[i] = np.empty(prev.shape, dtype)
                    _core._add_into(buf, prev, pg)
                    grads[i] = buf
            else:
                accumulate_grad(tgt, pg)


def _result(out):
    """A forward's result as CompiledForward returns it: a Tensor's data copied, else as is."""
    return np.array(out.data) if isinstance(out, Tensor) else out


class CompiledForward(_Compiled):
    """The model's forward without a graph, recorded once per key and replayed after.

    ``fwd(x)`` returns the output array (a new array; the replay buffer is not handed out), or
    whatever the model returned when that is not a Tensor (such a forward is never replayed).
    The model's mode (train/eval) is part of the key; call it under any grad mode. A Tensor x
    reaches the model as a Tensor, an array as an array (as ``model(x)`` would).
    """

    def __call__(self, x):
        """Return the model's outputs for the batch x (array or Tensor)."""
        self._enter()
        try:
            return self._call(x)
        finally:
            self._lock.release()

    def _same_modes(self, hit):
        """True when the modules' modes equal the hit's although some mode was switched since
        (``Trainer.predict`` switches a model in training mode to eval and back on every call);
        the hit then carries the new mode version."""
        if self._modes() != hit[6]:
            return False
        self._hit = hit[:3] + (nn._mode_version,) + hit[4:]
        return True

    def replay(self, x, xd, as_tensor):
        """The model's output for the batch x (xd: its array; as_tensor: x is a Tensor), or None
        when the model must run eagerly.

        The no_grad path of ``Module.__call__`` (pydl._inference): the key of the last replay is
        checked field by field before anything else, so a repeated call costs a few comparisons,
        the input copy, one C++ call per run of natively captured ops and the output copy.
        """
        hit = self._hit
        if (hit is not None and hit[0] == xd.shape and hit[1] == xd.dtype
                and hit[2] is as_tensor and hit[4] == nn._structure_version
                and (hit[3] == nn._mode_version or self._same_modes(hit))):
            tape = hit[5]  # (no lock: the no_grad path keeps one CompiledForward per thread)
            if tape.bound and _stale(tape):
                self._hit = None
                return self(x)
            if tape.io is not None:
                y = tape.io.run_io(xd, tape.inputs[0], tape.output)
                if y is not None:
                    return y
            np.copyto(tape.inputs[0], xd)
            self._run_forward(tape)
            return np.array(tape.output)
        params = self._parameters()
        if not params or xd.dtype != params[0].data.dtype:
            return None
        return self(x)

    def _eager(self, x):
        previous, _tape.eager = _tape.eager, True
        try:
            with no_grad():
                return _result(self.model(x))
        finally:
            _tape.eager = previous

    def _call(self, x):
        model = self.model
        as_tensor = isinstance(x, Tensor)
        xd = x.data if as_tensor else x
        if type(xd) is not np.ndarray:
            return self._eager(x)
        key = (as_tensor, xd.shape, xd.dtype, self._modes(), nn._structure_version,
               self._params_key())
        tape = self._tapes.get(key, False)
        self._hit = None
        if tape and _stale(tape):
            tape = False
        if tape is None:
            return self._eager(x)
        if tape is False:
            x_buf = np.array(xd, order="C")
            xin = Tensor(x_buf) if as_tensor else x_buf
            rec = self._record_begin([x_buf], [xin] + self._parameters())
            try:
                with no_grad():
                    out = model(xin)
            finally:
                self._record_end()
            if not isinstance(out, Tensor):
                rec.fail("the model did not return a Tensor")
            elif id(out) not in rec.outputs:
                rec.fail("the output is not computed by an op (e.g. the input itself)")
            tape = _build(rec, None, out, None) if rec.problem is None else None
            if tape is not None:
                tape.inputs = (x_buf,)
            self._explain(key, tape, rec)
            self._store(key, tape)
            return _result(out)
        self._hit = (xd.shape, xd.dtype, as_tensor, nn._mode_version, nn._structure_version, tape,
                     key[3])
        np.copyto(tape.inputs[0], xd)
        self._run_forward(tape)
        return np.array(tape.output)


def compile_step(model, loss, optimizer=None):
    """Return a training step for a hand-written loop, recorded once and replayed after.

    ``step(x, y)`` runs forward, the loss, backward and (when given) ``optimizer.step()``, and
    returns the loss value. The first call for each input shape/dtype, training flag, set of
    trainable parameters and model structure runs eagerly while the engine records it; later
    calls replay the recorded kernel calls into reused buffers: the same bits as the eager step,
    with much less Python per batch. ``p.grad`` holds each step's gradients afterwards (the
    same arrays are overwritten by the next replayed step; copy them to keep them).

    Args:
        model: A ``pydl.nn.Module``.
        loss: A callable ``(output, target) -> scalar Tensor``, e.g. ``losses.MSELoss()``.
        optimizer: Optional optimizer to step after each finite backward. Default None.

    Returns:
        A :class:`CompiledStep`.

    Raises:
        TypeError: model is not a Module or loss is not callable.

    Example:
        >>> step = pydl.compile_step(model, pydl.losses.CrossEntropyLoss(), opt)
        >>> for xb, yb in batches:
        ...     loss_value = step(xb, yb)      # NonFiniteLossError before any bad update
    """
    return CompiledStep(model, loss, optimizer)
