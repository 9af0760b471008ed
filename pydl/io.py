"""Save and load state dicts, optimizers and whole models as ``.npz`` files, never with pickle.

File format (version 1): a zip of ``.npy`` members, as written by ``numpy.savez``, plus one member
``__pydl__``: a uint8 array holding a UTF-8 JSON header. Every array (and every Python or numpy
scalar, stored as a 0-d array) is a member named by its dotted path in the saved structure:

- a state dict keeps its own keys: ``"0.weight"``, ``"0.bias"``, ...;
- an optimizer's nested ``state_dict()`` becomes ``"state.0.momentum_buffer"``,
  ``"param_groups.0.lr"``, ``"param_groups.0.betas.1"``, ``"param_groups.0.params"`` (a list
  of ints is stored as one int64 array), ...;
- a nested dict prefixes its keys: ``{"model": model, "optimizer": opt, "epoch": 3}`` gives
  ``"model.0.weight"``, ``"optimizer.state.0.exp_avg"``, ``"epoch"``.

So ``numpy.load(path)`` reads the arrays without pydl. The header records the structure (dicts with
str or int keys, lists, tuples, None, bools, ints, floats, strings) and each member's dtype and
shape; :func:`load` rebuilds the structure and checks every member against it. Model files
(:func:`save_model`) add the architecture and, optionally, the optimizer's type.

Reading never unpickles: an object array is rejected with ``ValueError`` and nothing in the file
is executed. Reading checks before it inflates: the path must be a regular file (a FIFO or a
device fails at once), the header is read first, every member must be one the header describes,
members must be stored uncompressed (as pydl writes them), and each member's npy header must give
the header's dtype and shape and fill exactly its size in the zip directory; only then is its
data read. So memory stays near the file's size whatever a crafted file claims.

Writing is atomic: the data go to a short-named temporary file in the target's directory, which is
flushed, fsync'ed and then renamed over the target (``os.replace``), so a crash mid-save leaves the
previous file intact. Rules for an existing target: a regular file keeps its permission bits (and
owner/group where the process may set them); a symbolic link is followed (its target is replaced,
the link stays); a hard-linked file is replaced by a new file, so its other links keep the old
contents; a FIFO, device or socket is refused with ``ValueError``. Paths may be ``str``, ``bytes``
or ``os.PathLike``.

Example:
    >>> pydl.save({"model": model, "optimizer": opt, "epoch": 3}, "ckpt.npz")
    >>> ckpt = pydl.load("ckpt.npz")
    >>> model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["optimizer"])
    >>> pydl.save_model(model, "model.npz", optimizer=opt)
    >>> model, opt = pydl.load_model("model.npz", with_optimizer=True)
"""

import errno
import json
import math
import os
import secrets
import stat
import zipfile
from collections import OrderedDict

import numpy as np

from . import nn, ops, optim
from . import random as _random
from .layers import CONTAINERS, LAYERS
from .tensor import Tensor

__all__ = ["save", "load", "save_model", "load_model"]

FORMAT_VERSION = 1
HEADER_KEY = "__pydl__"
_ARRAY_KINDS = "biufc"  # bool, signed/unsigned int, float, complex: never objects or strings
# Deeper nesting (of the saved structure or the architecture) is rejected, so a crafted header
# cannot exhaust the interpreter's recursion limit; real files nest a handful of levels.
_MAX_DEPTH = 100
_READ_CHUNK = 1 << 20


# --- writing ------------------------------------------------------------------------------------

def _path_str(path):
    """``path`` (str, bytes or os.PathLike) as a str; undecodable bytes survive (surrogateescape)."""
    return os.fsdecode(os.fspath(path))


def _encode(obj, path, arrays):
    """Return the header node describing ``obj``; put its arrays into ``arrays`` by dotted key."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    elif isinstance(obj, optim.Optimizer):
        obj = obj.state_dict()
    elif isinstance(obj, Tensor):
        obj = obj.data
    if obj is None:
        return {"type": "none"}
    if isinstance(obj, str):
        return {"type": "str", "value": obj}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int, np.integer)):
                raise TypeError(f"save: dict keys must be str or int, got {k!r} "
                                f"({type(k).__name__}) at {path or 'the top level'!r}")
            k = k if isinstance(k, str) else int(k)
            items.append([k, _encode(v, f"{path}.{k}" if path else str(k), arrays)])
        return {"type": "dict", "items": items}
    if (isinstance(obj, list) and obj and all(type(v) is int for v in obj)
            and all(-2 ** 63 <= v < 2 ** 63 for v in obj)):
        kind, arr = "int_list", np.array(obj, dtype=np.int64)  # e.g. a group's "params"
    elif isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {"type": kind, "items": [_encode(v, f"{path}.{i}" if path else str(i), arrays)
                                        for i, v in enumerate(obj)]}
    elif isinstance(obj, bool):
        kind, arr = "bool", np.array(obj, dtype=np.bool_)
    elif isinstance(obj, int):
        if not -2 ** 63 <= obj < 2 ** 63:
            raise ValueError(f"save: the int at {path!r} does not fit in 64 bits")
        kind, arr = "int", np.array(obj, dtype=np.int64)
    elif isinstance(obj, float):
        kind, arr = "float", np.array(obj, dtype=np.float64)
    elif isinstance(obj, np.generic):
        kind, arr = "scalar", np.asarray(obj)
    elif isinstance(obj, np.ndarray):
        kind, arr = "array", obj
    else:
        raise TypeError(f"save: cannot store a {type(obj).__name__} at {path!r}; supported are "
                        f"arrays, Tensors, Modules, Optimizers, dicts, lists, tuples, str, int, "
                        f"float, bool and None")
    if arr.dtype.kind not in _ARRAY_KINDS:
        raise TypeError(f"save: {path!r} has dtype {arr.dtype}; only bool, int, uint, float and "
                        f"complex arrays can be saved without pickle")
    if not path:
        raise TypeError("save: the object to save must be a dict, Module or Optimizer, got "
                        f"{type(obj).__name__}")
    if path in arrays or path == HEADER_KEY:
        raise ValueError(f"save: two entries map to the same key {path!r} (keys are dotted "
                         f"paths, so {{'a.b': x}} and {{'a': {{'b': y}}}} collide); rename one")
    arrays[path] = arr
    return {"type": kind, "key": path, "dtype": arr.dtype.str, "shape": list(arr.shape)}


def _header_array(header):
    text = json.dumps(header, separators=(",", ":"), allow_nan=False)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _write_npz(path, arrays):
    """Write ``arrays`` (name -> ndarray) as an uncompressed .npz at ``path``, atomically."""
    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)

    atomic_write(path, write)


def atomic_write(path, write, who="save"):
    """Create or replace the file ``path`` atomically with what ``write(binary_file)`` writes.

    The data go to a temporary file in the target's directory, which is flushed, fsync'ed and
    renamed over the target; on any error the temporary file is removed and a previous file at
    ``path`` is left untouched. A symbolic link at ``path`` is followed (the file it points to is
    replaced, the link stays). An existing file keeps its permission bits, and its owner and
    group where the process may set them; the new file is a new inode, so other hard links keep
    the old contents. A FIFO, device or socket at ``path`` is refused rather than replaced.
    ``who`` starts the error messages.
    """
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, f"{who}: the target is a directory", path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{who}: {path!r} exists and is not a regular file (a FIFO, device or "
                         f"socket); pydl only replaces regular files")
    directory = os.path.dirname(target)
    # A short temporary name, so a target name of up to 255 bytes (the usual limit) still works.
    tmp = os.path.join(directory, f".pydl-{secrets.token_hex(6)}.tmp")
    try:
        # os.open with 0o666 lets the umask decide the permissions of a new file, as open() would.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    except OSError as e:
        raise OSError(e.errno, f"{who}: cannot create a temporary file next to {path!r}: "
                               f"{e.strerror}", tmp) from e
    try:
        with os.fdopen(fd, "wb") as f:
            if st is not None:
                _copy_owner_and_mode(f.fileno(), st)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _copy_owner_and_mode(fd, st):
    """Give the open temporary file the replaced file's owner/group (where allowed) and mode."""
    if hasattr(os, "fchown") and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError:  # only root may give a file away; then the group alone may still work
            try:
                os.fchown(fd, -1, st.st_gid)
            except OSError:
                pass
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after fchown, which may clear set-id bits


def _fsync_directory(directory):
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _save(path, tree, header):
    path = _path_str(path)
    arrays = {}
    header = dict(header, format="pydl", version=FORMAT_VERSION, tree=_encode(tree, "", arrays))
    arrays = {HEADER_KEY: _header_array(header), **arrays}
    _write_npz(path, arrays)


def save(obj, path):
    """Save a state dict, Module, Optimizer or nested dict of them to an ``.npz`` file atomically.

    Args:
        obj: A dict of str -> array (a state dict), a ``pydl.nn.Module`` (its ``state_dict()``),
            a ``pydl.optim.Optimizer`` (its ``state_dict()``), or a dict nesting these with
            Tensors, arrays, lists, tuples, str, int, float, bool and None, e.g.
            ``{"model": model, "optimizer": opt, "epoch": 3}``.
        path: File name (str, bytes or os.PathLike); the name is used as given (``.npz`` is
            recommended). See the module docstring for existing files and links.

    Raises:
        TypeError: ``obj`` is not a dict/Module/Optimizer, or holds an unsupported value (e.g.
            an object array); the message names its key.
        ValueError: Two entries map to the same dotted key, an int does not fit in 64 bits, or
            ``path`` is a FIFO, device or socket.
        OSError: The file cannot be written (the message names it); any previous file at
            ``path`` is left untouched.

    Example:
        >>> pydl.save(model, "weights.npz")
        >>> model.load_state_dict(pydl.load("weights.npz"))
    """
    if not isinstance(obj, (dict, nn.Module, optim.Optimizer)):
        raise TypeError(f"save: expected a dict, Module or Optimizer, got {type(obj).__name__}")
    _save(path, obj, {"content": "tree"})


# --- reading ------------------------------------------------------------------------------------

def _open_regular(path):
    """Open ``path`` for reading; ValueError at once if it is not a regular file.

    O_NONBLOCK makes opening a FIFO return immediately instead of waiting for a writer, so a
    FIFO, ``/dev/zero`` or a socket is refused without reading a byte.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path!r} is not a regular file (a FIFO, device or socket); pydl "
                             f"loads only files written by pydl.save or pydl.save_model")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


class _Archive:
    """The members of a pydl .npz, each read only after its name, size and npy header checked out.

    pydl writes members uncompressed (ZIP_STORED), and only such members are accepted: what is
    inflated is then what is on disk, so no member can expand beyond the file's size. A member is
    read only when the header asks for it, with the dtype and shape the header gives, so memory
    stays near the file's size whatever the file claims.
    """

    def __init__(self, path):
        self.path = path
        self.file, self.size = _open_regular(path)
        try:
            self.zf = zipfile.ZipFile(self.file)
        except Exception as e:  # BadZipFile, or zipfile rejecting a corrupt version field
            self.file.close()
            raise ValueError(f"{path!r} is not a valid .npz file (truncated or corrupt?): "
                             f"{e}") from None
        self.members = {}
        try:
            for info in self.zf.infolist():
                name = info.filename
                if not name.endswith(".npy"):
                    self.fail(f"unexpected member {name!r} (not an .npy array)")
                key = name[:-4]
                if key in self.members:
                    self.fail(f"key {key!r} appears twice")
                self.members[key] = info
        except BaseException:
            self.close()
            raise

    def close(self):
        self.zf.close()
        self.file.close()  # a ZipFile leaves a file object it was given open

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def fail(self, message):
        raise ValueError(f"{self.path!r}: {message}")

    def check_keys(self, expected):
        """Refuse members the header does not describe, before reading any."""
        extra = sorted(set(self.members) - set(expected))
        if extra:
            self.fail(f"unexpected key(s) {extra} not described by the header")

    def read(self, key, dtype=None, shape=None):
        """Return member ``key`` as a writeable array; ValueError names it if anything is off.

        With ``dtype``/``shape`` (from the header), a member whose npy header says otherwise is
        refused before its data are read; without, it must be a 1-D uint8 array (the header).
        """
        info = self.members.get(key)
        if info is None:
            self.fail(f"missing key {key!r}")
        if info.compress_type != zipfile.ZIP_STORED:
            self.fail(f"key {key!r} is compressed (zip method {info.compress_type}); pydl writes "
                      f"members uncompressed and reads only those, so that no member can "
                      f"inflate beyond the file's size")
        try:
            with self.zf.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"npy format version {version} is not supported")
                if got_dtype.hasobject or got_dtype.kind not in _ARRAY_KINDS:
                    raise ValueError(f"dtype {got_dtype} is not a plain numeric dtype (pydl never "
                                     f"unpickles object arrays)")
                if dtype is None:
                    dtype, shape = np.dtype(np.uint8).str, [got_shape[0] if got_shape else -1]
                if got_dtype.str != dtype:
                    self.fail(f"key {key!r} has dtype {got_dtype.str}, the header says {dtype!r}")
                if list(got_shape) != list(shape):
                    self.fail(f"key {key!r} has shape {got_shape}, the header says {shape!r}")
                nbytes = got_dtype.itemsize * math.prod(got_shape)
                if info.file_size - member.tell() != nbytes:
                    raise ValueError(f"the zip directory gives {info.file_size} bytes for "
                                     f"{nbytes} bytes of data")
                buf = bytearray(nbytes)
                view = memoryview(buf)
                for lo in range(0, nbytes, _READ_CHUNK):  # chunks: no second full-size copy
                    chunk = member.read(min(_READ_CHUNK, nbytes - lo))
                    if not chunk:
                        raise ValueError("the member's data are truncated")
                    view[lo:lo + len(chunk)] = chunk
                if member.read(1):  # also makes zipfile check the CRC at the end
                    raise ValueError("the member holds more data than its npy header says")
        except ValueError as e:
            if str(e).startswith(repr(self.path)):
                raise
            self.fail(f"cannot read key {key!r} (corrupt or truncated file, or an object array, "
                      f"which pydl never unpickles): {e}")
        except Exception as e:  # zip/CRC/struct errors
            self.fail(f"cannot read key {key!r} (corrupt or truncated file): {e}")
        arr = np.frombuffer(buf, dtype=got_dtype)
        return arr.reshape(got_shape, order="F" if fortran else "C")


def _read_header(path, archive):
    if HEADER_KEY not in archive.members:
        raise ValueError(f"{path!r}: missing key {HEADER_KEY!r}: not a file written by "
                         f"pydl.save or pydl.save_model")
    try:
        raw = archive.read(HEADER_KEY)
    except ValueError as e:
        raise ValueError(f"{e} (key {HEADER_KEY!r} must be a 1-D uint8 array)") from None
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"{path!r}: key {HEADER_KEY!r} is not valid JSON: {e}") from None
    if not isinstance(header, dict) or header.get("format") != "pydl":
        raise ValueError(f"{path!r}: key {HEADER_KEY!r} is not a pydl header")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path!r}: format version {version!r} is not supported (this pydl "
                         f"reads version {FORMAT_VERSION}); upgrade pydl to read it")
    return header


class _Decoder:
    """Rebuild a saved structure from its header node, reading arrays by key.

    With ``read=False`` it only checks the header's structure and collects the keys it uses (in
    ``used``), leaving None where arrays would go: the dry run that precedes any reading.
    """

    def __init__(self, path, archive, read=True):
        self.path = path
        self.archive = archive
        self.reading = read
        self.used = {HEADER_KEY}

    def fail(self, message):
        raise ValueError(f"{self.path!r}: {message}")

    def decode(self, node, where="the top level", depth=0):
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            self.fail(f"malformed header entry at {where!r}")
        if depth > _MAX_DEPTH:
            self.fail(f"the saved structure nests deeper than {_MAX_DEPTH} levels at {where!r}")
        kind = node["type"]
        if kind == "none":
            return None
        if kind == "str":
            if not isinstance(node.get("value"), str):
                self.fail(f"malformed string entry at {where!r}")
            return node["value"]
        if kind == "dict":
            out = {}
            for item in self._items(node, where):
                if (not isinstance(item, list) or len(item) != 2
                        or isinstance(item[0], bool) or not isinstance(item[0], (str, int))):
                    self.fail(f"malformed dict item in {where!r}")
                out[item[0]] = self.decode(item[1], item[0], depth + 1)
            return out
        if kind in ("list", "tuple"):
            items = [self.decode(v, f"{where}[{i}]", depth + 1)
                     for i, v in enumerate(self._items(node, where))]
            return items if kind == "list" else tuple(items)
        if kind in ("array", "scalar", "int", "float", "bool", "int_list"):
            return self._leaf(node, kind, where)
        self.fail(f"unknown entry type {kind!r} at {where!r}")

    def _items(self, node, where):
        items = node.get("items")
        if not isinstance(items, list):
            self.fail(f"malformed {node['type']} entry at {where!r}")
        return items

    def _leaf(self, node, kind, where):
        key = node.get("key")
        if not isinstance(key, str):
            self.fail(f"malformed entry at {where!r}")
        if key not in self.archive.members:
            self.fail(f"missing key {key!r}")
        if key in self.used:
            self.fail(f"key {key!r} is referenced twice")
        self.used.add(key)
        dtype, shape = node.get("dtype"), node.get("shape")
        if (not isinstance(dtype, str) or not isinstance(shape, list)
                or not all(type(d) is int and d >= 0 for d in shape)):
            self.fail(f"malformed dtype or shape for key {key!r} at {where!r}")
        if not self.reading:
            return None
        arr = self.archive.read(key, dtype, shape)
        if kind == "array":
            return arr
        if kind == "int_list":
            if arr.ndim != 1 or arr.dtype.kind not in "iu":
                self.fail(f"key {key!r} should hold a 1-D int array, got {arr.dtype} {arr.shape}")
            return [int(v) for v in arr]
        if arr.shape != ():
            self.fail(f"key {key!r} must be a scalar (0-d array), got shape {arr.shape}")
        expected = {"int": "iu", "float": "f", "bool": "b", "scalar": _ARRAY_KINDS}[kind]
        if arr.dtype.kind not in expected:
            self.fail(f"key {key!r} should hold a {kind}, got dtype {arr.dtype}")
        if kind == "scalar":
            return arr[()]
        return {"int": int, "float": float, "bool": bool}[kind](arr[()])



def _load(path):
    path = _path_str(path)
    with _Archive(path) as archive:
        header = _read_header(path, archive)
        # The header's structure, its keys and the member names are checked before any member
        # but the header is read.
        dry_run = _Decoder(path, archive, read=False)
        dry_run.decode(header.get("tree"))
        archive.check_keys(dry_run.used)
        tree = _Decoder(path, archive).decode(header.get("tree"))
    return header, tree


def load(path):
    """Load what :func:`save` (or :func:`save_model`) wrote, validating every entry.

    Modules and Optimizers come back as their state dicts (plain dicts of arrays / the nested
    optimizer state), ready for ``load_state_dict``, and Tensors as arrays; ints, floats, bools,
    strings, tuples, None and numpy scalars keep their types. Nothing is unpickled. Nothing is
    returned unless the whole file is valid, so a failed load never half-updates anything.

    Args:
        path: The file name (str, bytes or os.PathLike).

    Returns:
        The saved structure, e.g. ``{"0.weight": array, ...}`` or ``{"model": {...},
        "optimizer": {...}, "epoch": 3}``. For a :func:`save_model` file, ``{"model": state_dict}``
        plus ``"optimizer"`` when one was saved.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: ``path`` is not a regular file; the file is not an .npz written by pydl, is
            truncated or corrupt, contains an object array or a compressed member, or a key is
            missing, extra, or has a dtype/shape/size differing from the header; the message
            names the key.

    Example:
        >>> model.load_state_dict(pydl.load("weights.npz"))
    """
    return _load(path)[1]


# --- whole models -------------------------------------------------------------------------------

# Layer type -> the constructor arguments that describe it (besides Linear/Sequential).
_ACTIVATIONS = {row.module: (getattr(nn, row.module), tuple(p.name for p in row.params))
                for row in ops.ACTIVATIONS}
_ACTIVATIONS["Dropout"] = (nn.Dropout, ("p",))
# Activation parameters that are strings (e.g. GELU's approximate); the others are numbers.
_STRING_FIELDS = {p.name for row in ops.ACTIVATIONS for p in row.params
                  if isinstance(p.default, str)}
_OPTIMIZERS = {"SGD": optim.SGD, "Adam": optim.Adam, "AdamW": optim.AdamW}


def _architecture(module, where="model"):
    """Return the JSON-able description of a Sequential/Linear/activation/Dropout module."""
    t = type(module)
    if t is nn.Sequential:
        return {"type": "Sequential",
                "layers": [[name, _architecture(m, f"{where}.{name}")]
                           for name, m in module._modules.items()]}
    if t is nn.Linear:
        return {"type": "Linear", "in_features": module.in_features,
                "out_features": module.out_features, "bias": module.bias is not None,
                "dtype": module.weight.data.dtype.name}
    for name, (cls, args) in _ACTIVATIONS.items():
        if t is cls:
            return dict({"type": name}, **{a: getattr(module, a) for a in args})
    if CONTAINERS.get(t.__name__) is t:
        return {"type": t.__name__,
                "layers": [[name, _architecture(m, f"{where}.{name}")]
                           for name, m in module._modules.items()]}
    if LAYERS.get(t.__name__) is t:
        return {"type": t.__name__, "config": module.config()}
    raise TypeError(f"save_model: cannot describe {where} ({t.__name__}); supported layers are "
                    f"Sequential, Linear, {', '.join(_ACTIVATIONS)}, {', '.join(CONTAINERS)}, "
                    f"{', '.join(LAYERS)}. Save its weights with "
                    f"pydl.save(model, path) and rebuild the model in code instead")


def _build(spec, path, weights, where="model", depth=0):
    """Construct a module from its description; ValueError names the broken layer.

    Each Linear's size is checked against its stored weight before the layer is allocated, so a
    small file cannot make the loader allocate (and randomly initialise) huge layers.
    """
    def fail(message):
        raise ValueError(f"{path!r}: architecture of {where}: {message}")

    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        fail("each layer must be an object with a 'type'")
    if depth > _MAX_DEPTH:
        fail(f"Sequential layers nest deeper than {_MAX_DEPTH} levels")
    kind = spec["type"]
    if kind == "Sequential" or kind in CONTAINERS:
        expected = {"type", "layers"}
    elif kind in LAYERS:
        expected = {"type", "config"}
    elif kind == "Linear":
        expected = {"type", "in_features", "out_features", "bias", "dtype"}
    elif kind in _ACTIVATIONS:
        expected = {"type", *_ACTIVATIONS[kind][1]}
    else:
        fail(f"unknown layer type {kind!r}; known: Sequential, Linear, "
             f"{', '.join(_ACTIVATIONS)}, {', '.join(CONTAINERS)}, {', '.join(LAYERS)}")
    if set(spec) != expected:
        fail(f"{kind} needs exactly the fields {sorted(expected)}, got {sorted(spec)}")
    if kind == "Sequential" or kind in CONTAINERS:
        layers = spec["layers"]
        if not isinstance(layers, list) or not all(
                isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) for x in layers):
            fail("Sequential 'layers' must be a list of [name, layer] pairs")
        names = [name for name, _ in layers]
        reserved = dir(nn.Sequential())  # names that would overwrite a Module attribute
        bad = [n for n in names if not n or "." in n or n in reserved or names.count(n) > 1]
        if bad:
            fail(f"invalid layer name(s) {bad}: names must be unique, non-empty, without '.', "
                 f"and not a Module attribute")
        built = OrderedDict((name, _build(sub, path, weights, f"{where}.{name}", depth + 1))
                            for name, sub in layers)
        if kind == "ModuleList":
            if names != [str(i) for i in range(len(names))]:
                fail("ModuleList layers must be named '0', '1', ... in order")
            return nn.ModuleList(built.values())
        return nn.ModuleDict(built) if kind == "ModuleDict" else nn.Sequential(built)
    if kind in LAYERS:
        return _build_layer(LAYERS[kind], spec["config"], weights, where, fail)
    values = {k: v for k, v in spec.items() if k != "type"}
    for k, v in values.items():
        ok = {"bias": isinstance(v, bool), "dtype": v in ("float32", "float64"),
              "axis": isinstance(v, int) and not isinstance(v, bool),
              "in_features": isinstance(v, int) and not isinstance(v, bool),
              "out_features": isinstance(v, int) and not isinstance(v, bool)}.get(
                  k, isinstance(v, str) if k in _STRING_FIELDS
                  else isinstance(v, (int, float)) and not isinstance(v, bool))
        if not ok:
            fail(f"{kind} field {k!r} has an invalid value {v!r}")
    if kind == "Linear":
        prefix = where.partition(".")[2]
        key = f"{prefix}.weight" if prefix else "weight"
        stored = weights.get(key)
        need = (values["out_features"], values["in_features"])
        if min(need) > 0 and (not isinstance(stored, np.ndarray) or stored.shape != need):
            got = f"shape {stored.shape}" if isinstance(stored, np.ndarray) else "no such key"
            fail(f"Linear({values['in_features']}, {values['out_features']}) needs key "
                 f"'model.{key}' of shape {need}, the file has {got}")
    try:
        if kind == "Linear":
            return nn.Linear(**values)
        return _ACTIVATIONS[kind][0](**values)
    except (TypeError, ValueError, OverflowError) as e:
        fail(f"{kind}: {e}")


def _build_layer(cls, config, weights, where, fail):
    """Construct a layer from its config(), its weight's size checked against the file first."""
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        fail(f"{cls.__name__} 'config' must be an object of constructor arguments")
    shape_of = getattr(cls, "weight_shape", None)
    try:
        need = None if shape_of is None else shape_of(config)
    except (KeyError, TypeError, ValueError):
        fail(f"{cls.__name__} config {config!r} is incomplete or malformed")
    if need is not None:
        prefix = where.partition(".")[2]
        key = f"{prefix}.weight" if prefix else "weight"
        stored = weights.get(key)
        if not isinstance(stored, np.ndarray) or stored.shape != tuple(need):
            got = f"shape {stored.shape}" if isinstance(stored, np.ndarray) else "no such key"
            fail(f"{cls.__name__} needs key 'model.{key}' of shape {tuple(need)}, the file has "
                 f"{got}")
    try:
        return cls(**config)
    except (TypeError, ValueError, OverflowError) as e:
        fail(f"{cls.__name__}: {e}")


def save_model(model, path, optimizer=None):
    """Save a model's architecture and weights (and optionally its optimizer) atomically.

    The architecture is stored as JSON in the file's header, so :func:`load_model` rebuilds the
    model without the code that made it. Supported: ``Sequential`` (nested allowed) of
    ``Linear``, the activations, ``Dropout``, the layers of :mod:`pydl.layers` (convolution,
    pooling, normalisation with its running statistics, embedding, Flatten, Identity) and
    ``ModuleList`` / ``ModuleDict`` containers. Frozen parameters and the train/eval mode are recorded too. With an optimizer
    (SGD, Adam or AdamW over parameters of ``model``) its type, hyper-parameters and state are
    saved, so training resumes exactly where it stopped.

    Args:
        model: The model.
        path: File name.
        optimizer: Optional optimizer whose parameters all belong to ``model``. Default None.

    Raises:
        TypeError: The model contains an unsupported layer, or the optimizer is not SGD, Adam
            or AdamW.
        ValueError: The optimizer holds a parameter that is not in ``model``.

    Example:
        >>> pydl.save_model(model, "digits.npz", optimizer=opt)
    """
    arch = _architecture(model)
    params = list(model.parameters())
    root = bool(model.training)
    header = {"content": "model", "architecture": arch, "training": root,
              # modules in the other mode than the model (e.g. a batch norm kept in eval mode)
              "other_mode": [n for n, m in model.named_modules() if n and m.training != root],
              "frozen": [name for name, p in model.named_parameters() if not p.requires_grad],
              "optimizer": None}
    tree = {"model": model.state_dict()}
    if optimizer is not None:
        if type(optimizer) not in _OPTIMIZERS.values():
            raise TypeError(f"save_model: optimizer must be SGD, Adam or AdamW, got "
                            f"{type(optimizer).__name__}")
        index = {id(p): i for i, p in enumerate(params)}
        groups = []
        for group in optimizer.param_groups:
            missing = [p for p in group["params"] if id(p) not in index]
            if missing:
                raise ValueError("save_model: the optimizer holds a parameter that is not in "
                                 "the model; save them separately with pydl.save")
            groups.append([index[id(p)] for p in group["params"]])
        header["optimizer"] = {"type": type(optimizer).__name__, "params": groups}
        tree["optimizer"] = optimizer.state_dict()
    _save(path, tree, header)


def _check_weights(path, model, weights):
    own = model.state_dict()
    if not isinstance(weights, dict):
        raise ValueError(f"{path!r}: key 'model' must hold the weights")
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    if missing or extra:
        raise ValueError(f"{path!r}: weights do not match the architecture: missing key(s) "
                         f"{[f'model.{k}' for k in missing]}, unexpected key(s) "
                         f"{[f'model.{k}' for k in extra]}")
    for k, ref in own.items():
        w = weights[k]
        if not isinstance(w, np.ndarray) or w.shape != ref.shape or w.dtype != ref.dtype:
            got = (f"{w.dtype} {w.shape}" if isinstance(w, np.ndarray) else type(w).__name__)
            raise ValueError(f"{path!r}: key 'model.{k}' is {got}, the architecture needs "
                             f"{ref.dtype} {ref.shape}")


def _build_optimizer(path, info, state, params):
    def fail(message):
        raise ValueError(f"{path!r}: optimizer: {message}")

    if not isinstance(info, dict) or set(info) != {"type", "params"}:
        fail("malformed header entry")
    cls = _OPTIMIZERS.get(info["type"]) if isinstance(info["type"], str) else None
    if cls is None:
        fail(f"unknown type {info['type']!r}; known: {', '.join(_OPTIMIZERS)}")
    if not isinstance(state, dict) or not isinstance(state.get("param_groups"), list):
        fail("key 'optimizer' must hold a state dict with 'param_groups'")
    layout = info["params"]
    saved_groups = state["param_groups"]
    if not isinstance(layout, list) or len(layout) != len(saved_groups):
        fail("the parameter layout does not match 'param_groups'")
    groups, seen = [], set()
    for gi, (indices, saved) in enumerate(zip(layout, saved_groups)):
        if (not isinstance(indices, list) or not indices or not isinstance(saved, dict)
                or not all(isinstance(i, int) and 0 <= i < len(params) and i not in seen
                           for i in indices)):
            fail(f"param_groups.{gi}: invalid parameter indices {indices!r}")
        seen.update(indices)
        group = {k: v for k, v in saved.items() if k != "params"}
        group["params"] = [params[i] for i in indices]
        groups.append(group)
    try:
        opt = cls(groups, lr=groups[0].get("lr"))  # lr: SGD's one required argument
        opt.load_state_dict(state)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        fail(str(e))
    return opt


def load_model(path, with_optimizer=False):
    """Rebuild a model (and optionally its optimizer) saved by :func:`save_model`.

    Everything is validated before anything is built: a corrupt file, bad architecture JSON, an
    unknown layer type, or weights with a missing/extra key or wrong shape/dtype raise
    ``ValueError`` naming the problem. Building the model does not advance pydl's random
    generators, so a resumed run stays reproducible.

    Args:
        path: File name.
        with_optimizer: Also rebuild the optimizer (same type, hyper-parameters and state, over
            the new model's parameters). Default False.

    Returns:
        The model; with ``with_optimizer=True`` a tuple ``(model, optimizer)``, where optimizer
        is None if none was saved.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is not a valid pydl model file (see above).

    Example:
        >>> model, opt = pydl.load_model("digits.npz", with_optimizer=True)
    """
    header, tree = _load(path)
    path = _path_str(path)
    if header.get("content") != "model":
        raise ValueError(f"{path!r} holds no architecture (written by pydl.save, not "
                         f"save_model); use pydl.load and load_state_dict instead")
    for key in ("architecture", "training", "frozen", "optimizer"):
        if key not in header:
            raise ValueError(f"{path!r}: header key {key!r} is missing")
    if not isinstance(tree, dict) or "model" not in tree:
        raise ValueError(f"{path!r}: key 'model' (the weights) is missing")
    extra = set(tree) - {"model", "optimizer"}
    if extra or (("optimizer" in tree) != (header["optimizer"] is not None)):
        raise ValueError(f"{path!r}: unexpected or missing top-level entries "
                         f"{sorted(tree, key=repr)}")
    # Weight init draws from pydl's generator; restore it so loading leaves the random streams
    # where they were.
    gen = _random.generator()
    rng_state = gen.bit_generator.state
    weights = tree["model"] if isinstance(tree["model"], dict) else {}
    try:
        model = _build(header["architecture"], path, weights)
    finally:
        gen.bit_generator.state = rng_state
    _check_weights(path, model, tree["model"])
    frozen = header["frozen"]
    names = dict(model.named_parameters())
    if not isinstance(frozen, list) or not all(isinstance(n, str) and n in names for n in frozen):
        raise ValueError(f"{path!r}: header key 'frozen' names unknown parameters {frozen!r}")
    model.load_state_dict(tree["model"])
    for n in frozen:
        names[n].requires_grad = False
    root = bool(header["training"])
    other = header.get("other_mode", [])  # (absent from files of older versions)
    modules = dict(model.named_modules())
    if not isinstance(other, list) or not all(isinstance(n, str) and n in modules for n in other):
        raise ValueError(f"{path!r}: header key 'other_mode' names unknown modules {other!r}")
    model.train(root)
    nn._restore_modes([(modules[n], not root) for n in other])
    if not with_optimizer:
        return model
    if header["optimizer"] is None:
        return model, None
    opt = _build_optimizer(path, header["optimizer"], tree["optimizer"],
                           list(model.parameters()))
    return model, opt
