"""`mailctl bench`: load an SMTP server or the embedded sink; measure QPS, latency and phases.

`run` validates a request and runs the modes; `models` (request and result types), `target`
(loopback rule, embedded sink), `limits` (descriptor budget), `recorder` (schedule, samples:
the session pool's feed and observer), `modes` (the modes as core/pool configurations) and
`baseline` (regression checks) are its parts.
"""

from mailctl.core.bench.baseline import check_regression, load_baseline
from mailctl.core.bench.models import (
    DEFAULT_RECIPIENT,
    DEFAULT_SENDER,
    PHASES,
    BenchMode,
    BenchRequest,
    BenchResult,
    Progress,
    RegressionCheck,
    RegressionReport,
    RunResult,
    Samples,
    SinkSpec,
    Target,
    Workload,
    build_message,
    load_message,
)
from mailctl.core.bench.run import run_bench

__all__ = [
    "DEFAULT_RECIPIENT",
    "DEFAULT_SENDER",
    "PHASES",
    "BenchMode",
    "BenchRequest",
    "BenchResult",
    "Progress",
    "RegressionCheck",
    "RegressionReport",
    "RunResult",
    "Samples",
    "SinkSpec",
    "Target",
    "Workload",
    "build_message",
    "check_regression",
    "load_baseline",
    "load_message",
    "run_bench",
]
