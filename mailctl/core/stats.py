"""Benchmark statistics: exact percentiles from sorted samples, QPS, latency histograms (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mailctl.serialize import SECONDS, meta

__all__ = [
    "REPORTED_PERCENTILES",
    "Histogram",
    "LatencySummary",
    "histogram",
    "percentile",
    "qps",
    "summarize",
]

REPORTED_PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ascending `sorted_values`: an observed value, never interpolated.

    The smallest sample such that at least p% of all samples are <= it (p=0: the minimum).
    Exact ranks avoid the floating-point trap of ceil(0.999 * 1000) == 1000: `p` is taken
    in thousandths of a percent. Raises ValueError for no samples or p outside [0, 100].
    """
    count = len(sorted_values)
    if count == 0:
        raise ValueError("percentile of no samples")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile {p} is outside [0, 100]")
    milli = round(p * 1000)  # 99.9 -> 99900
    rank = (milli * count + 99_999) // 100_000  # ceil(p/100 * count), in integers
    return sorted_values[max(rank, 1) - 1]


def qps(count: int, elapsed: float) -> float:
    """Messages per second: count / elapsed (0.0 when nothing was measured)."""
    if count < 0:
        raise ValueError("negative count")
    if elapsed <= 0.0:
        return 0.0
    return count / elapsed


@dataclass(frozen=True)
class LatencySummary:
    """Seconds; percentiles are nearest-rank values of the exact samples.

    JSON (mailctl.serialize): milliseconds to the microsecond, `min_ms` ... `p99_9_ms`, `max_ms`.
    """

    count: int
    minimum: float = field(metadata=meta(key="min", seconds=True))
    mean: float = field(metadata=SECONDS)
    p50: float = field(metadata=SECONDS)
    p90: float = field(metadata=SECONDS)
    p99: float = field(metadata=SECONDS)
    p999: float = field(metadata=meta(key="p99_9", seconds=True))
    maximum: float = field(metadata=meta(key="max", seconds=True))


def summarize(values: Iterable[float]) -> LatencySummary | None:
    """Sort once and read every reported percentile; None for no samples."""
    ordered = sorted(values)
    if not ordered:
        return None
    return LatencySummary(
        count=len(ordered),
        minimum=ordered[0],
        mean=math.fsum(ordered) / len(ordered),
        p50=percentile(ordered, 50.0),
        p90=percentile(ordered, 90.0),
        p99=percentile(ordered, 99.0),
        p999=percentile(ordered, 99.9),
        maximum=ordered[-1],
    )


@dataclass(frozen=True)
class Histogram:
    """Counts per bucket; bucket i holds edges[i] <= value < edges[i+1] (the last is closed)."""

    edges: tuple[float, ...] = field(metadata=SECONDS)  # JSON: edges_ms
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)


def histogram(sorted_values: Sequence[float], *, buckets: int = 12) -> Histogram:
    """Bucket ascending samples on a log scale (latency spans decades), linear if min <= 0.

    Raises ValueError for no samples or fewer than one bucket.
    """
    if not sorted_values:
        raise ValueError("histogram of no samples")
    if buckets < 1:
        raise ValueError("at least one bucket")
    low, high = sorted_values[0], sorted_values[-1]
    if high <= low:
        return Histogram(edges=(low, high), counts=(len(sorted_values),))
    if low > 0.0:
        # In log space: high / low can overflow for tiny (subnormal) minima.
        start, step = math.log(low), (math.log(high) - math.log(low)) / buckets
        edges = [low] + [min(math.exp(start + step * i), high) for i in range(1, buckets)] + [high]
    else:
        step = (high - low) / buckets
        edges = [low + step * i for i in range(buckets)] + [high]
    counts = [0] * buckets
    index = 0
    for value in sorted_values:  # one pass: values and edges are both ascending
        while index < buckets - 1 and value >= edges[index + 1]:
            index += 1
        counts[index] += 1
    return Histogram(edges=tuple(edges), counts=tuple(counts))
