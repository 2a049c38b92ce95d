"""The benchmark harness's shared settings: paths, the CPU layout and the command line.

Every benchmark (``python -m bench.<name> [--quick]``) works on its OWN PostgreSQL database
(``marketapp_bench`` on the server of ``DATABASE_URL``) and its own Redis database number
(``BENCH_REDIS_DB``, default 7, flushed at start), never on the development or test data.

CPU on this 2-core machine: whatever is measured (the server, or the engine in-process) runs
on ``SERVER_CORE`` (0); load generators and baselines' clients run on ``LOAD_CORE`` (1).
PostgreSQL and Redis are not pinned (they are shared services); results say so.

This module owns the paths (``ROOT``, ``RESULTS_DIR``, ``DATA_DIR``, ``PYTHON``), the core
layout (``SERVER_CORE``, ``LOAD_CORE``, ``CPU_SHARING``) and ``arg_parser``. The rest of the
harness:

- ``bench.environment``: the bench database and Redis, the environment of every process,
  the machine-wide bench lock, Django set-up and seeded data (user, token, instruments);
- ``bench.procs``: ports, subprocesses, CPU pinning, the web servers under test;
- ``bench.usage``: CPU time and memory of processes, a wall and CPU timer;
- ``bench.stats``: percentiles, summaries, ratios;
- ``bench.report``: machine information, tables, ``bench/results/<name>.json``.

Typical use::

    from bench import common, environment, report
    environment.setup_django()       # env, database, migrate, seed_reference, Redis flush
    ...
    report.write_result("ingest", figures={...}, baseline={...}, ratio=0.8, goal=">= 0.5", notes=[...])
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DATA_DIR = RESULTS_DIR / "data"
PYTHON = sys.executable

SERVER_CORE = 0
LOAD_CORE = 1
CPU_SHARING = (
    f"measured process pinned to core {SERVER_CORE}, load generator / baseline client pinned to core "
    f"{LOAD_CORE}; PostgreSQL and Redis unpinned (shared by both cores); same pinning for ours and the baseline"
)


def arg_parser(description: str) -> argparse.ArgumentParser:
    """The common command line: ``--quick`` for the small variant."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, short durations (make bench-quick)")
    return parser
