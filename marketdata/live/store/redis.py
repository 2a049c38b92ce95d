"""The Redis tick store (stack mode).

Keys are named by instrument id, never by symbol (symbols carry ``&``, ``^``, ``:``):

- ``md:q``           hash  id -> latest quote (JSON)
- ``md:ob``          hash  id -> open 1m bar (JSON)
- ``md:cv``          hash  id -> last cumulative day volume
- ``md:t:{id}``      stream of raw ticks, trimmed by age (MINID)
- ``md:b:{id}``      sorted set of recent closed 1m bars scored by open time, trimmed by age
- ``md:persist``     stream of closed bars for the saver (consumer group ``savers``);
                     entries leave it only once acknowledged after the database commit
- ``md:h:{id}``      stream of the instrument's recent quotes (fields ``s`` seq, ``q`` the
                     ``md:q`` JSON), for ``/ws`` resume: capped at ``LIVE_RESUME_HISTORY_LEN``
                     entries, trimmed to ``LIVE_RESUME_HISTORY_AGE_S`` (entry ids are Redis'
                     clock) and expiring that long after the instrument's last quote
"""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from marketdata.live.types import Bar, Quote, Tick

from .base import (
    BAR_RETENTION_MS,
    TICK_RETENTION_MS,
    PersistEntry,
    QuoteResume,
    StoreBatch,
    TickStore,
    TickStoreState,
    history_limits,
    resume_of,
)

QUOTES = "md:q"
OPEN_BARS = "md:ob"
CUMULATIVE = "md:cv"
PERSIST = "md:persist"
GROUP = "savers"


def tick_key(instrument_id: int) -> str:
    return f"md:t:{instrument_id}"


def bars_key(instrument_id: int) -> str:
    return f"md:b:{instrument_id}"


def history_key(instrument_id: int) -> str:
    return f"md:h:{instrument_id}"


# Instruments per history read: one script call holds Redis for at most this many histories.
HISTORY_READ_CHUNK = 16


# Applies one ``StoreBatch`` (as built by ``_write_document``); a script runs atomically, like
# the MULTI/EXEC it replaces. Numbers that Redis stores as text arrive as strings, so they are
# stored exactly as redis-py would have written them (Lua would reformat floats).
WRITE_SCRIPT = """
local d = cjson.decode(ARGV[1])
local function hset(key, flat)
  for i = 1, #flat, 1000 do
    redis.call('HSET', key, unpack(flat, i, math.min(i + 999, #flat)))
  end
end
if #d.q > 0 then
  hset('md:q', d.q)
  if d.hl > 0 then
    -- The resume history: the same quote JSON, appended in the same atomic step.
    local now = redis.call('TIME')
    local minid = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000) - d.ha)
    for i = 1, #d.q, 2 do
      local key = 'md:h:' .. d.q[i]
      redis.call('XADD', key, 'MAXLEN', d.hl, '*', 's', d.qs[(i + 1) / 2], 'q', d.q[i + 1])
      redis.call('XTRIM', key, 'MINID', minid)
      redis.call('PEXPIRE', key, d.ha)
    end
  end
end
if #d.cv > 0 then hset('md:cv', d.cv) end
for i = 1, #d.gone, 1000 do
  redis.call('HDEL', 'md:ob', unpack(d.gone, i, math.min(i + 999, #d.gone)))
end
for _, b in ipairs(d.cb) do
  local key = 'md:b:' .. b[1]
  redis.call('XADD', 'md:persist', '*', 'bar', b[3])
  redis.call('ZADD', key, b[2], b[3])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. b[4])
end
if #d.ob > 0 then hset('md:ob', d.ob) end
for _, t in ipairs(d.t) do
  local key = 'md:t:' .. t[1]
  local n = #t
  if t[2] ~= '' then
    redis.call('XADD', key, 'MINID', '~', t[2], '*', unpack(t, 3, n))
  else
    redis.call('XADD', key, '*', unpack(t, 3, n))
  end
end
return 1
"""


# The resume read: per instrument, its latest quote and its history entries with a seq above
# the client's, newest first (the walk stops at the first one not above it), none older than
# the age bound. ARGV = age ms, history length, then instrument id, last seen seq, ...
HISTORY_SCRIPT = """
local now = redis.call('TIME')
local minid = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000) - ARGV[1])
local out = {}
for i = 3, #ARGV, 2 do
  local since = tonumber(ARGV[i + 1])
  local missed = {}
  local entries = redis.call('XREVRANGE', 'md:h:' .. ARGV[i], '+', minid, 'COUNT', ARGV[2])
  for _, e in ipairs(entries) do
    local f = e[2]
    if tonumber(f[2]) <= since then break end
    missed[#missed + 1] = f[4]
  end
  out[#out + 1] = redis.call('HGET', 'md:q', ARGV[i])
  out[#out + 1] = missed
end
return out
"""


# Reads (XREADGROUP ... >) or takes over (XAUTOCLAIM) up to COUNT persist entries and returns
# them packed as two strings: the ids joined by commas and a JSON array of the bars. Parsing a
# reply of thousands of nested entries was most of the saver's time in redis-py's parser.
# KEYS[1] = stream; ARGV = mode ("read" | "claim"), group, consumer, count, min idle ms.
TAKE_SCRIPT = """
local entries
if ARGV[1] == 'read' then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], '>')
  if not r then return {'', '[]'} end
  entries = r[1][2]
else
  entries = redis.call('XAUTOCLAIM', KEYS[1], ARGV[2], ARGV[3], ARGV[5], '0-0', 'COUNT', ARGV[4])[2]
end
local ids, bars = {}, {}
for _, e in ipairs(entries) do
  local f = e[2]
  if f then  -- nil: deleted while pending
    for i = 1, #f, 2 do
      if f[i] == 'bar' then
        ids[#ids + 1] = e[1]
        bars[#bars + 1] = f[i + 1]
        break
      end
    end
  end
end
return {table.concat(ids, ','), '[' .. table.concat(bars, ',') .. ']'}
"""
# KEYS[1] = stream; ARGV = group, comma-joined entry ids. Acknowledged entries are also deleted.
ACK_SCRIPT = """
local ids = {}
for id in string.gmatch(ARGV[2], '[^,]+') do ids[#ids + 1] = id end
for i = 1, #ids, 1000 do
  local last = math.min(i + 999, #ids)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids, i, last))
  redis.call('XDEL', KEYS[1], unpack(ids, i, last))
end
return #ids
"""


def _as_dict(item: Bar | Quote) -> dict:
    """``asdict`` of a flat slots dataclass without its recursive copying (a hot path)."""
    return {name: getattr(item, name) for name in item.__slots__}


def _write_document(batch: StoreBatch, history_len: int = 0, history_age_ms: int = 0) -> dict:
    """The script's argument: the batch with its Redis values already encoded."""
    gone: list[int] = []
    closed: list[list] = []
    if batch.closed_bars:
        still_open = {b.instrument_id for b in batch.open_bars}
        gone = list({b.instrument_id for b in batch.closed_bars} - still_open)
        for bar in batch.closed_bars:
            data = orjson.dumps(_as_dict(bar)).decode()
            closed.append([bar.instrument_id, str(bar.ts), data, str(bar.ts - BAR_RETENTION_MS)])
    quotes: list = []
    seqs: list[str] = []
    for q in batch.quotes:
        quotes += (q.instrument_id, orjson.dumps(_as_dict(q)).decode())
        seqs.append(str(q.seq))
    open_bars: list = []
    for b in batch.open_bars:
        open_bars += (b.instrument_id, orjson.dumps(_as_dict(b)).decode())
    cumulative: list = []
    for iid, value in batch.cumulative.items():
        cumulative += (iid, str(value))
    ticks: list[list] = []
    trimmed: set[int] = set()
    for t in batch.ticks:
        iid = t.instrument_id
        # The stream is trimmed by age once per instrument per batch (MINID, approximate).
        if iid in trimmed:
            minid = ""
        else:
            trimmed.add(iid)
            minid = str(t.ts - TICK_RETENTION_MS)
        entry = [iid, minid, "ts", str(t.ts), "p", repr(t.price)]
        if t.size is not None:
            entry += ("s", str(t.size))
        if t.day_volume is not None:
            entry += ("v", str(t.day_volume))
        ticks.append(entry)
    return {
        "q": quotes,
        "qs": seqs,
        "hl": history_len,
        "ha": history_age_ms,
        "cv": cumulative,
        "gone": gone,
        "cb": closed,
        "ob": open_bars,
        "t": ticks,
    }


class RedisTickStore(TickStore):
    """Tick store on Redis; every engine step is one atomic script call (one round trip)."""

    def __init__(
        self,
        url: str,
        *,
        client: aioredis.Redis | None = None,
        history_len: int | None = None,
        history_age_s: float | None = None,
    ) -> None:
        self.url = url
        default_len, default_age_s = history_limits()
        self.history_len = max(0, default_len if history_len is None else history_len)
        # at least a millisecond: PEXPIRE 0 would delete the history as it is written
        self.history_age_ms = max(1, int(1000 * (default_age_s if history_age_s is None else history_age_s)))
        self.redis = client or aioredis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=15, retry_on_timeout=True
        )
        self._group_ready = False
        self._write_script = self.redis.register_script(WRITE_SCRIPT)
        self._take_script = self.redis.register_script(TAKE_SCRIPT)
        self._ack_script = self.redis.register_script(ACK_SCRIPT)
        self._history_script = self.redis.register_script(HISTORY_SCRIPT)

    async def close(self) -> None:
        await self.redis.aclose()

    # --- engine side --------------------------------------------------------------------
    async def write(self, batch: StoreBatch) -> None:
        if not batch:
            return
        # One atomic script call per engine step instead of a MULTI/EXEC of ~1.5 commands per
        # tick: redis-py packs and parses every pipelined command (and its QUEUED reply) in
        # Python, which cost more than the rest of the engine; here the client sends one JSON
        # document and reads one reply, and Redis runs the same commands on its side.
        await self.write_prepared(self.prepare(batch))

    def prepare(self, batch: StoreBatch) -> bytes | None:
        """The script's argument, encoded now (a snapshot of the engine's objects)."""
        if not batch:
            return None
        return orjson.dumps(_write_document(batch, self.history_len, self.history_age_ms))

    async def write_prepared(self, prepared: object) -> None:
        if prepared is not None:
            await self._write_script(args=[prepared])

    async def load_state(self) -> TickStoreState:
        quotes, bars, cum = await self._hgetall_many(QUOTES, OPEN_BARS, CUMULATIVE)
        return TickStoreState(
            quotes={int(k): Quote.from_dict(orjson.loads(v)) for k, v in quotes.items()},
            open_bars={int(k): Bar.from_dict(orjson.loads(v)) for k, v in bars.items()},
            cumulative={int(k): int(v) for k, v in cum.items()},
        )

    async def _hgetall_many(self, *keys: str) -> list[dict]:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return await pipe.execute()

    # --- readers ------------------------------------------------------------------------
    async def latest_quotes(self, instrument_ids: list[int]) -> dict[int, Quote]:
        if not instrument_ids:
            return {}
        values = await self.redis.hmget(QUOTES, instrument_ids)
        return {i: Quote.from_dict(orjson.loads(v)) for i, v in zip(instrument_ids, values, strict=True) if v}

    async def quotes_since(self, since: dict[int, int]) -> dict[int, QuoteResume]:
        items = list(since.items())
        out = {}
        for start in range(0, len(items), HISTORY_READ_CHUNK):
            chunk = items[start : start + HISTORY_READ_CHUNK]
            args: list = [self.history_age_ms, max(1, self.history_len)]
            for instrument_id, last_seen in chunk:
                args += (instrument_id, last_seen)
            reply = await self._history_script(args=args)
            for (instrument_id, last_seen), latest, missed in zip(chunk, reply[0::2], reply[1::2], strict=True):
                out[instrument_id] = resume_of(
                    last_seen,
                    Quote.from_dict(orjson.loads(latest)) if latest else None,
                    (Quote.from_dict(orjson.loads(raw)) for raw in missed),
                )
        return out

    async def recent_bars(self, instrument_id: int, start_ms: int, end_ms: int) -> list[Bar]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(bars_key(instrument_id), start_ms, f"({end_ms}")
        pipe.hget(OPEN_BARS, instrument_id)
        closed, open_raw = await pipe.execute()
        by_ts = {bar.ts: bar for bar in (Bar.from_dict(orjson.loads(raw)) for raw in closed)}
        if open_raw:
            bar = Bar.from_dict(orjson.loads(open_raw))
            if start_ms <= bar.ts < end_ms:
                by_ts[bar.ts] = bar
        return [by_ts[k] for k in sorted(by_ts)]

    async def recent_ticks(self, instrument_id: int, start_ms: int) -> list[Tick]:
        entries = await self.redis.xrange(tick_key(instrument_id), min=start_ms)
        out = []
        for _id, f in entries:
            out.append(
                Tick(
                    instrument_id=instrument_id,
                    provider="",
                    ts=int(f[b"ts"]),
                    price=float(f[b"p"]),
                    size=int(f[b"s"]) if b"s" in f else None,
                    day_volume=int(f[b"v"]) if b"v" in f else None,
                )
            )
        return out

    # --- the persist stream -------------------------------------------------------------
    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(PERSIST, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _with_group(self, fn):
        await self._ensure_group()
        try:
            return await fn()
        except ResponseError as exc:
            # Redis restarted without the stream: recreate the group and try once more.
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False
            await self._ensure_group()
            return await fn()

    @staticmethod
    def _entries(raw) -> list[PersistEntry]:
        out = []
        for entry_id, fields in raw:
            if not fields:  # deleted while pending
                continue
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            out.append(PersistEntry(eid, Bar.from_dict(orjson.loads(fields[b"bar"]))))
        return out

    @staticmethod
    def _packed_entries(reply) -> list[PersistEntry]:
        """Entries from ``TAKE_SCRIPT``'s reply: comma-joined ids and a JSON array of their bars."""
        ids, bars = reply
        if not ids:
            return []
        ids = (ids.decode() if isinstance(ids, bytes) else ids).split(",")
        return [PersistEntry(eid, Bar(**data)) for eid, data in zip(ids, orjson.loads(bars), strict=True)]

    async def persist_read(self, consumer: str, count: int, block_ms: int = 0) -> list[PersistEntry]:
        async def read():
            if not block_ms:  # a script cannot block; a blocking read takes the plain command
                reply = await self._take_script(keys=[PERSIST], args=["read", GROUP, consumer, count, 0])
                return self._packed_entries(reply)
            resp = await self.redis.xreadgroup(GROUP, consumer, {PERSIST: ">"}, count=count, block=block_ms)
            return self._entries(resp[0][1]) if resp else []

        return await self._with_group(read)

    async def persist_claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[PersistEntry]:
        async def claim():
            reply = await self._take_script(keys=[PERSIST], args=["claim", GROUP, consumer, count, min_idle_ms])
            return self._packed_entries(reply)

        return await self._with_group(claim)

    async def persist_ack(self, entry_ids: list[str]) -> None:
        if not entry_ids:
            return
        # One argument of joined ids: packing thousands of separate arguments cost more than Redis' work.
        await self._ack_script(keys=[PERSIST], args=[GROUP, ",".join(entry_ids)])

    async def persist_lag(self) -> dict:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(PERSIST)
        pipe.xrange(PERSIST, count=1)
        length, first = await pipe.execute()
        oldest = orjson.loads(first[0][1][b"bar"])["ts"] if first else None
        return {"pending": int(length), "oldest_ms": oldest}
