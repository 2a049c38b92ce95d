"""Django's connection pool gives every slot back: ``pool_cases.py`` in a child pytest with ``DB_POOL=true``.

The suite runs with the default settings (the pool off); a child pytest with the pool on runs
the pool's own cases against the same test database and Redis, so they run in every
``make test`` instead of being skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


@pytest.mark.slow
def test_the_pooled_connection_cases_pass_with_django_s_pool_on():
    env = {**os.environ, "DB_POOL": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "marketdata/tests/pool_cases.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout, done.stdout[-2000:]
