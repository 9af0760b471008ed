"""pydl: a small, fast, C++-accelerated deep-learning library for the CPU."""

from . import _core
from . import kernels
from . import random
from .random import manual_seed
from .tensor import Tensor, no_grad, tensor
from .tensor_ops import cat, stack
from . import functional, losses, ops, testing
from . import nn, optim, regularizers
from . import datasets, io, metrics
from .io import load, load_model, save, save_model
from . import engine, train, transfer
from .engine import compile_step
from . import distributed  # imports mpi4py only when distributed.init() is called
from . import onnx  # imports the onnx package only when a model is exported

__version__ = "0.1.0"

__all__ = ["__version__", "cpu_info", "get_num_threads", "kernels", "set_num_threads",
           "Tensor", "tensor", "no_grad", "manual_seed", "functional", "losses", "testing",
           "random", "nn", "optim", "regularizers", "datasets", "io", "metrics",
           "save", "load", "save_model", "load_model", "train", "transfer", "engine",
           "compile_step", "ops", "cat", "stack", "distributed", "onnx"]


def set_num_threads(n):
    """Set how many threads pydl's kernels may use.

    Args:
        n: A positive int. The default is the number of usable cores, or ``PYDL_NUM_THREADS``.

    Raises:
        TypeError: ``n`` is not an int.
        ValueError: ``n`` is not in [1, 1024].

    Results do not depend on the thread count: every kernel splits its work so that each output
    element is computed by the same arithmetic whichever thread runs it.
    """
    _core.set_num_threads(n)


def get_num_threads():
    """Return how many threads pydl's kernels may use."""
    return _core.get_num_threads()


def cpu_info():
    """Return the kernel set in use, the thread count and the GEMM cache blocking.

    Returns:
        A dict with ``"isa"`` (``"avx512"``, ``"avx2"`` or ``"generic"``: the instruction set the
        kernels dispatch to, chosen once at import or forced with ``PYDL_ARCH``), ``"supported"``
        (every instruction set this CPU can run), ``"threads"`` (``get_num_threads()``) and
        ``"gemm"``: the detected caches (``"caches"``: size, ways, line and sharing threads of
        ``"l1d"``, ``"l2"``, ``"l3"``, and whether they came from ``"cpuid"`` or ``"default"``)
        and, per dtype (``"float32"``, ``"float64"``), the micro-kernel tile ``mr`` x ``nr`` and
        the cache blocks ``kc``, ``mc``, ``nc`` derived from those caches, or set with
        ``PYDL_GEMM_BLOCKING="kc,mc,nc"`` (``"source"`` says which; ``None`` blocks and source
        ``"reference"`` for the generic kernels, which do not block).

    Example:
        >>> import pydl
        >>> sorted(pydl.cpu_info())
        ['gemm', 'isa', 'supported', 'threads']
    """
    return {
        "isa": _core.isa(),
        "supported": list(_core.supported_isas()),
        "threads": _core.get_num_threads(),
        "gemm": _core._gemm_info(),
    }
