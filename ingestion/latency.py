"""A latency histogram with fixed buckets: cheap to observe, plain data to publish.

The engine observes one value per batch; the metrics endpoint turns the counts into a
Prometheus histogram, in this process or from another process's published snapshot (the
counts are a JSON list), so the buckets are fixed here for every process alike.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Seconds: 0.5 ms .. 10 s. A batch is normally a few milliseconds; the top buckets catch a
# store write held up by Redis trouble (the engine retries until the write goes through).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass
class LatencyHistogram:
    """Counts of observations per bucket (``counts[i]`` for values <= ``LATENCY_BUCKETS_S[i]``, the last for +Inf)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total_s: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation (not cumulative: each value lands in one bucket)."""
        self.counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.total_s += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def as_dict(self) -> dict:
        """``{"counts": [...], "sum": s}``, JSON-ready."""
        return {"counts": list(self.counts), "sum": self.total_s}
