"""Run every benchmark in turn (``make bench``; ``make bench-quick`` passes ``--quick``).

Each benchmark runs in its own process (``python -m bench.<name>``), one after the other, so
none steals CPU from another; a summary of the ratios read back from ``bench/results`` ends
the run. A benchmark that crashes makes the exit status 1; a goal not met does not.
``--only ingest,history`` runs a subset.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time

from bench import common, environment

ORDER = ("ingest", "persist", "history", "fanout", "clients", "e2e", "pubsub", "wsauth", "search")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short durations")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args()
    wanted = [n for n in (args.only.split(",") if args.only else ORDER) if n]
    names = [n for n in wanted if importlib.util.find_spec(f"bench.{n}") is not None]
    summary: list[tuple[str, str, float, str]] = []
    failed = []
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        cmd = [common.PYTHON, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])]
        print(f"\n### bench.{name}{' --quick' if args.quick else ''}", flush=True)
        code = subprocess.call(cmd, cwd=common.ROOT, env=environment.bench_env())
        elapsed = time.perf_counter() - t0
        if code != 0:
            failed.append(name)
            summary.append((name, "crashed", elapsed, f"exit {code}"))
            continue
        path = common.RESULTS_DIR / f"{name}{'-quick' if args.quick else ''}.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        summary.append((name, f"ratio={result.get('ratio')} met={result.get('met')}", elapsed, result.get("goal", "")))
    print(f"\n== bench summary ({'quick' if args.quick else 'full'}, {time.perf_counter() - started:.0f} s) ==")
    for name, outcome, elapsed, goal in summary:
        print(f"  {name:<8} {outcome:<28} {elapsed:6.1f} s   goal: {goal}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
