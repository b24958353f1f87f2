"""Benchmark statistics: exact percentiles, QPS and histograms (pure functions, hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailctl.core.stats import histogram, percentile, qps, summarize
from mailctl.serialize import to_data

samples = st.lists(
    st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)
percents = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@given(samples, percents, percents)
def test_percentile_is_monotone_in_p(values: list[float], p: float, q: float) -> None:
    ordered = sorted(values)
    low, high = min(p, q), max(p, q)
    assert percentile(ordered, low) <= percentile(ordered, high)


@given(samples, percents)
def test_percentile_is_an_observed_value_within_min_and_max(values: list[float], p: float) -> None:
    ordered = sorted(values)
    found = percentile(ordered, p)
    assert ordered[0] <= found <= ordered[-1]
    assert found in ordered


@given(samples)
def test_percentile_extremes(values: list[float]) -> None:
    ordered = sorted(values)
    assert percentile(ordered, 0.0) == ordered[0]
    assert percentile(ordered, 100.0) == ordered[-1]


@given(st.integers(min_value=0, max_value=10**9), st.floats(min_value=1e-6, max_value=1e6))
def test_qps_is_count_over_elapsed(count: int, elapsed: float) -> None:
    assert qps(count, elapsed) == count / elapsed


def test_qps_without_elapsed_time_is_zero() -> None:
    assert qps(0, 0.0) == 0.0
    with pytest.raises(ValueError):
        qps(-1, 1.0)


def test_exact_values_on_known_inputs() -> None:
    ordered = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(ordered, 50) == 50.0
    assert percentile(ordered, 90) == 90.0
    assert percentile(ordered, 99) == 99.0
    assert percentile(ordered, 99.9) == 100.0
    thousand = [float(i) for i in range(1, 1001)]
    # ceil(0.999 * 1000) must be 999, not 1000 (the floating-point trap).
    assert percentile(thousand, 99.9) == 999.0
    assert percentile([5.0], 50) == 5.0
    assert percentile([1.0, 2.0], 50) == 1.0
    summary = summarize([3.0, 1.0, 2.0, 4.0])
    assert summary is not None
    assert (summary.count, summary.minimum, summary.maximum) == (4, 1.0, 4.0)
    assert summary.mean == 2.5
    assert summary.p50 == 2.0
    assert to_data(summary)["p50_ms"] == 2000.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    assert summarize([]) is None
    with pytest.raises(ValueError):
        histogram([])


@given(samples, st.integers(min_value=1, max_value=30))
def test_histogram_counts_every_sample_once(values: list[float], buckets: int) -> None:
    ordered = sorted(values)
    found = histogram(ordered, buckets=buckets)
    assert found.total == len(values)
    assert len(found.edges) == len(found.counts) + 1
    assert list(found.edges) == sorted(found.edges)
    assert found.edges[0] == ordered[0]
    assert math.isclose(found.edges[-1], ordered[-1])


def test_histogram_on_known_input() -> None:
    found = histogram([1.0, 2.0, 20.0, 100.0], buckets=2)  # log scale: 1, 10, 100
    assert found.counts == (2, 2)
    assert math.isclose(found.edges[1], 10.0)
