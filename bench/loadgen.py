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
RFC 6455 client (``bench.wsclient``). The measured phase (``Measure``, here) leaves Python:
the sockets go to a C loop (``bench/measure.c``, built and loaded by ``bench.native``) that
reads them with epoll, walks the frames in place, and finds each data message by its literal
head, reading its symbol, ``seq`` and ``sent_ns`` (or ``close``) up to its closing brace; no
allocation and no Python per message. Batched frames (``{"message_type":"batch",
"messages":[...]}``, asked for with ``?batch_ms=N`` in ``path``) carry the same message
bytes, so the same scan counts them. The loop polls every ``poll_ms`` (default 1 ms) so
reads come in batches; a message's receive time is taken when its chunk is read, so the
figures include at most that much batching delay (pessimistic for the server).
History: the same loop in Python (one reused ``readv`` buffer, C-level regular expressions
over whole chunks) cost about 4.1 us of a core per message at 200,000 messages/s, 86 % of
it in Python; at that rate the four processes and the publisher filled their core before
the server filled its own.

Config keys: ``host``, ``port``, ``path`` (with ``?token=``), ``clients`` (a list of symbol
lists, one per connection), ``out``, ``mode`` (``fanout``: latency from ``sent_ns``;
``e2e``: every (symbol, close, receive ns) is kept; ``idle``: nothing is read),
``connect_concurrency``, ``poll_ms``.

``LoadGenerators`` is the parent side: it starts these processes and merges what they record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import sys
from pathlib import Path

import orjson

from bench.native import Native, build
from bench.wsclient import Client, mask_frame, open_client, raise_nofile


def _read(path: str) -> bytes:
    # Small files, read once outside the measured window: blocking is harmless here.
    return Path(path).read_bytes()


def _write(path: str, data: bytes) -> None:
    Path(path).write_bytes(data)


class Measure:
    """The measured phase: the clients' sockets handed from asyncio to the C loop (``bench.native``)."""

    def __init__(self, clients: list[Client], mode: str, poll_s: float) -> None:
        self.clients = clients
        self.poll_ns = int(poll_s * 1e9)
        symbols = sorted({s for c in clients for s in c.symbols})
        self.native = Native(mode, len(clients), symbols)
        for i, c in enumerate(clients):
            c.transport.pause_reading()
            fd = c.transport.get_extra_info("socket").fileno()
            self.native.add(fd, i, bytes(c.buf))
            c.buf.clear()

    def reset(self) -> None:
        self.native.reset()

    @property
    def received(self) -> int:
        return self.native.received

    def run(self, control_fd: int, on_line) -> None:
        """Measure until ``on_line`` (called with each command line) returns False or stdin closes."""
        pending = b""
        while True:
            self.native.run(control_fd, self.poll_ns)
            got = os.read(control_fd, 4096)
            if not got:  # the parent is gone
                return
            pending += got
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if on_line(line.strip()) is False:
                    return

    def summary(self, errors: list[str], failed: int) -> dict:
        native = self.native
        index = [c.index for c in self.clients]
        return {
            "opened": len(self.clients),
            "failed": failed,
            "still_open": len(self.clients) - native.closed,
            "received": native.received,
            "unknown_symbol": native.unknown,
            "last_ns": native.last_ns,
            "errors": (errors + native.errors())[:20],
            # per client: {symbol: [last seq, messages received]}
            "seqs": native.seqs(),
            "e2e": [(now, index[i], symbol, close) for now, i, symbol, close in native.e2e_rows()],
        }


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
    _write(out + ".lat", measure.native.latencies_ns().tobytes())
    _write(out + ".json", orjson.dumps(measure.summary(errors, len(results) - len(clients))))
    measure.native.close()
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
        build()  # once here, not by every process at once
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
        merged = {
            "opened": 0,
            "failed": 0,
            "still_open": 0,
            "received": 0,
            "unknown_symbol": 0,
            "errors": [],
            "seqs": [],
            "e2e": [],
        }
        lat = []
        for out in self.outs:
            part = orjson.loads(_read(out + ".json"))
            for key in ("opened", "failed", "still_open", "received", "unknown_symbol"):
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
