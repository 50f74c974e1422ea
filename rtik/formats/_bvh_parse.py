"""The BVH reader's text work: the HIERARCHY tokens and the motion numbers. Numpy only.

The motion lines, nearly all of a file's bytes, are read by :func:`parse_floats`, a vectorised decimal reader
that gives the same numbers as Python's ``float()``; a line-by-line pass runs only to name a bad line.
"""

from __future__ import annotations

import math
import re

import numpy as np

from rtik.errors import BVHError
from rtik.geometry.skeleton import CHANNEL_NAMES, Skeleton

_VALID_CHANNELS = set(CHANNEL_NAMES)
_FRAME_TIME_LINE = re.compile(r"^[ \t]*Frame[ \t]+Time:[^\n]*\n?", re.MULTILINE | re.IGNORECASE)


class _Header:
    """The tokens of everything up to the ``Frame Time:`` line; line numbers are worked out only for errors."""

    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self.toks = text.split()
        self.i = 0  # next token

    def line_of(self, k: int) -> int:
        """1-based line of token ``k`` (the last line if ``k`` is past the end)."""
        n = 0
        lines = self.text.split("\n")
        for no, line in enumerate(lines, 1):
            n += len(line.split())
            if n > k:
                return no
        return max(1, len(lines) - (1 if self.text.endswith("\n") else 0))

    def error(self, msg: str, k: int | None = None) -> BVHError:
        return BVHError(f"{self.name}:{self.line_of(self.i - 1 if k is None else k)}: {msg}")

    def next(self) -> str:
        if self.i >= len(self.toks):
            raise self.error("unexpected end of file", len(self.toks))
        self.i += 1
        return self.toks[self.i - 1]

    def expect(self, word: str) -> None:
        t = self.next()
        if t.upper() != word.upper():
            raise self.error(f"expected {word!r}, found {t!r}")

    def number(self) -> float:
        t = self.next()
        try:
            v = float(t)
        except ValueError:
            raise self.error(f"expected a number, found {t!r}") from None
        if not math.isfinite(v):
            raise self.error(f"expected a finite number, found {t!r}")
        return v


def _read_hierarchy(tk: _Header) -> dict:
    """The joints from the ROOT's name to its closing brace, read in one loop over the tokens."""
    toks, i = tk.toks, tk.i
    acc = {"names": [], "parents": [], "offsets": [], "channels": [], "end_sites": []}
    seen: set[str] = set()
    stack: list[int] = []  # joints whose braces are open

    def num(k: int) -> float:
        try:
            v = float(toks[k])
        except ValueError:
            raise tk.error(f"expected a number, found {toks[k]!r}", k) from None
        if not math.isfinite(v):
            raise tk.error(f"expected a finite number, found {toks[k]!r}", k)
        return v

    def want(k: int, word: str) -> None:
        if toks[k].upper() != word.upper():
            raise tk.error(f"expected {word!r}, found {toks[k]!r}", k)

    opening = True  # the next tokens are a joint's name and "{"
    try:
        while True:
            if opening:
                name = toks[i]
                if name in seen:
                    raise tk.error(f"duplicate joint name {name!r}", i)
                if name in ("{", "}"):
                    raise tk.error(f"expected a joint name, found {name!r}", i)
                want(i + 1, "{")
                seen.add(name)
                acc["names"].append(name)
                acc["parents"].append(stack[-1] if stack else -1)
                acc["offsets"].append(None)
                acc["channels"].append(())
                acc["end_sites"].append(None)
                stack.append(len(acc["names"]) - 1)
                i += 2
                opening = False
                continue
            j = stack[-1]
            t = toks[i]
            key = t.upper()
            if key == "OFFSET":
                acc["offsets"][j] = [num(i + 1), num(i + 2), num(i + 3)]
                i += 4
            elif key == "CHANNELS":
                try:
                    n = int(toks[i + 1])
                except ValueError:
                    raise tk.error(f"expected a channel count, found {toks[i + 1]!r}", i + 1) from None
                if not 0 <= n <= 6:
                    raise tk.error(f"channel count {n} outside 0..6", i + 1)
                chans = tuple(toks[i + 2 : i + 2 + n])
                if len(chans) < n:
                    raise IndexError
                bad = [c for c in chans if c not in _VALID_CHANNELS]
                if bad or len(set(chans)) != n:
                    what = f"invalid channel {bad[0]!r}" if bad else f"repeated channel in {' '.join(chans)!r}"
                    k = i + 2 + (chans.index(bad[0]) if bad else 0)
                    raise tk.error(f"{what} in joint {acc['names'][j]!r}; valid: {', '.join(CHANNEL_NAMES)}", k)
                acc["channels"][j] = chans
                i += 2 + n
            elif key == "JOINT":
                opening = True
                i += 1
            elif key == "END":
                want(i + 1, "Site")
                want(i + 2, "{")
                want(i + 3, "OFFSET")
                acc["end_sites"][j] = [num(i + 4), num(i + 5), num(i + 6)]
                want(i + 7, "}")
                i += 8
            elif key == "}":
                if acc["offsets"][j] is None:
                    raise tk.error(f"joint {acc['names'][j]!r} has no OFFSET", i)
                stack.pop()
                i += 1
                if not stack:
                    break
            elif key in ("MOTION", "ROOT"):
                raise tk.error(f"unbalanced braces: {t!r} inside joint {acc['names'][j]!r}", i)
            else:
                raise tk.error(f"unexpected {t!r} in joint {acc['names'][j]!r}", i)
    except IndexError:
        raise tk.error("unexpected end of file", len(toks)) from None
    tk.i = i
    return acc


def parse_text(text: str, name: str) -> tuple[Skeleton, float, np.ndarray]:
    """BVH text -> ``(skeleton, frame_time (s), channels (F, C) float64)``; errors name ``name`` and the line."""
    found = _FRAME_TIME_LINE.search(text)
    head_end = found.end() if found else len(text)
    tk = _Header(text[:head_end], name)
    tk.expect("HIERARCHY")
    tk.expect("ROOT")
    acc = _read_hierarchy(tk)
    t = tk.next()
    if t.upper() == "ROOT":
        raise tk.error("several ROOT joints are not supported")
    if t == "}":
        raise tk.error("unbalanced braces: '}' after the ROOT joint was closed")
    if t.upper() != "MOTION":
        raise tk.error(f"expected 'MOTION', found {t!r}")
    tk.expect("Frames:")
    raw_n = tk.next()
    try:
        n_frames = int(raw_n)
    except ValueError:
        raise tk.error(f"expected a frame count, found {raw_n!r}") from None
    if n_frames < 0:
        raise tk.error(f"negative frame count {n_frames}")
    tk.expect("Frame")
    tk.expect("Time:")
    frame_time = tk.number()
    if not frame_time > 0:
        raise tk.error(f"frame time must be positive, found {frame_time}")
    if tk.i < len(tk.toks):
        raise tk.error(f"unexpected {tk.toks[tk.i]!r} after the frame time", tk.i)
    skel = Skeleton(acc["names"], acc["parents"], acc["offsets"], acc["channels"], acc["end_sites"])
    first_line = text.count("\n", 0, head_end) + 1  # line number of the first motion line
    data = parse_motion(text[head_end:], n_frames, skel.num_channels, name, first_line)
    return skel, frame_time, data


def parse_motion(body: str, n_frames: int, C: int, name: str, first_line: int) -> np.ndarray:
    """Motion lines -> ``(n_frames, C)`` float64; on any problem, find and name the first bad line."""
    if n_frames == 0 or C == 0:
        return np.zeros((n_frames, C))
    buf = body.encode("utf-8")
    parsed = parse_floats(buf)
    if parsed is not None:
        values, ends = parsed
        a = np.frombuffer(buf, np.uint8)
        bounds = np.append(np.flatnonzero(a == 10), len(a))  # end of every line
        per_line = np.diff(np.searchsorted(ends, bounds), prepend=0)  # values on each line
        per_line = per_line[per_line > 0]  # blank lines do not count
        values = values[: n_frames * C]
        if len(per_line) >= n_frames and np.all(per_line[:n_frames] == C) and np.all(np.isfinite(values)):
            return values.reshape(n_frames, C)
    # slow path: walk the lines to name the first bad one (or to skip trailing lines that are no numbers)
    k = 0
    rows = []
    lines = body.split("\n")
    for i, line in enumerate(lines):
        if k == n_frames:
            break
        vals = line.split()
        if not vals:
            continue
        where = f"{name}:{first_line + i}"
        if len(vals) != C:
            raise BVHError(f"{where}: frame {k} has {len(vals)} values, expected {C}")
        for v in vals:
            try:
                x = float(v)
            except ValueError:
                raise BVHError(f"{where}: non-numeric value {v!r} in frame {k}") from None
            if not math.isfinite(x):
                raise BVHError(f"{where}: non-finite value {v!r} in frame {k}")
        rows.append(vals)
        k += 1
    last = first_line + len(lines) - 1 - (1 if body.endswith("\n") else 0)
    if k < n_frames:
        raise BVHError(
            f"{name}:{max(last, first_line - 1)}: truncated motion: header says {n_frames} frames, file has {k}"
        )
    return np.array(rows, dtype=np.float64)  # valid frames followed by lines beyond the frame count


_WIDTH = 16  # tokens up to 15 bytes take the vectorised path (15 digits stay exact in float64)
_POW10 = 10.0 ** np.arange(_WIDTH + 1)  # exact powers of ten, (W + 1,)


def parse_floats(buf: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Whitespace-separated decimal numbers -> ``(values (T,) float64, index of each token's last byte (T,))``,
    or ``None`` if a token is not a number.

    The values equal Python's ``float()`` bit for bit: each token's digits are read as one integer (exact below
    2**53) and divided once by an exact power of ten, which rounds correctly. The work runs over the tokens'
    bytes column by column from their right ends (at most 15), so its cost is a few numpy operations per column
    rather than a Python call per number. Tokens that are longer or carry an exponent fall back to ``float()``.
    """
    a = np.frombuffer(buf, np.uint8)
    ws = a <= 32  # space, tab, CR, LF and other control bytes separate tokens
    last = ~ws
    last[:-1] &= ws[1:]
    ends = np.flatnonzero(last)  # (T,) index of each token's last byte
    T, W = len(ends), _WIDTH
    padded = np.concatenate([np.full(W, 32, np.uint8), a])
    at = ends + W  # (T,) the same bytes in `padded`
    alive = np.ones(T, bool)  # still inside the token, reading right to left
    mant = np.zeros(T)  # the digits as one integer, exact in float64
    n_dig = np.zeros(T, np.uint8)  # digits read so far
    n_dot = np.zeros(T, np.uint8)
    frac = np.zeros(T, np.uint8)  # digits after the dot
    length = np.zeros(T, np.uint8)
    first = np.zeros(T, np.uint8)  # the token's first byte
    for r in range(W):
        col = padded.take(at - r)  # (T,) the r-th byte from each token's end
        alive &= col > 32
        if r and not alive.any():
            break
        d = col - np.uint8(48)
        is_dig = alive & (d < 10)
        d *= is_dig
        mant += d * _POW10.take(n_dig)
        is_dot = alive & (col == 46)  # '.'
        np.copyto(frac, n_dig, where=is_dot)
        n_dig += is_dig
        n_dot += is_dot
        length += alive
        np.copyto(first, col, where=alive)
    neg = first == 45  # '-'
    ok = (n_dig + n_dot + (neg | (first == 43)) == length) & (n_dig > 0) & (n_dot <= 1) & ~alive
    out = mant / _POW10.take(frac)
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
