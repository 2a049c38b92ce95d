"""The embedded mode's background ORM work (the daily rollup) never holds up a shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ingestion.runtime import in_daemon_thread


def test_a_slow_rollup_round_does_not_hold_up_asyncio_run():
    release = threading.Event()

    async def main() -> None:
        pending = in_daemon_thread(lambda: release.wait(60), name="slow-rollup")
        await asyncio.sleep(0.05)
        pending.cancel()  # what stopping the runtime does to the rollup task

    asyncio.run(main())  # the default executor would be joined here: 60 s
    try:
        assert any(t.name == "slow-rollup" and t.is_alive() and t.daemon for t in threading.enumerate())
    finally:
        release.set()


def test_the_result_and_the_error_reach_the_awaiting_task():
    async def main() -> tuple[int, str]:
        value = await in_daemon_thread(lambda: 41 + 1, name="ok")
        with pytest.raises(ZeroDivisionError) as failure:
            await in_daemon_thread(lambda: 1 / 0, name="fails")
        return value, type(failure.value).__name__

    assert asyncio.run(main()) == (42, "ZeroDivisionError")
