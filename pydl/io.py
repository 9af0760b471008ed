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

Reading never unpickles: members are read with ``allow_pickle=False``, so an object array is
rejected with ``ValueError`` and nothing in the file is executed. Writing is atomic: the data go to
a temporary file in the target's directory, which is flushed, fsync'ed and then renamed over the
target (``os.replace``), so a crash mid-save leaves the previous file intact.

Example:
    >>> pydl.save({"model": model, "optimizer": opt, "epoch": 3}, "ckpt.npz")
    >>> ckpt = pydl.load("ckpt.npz")
    >>> model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["optimizer"])
    >>> pydl.save_model(model, "model.npz", optimizer=opt)
    >>> model, opt = pydl.load_model("model.npz", with_optimizer=True)
"""

import json
import os
import secrets
import zipfile
from collections import OrderedDict

import numpy as np

from . import nn, ops, optim
from . import random as _random
from .tensor import Tensor

__all__ = ["save", "load", "save_model", "load_model"]

FORMAT_VERSION = 1
HEADER_KEY = "__pydl__"
_ARRAY_KINDS = "biufc"  # bool, signed/unsigned int, float, complex: never objects or strings
# Deeper nesting (of the saved structure or the architecture) is rejected, so a crafted header
# cannot exhaust the interpreter's recursion limit; real files nest a handful of levels.
_MAX_DEPTH = 100


# --- writing ------------------------------------------------------------------------------------

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


def atomic_write(path, write):
    """Create or replace the file ``path`` atomically with what ``write(binary_file)`` writes.

    The data go to a temporary file in the target's directory, which is flushed, fsync'ed and
    renamed over ``path``; on any error the temporary file is removed and a previous file at
    ``path`` is left untouched.
    """
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, as a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


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
        path: File name (str or path-like); the name is used as given (``.npz`` is recommended).

    Raises:
        TypeError: ``obj`` is not a dict/Module/Optimizer, or holds an unsupported value (e.g.
            an object array); the message names its key.
        ValueError: Two entries map to the same dotted key, or an int does not fit in 64 bits.
        OSError: The file cannot be written; any previous file at ``path`` is left untouched.

    Example:
        >>> pydl.save(model, "weights.npz")
        >>> model.load_state_dict(pydl.load("weights.npz"))
    """
    if not isinstance(obj, (dict, nn.Module, optim.Optimizer)):
        raise TypeError(f"save: expected a dict, Module or Optimizer, got {type(obj).__name__}")
    _save(path, obj, {"content": "tree"})


# --- reading ------------------------------------------------------------------------------------

def _read_npz(path):
    """Read every member of an .npz into memory (no pickle); ValueError names what is broken."""
    path = os.fspath(path)
    try:
        zf = zipfile.ZipFile(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:  # BadZipFile, or zipfile rejecting a corrupt version field
        raise ValueError(f"{path!r} is not a valid .npz file (truncated or corrupt?): "
                         f"{e}") from None
    arrays = {}
    with zf:
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise ValueError(f"{path!r}: unexpected member {name!r} (not an .npy array)")
            key = name[:-4]
            if key in arrays:
                raise ValueError(f"{path!r}: key {key!r} appears twice")
            try:
                with zf.open(info) as member:
                    arr = np.lib.format.read_array(member, allow_pickle=False)
            except Exception as e:  # zip/CRC/zlib/format errors, object arrays
                raise ValueError(f"{path!r}: cannot read key {key!r} (corrupt or truncated "
                                 f"file, or an object array, which pydl never unpickles): "
                                 f"{e}") from None
            arrays[key] = arr
    return arrays


def _read_header(path, arrays):
    if HEADER_KEY not in arrays:
        raise ValueError(f"{path!r}: missing key {HEADER_KEY!r}: not a file written by "
                         f"pydl.save or pydl.save_model")
    raw = arrays[HEADER_KEY]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path!r}: key {HEADER_KEY!r} must be a 1-D uint8 array, got "
                         f"{raw.dtype} with shape {raw.shape}")
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
    """Rebuild a saved structure from its header node, consuming arrays by key."""

    def __init__(self, path, arrays):
        self.path = path
        self.arrays = arrays
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
        if key not in self.arrays:
            self.fail(f"missing key {key!r}")
        if key in self.used:
            self.fail(f"key {key!r} is referenced twice")
        self.used.add(key)
        arr = self.arrays[key]
        if arr.dtype.kind not in _ARRAY_KINDS:
            self.fail(f"key {key!r} has unsupported dtype {arr.dtype}")
        if arr.dtype.str != node.get("dtype"):
            self.fail(f"key {key!r} has dtype {arr.dtype.str}, the header says "
                      f"{node.get('dtype')!r}")
        if list(arr.shape) != node.get("shape"):
            self.fail(f"key {key!r} has shape {arr.shape}, the header says {node.get('shape')!r}")
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

    def check_all_used(self):
        extra = sorted(set(self.arrays) - self.used)
        if extra:
            self.fail(f"unexpected key(s) {extra} not described by the header")


def _load(path):
    arrays = _read_npz(path)
    header = _read_header(path, arrays)
    decoder = _Decoder(os.fspath(path), arrays)
    tree = decoder.decode(header.get("tree"))
    decoder.check_all_used()
    return header, tree


def load(path):
    """Load what :func:`save` (or :func:`save_model`) wrote, validating every entry.

    Modules and Optimizers come back as their state dicts (plain dicts of arrays / the nested
    optimizer state), ready for ``load_state_dict``, and Tensors as arrays; ints, floats, bools,
    strings, tuples, None and numpy scalars keep their types. Nothing is unpickled. Nothing is
    returned unless the whole file is valid, so a failed load never half-updates anything.

    Args:
        path: The file name.

    Returns:
        The saved structure, e.g. ``{"0.weight": array, ...}`` or ``{"model": {...},
        "optimizer": {...}, "epoch": 3}``. For a :func:`save_model` file, ``{"model": state_dict}``
        plus ``"optimizer"`` when one was saved.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is not an .npz written by pydl, is truncated or corrupt, contains an
            object array, or a key is missing, extra, or has a dtype/shape differing from the
            header; the message names the key.

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
    raise TypeError(f"save_model: cannot describe {where} ({t.__name__}); supported layers are "
                    f"Sequential, Linear, {', '.join(_ACTIVATIONS)}. Save its weights with "
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
    if kind == "Sequential":
        expected = {"type", "layers"}
    elif kind == "Linear":
        expected = {"type", "in_features", "out_features", "bias", "dtype"}
    elif kind in _ACTIVATIONS:
        expected = {"type", *_ACTIVATIONS[kind][1]}
    else:
        fail(f"unknown layer type {kind!r}; known: Sequential, Linear, {', '.join(_ACTIVATIONS)}")
    if set(spec) != expected:
        fail(f"{kind} needs exactly the fields {sorted(expected)}, got {sorted(spec)}")
    if kind == "Sequential":
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
        return nn.Sequential(OrderedDict(
            (name, _build(sub, path, weights, f"{where}.{name}", depth + 1))
            for name, sub in layers))
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


def save_model(model, path, optimizer=None):
    """Save a model's architecture and weights (and optionally its optimizer) atomically.

    The architecture is stored as JSON in the file's header, so :func:`load_model` rebuilds the
    model without the code that made it. Supported: ``Sequential`` (nested allowed) of
    ``Linear``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``Sigmoid``, ``Tanh``, ``Softmax`` and
    ``Dropout``. Frozen parameters and the train/eval mode are recorded too. With an optimizer
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
    header = {"content": "model", "architecture": arch, "training": bool(model.training),
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
    path = os.fspath(path)
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
    model.train(bool(header["training"]))
    if not with_optimizer:
        return model
    if header["optimizer"] is None:
        return model, None
    opt = _build_optimizer(path, header["optimizer"], tree["optimizer"],
                           list(model.parameters()))
    return model, opt
