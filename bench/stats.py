"""Statistics of benchmark figures: percentiles, a latency summary and ours/baseline ratios."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of already sorted values, nearest-rank with interpolation."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo))


def summarize(values: Iterable[float], *, scale: float = 1.0, digits: int = 3) -> dict[str, float | int]:
    """count, mean, p50, p90, p99, max of ``values`` times ``scale`` (e.g. 1000 for s -> ms)."""
    data = sorted(v * scale for v in values)
    if not data:
        return {"count": 0}
    return {
        "count": len(data),
        "mean": round(statistics.fmean(data), digits),
        "p50": round(percentile(data, 50), digits),
        "p90": round(percentile(data, 90), digits),
        "p99": round(percentile(data, 99), digits),
        "max": round(data[-1], digits),
    }


def ratio(ours: float, baseline: float, *, higher_is_better: bool = True) -> float:
    """ours / baseline for throughputs (baseline / ours for latencies), rounded to 3 digits."""
    if not ours or not baseline:
        return 0.0
    return round(ours / baseline if higher_is_better else baseline / ours, 3)
