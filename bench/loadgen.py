"""WebSocket load-generator process for ``bench.fanout`` and ``bench.e2e``.

``python -m bench.loadgen CONFIG.json`` opens the connections described in the config, each
subscribing to its symbols, prints ``READY <open> <failed>`` on stdout once every connection
has its ``Subscribed to`` replies, then counts every ``data`` message until a line ``STOP``
arrives on stdin (``MARK`` resets the counters: the measured window starts; ``COUNT`` prints
``COUNT <data messages so far>``). It then writes
``<out>.json`` (per client and symbol: last seq and messages received; errors) and
``<out>.lat`` (int64 latencies in ns, fanout mode) and exits.

Built so that the server under test, not the load generator, is the bottleneck: on this
machine four load generators and the publisher share one core and must take 200,000
messages per second. Set-up (handshake, subscribe, replies) runs on asyncio with a minimal
RFC 6455 client (``bench.wsclient``). The measured phase (``Measure``, here) leaves asyncio:
one ``epoll`` loop reads every socket into one reused buffer (``readv``: no allocation per
read), walks the frame headers, and extracts symbols, seqs and ``sent_ns`` from whole chunks
with literal-prefixed C-level regular expressions, never a JSON parser per message; the
``sent_ns`` values are kept as found and turned into latencies after the run. Batched frames
(``{"message_type":"batch","messages":[...]}``, asked for with ``?batch_ms=N`` in ``path``)
carry the same message bytes, so the same scans count them. The loop polls every ``poll_ms``
(default 1 ms) so reads come in batches; a message's receive time is taken when its chunk is
read, so the figures include at most that much batching delay (pessimistic for the server).
py-spy of the fan-out load: a per-message ``[^}]*?`` pattern took 40 % of the process and
``os.read(fd, 1 MiB)`` (an mmap per call) 14 %; both gone, CPU per message fell by a third.

Config keys: ``host``, ``port``, ``path`` (with ``?token=``), ``clients`` (a list of symbol
lists, one per connection), ``out``, ``mode`` (``fanout``: latency from ``sent_ns``;
``e2e``: every (symbol, close, receive ns) is kept; ``idle``: nothing is read),
``connect_concurrency``, ``poll_ms``.

``LoadGenerators`` is the parent side: it starts these processes and merges what they record.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import select
import struct
import sys
import time
from pathlib import Path

import orjson

from bench.wsclient import Client, mask_frame, open_client, raise_nofile, walk_frames

# Data messages start with these keys (marketdata.live.protocol.quote_payload); snapshots do not match.
# A batch frame ({"message_type":"batch","messages":[...]}) holds the same messages, byte for byte,
# so the same searches find them there. Each pattern starts with a literal (a fast C scan); the
# per-message fields are found by separate scans and paired by position, which holds when the
# chunk has only data messages (the measured phase); otherwise the slower anchored patterns pair them.
_DATA_SYMBOL = re.compile(rb'\{"message_type":"data","symbol":"([^"]*)"')
_SEQ = re.compile(rb'"seq":(\d+)')
_CLOSE = re.compile(rb'"close":([-0-9.eE]+)')
_SENT_NS = re.compile(rb'"sent_ns":(\d+)\}')
_SYMBOL_SEQ = re.compile(rb'\{"message_type":"data","symbol":"([^"]*)"[^}]*?"seq":(\d+)')
_SYMBOL_CLOSE = re.compile(rb'\{"message_type":"data","symbol":"([^"]*)"[^}]*?"close":([-0-9.eE]+)')
_DATA_HEAD = b'{"message_type":"data","symbol":"'
_READ_BYTES = 1 << 20


def one_text_frame(buf: bytearray) -> bool:
    """True when ``buf`` holds exactly one complete, unfragmented text frame (7- or 16-bit length)."""
    n = len(buf)
    if n < 2 or buf[0] != 0x81:
        return False
    length = buf[1]
    if length < 126:
        return n == 2 + length
    return length == 126 and n >= 4 and n == 4 + ((buf[2] << 8) | buf[3])


def _read(path: str) -> bytes:
    # Small files, read once outside the measured window: blocking is harmless here.
    return Path(path).read_bytes()


def _write(path: str, data: bytes) -> None:
    Path(path).write_bytes(data)


class Measure:
    """The measured phase: an epoll loop over the clients' sockets (asyncio no longer reads them)."""

    def __init__(self, clients: list[Client], mode: str, poll_s: float) -> None:
        self.clients = clients
        self.mode = mode
        self.poll_s = poll_s
        self.by_fd: dict[int, Client] = {}
        self.latencies: list = []  # (receive ns, [sent_ns as bytes...]) per chunk (fanout); parsed after the run
        self.e2e: list[tuple[int, int, list]] = []  # (receive ns, client index, [(symbol, close)...])
        self.received = 0
        self.last_ns = 0
        self.closed = 0
        self.errors: list[str] = []
        self.ep = select.epoll()
        for c in clients:
            c.transport.pause_reading()
            fd = c.transport.get_extra_info("socket").fileno()
            self.by_fd[fd] = c
            self.ep.register(fd, select.EPOLLIN)

    def reset(self) -> None:
        self.latencies = []
        self.e2e = []
        self.received = 0
        self.last_ns = 0
        for c in self.clients:
            c.counts.clear()
            c.last.clear()

    def latencies_ns(self):
        """Every latency of the measured window, int64 ns (parsed here, after the run, not while reading)."""
        import numpy as np

        if not self.latencies:
            return np.zeros(0, dtype=np.int64)
        now = np.concatenate([np.full(len(sent), at, dtype=np.int64) for at, sent in self.latencies])
        sent = np.array([int(v) for _, part in self.latencies for v in part], dtype=np.int64)
        return now - sent

    def take_one(self, c: Client, chunk: bytes, now: int) -> bool:
        """One fan-out data message (symbol, seq, sent_ns) by plain searches: about half the cost of the scans.

        False (nothing recorded) when the message is not laid out as the publisher writes it.
        """
        start = chunk.find(_DATA_HEAD) + len(_DATA_HEAD)
        at_seq = chunk.rfind(b'"seq":')
        at_sent = chunk.find(b',"sent_ns":', at_seq)
        if at_seq < start or at_sent < 0:
            return False
        seq = chunk[at_seq + 6 : at_sent]
        sent = chunk[at_sent + 11 : chunk.find(b"}", at_sent)]
        if not (seq.isdigit() and sent.isdigit()):
            return False
        symbol = chunk[start : chunk.find(b'"', start)]
        self.received += 1
        self.last_ns = now
        c.counts[symbol] += 1
        c.last[symbol] = seq
        self.latencies.append((now, (sent,)))
        return True

    def run(self, control_fd: int, on_line) -> None:
        # No garbage collection while measuring: every chunk's timestamps are kept (hundreds of
        # thousands of small containers, no cycles), and a full collection walking them stalled
        # the reads for 50-150 ms, which the clients then reported as server latency.
        gc.disable()
        try:
            self._run(control_fd, on_line)
        finally:
            gc.enable()

    def _run(self, control_fd: int, on_line) -> None:
        ep = self.ep
        # One read buffer for every socket: os.read(fd, 1 MiB) would allocate (mmap) 1 MiB per call.
        space = bytearray(_READ_BYTES)
        view = memoryview(space)
        readv = os.readv
        ep.register(control_fd, select.EPOLLIN)
        pending = b""
        fanout = self.mode == "fanout"
        e2e = self.mode == "e2e"
        while True:
            for fd, _ in ep.poll(1.0):
                if fd == control_fd:
                    got = os.read(control_fd, 4096)
                    if not got:  # the parent is gone
                        return
                    pending += got
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        if on_line(line.strip()) is False:
                            return
                    continue
                c = self.by_fd[fd]
                try:
                    got = readv(fd, (space,))
                except BlockingIOError:
                    continue
                except OSError as exc:
                    got = 0
                    self.errors.append(f"client {c.index}: {exc!r}")
                if not got:
                    ep.unregister(fd)
                    self.closed += 1
                    continue
                now = time.time_ns()
                buf = c.buf
                buf += view[:got]
                if one_text_frame(buf):  # the common case at moderate rates: skip the frame walk
                    chunk = bytes(buf)
                    buf.clear()
                else:
                    end, control = walk_frames(buf)
                    if not end:
                        continue
                    chunk = bytes(buf[:end])
                    del buf[:end]
                    for opcode, payload in control:
                        if opcode == 9:
                            os.write(fd, mask_frame(0xA, payload))
                        elif opcode == 8:
                            self.errors.append(f"client {c.index}: closed by server {payload[:2].hex()}")
                if fanout and chunk.count(_DATA_HEAD) == 1 and self.take_one(c, chunk, now):
                    continue
                symbols = _DATA_SYMBOL.findall(chunk)
                if not symbols:
                    continue
                self.received += len(symbols)
                self.last_ns = now
                c.counts.update(symbols)
                seqs = _SEQ.findall(chunk)
                if len(seqs) == len(symbols):
                    c.last.update(zip(symbols, seqs, strict=True))
                else:
                    c.last.update(_SYMBOL_SEQ.findall(chunk))
                if fanout:
                    sent = _SENT_NS.findall(chunk)
                    if sent:
                        self.latencies.append((now, sent))
                elif e2e:
                    closes = _CLOSE.findall(chunk)
                    pairs = list(zip(symbols, closes, strict=True)) if len(closes) == len(symbols) else None
                    self.e2e.append((now, c.index, pairs or _SYMBOL_CLOSE.findall(chunk)))
            if self.poll_s:
                time.sleep(self.poll_s)


async def main(config_path: str) -> None:
    raise_nofile()
    cfg = json.loads(_read(config_path))
    mode = cfg.get("mode", "fanout")
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    gate = asyncio.Semaphore(int(cfg.get("connect_concurrency", 50)))
    results = await asyncio.gather(
        *(open_client(loop, i, symbols, cfg, errors, gate) for i, symbols in enumerate(cfg["clients"]))
    )
    clients = [c for c in results if c is not None and not c.lost]
    measure = Measure(clients, mode, float(cfg.get("poll_ms", 1.0)) / 1000)
    print(f"READY {len(clients)} {len(results) - len(clients)}", flush=True)

    def on_line(line: bytes):
        if line == b"MARK":
            measure.reset()
            print("MARKED", flush=True)
            return None
        if line == b"COUNT":
            print(f"COUNT {measure.received}", flush=True)
            return None
        return False if line in (b"STOP", b"") else None

    measure.run(sys.stdin.fileno(), on_line)
    out = cfg["out"]
    _write(out + ".lat", measure.latencies_ns().tobytes())
    summary = {
        "opened": len(clients),
        "failed": len(results) - len(clients),
        "still_open": len(clients) - measure.closed,
        "received": measure.received,
        "last_ns": measure.last_ns,
        "errors": (errors + measure.errors)[:20],
        # per client: {symbol: [last seq, messages received]}
        "seqs": [{k.decode(): [int(c.last.get(k, 0)), n] for k, n in c.counts.items()} for c in clients],
        "e2e": [(now, i, s.decode(), v.decode()) for now, i, found in measure.e2e for s, v in found],
    }
    _write(out + ".json", orjson.dumps(summary))
    for c in clients:
        with contextlib.suppress(Exception):
            c.transport.resume_reading()
            c.transport.write(mask_frame(0x8, struct.pack("!H", 1000)))
            c.transport.close()
    await asyncio.sleep(0.2)
    print("DONE", flush=True)


# --- the parent side -------------------------------------------------------------------------------
class LoadGenerators:
    """Several load-generator processes on one core, driven from an asyncio parent.

    ``await start(...)`` spreads the clients over ``processes`` processes and waits for every
    ``READY``; ``await mark()`` starts the measured window; ``await stop()`` collects each
    process's summary and latencies.
    """

    def __init__(self, *, name: str, host: str, port: int, path: str, mode: str, core: int | None) -> None:
        self.name = name
        self.host, self.port, self.path = host, port, path
        self.mode = mode
        self.core = core
        self.procs: list[asyncio.subprocess.Process] = []
        self.outs: list[str] = []
        self.opened = 0
        self.failed = 0

    def pids(self) -> dict[str, int]:
        """``{"loadgen-<i>": pid}`` of the running processes (for ``bench.usage.CpuWindow``)."""
        return {f"loadgen-{i}": proc.pid for i, proc in enumerate(self.procs)}

    async def start(self, clients: list[list[str]], *, processes: int, within: float = 180.0) -> None:
        from bench import common, procs

        common.DATA_DIR.mkdir(parents=True, exist_ok=True)
        size = -(-len(clients) // processes)
        for i in range(processes):
            part = clients[i * size : (i + 1) * size]
            if not part:
                break
            out = str(common.DATA_DIR / f"{self.name}-{i}")
            cfg = {"host": self.host, "port": self.port, "path": self.path, "clients": part, "out": out}
            cfg["mode"] = self.mode
            _write(out + ".cfg.json", json.dumps(cfg).encode())
            cmd = [*procs.taskset_prefix(self.core), common.PYTHON, "-m", "bench.loadgen", out + ".cfg.json"]
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(common.ROOT)
            )
            self.procs.append(proc)
            self.outs.append(out)
        async with asyncio.timeout(within):
            for proc in self.procs:
                line = (await proc.stdout.readline()).decode().split()
                if not line or line[0] != "READY":
                    raise RuntimeError(f"load generator failed to start: {line}")
                self.opened += int(line[1])
                self.failed += int(line[2])

    async def mark(self) -> None:
        """Forget what arrived so far: the measured window starts now."""
        for proc in self.procs:
            proc.stdin.write(b"MARK\n")
            await proc.stdin.drain()
        for proc in self.procs:
            await proc.stdout.readline()

    async def received(self) -> int:
        """Data messages received so far in the measured window, all processes."""
        for proc in self.procs:
            proc.stdin.write(b"COUNT\n")
            await proc.stdin.drain()
        total = 0
        for proc in self.procs:
            total += int((await proc.stdout.readline()).split()[1])
        return total

    async def settle(self, *, quiet: float, within: float) -> float:
        """Wait until nothing has arrived for ``quiet`` s (or ``within`` s passed); returns the seconds waited.

        After the publisher stops, a server that fell behind still delivers: its clients' final
        prices arrive late, not never, and must not be counted as lost.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        last = await self.received()
        while loop.time() - started < within:
            await asyncio.sleep(quiet)
            now = await self.received()
            if now == last:
                break
            last = now
        return loop.time() - started

    async def stop(self, within: float = 120.0) -> dict:
        """Stop every process; returns the merged summary (latencies as an int64 numpy array, ns)."""
        import numpy as np

        for proc in self.procs:
            proc.stdin.write(b"STOP\n")
            await proc.stdin.drain()
        async with asyncio.timeout(within):
            for proc in self.procs:
                await proc.stdout.readline()
                await proc.wait()
        merged = {"opened": 0, "failed": 0, "still_open": 0, "received": 0, "errors": [], "seqs": [], "e2e": []}
        lat = []
        for out in self.outs:
            part = orjson.loads(_read(out + ".json"))
            for key in ("opened", "failed", "still_open", "received"):
                merged[key] += part[key]
            merged["last_ns"] = max(merged.get("last_ns", 0), part["last_ns"])
            merged["errors"] += part["errors"]
            merged["seqs"] += part["seqs"]
            merged["e2e"] += part["e2e"]
            lat.append(np.fromfile(out + ".lat", dtype=np.int64))
            for suffix in (".json", ".lat", ".cfg.json"):
                with contextlib.suppress(OSError):
                    os.remove(out + suffix)
        merged["latencies_ns"] = np.concatenate(lat) if lat else np.zeros(0, dtype=np.int64)
        self.procs = []
        return merged

    async def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self.procs = []


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
