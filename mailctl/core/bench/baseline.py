"""Bench baselines: reading a saved `mailctl bench --json` result and finding regressions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mailctl.core.bench.models import BenchResult, RegressionCheck
from mailctl.errors import InputDataError
from mailctl.inputs import BASELINE_LIMIT, read_file

__all__ = ["check_regression", "load_baseline"]


def load_baseline(path: Path, *, what: str = "baseline") -> dict[str, Any]:
    """Read a saved `mailctl bench --json` result (the envelope or its data), at most
    BASELINE_LIMIT bytes of a regular file. Raises NoInputError, InputDataError."""
    raw = read_file(
        path,
        what=what,
        limit=BASELINE_LIMIT,
        hint="a 'mailctl bench --json' result is a few KiB: check the path",
    )
    try:
        loaded = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise InputDataError(f"{path}: the baseline is not JSON: {err}") from err
    data = loaded.get("data", loaded) if isinstance(loaded, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise InputDataError(
            f"{path}: not a 'mailctl bench --json' result (no data.runs list)",
            hint="save one with: mailctl bench --json > baseline.json",
        )
    return data


def check_regression(
    result: BenchResult, baseline: dict[str, Any], max_regression: float
) -> list[RegressionCheck]:
    """Compare QPS (lower is worse) and p99 (higher is worse) per mode with the baseline.

    A mode missing from either side is not compared. Raises InputDataError when no mode
    can be compared at all.
    """
    checks: list[RegressionCheck] = []
    for saved in baseline.get("runs", []):
        if not isinstance(saved, dict):
            continue
        run = next((r for r in result.runs if r.mode.value == saved.get("mode")), None)
        if run is None:
            continue
        saved_qps = saved.get("qps")
        if isinstance(saved_qps, (int, float)) and saved_qps > 0:
            change = (saved_qps - run.qps) / saved_qps
            checks.append(
                RegressionCheck(
                    run.mode.value, "qps", float(saved_qps), round(run.qps, 1), change,
                    change > max_regression,
                )
            )  # fmt: skip
        latency = saved.get("latency")
        saved_p99 = latency.get("p99_ms") if isinstance(latency, dict) else None
        if isinstance(saved_p99, (int, float)) and saved_p99 > 0 and run.latency is not None:
            current = run.latency.p99 * 1000.0
            change = (current - saved_p99) / saved_p99
            checks.append(
                RegressionCheck(
                    run.mode.value, "p99_ms", float(saved_p99), round(current, 3), change,
                    change > max_regression,
                )
            )  # fmt: skip
    if not checks:
        raise InputDataError(
            "the baseline has no run of the mode(s) benchmarked now",
            hint="record the baseline with the same --mode or --compare",
        )
    return checks
