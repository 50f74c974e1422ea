"""Fast parsing of whitespace-separated decimal numbers (the motion lines of BVH files), numpy only."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_WIDTH = 16  # tokens up to 15 bytes take the vectorised path (15 digits stay exact in float64)


def parse_floats(buf: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Whitespace-separated decimal numbers -> ``(values (T,) float64, index of each token's last byte (T,))``,
    or ``None`` if a token is not a number.

    The values equal Python's ``float()`` bit for bit: each token's digits are read as one integer (exact below
    2**53) and divided once by an exact power of ten, which rounds correctly. The work runs over the tokens'
    byte columns (right-aligned, at most 15), so its cost is a few numpy operations per column rather than a
    Python call per number. Tokens that are longer or carry an exponent fall back to ``float()``.
    """
    a = np.frombuffer(buf, np.uint8)
    ws = a <= 32  # space, tab, CR, LF and other control bytes separate tokens
    last = ~ws
    last[:-1] &= ws[1:]
    ends = np.flatnonzero(last)  # (T,)
    T, W = len(ends), _WIDTH
    padded = np.concatenate([np.full(W, 32, np.uint8), a])
    cols = np.ascontiguousarray(sliding_window_view(padded, W)[ends + 1].T)  # (W, T) each token right-aligned
    alive = np.ones(T, bool)  # still inside the token, reading right to left
    mant = np.zeros(T)  # digits as an integer, exact in float64
    place = np.ones(T)  # 10 ** (digits read so far)
    div = np.ones(T)  # 10 ** (digits after the dot)
    length = np.zeros(T, np.uint8)
    n_dig = np.zeros(T, np.uint8)
    n_dot = np.zeros(T, np.uint8)
    first = np.zeros(T, np.uint8)  # the token's first byte
    for w in range(W - 1, -1, -1):
        col = cols[w]
        alive &= col > 32
        if not alive.any():
            break
        d = col - np.uint8(48)
        is_dig = alive & (d < 10)
        mant += np.where(is_dig, d * place, 0.0)
        place[is_dig] *= 10.0
        is_dot = alive & (col == 46)
        div[is_dot] = place[is_dot]
        length += alive
        n_dig += is_dig
        n_dot += is_dot
        np.copyto(first, col, where=alive)
    neg = first == 45  # '-'
    ok = (n_dig + n_dot + (neg | (first == 43)) == length) & (n_dig > 0) & (n_dot <= 1) & ~alive
    out = mant / div
    np.negative(out, out=out, where=neg)
    for i in np.flatnonzero(~ok):  # exponents, long tokens, words
        e = int(ends[i]) + 1
        s = e - 1
        while s > 0 and buf[s - 1] > 32:
            s -= 1
        try:
            out[i] = float(buf[s:e])
        except ValueError:
            return None
    return out, ends
