"""Price levels as arrays: a depth message's ``[["price", "qty"], ...]`` straight into an
``(n, 2)`` float64 array, without a Python object per number.

Binance (and most venues) send each level as two decimal strings. :func:`parse_levels`
reads the JSON text of the list in compiled code: a decimal of at most 15 significant digits
and at most 22 decimals is its integer mantissa divided by a power of ten, both exact in
float64, so the one correctly rounded division gives exactly the double Python's
``float()`` gives (the classic exact fast path of decimal conversion). Anything else -- an
exponent, more digits, ``"nan"``, a leading zero, a negative zero, a malformed list -- is
handed to msgspec's lax decoder (the one the other fields go through), which decodes it the
general way or names what is wrong: the result is always the one msgspec alone would give.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
from numba import njit

_POW10 = np.array([10.0 ** k for k in range(23)], dtype=np.float64)
_GENERAL = msgspec.json.Decoder(list[tuple[float, float]], strict=False)
_EMPTY = np.empty((0, 2), dtype=np.float64)


@njit(cache=True, nogil=True)
def _skip_ws(b, i):  # pragma: no cover - compiled
    n = len(b)
    while i < n and (b[i] == 32 or b[i] == 9 or b[i] == 10 or b[i] == 13):
        i += 1
    return i


@njit(cache=True, nogil=True)
def _number(b, i, pow10):  # pragma: no cover - compiled
    """(value, next index, ok) of a decimal at ``b[i]``, quoted or not."""
    n = len(b)
    quoted = i < n and b[i] == 34
    if quoted:
        i += 1
    neg = False
    if i < n and b[i] == 45:
        neg = True
        i += 1
    mant = np.int64(0)
    digits = 0
    sig = 0
    frac = 0
    seen_dot = False
    if i + 1 < n and b[i] == 48 and 48 <= b[i + 1] <= 57:
        return 0.0, i, False  # a leading zero: not a JSON number
    while i < n:
        c = b[i]
        if 48 <= c <= 57:
            digits += 1
            if sig > 0 or c != 48:
                sig += 1
            if sig > 15:
                return 0.0, i, False
            mant = mant * 10 + (c - 48)
            if seen_dot:
                frac += 1
            i += 1
        elif c == 46 and not seen_dot and digits > 0:
            seen_dot = True
            i += 1
        else:
            break
    if digits == 0 or frac > 22 or (seen_dot and frac == 0) or (neg and mant == 0):
        return 0.0, i, False  # "5.", "-0" ...: the general decoder's reading
    if quoted:
        if i >= n or b[i] != 34:
            return 0.0, i, False  # an exponent, a word, ...: the general decoder decides
        i += 1
    elif i < n and (b[i] == 101 or b[i] == 69):
        return 0.0, i, False
    v = np.float64(mant) / pow10[frac]
    return (-v if neg else v), i, True


@njit(cache=True, nogil=True)
def _number_then(b, i, pow10, sep):  # pragma: no cover - compiled
    """(value, index after ``sep``, ok) of a decimal after optional spacing at ``b[i]``,
    followed by optional spacing and the byte ``sep``."""
    v, i, ok = _number(b, _skip_ws(b, i), pow10)
    if not ok:
        return v, i, False
    i = _skip_ws(b, i)
    if i >= len(b) or b[i] != sep:
        return v, i, False
    return v, i + 1, True


@njit(cache=True, nogil=True)
def _parse(b, out, pow10):  # pragma: no cover - compiled
    """Levels of the JSON list ``b`` into ``out``; their count, or -1 to use the general
    decoder."""
    n = len(b)
    i = _skip_ws(b, 0)
    if i >= n or b[i] != 91:
        return -1
    i = _skip_ws(b, i + 1)
    k = 0
    if i < n and b[i] == 93:
        return 0 if _skip_ws(b, i + 1) == n else -1
    while True:
        if i >= n or b[i] != 91 or k >= len(out):
            return -1
        p, i, ok = _number_then(b, i + 1, pow10, 44)  # price, then ','
        if not ok:
            return -1
        q, i, ok = _number_then(b, i, pow10, 93)  # quantity, then ']'
        if not ok:
            return -1
        out[k, 0] = p
        out[k, 1] = q
        k += 1
        i = _skip_ws(b, i)
        if i < n and b[i] == 44:
            i = _skip_ws(b, i + 1)
            continue
        if i < n and b[i] == 93:
            return k if _skip_ws(b, i + 1) == n else -1
        return -1


def parse_levels(raw: bytes | msgspec.Raw, name: str = "") -> np.ndarray:
    """The ``(n, 2)`` float64 array of a JSON list of ``[price, qty]`` pairs (strings or
    numbers), equal to ``float()`` of each; a ``ValueError`` names what is not a level (at
    ``$.name[i]``)."""
    data = bytes(raw) if isinstance(raw, msgspec.Raw) else raw
    if len(data) <= 2 and data.strip() == b"[]":
        return _EMPTY
    buf = np.frombuffer(data, dtype=np.uint8)
    out = np.empty((data.count(b"[") or 1, 2), dtype=np.float64)
    k = _parse(buf, out, _POW10)
    if k >= 0:
        return out[:k]
    try:
        return as_levels(_GENERAL.decode(data))
    except msgspec.DecodeError as exc:
        where = str(exc).replace("`$", f"`$.{name}" if name else "`$")
        raise ValueError(f"levels must be [price, quantity] pairs of numbers ({where})") \
            from None


def as_levels(levels: Any, name: str = "") -> np.ndarray:
    """Levels given as an array or a list of (price, qty) pairs, as an ``(n, 2)`` float64
    array (raw JSON bytes go through :func:`parse_levels`)."""
    if isinstance(levels, (bytes, msgspec.Raw)):
        return parse_levels(levels, name)
    if isinstance(levels, np.ndarray) and levels.dtype == np.float64 and levels.ndim == 2 \
            and levels.shape[1] == 2:
        return levels
    arr = np.asarray(levels, dtype=np.float64)
    if arr.size == 0:
        return _EMPTY
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"levels of shape {arr.shape}: give [price, quantity] pairs")
    return arr
