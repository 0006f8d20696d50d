"""A retractable, mergeable quantile sketch of durations: log buckets with at most 1% relative error.

The buckets are DDSketch's logarithmic mapping, over whole microseconds (the resolution of event
times): a duration of d µs (d ≥ 1) falls in bucket ⌈log_γ d⌉ with γ = (1 + α) / (1 − α) and
α = 0.01, so every duration in a bucket lies within 1% of the bucket's representative value
2γ^i / (γ + 1). Bucket −1 holds durations of zero. A sketch is the count per bucket: adding a
duration adds one to its bucket and withdrawing it takes the one away, so sketches of days, of
workers and of retractions sum exactly like counts do, and a quantile of any sum is within 1% of
the exact quantile (the nearest-rank value at rank ⌊q·(n−1)⌋ of the sorted durations).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ACCURACY = 0.01
GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
ZERO = -1
"""The bucket of durations of zero."""

Sketch = dict[int, int]
"""Bucket index -> how many durations it holds (no zero counts)."""


def bucket(microseconds: int) -> int:
    """The bucket of a duration in whole microseconds."""
    if microseconds <= 0:
        return ZERO
    # A hair below the exact logarithm keeps exact powers of γ in their own bucket despite rounding.
    return max(0, math.ceil(math.log(microseconds) / _LOG_GAMMA - 1e-9))


def value(index: int) -> float:
    """The representative duration of a bucket, in seconds."""
    if index == ZERO:
        return 0.0
    if index == 0:
        return 1e-6
    return 2 * GAMMA**index / (GAMMA + 1) / 1e6


def added(sketch: Mapping[int, int], index: int, times: int = 1) -> Sketch:
    """The sketch with `times` more (or, negative, fewer) durations in bucket `index`."""
    out = dict(sketch)
    count = out.get(index, 0) + times
    if count:
        out[index] = count
    else:
        out.pop(index, None)
    return out


def merged(sketches: Iterable[Mapping[int, int]]) -> Sketch:
    out: Sketch = {}
    for sketch in sketches:
        for index, count in sketch.items():
            out[index] = out.get(index, 0) + count
    return {i: c for i, c in out.items() if c}


def quantile(sketch: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 ≤ q ≤ 1) of the durations in the sketch, in seconds; None for an empty one."""
    total = sum(sketch.values())
    if total <= 0:
        return None
    rank = math.floor(q * (total - 1))
    seen = 0
    for index in sorted(sketch):
        seen += sketch[index]
        if seen > rank:
            return value(index)
    return value(max(sketch))
