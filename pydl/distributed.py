"""Data-parallel training over MPI (mpi4py): one process per rank, the same model on every rank.

Nothing here is distributed until :func:`init` is called; before that every function except
:func:`is_initialized` raises RuntimeError, and importing pydl never imports mpi4py. Launch a
script with ``mpiexec -n N python script.py`` (``pip install "pydl[mpi]"`` brings mpi4py and the
``mpich`` wheel; mpi4py built against a system MPI works as well).

After ``init()`` with a world of size > 1, ``Trainer.fit`` is data-parallel through the small
hooks at the end of this module: each rank takes the positions ``rank, rank + W, ...`` of the
epoch's shuffled order (padded by wrapping to a multiple of W, as PyTorch's DistributedSampler),
gradients are averaged across ranks before each update, the epoch's loss and metrics are computed
over all ranks' samples, and files and progress bars come from rank 0 only.

Gradients travel as flat numpy buckets of a few MB, each reduced with one ``Allreduce`` (the
uppercase, buffer-based mpi4py API: no pickling on the per-step path).

Example:
    >>> import pydl, pydl.distributed as dist
    >>> dist.init()
    >>> pydl.manual_seed(0)
    >>> model = ...; trainer = pydl.train.Trainer(model, loss, optimizer)
    >>> trainer.fit(x, y, batch_size=64)      # batch_size per rank: 64 * world_size() per step
    >>> if dist.rank() == 0:
    ...     pydl.save_model(model, "model.npz")
"""

import math
import sys
import weakref
import zlib

import numpy as np

from .optim import Optimizer

__all__ = ["DistributedOptimizer", "allreduce_", "barrier", "broadcast_parameters", "init",
           "is_initialized", "rank", "world_size"]

#: Default size of one gradient bucket in bytes (one Allreduce per bucket).
DEFAULT_BUCKET_BYTES = 4 << 20

_MPI = None   # the mpi4py.MPI module, once init() ran
_comm = None  # pydl's own duplicate of COMM_WORLD, so user collectives never match pydl's
_OPS = ("mean", "sum", "max", "min")


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            "pydl.distributed needs mpi4py and an MPI library: pip install \"pydl[mpi]\" (mpi4py "
            "and the mpich wheel), or pip install mpi4py built against your system MPI") from exc
    return MPI


def init():
    """Join the MPI world started by ``mpiexec``; idempotent.

    With more than one rank, an uncaught exception on any rank prints its traceback and then
    aborts the whole job (``MPI_Abort``), so no rank is left waiting in a collective.

    Raises:
        ImportError: mpi4py is not installed (names the ``pydl[mpi]`` extra).
    """
    global _MPI, _comm
    if _comm is not None:
        return
    MPI = _import_mpi()
    if not MPI.Is_initialized():
        MPI.Init()
    _comm = MPI.COMM_WORLD.Dup()
    _MPI = MPI
    if _comm.Get_size() > 1:
        _install_abort_hook(MPI)


def _install_abort_hook(MPI):
    previous = sys.excepthook

    def abort_on_exception(etype, value, tb):
        previous(etype, value, tb)
        sys.stderr.write(f"pydl.distributed: rank {MPI.COMM_WORLD.Get_rank()} raised "
                         f"{etype.__name__}; aborting all ranks\n")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)

    sys.excepthook = abort_on_exception


def is_initialized():
    """Return whether :func:`init` has been called in this process."""
    return _comm is not None


def _require(who):
    if _comm is None:
        raise RuntimeError(f"pydl.distributed.{who}: call pydl.distributed.init() first (and "
                           f"launch the script with mpiexec -n N python script.py)")
    return _comm


def rank():
    """Return this process's rank in [0, world_size()).

    Raises:
        RuntimeError: :func:`init` was not called.
    """
    return _require("rank").Get_rank()


def world_size():
    """Return the number of ranks.

    Raises:
        RuntimeError: :func:`init` was not called.
    """
    return _require("world_size").Get_size()


def barrier():
    """Block until every rank has called ``barrier()``.

    Raises:
        RuntimeError: :func:`init` was not called.
    """
    _require("barrier").Barrier()


def _active():
    """Whether the Trainer hooks should distribute: initialized with more than one rank."""
    return _comm is not None and _comm.Get_size() > 1


def _raise_on_all(who, message):
    """Collective: raise ValueError on every rank when any rank passed a message (first wins)."""
    messages = _comm.allgather(message)
    for r, m in enumerate(messages):
        if m is not None:
            raise ValueError(f"{who}: on rank {r}: {m}")


def _check_root(who, root):
    size = _comm.Get_size()
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or \
            not 0 <= root < size:
        raise ValueError(f"{who}: root must be a rank in [0, {size}), got {root!r}")
    return int(root)


# --- collectives on arrays ----------------------------------------------------------------
def allreduce_(array, op="mean"):
    """Reduce a numpy array across ranks in place (every rank gets the result); return it.

    Args:
        array: A writeable np.ndarray (or a Tensor, whose ``.data`` is reduced) of the same shape
            and dtype on every rank: float32/float64 for any op, int32/int64 for "sum", "max"
            and "min".
        op: "mean" (default), "sum", "max" or "min".

    Returns:
        The same array, now holding the reduction.

    Raises:
        RuntimeError: :func:`init` was not called.
        TypeError: not an array, or an unsupported dtype for ``op``.
        ValueError: an unknown op, a read-only array, or shapes/dtypes that differ between ranks
            (raised on every rank).
    """
    comm = _require("allreduce_")
    target = array.data if hasattr(array, "requires_grad") else array
    if not isinstance(target, np.ndarray):
        raise TypeError(f"allreduce_: expected a numpy array or Tensor, got "
                        f"{type(array).__name__}")
    if op not in _OPS:
        raise ValueError(f"allreduce_: op must be one of {_OPS}, got {op!r}")
    kinds = ("float32", "float64") if op == "mean" else ("float32", "float64", "int32", "int64")
    if target.dtype.name not in kinds:
        raise TypeError(f"allreduce_: op {op!r} takes dtypes {kinds}, got {target.dtype}")
    if not target.flags.writeable:
        raise ValueError("allreduce_: the array is read-only; pass a writeable copy")
    layouts = comm.allgather(f"shape {target.shape}, dtype {target.dtype}")
    if len(set(layouts)) > 1:
        given = ", ".join(f"rank {r}: {s}" for r, s in enumerate(layouts))
        raise ValueError(f"allreduce_: ranks passed different arrays ({given}); every rank must "
                         f"pass the same shape and dtype")
    buf = target if target.flags.c_contiguous else np.ascontiguousarray(target)
    mpi_op = {"mean": _MPI.SUM, "sum": _MPI.SUM, "max": _MPI.MAX, "min": _MPI.MIN}[op]
    comm.Allreduce(_MPI.IN_PLACE, buf, op=mpi_op)
    if op == "mean":
        np.divide(buf, comm.Get_size(), out=buf)
    if buf is not target:
        target[...] = buf
    return array


def _state_entries(model):
    """Return [(name, array)] of everything a model holds: parameters, then any buffers."""
    params = list(model.named_parameters())
    names = {name for name, _ in params}
    entries = [(name, p.data) for name, p in params]
    # state_dict() may hold more than parameters (e.g. a normalisation layer's running
    # statistics); those are loaded back through load_state_dict.
    extra = [(k, v) for k, v in model.state_dict().items() if k not in names]
    return entries, extra


def _bcast_array(array, root):
    buf = array if array.flags.c_contiguous and array.flags.writeable else \
        np.ascontiguousarray(array).copy()
    _comm.Bcast(buf, root=root)
    if buf is not array:
        array[...] = buf


def broadcast_parameters(model, root=0):
    """Copy ``root``'s parameters (and any other state_dict entries) to every rank.

    The shapes and dtypes are compared first: a rank whose model differs raises ValueError on
    EVERY rank, naming the parameter, instead of hanging or averaging mismatched arrays.

    Args:
        model: A ``pydl.nn.Module``, built the same way on every rank.
        root: The rank whose values win. Default 0.

    Raises:
        RuntimeError: :func:`init` was not called.
        ValueError: a bad root, or models whose parameter names, shapes or dtypes differ.
    """
    _require("broadcast_parameters")
    root = _check_root("broadcast_parameters", root)
    if _comm.Get_size() == 1:
        return
    params, extra = _state_entries(model)
    layout = [(name, tuple(a.shape), a.dtype.str) for name, a in params + extra]
    root_layout = _comm.bcast(layout, root=root)
    _raise_on_all("broadcast_parameters", _layout_mismatch(layout, root_layout, root))
    for _, array in params:
        _bcast_array(array, root)
    if extra:
        _broadcast_extra(model, extra, root)


def _layout_mismatch(mine, theirs, root):
    """Return a message naming the first entry where two model layouts differ, or None."""
    for (name, shape, dtype), (rname, rshape, rdtype) in zip(mine, theirs):
        if name != rname:
            return (f"parameter {name!r} is where rank {root} (root) has {rname!r}; every rank "
                    f"must build the same model")
        if shape != rshape or dtype != rdtype:
            return (f"parameter {name!r} has shape {shape} and dtype {np.dtype(dtype)}, rank "
                    f"{root} (root) has shape {rshape} and dtype {np.dtype(rdtype)}; every rank "
                    f"must build the same model")
    if len(mine) != len(theirs):
        longer = mine if len(mine) > len(theirs) else theirs
        name = longer[min(len(mine), len(theirs))][0]
        return (f"the model has {len(mine)} parameters, rank {root} (root) has {len(theirs)} "
                f"(first unmatched: {name!r}); every rank must build the same model")
    return None


def _broadcast_extra(model, extra, root):
    """Broadcast non-parameter state_dict entries (buffers) and load them on every rank."""
    values = {}
    for name, array in extra:
        values[name] = np.ascontiguousarray(array).copy()
        _bcast_array(values[name], root)
    model.load_state_dict(values, strict=False)


class _ArraySlot:
    """Stands for one optimizer-state array in the pickled structure; the data follows by Bcast."""

    def __init__(self, array):
        self.shape, self.dtype = array.shape, array.dtype.str


def _broadcast_optimizer_state(optimizer, root=0):
    """Give every rank ``root``'s optimizer state: structure pickled once, arrays by Bcast."""
    is_root = _comm.Get_rank() == root
    meta = arrays = None
    if is_root:
        saved = optimizer.state_dict()
        arrays = [v for s in saved["state"].values() for v in s.values()
                  if isinstance(v, np.ndarray)]
        state = {i: {k: _ArraySlot(v) if isinstance(v, np.ndarray) else v for k, v in s.items()}
                 for i, s in saved["state"].items()}
        meta = {"param_groups": saved["param_groups"], "state": state}
    meta = _comm.bcast(meta, root=root)
    if is_root:
        for a in arrays:
            _comm.Bcast(np.ascontiguousarray(a), root=root)
        _raise_on_all("fit", None)
        return
    state = {}
    for i, s in meta["state"].items():
        entry = {}
        for k, v in s.items():
            if isinstance(v, _ArraySlot):
                v = np.empty(v.shape, np.dtype(v.dtype))
                _comm.Bcast(v, root=root)
            entry[k] = v
        state[i] = entry
    message = None
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, TypeError) as exc:
        message = f"the optimizer state of rank {root} does not fit this rank's optimizer: {exc}"
    _raise_on_all("fit", message)


# --- gradient averaging -------------------------------------------------------------------
class _Bucket:
    """One flat buffer: the gradients of consecutive same-dtype parameters, then one presence
    count per parameter (1 where the rank has a gradient), reduced by one Allreduce."""

    def __init__(self, params):
        self.params = params
        self.shapes = [p.data.shape for p in params]
        sizes = [p.data.size for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
        self.total = self.offsets[-1]
        self.buffer = np.empty(self.total + len(params), params[0].data.dtype)


def _plan_buckets(params, bucket_bytes):
    """Split parameters (in order) into runs of one dtype of at most ``bucket_bytes`` each.

    A parameter larger than ``bucket_bytes`` gets a bucket of its own.

    Returns:
        A list of lists of parameters.
    """
    plan, current, current_bytes = [], [], 0
    for p in params:
        nbytes = p.data.nbytes
        if current and (p.data.dtype != current[0].data.dtype
                        or current_bytes + nbytes > bucket_bytes):
            plan.append(current)
            current, current_bytes = [], 0
        current.append(p)
        current_bytes += nbytes
    if current:
        plan.append(current)
    return plan


class _GradientAverager:
    """Average the ``.grad`` arrays of a list of parameters across ranks, in buckets."""

    def __init__(self, bucket_bytes):
        self.bucket_bytes = bucket_bytes
        self._key = None
        self._buckets = []

    def _prepare(self, params):
        """(Re)build the buckets when the parameter list changed, then check - one Allreduce of
        two integers - that every rank reduces the same layout (else ValueError on all ranks)."""
        key = tuple((id(p), p.data.shape, p.data.dtype.str) for p in params)
        if key != self._key:
            for p in params:
                if p.data.dtype.name not in ("float32", "float64"):
                    raise TypeError(f"DistributedOptimizer: parameters must be float32 or "
                                    f"float64, got {p.data.dtype} (shape {p.data.shape})")
            self._layout = [(f"trainable parameter {i}", tuple(p.data.shape), p.data.dtype.str)
                            for i, p in enumerate(params)]
            self._fingerprint = zlib.crc32(repr(self._layout).encode())
            self._buckets = [_Bucket(group) for group in _plan_buckets(params, self.bucket_bytes)]
            self._key = key
        check = np.array([self._fingerprint, -self._fingerprint], dtype=np.int64)
        _comm.Allreduce(_MPI.IN_PLACE, check, op=_MPI.MAX)
        if check[0] != -check[1]:
            root_layout = _comm.bcast(self._layout, root=0)
            who = "gradient averaging (the ranks froze or built different parameters)"
            _raise_on_all(who, _layout_mismatch(self._layout, root_layout, 0))
            raise ValueError(f"{who}: the ranks' trainable parameters differ")

    def average(self, params):
        """Replace each parameter's gradient by the mean over ranks (missing = zero; a
        parameter without a gradient on every rank keeps None)."""
        self._prepare(params)
        world = _comm.Get_size()
        for bucket in self._buckets:
            buf, offsets, total = bucket.buffer, bucket.offsets, bucket.total
            for k, p in enumerate(bucket.params):
                view = buf[offsets[k]:offsets[k + 1]].reshape(bucket.shapes[k])
                if p.grad is None:
                    view.fill(0)
                    buf[total + k] = 0
                else:
                    np.copyto(view, p.grad)
                    buf[total + k] = 1
            _comm.Allreduce(_MPI.IN_PLACE, buf, op=_MPI.SUM)
            np.divide(buf[:total], world, out=buf[:total])
            for k, p in enumerate(bucket.params):
                if buf[total + k] == 0:
                    continue
                view = buf[offsets[k]:offsets[k + 1]].reshape(bucket.shapes[k])
                grad = p.grad
                if grad is not None and grad.shape == view.shape and grad.flags.writeable:
                    np.copyto(grad, view)
                else:
                    p.grad = view.copy()


def _trainable(optimizer):
    return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]


class DistributedOptimizer(Optimizer):
    """Wrap an optimizer so ``step()`` first averages the gradients over all ranks.

    The gradients of the wrapped optimizer's trainable parameters (frozen ones are skipped) are
    packed into flat buckets of ``bucket_bytes`` and each bucket is reduced with one
    ``Allreduce``; then the wrapped update runs on every rank with identical gradients, so the
    weights stay identical. ``param_groups``, ``state``, ``lr``, ``zero_grad``, ``state_dict``
    and ``load_state_dict`` are the wrapped optimizer's, so schedulers and ``Trainer`` accept it.

    Args:
        optimizer: A ``pydl.optim`` optimizer (SGD, Adam, AdamW, ...).
        bucket_bytes: Bytes per bucket, int >= 1024. Default 4 MiB.

    Raises:
        RuntimeError: :func:`init` was not called.
        TypeError: ``optimizer`` is not a pydl optimizer (or is already distributed).
        ValueError: a bad ``bucket_bytes``.

    Example:
        >>> opt = dist.DistributedOptimizer(pydl.optim.SGD(model.parameters(), lr=0.1))
        >>> loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, optimizer, bucket_bytes=DEFAULT_BUCKET_BYTES):
        _require("DistributedOptimizer")
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, DistributedOptimizer):
            raise TypeError(f"DistributedOptimizer: expected a pydl.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, (int, np.integer)) \
                or bucket_bytes < 1024:
            raise ValueError(f"DistributedOptimizer: bucket_bytes must be an int >= 1024, got "
                             f"{bucket_bytes!r}")
        self.optimizer = optimizer
        self._averager = _GradientAverager(int(bucket_bytes))
        self._synchronized = False

    param_groups = property(lambda self: self.optimizer.param_groups)
    state = property(lambda self: self.optimizer.state)
    defaults = property(lambda self: self.optimizer.defaults)

    def synchronize(self):
        """Average the gradients across ranks now; the next ``step()`` will not do it again."""
        if _comm.Get_size() > 1:
            self._averager.average(_trainable(self.optimizer))
        self._synchronized = True

    def step(self, closure=None):
        """Average the gradients across ranks (unless ``synchronize()`` already did), then update.

        Args:
            closure: Optional callable that re-evaluates the model and returns the loss; it runs
                before the averaging. Default None.

        Returns:
            The closure's loss, or None.
        """
        loss = closure() if closure is not None else None
        if not self._synchronized:
            self.synchronize()
        self._synchronized = False
        self.optimizer.step()
        return loss

    def zero_grad(self, set_to_none=True):
        """Clear the gradients (see ``Optimizer.zero_grad``)."""
        self._synchronized = False
        self.optimizer.zero_grad(set_to_none)

    def state_dict(self):
        """Return the wrapped optimizer's state_dict."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict):
        """Load into the wrapped optimizer (see ``Optimizer.load_state_dict``)."""
        self.optimizer.load_state_dict(state_dict)

    def _apply(self, items):
        self.optimizer._apply(items)

    def __repr__(self):
        return f"DistributedOptimizer({self.optimizer!r})"


# --- Trainer hooks (no-ops unless init() ran with more than one rank) ----------------------
_averagers = weakref.WeakKeyDictionary()


def is_root():
    """Return True on rank 0, or when nothing is distributed (files and progress go here)."""
    return _comm is None or _comm.Get_rank() == 0


def fit_begin(model, optimizer, n):
    """Start a data-parallel fit: check every rank has the same data length, then broadcast
    rank 0's weights and optimizer state. Raises ValueError on every rank on a mismatch."""
    if not _active():
        return
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"fit: data-parallel training needs a pydl.optim optimizer (with "
                        f"param_groups), got {type(optimizer).__name__}")
    sizes = _comm.allgather(int(n))
    _raise_on_all("fit", None if len(set(sizes)) == 1 else
                  f"ranks passed training sets of {sizes} samples (by rank); every rank must pass "
                  f"the same full data set (each trains on its own shard of it)")
    broadcast_parameters(model, 0)
    _broadcast_optimizer_state(optimizer, 0)
    if isinstance(optimizer, DistributedOptimizer):
        optimizer._synchronized = False


def shard_indices(order, rank, world):
    """Return this rank's positions of an epoch order: DistributedSampler's strided shard.

    The order is padded by wrapping around to a multiple of ``world`` (repeating it as often as
    needed), then rank r takes the entries at r, r + world, r + 2*world, ...

    Args:
        order: 1-D int array, the epoch's sample order.
        rank: This rank, in [0, world).
        world: The number of ranks, >= 1.

    Returns:
        An int64 array of ceil(len(order) / world) sample indices.
    """
    order = np.asarray(order, dtype=np.int64)
    per_rank = -(-len(order) // world)
    total = per_rank * world
    padded = np.concatenate([order] * (-(-total // len(order)))) if total > len(order) else order
    return padded[rank:total:world]


def shard_order(order, n):
    """Return this rank's sample positions for the epoch (None: all of them, in order).

    The order is rank 0's, so ranks agree even when their shuffling generators do not.
    """
    if not _active():
        return order
    full = np.ascontiguousarray(np.arange(n, dtype=np.int64) if order is None else order,
                                dtype=np.int64)
    _comm.Bcast(full, root=0)
    return shard_indices(full, _comm.Get_rank(), _comm.Get_size())


def agree_finite(value):
    """Return ``value``, or NaN when the loss of any rank is not finite (one tiny Allreduce), so
    every rank stops at the same step."""
    if not _active():
        return value
    flag = np.array([0.0 if math.isfinite(value) else 1.0])
    _comm.Allreduce(_MPI.IN_PLACE, flag, op=_MPI.MAX)
    return value if flag[0] == 0.0 else (value if not math.isfinite(value) else math.nan)


def average_gradients(optimizer):
    """Average the gradients of the optimizer's trainable parameters across ranks, in place.

    Called between backward and ``optimizer.step()``, whatever computed the gradients. A
    :class:`DistributedOptimizer` synchronizes itself (and its ``step`` then skips it).
    """
    if not _active():
        return
    if isinstance(optimizer, DistributedOptimizer):
        optimizer.synchronize()
        return
    averager = _averagers.get(optimizer)
    if averager is None:
        averager = _averagers[optimizer] = _GradientAverager(DEFAULT_BUCKET_BYTES)
    averager.average(_trainable(optimizer))


def _interleave(per_rank):
    """Undo :func:`shard_indices`: from a (W, m, ...) stack of the ranks' arrays, return the
    (W * m, ...) array in the padded epoch order (entry j of rank r is position j * W + r)."""
    world, m = per_rank.shape[:2]
    return np.swapaxes(per_rank, 0, 1).reshape((world * m,) + per_rank.shape[2:])


def _gather_interleaved(local):
    """Allgather equal-length per-rank arrays back into the epoch's padded order."""
    local = np.ascontiguousarray(local)
    out = np.empty((_comm.Get_size(),) + local.shape, local.dtype)
    _comm.Allgather(local, out)
    return _interleave(out)


def reduce_epoch(model, total, count, y_seen, outputs, n):
    """Combine the epoch's per-rank sums: return (loss sum, sample count, targets, outputs).

    The loss sum and count are summed over ranks (padding included); targets and outputs are
    gathered into the epoch's order and cut to its ``n`` real samples, so metrics see every
    sample once. Non-parameter state (e.g. running statistics) is re-broadcast from rank 0.
    """
    if not _active():
        return total, count, y_seen, outputs
    sums = np.array([total, count], dtype=np.float64)
    _comm.Allreduce(_MPI.IN_PLACE, sums, op=_MPI.SUM)
    if outputs is not None:
        outputs = _gather_interleaved(outputs)[:n]
        y_seen = _gather_interleaved(y_seen)[:n]
    _, extra = _state_entries(model)
    if extra:
        _broadcast_extra(model, extra, 0)
    return float(sums[0]), float(sums[1]), y_seen, outputs


def _row_counts(n, world):
    """Return the rows of each rank when n rows are split into contiguous, near-equal shares
    (the first n % world ranks take one more)."""
    base, extra = divmod(n, world)
    return [base + (r < extra) for r in range(world)]


def row_range(n):
    """Return (lo, hi): this rank's contiguous share of n rows for sharded inference."""
    if not _active():
        return 0, n
    counts = _row_counts(n, _comm.Get_size())
    r = _comm.Get_rank()
    lo = sum(counts[:r])
    return lo, lo + counts[r]


def gather_rows(local, n):
    """Allgather every rank's rows (from :func:`row_range`) into the full (n, ...) array."""
    if not _active() or n == 0:
        return local
    world = _comm.Get_size()
    # Rank 0 always has a row when n >= 1; its row shape and dtype describe everyone's.
    row_shape, dtype = _comm.bcast((local.shape[1:], local.dtype.str), root=0)
    if len(local) == 0:
        local = np.empty((0,) + tuple(row_shape), np.dtype(dtype))
    row = int(np.prod(row_shape, dtype=np.int64))
    counts = [c * row for c in _row_counts(n, world)]
    out = np.empty((n,) + tuple(row_shape), np.dtype(dtype))
    _comm.Allgatherv(np.ascontiguousarray(local), [out, counts])
    return out
