"""A small HTTP/1.1 keep-alive load generator on raw asyncio (no client library to pay for).

``python -m bench.httpload --port P --path /x --concurrency 16 --duration 20 --warmup 2
[--header "Authorization: Bearer ..."]`` runs ``concurrency`` connections, each sending the
next GET as soon as the previous response has been read in full, and prints one JSON line:
requests completed in the measured window (after the warm-up), requests per second, latency
percentiles (ms), non-200 responses, and the body size of the last response.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one response; returns (status, body bytes). Handles Content-Length and chunked."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = None
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        size = 0
        while True:
            chunk_len = int((await reader.readline()).split(b";", 1)[0].strip(), 16)
            if chunk_len == 0:
                await reader.readline()
                return status, size
            await reader.readexactly(chunk_len + 2)
            size += chunk_len
    if length is None:
        raise ValueError("response without Content-Length or chunked encoding")
    await reader.readexactly(length)
    return status, length


async def _worker(host, port, request, start_at, stop_at, latencies, counters) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    perf = time.perf_counter
    try:
        while True:
            t0 = perf()
            if t0 >= stop_at:
                return
            writer.write(request)
            status, size = await _read_response(reader)
            t1 = perf()
            counters["last_size"] = size
            if t0 >= start_at:
                latencies.append(t1 - t0)
                if status != 200:
                    counters["errors"] += 1
                    counters.setdefault("statuses", {}).setdefault(status, 0)
                    counters["statuses"][status] += 1
    finally:
        writer.close()


async def run(
    *, host: str, port: int, path: str, headers: list[str], concurrency: int, duration: float, warmup: float
) -> dict:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive", *headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    counters = {"errors": 0, "last_size": 0}
    now = time.perf_counter()
    start_at, stop_at = now + warmup, now + warmup + duration
    await asyncio.gather(
        *(_worker(host, port, request, start_at, stop_at, latencies, counters) for _ in range(concurrency))
    )
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return round(latencies[min(n - 1, int(p / 100 * n))] * 1000, 3) if n else float("nan")

    return {
        "requests": n,
        "req_per_s": round(n / duration, 1),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(latencies[-1] * 1000, 3) if n else float("nan"),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if n else float("nan"),
        "non_200": counters["errors"],
        "non_200_statuses": counters.get("statuses", {}),
        "body_bytes": counters["last_size"],
        "concurrency": concurrency,
        "duration_s": duration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    result = asyncio.run(
        run(
            host=args.host,
            port=args.port,
            path=args.path,
            headers=args.header,
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
        )
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
