"""The CSV replayer (REPLAY): recorded ticks played back at a chosen speed.

File columns: ``timestamp,symbol,price,size`` and optionally ``day_volume,bid,ask`` (a header
row names them). ``timestamp`` is ISO 8601 (with an offset or ``Z``; naive means UTC) or
epoch milliseconds. ``symbol`` is ``EXCHANGE:SYMBOL`` or a plain symbol. Settings: ``path``,
``speed`` (1 = real time, 10 = ten times faster, 0 = as fast as possible), ``loop`` (start
again at the end) and ``rebase`` (shift timestamps so the first tick is "now", each loop).
The file is read in chunks off the event loop; a malformed row is counted and skipped.
"""

from __future__ import annotations

import asyncio
import csv
import math
import time
from datetime import UTC, datetime
from pathlib import Path

from ingestion.ticks import Tick

from .base import FeedClient, FeedError, FeedStatus

CHUNK_LINES = 5000
COLUMNS = ("timestamp", "symbol", "price", "size", "day_volume", "bid", "ask")


def parse_timestamp_ms(value: str) -> int:
    """Epoch milliseconds from ISO 8601 or an integer of epoch ms."""
    value = value.strip()
    if value.isdigit():
        return int(value)
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _price(value: str | None) -> float:
    price = float(value)  # None raises TypeError, text ValueError: both count as malformed
    if not math.isfinite(price) or price <= 0:
        raise ValueError(f"not a price: {value!r}")
    return price


def _cell(row: list[str], index: int | None) -> str | None:
    """The row's value in an optional column (None when the file or the row lacks it)."""
    return row[index] if index is not None and index < len(row) else None


def _optional_int(value: str | None) -> int | None:
    return int(float(value)) if value not in (None, "") else None


def _optional_float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


class ReplayFeedClient(FeedClient):
    """Plays a CSV of ticks through the same path as a live feed."""

    kind = "replay"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = Path(self.settings.get("path") or "")
        self.speed = float(self.settings.get("speed", 1.0))
        self.loop = bool(self.settings.get("loop", False))
        self.rebase = bool(self.settings.get("rebase", False))
        self.finished = asyncio.Event()
        self.rows_read = 0
        self._subscriptions_version = 0  # bumped on every change, so a playing file sees it
        self._last_ts: int | None = None

    async def _on_subscribe(self, added) -> None:
        self._subscriptions_version += 1

    async def _on_unsubscribe(self, removed) -> None:
        self._subscriptions_version += 1

    def _lookup(self) -> dict[str, int]:
        """Both ``EXCHANGE:SYMBOL`` and plain ``SYMBOL`` (when unambiguous) to instrument ids."""
        table: dict[str, int] = {}
        plain: dict[str, list[int]] = {}
        for sub in self.subscriptions.values():
            table[f"{sub.exchange}:{sub.symbol}".upper()] = sub.instrument_id
            plain.setdefault(sub.symbol.upper(), []).append(sub.instrument_id)
        for symbol, ids in plain.items():
            if len(ids) == 1:
                table.setdefault(symbol, ids[0])
        return table

    async def _chunks(self):
        """(column index by name, lists of CSV rows), read in a worker thread a chunk at a time."""
        handle = await asyncio.to_thread(open, self.path, newline="", encoding="utf-8-sig")
        try:
            header = await asyncio.to_thread(handle.readline)
            fields = [f.strip() for f in header.strip().split(",")]
            if not {"timestamp", "symbol", "price"} <= set(fields):
                raise FeedError(f"{self.path}: header must name timestamp,symbol,price (got {header.strip()!r})")
            columns = {name: fields.index(name) for name in COLUMNS if name in fields}
            while True:
                lines = await asyncio.to_thread(handle.readlines, CHUNK_LINES * 64)
                if not lines:
                    return
                # Lists, not DictReader's dicts (a third of the replayer's time); blank lines go.
                yield columns, [row for row in csv.reader(lines) if row]
        finally:
            await asyncio.to_thread(handle.close)

    async def _run(self) -> None:
        if not self.path.is_file():
            raise FeedError(f"replay file not found: {self.path!s}")
        self.set_status(FeedStatus.STREAMING)
        while True:
            await self._play_once()
            if not self.loop:
                break
        self.finished.set()
        self.set_status(FeedStatus.STOPPED)

    async def _play_once(self) -> None:
        version = self._subscriptions_version
        lookup = self._lookup()
        first_ts: int | None = None
        started = time.monotonic()
        shift = 0
        pending: list[Tick] = []  # emitted together: one queue hand-off per chunk at speed 0
        async for columns, rows in self._chunks():
            i_ts, i_symbol, i_price = columns["timestamp"], columns["symbol"], columns["price"]
            i_size, i_volume = columns.get("size"), columns.get("day_volume")
            i_bid, i_ask = columns.get("bid"), columns.get("ask")
            for row in rows:
                self.rows_read += 1
                try:
                    ts_text = row[i_ts]
                    ts = int(ts_text) if ts_text.isdigit() else parse_timestamp_ms(ts_text)
                    symbol = row[i_symbol].strip().upper()
                    price = _price(_cell(row, i_price))
                    size = _optional_int(_cell(row, i_size))
                    day_volume = _optional_int(_cell(row, i_volume))
                    bid, ask = _optional_float(_cell(row, i_bid)), _optional_float(_cell(row, i_ask))
                except (TypeError, ValueError, IndexError, AttributeError) as exc:
                    self.count_malformed(f"row {self.rows_read}: {exc}", ",".join(row))
                    continue
                if version != self._subscriptions_version:
                    version, lookup = self._subscriptions_version, self._lookup()
                iid = lookup.get(symbol)
                if iid is None:
                    continue
                if first_ts is None:
                    first_ts = ts
                    if self.rebase:
                        # "Now", but never before what the previous pass emitted (speed 0 runs ahead).
                        start_ms = int(time.time() * 1000)
                        if self._last_ts is not None:
                            start_ms = max(start_ms, self._last_ts + 1)
                        shift = start_ms - ts
                if self.speed > 0:
                    due = (ts - first_ts) / 1000 / self.speed - (time.monotonic() - started)
                    if due > 0:
                        await self.emit_many(pending)
                        pending = []
                        await asyncio.sleep(due)
                        if iid not in self.subscriptions:  # unsubscribed while we waited
                            continue
                self._last_ts = ts + shift
                pending.append(Tick(iid, self.code, ts + shift, price, size, day_volume, bid=bid, ask=ask))
            await self.emit_many(pending)
            pending = []
            await asyncio.sleep(0)  # let the engine run between chunks at speed 0
