"""Numeric series kept in memory for the dashboard, and their min/max/last downsampling.

A :class:`Series` is two growing float64 columns (x = timestep, y = value) that only
ever get points appended, so a client can ask for "everything after index n" and the
live stream never re-sends a point. :func:`downsample` keeps a line's shape at any
size: the points are cut into equal-count buckets and each bucket keeps its minimum,
its maximum and its last point, so a single spike always survives (unlike reservoir
or stride sampling) and the same data always gives the same points.
"""

from __future__ import annotations

import numpy as np

#: Points per series the page asks for by default (a laptop chart is ~1,000-2,000 px wide).
DEFAULT_POINTS = 2000
_INITIAL_CAPACITY = 256


class Series:
    """An append-only (x, y) column pair, grown by doubling (amortised O(1) per point).

    Readers take ``x``/``y`` views of the first ``length`` points: appending never
    changes a point already there, and a growth makes new arrays (old views stay valid).
    """

    def __init__(self) -> None:
        self._x = np.empty(_INITIAL_CAPACITY)
        self._y = np.empty(_INITIAL_CAPACITY)
        self.length = 0
        #: True while x never decreased: then a range is found by binary search.
        self.sorted = True

    def extend(self, x: np.ndarray, y: np.ndarray) -> None:
        """Append the points ``(x[i], y[i])``."""
        count = len(x)
        if not count:
            return
        end = self.length + count
        if end > len(self._x):
            capacity = max(2 * len(self._x), end)
            self._x = np.resize(self._x, capacity)
            self._y = np.resize(self._y, capacity)
        if (self.length and x[0] < self._x[self.length - 1]) or (count > 1 and np.any(x[1:] < x[:-1])):
            self.sorted = False
        self._x[self.length:end] = x
        self._y[self.length:end] = y
        self.length = end

    def replace_last(self, y: float) -> None:
        """Change the newest point's value (a running mean over one timestep's envs)."""
        self._y[self.length - 1] = y

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.length]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.length]

    def window(self, x0: float | None, x1: float | None, upto: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The points with ``x0 <= x <= x1`` (None: unbounded) among the first ``upto``."""
        end = self.length if upto is None else min(upto, self.length)
        x, y = self._x[:end], self._y[:end]
        if x0 is None and x1 is None:
            return x, y
        low = -np.inf if x0 is None else x0
        high = np.inf if x1 is None else x1
        if self.sorted:
            start, stop = np.searchsorted(x, low, "left"), np.searchsorted(x, high, "right")
            return x[start:stop], y[start:stop]
        inside = (x >= low) & (x <= high)
        return x[inside], y[inside]


def downsample(x: np.ndarray, y: np.ndarray, points: int = DEFAULT_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` of (x, y), in their original order: all of them if they fit,
    else per equal-count bucket its minimum, maximum and last point (``points // 3``
    buckets; a point that is more than one of these is kept once). Non-finite values
    are never chosen as a minimum or maximum but are kept when they are a bucket's last.
    """
    count = len(x)
    if count <= points:
        return x, y
    buckets = max(1, points // 3)
    width = -(-count // buckets)  # ceil: every bucket but the last holds exactly `width` points
    padded = buckets * width
    finite = np.isfinite(y)
    low = np.full(padded, np.inf)
    high = np.full(padded, -np.inf)
    low[:count] = np.where(finite, y, np.inf)
    high[:count] = np.where(finite, y, -np.inf)
    starts = np.arange(buckets) * width
    minima = starts + np.argmin(low.reshape(buckets, width), axis=1)
    maxima = starts + np.argmax(high.reshape(buckets, width), axis=1)
    lasts = np.minimum(starts + width, count) - 1
    keep = np.unique(np.concatenate([minima, maxima, lasts]))
    keep = keep[keep < count]  # buckets past the end (count just above a multiple) pick padding
    return x[keep], y[keep]
