"""Scalar and hyper-parameter checks shared by pydl's public entry points (scikit-learn style).

One rule everywhere: a value of the wrong type raises ``TypeError``, a value of the right type
that is out of range raises ``ValueError``. Messages read ``"<who>: <name> must be <expected>,
got <actual>"``. The compiled kernels (``pydl.kernels``, validated in csrc/bindings/checks.cpp)
raise the same type with the same message for the same mistake, so a bad hyper-parameter fails
alike through ``nn``, ``functional`` and ``kernels``; check once, at construction or at the public
boundary, and then trust the value.

Example:
    >>> from pydl import _validation as V
    >>> V.real(0.5, "p", "Dropout", low=0.0, high=1.0, high_open=True)
    0.5
"""

import math
import numbers

__all__ = ["real", "integer", "choice", "drop_probability", "fmt_real"]


def fmt_real(v):
    """Format a float as the C++ checks do (six significant digits, ``nan``, ``inf``)."""
    return f"{v:g}"


def _type_name(value):
    return type(value).__name__


def real(value, name, who, *, low=None, high=None, low_open=False, high_open=False,
         finite=False):
    """Return ``value`` as a float after checking its type and range.

    Args:
        value: The argument as given: anything ``float()`` converts (Python and numpy ints and
            floats) except bool and str.
        name: The argument's name, for the message.
        who: The function or class checking it (the message's prefix).
        low: Smallest allowed value, or None for no lower bound. Default None.
        high: Largest allowed value, or None for no upper bound. Default None.
        low_open: Exclude ``low`` itself. Default False.
        high_open: Exclude ``high`` itself. Default False.
        finite: Reject inf (NaN is always rejected when a bound is given). Default False.

    Returns:
        The value as a Python float.

    Raises:
        TypeError: value is not a real number.
        ValueError: value is outside the bounds (or NaN/inf where not allowed).
    """
    # What the C++ checks accept: anything float() converts except bool and text (float("0.5")
    # parses a string; a hyper-parameter given as text is a bug).
    bad = isinstance(value, (bool, str, bytes, bytearray))
    try:
        v = None if bad else float(value)
    except (TypeError, ValueError):
        v = None
    if v is None:
        raise TypeError(f"{who}: {name} must be a real number, got {_type_name(value)}")
    ok = not (finite and not math.isfinite(v))
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        bounds = f"{lo}{fmt_real(low) if low is not None else '-inf'}, " \
                 f"{fmt_real(high) if high is not None else 'inf'}{hi}"
        kind = "a finite number in " if finite else "in "
        raise ValueError(f"{who}: {name} must be {kind}{bounds}, got {fmt_real(v)}")
    return v


def integer(value, name, who, *, low=None, high=None):
    """Return ``value`` as an int after checking its type and range.

    Args:
        value: The argument: a Python or numpy integer (bool is rejected).
        name: The argument's name, for the message.
        who: The function or class checking it.
        low: Smallest allowed value, or None. Default None.
        high: Largest allowed value, or None. Default None.

    Returns:
        The value as a Python int.

    Raises:
        TypeError: value is not an int.
        ValueError: value is outside [low, high].
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an int, got {_type_name(value)}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        lo = low if low is not None else "-inf"
        hi = high if high is not None else "inf"
        raise ValueError(f"{who}: {name} must be an int in [{lo}, {hi}], got {v}")
    return v


def choice(value, name, who, options):
    """Return ``value`` after checking it is one of the str ``options``.

    Args:
        value: The argument.
        name: The argument's name, for the message.
        who: The function or class checking it.
        options: The allowed strings, in the order the message lists them.

    Returns:
        value.

    Raises:
        TypeError: value is not a str.
        ValueError: value is not one of options.
    """
    listed = ", ".join(f"'{o}'" for o in options[:-1])
    listed = f"{listed} or '{options[-1]}'" if listed else f"'{options[-1]}'"
    if not isinstance(value, str):
        raise TypeError(f"{who}: {name} must be a str ({listed}), got {_type_name(value)}")
    if value not in options:
        raise ValueError(f"{who}: {name} must be {listed}, got '{value}'")
    return value


def drop_probability(p, who):
    """Return the dropout probability ``p`` as a float in [0, 1).

    Args:
        p: The probability of dropping an element.
        who: The function or class checking it ("Dropout", "dropout", ...).

    Returns:
        p as a Python float.

    Raises:
        TypeError: p is not a real number.
        ValueError: p is NaN or outside [0, 1).
    """
    v = real(p, "p", who)
    if not 0.0 <= v < 1.0:  # also rejects NaN
        raise ValueError(f"{who}: p (the drop probability) must be in [0, 1), got {fmt_real(v)}")
    return v
