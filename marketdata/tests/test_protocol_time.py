"""Timestamps on the wire: UTC ISO 8601, millisecond precision, a ``Z``, exact for any epoch ms."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from marketdata.live import protocol
from marketdata.live.protocol import iso_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def by_arithmetic(ts_ms: int) -> str:
    """Integer arithmetic on a timedelta: no float in the way."""
    return (EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("ts_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_705_312_800_000, "2024-01-15T10:00:00.000Z"),
        (1_705_312_800_999, "2024-01-15T10:00:00.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-1000, "1969-12-31T23:59:59.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),  # a float division would say .998
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
    ],
)
def test_known_instants(ts_ms, text):
    assert iso_ms(ts_ms) == text


def test_any_instant_equals_integer_arithmetic_and_the_second_cache_stays_bounded():
    rng = random.Random(5)
    values = [rng.randrange(-62_135_596_800_000, 253_402_300_800_000) for _ in range(20_000)]
    values += [1_705_312_800_000 + rng.randrange(60_000) for _ in range(20_000)]  # a minute of ticks
    assert [iso_ms(v) for v in values] == [by_arithmetic(v) for v in values]
    assert len(protocol._ISO_SECONDS) <= protocol._ISO_SECONDS_MAX
