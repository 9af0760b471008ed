"""pydl/_core.pyi against the compiled module: the same functions with the same parameters.

The compiled signatures come from pybind11's docstrings (their first line is the signature), so
this fails when a binding gains, loses or renames a parameter, changes which are keyword-only, or
changes a default, and the stub was not updated with it.
"""

import ast
import pathlib

import pytest

from pydl import _core

STUB = pathlib.Path(__file__).resolve().parent.parent / "pydl" / "_core.pyi"
REQUIRED = "<required>"  # a parameter without a default (None is a real default)


def _split_top_level(text):
    """Split a parameter list at commas outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def compiled_signature(fn):
    """[(name, kw_only, default or REQUIRED)] parsed from a pybind11 docstring's first line."""
    first = fn.__doc__.splitlines()[0]
    name = fn.__name__
    assert first.startswith(name + "("), first
    inner = first[len(name) + 1 : first.rindex(") ->")]
    params, kw_only = [], False
    for part in _split_top_level(inner):
        if part == "*":
            kw_only = True
            continue
        head, _, default = part.partition(" = ")
        pname = head.split(":")[0].strip()
        params.append((pname, kw_only, ast.literal_eval(default) if default else REQUIRED))
    return params


def stub_signatures():
    tree = ast.parse(STUB.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            pos = a.posonlyargs + a.args
            pos_defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
            params = [(p.arg, False, d) for p, d in zip(pos, pos_defaults)]
            params += [(p.arg, True, d) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
            out[node.name] = [
                (n, kw, REQUIRED if d is None else ast.literal_eval(d)) for n, kw, d in params
            ]
    return out


def compiled_functions():
    return {n: getattr(_core, n) for n in dir(_core)
            if not n.startswith("__") and callable(getattr(_core, n))}


def test_stub_lists_exactly_the_compiled_functions():
    stub, compiled = set(stub_signatures()), set(compiled_functions())
    assert compiled - stub == set(), "missing from _core.pyi"
    assert stub - compiled == set(), "in _core.pyi but not compiled"


@pytest.mark.parametrize("name", sorted(compiled_functions()))
def test_stub_parameters_match(name):
    want = compiled_signature(compiled_functions()[name])
    got = stub_signatures()[name]
    assert [p[:2] for p in got] == [p[:2] for p in want], "names / keyword-only differ"
    for (pname, _, d_stub), (_, _, d_core) in zip(got, want):
        assert d_stub == d_core, f"default of {pname}"
