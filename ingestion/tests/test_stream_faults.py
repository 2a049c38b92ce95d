"""Provider streams in real Celery worker processes: start/stop over the API, bad arguments, a killed worker.

Two workers consume the ``streams`` queue (and ``default``, for the short tasks) against the
test PostgreSQL database and Redis, with a 3-second lease so takeovers are quick. The worker
kill runs last: it takes one of the module's workers down.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import datetime

import pytest
import redis
from django.conf import settings

from ingestion import streams
from ingestion.streams.keys import lease_key, status_key
from ingestion.tasks import persist_bars, run_stream
from ingestion.tests.celery_workers import CeleryWorker, sim_provider, wait_for
from marketapp.celery import app
from marketdata.models import PriceHistoryIntraday

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def rdb():
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def workers(django_db_setup, tmp_path_factory, rdb):
    """Two stream workers, started on an empty Redis database (the broker's queues live there too)."""
    rdb.flushdb()
    log_dir = tmp_path_factory.mktemp("celery")
    pair = [CeleryWorker(name, log_dir, queues="streams,default") for name in ("streams-a", "streams-b")]
    try:
        for worker in pair:
            worker.wait_ready()
        yield pair
    finally:
        for worker in pair:
            worker.stop()
        rdb.flushdb()


@pytest.fixture(autouse=True)
def stream_keys(rdb, settings):
    """No stream state left over between tests (the broker's keys stay: the workers use them)."""
    settings.STREAM_START_DEDUPE_S = 10
    yield
    for key in rdb.scan_iter("stream:*"):
        rdb.delete(key)


def _status(client, provider) -> dict:
    response = client.get(f"/providers/{provider.pk}/status")
    assert response.status_code == 200
    return response.json()


def _streaming(status: dict) -> bool:
    return bool(status["running"] and status["ticks_per_second"] and status["last_tick_at"])


def _when(condition, value):
    return value if condition(value) else None


def test_start_status_and_stop_through_the_api_with_a_real_worker(
    workers, rdb, api_client, user_api_client, admin_api_client
):
    provider = sim_provider()
    base = f"/providers/{provider.pk}"
    for client, code in [(api_client, 401), (user_api_client, 403)]:
        assert client.post(f"{base}/start").status_code == code
        assert client.post(f"{base}/stop").status_code == code
        assert client.get(f"{base}/status").status_code == code
    assert rdb.keys("stream:*") == []  # refused requests changed nothing
    assert admin_api_client.post("/providers/999999/start").status_code == 404

    started = admin_api_client.post(f"{base}/start")
    assert started.status_code == 202
    assert started.json()["state"] in {"starting", "running"}
    assert started.json()["desired"] is True

    status = wait_for(lambda: _when(_streaming, _status(admin_api_client, provider)), 30, "ticks in the status")
    assert status["state"] == "running"
    node, pid = status["worker"].rsplit(":", 1)
    assert node in {w.node for w in workers}
    assert int(pid) == status["pid"]
    assert any(w.owns(status["pid"]) for w in workers)
    assert status["ticks_per_second"] > 0
    assert datetime.fromisoformat(status["last_tick_at"]).timestamp() > time.time() - 10
    assert status["clients"][0]["status"] == "streaming"

    stopped = admin_api_client.post(f"{base}/stop")
    assert stopped.status_code == 202
    assert stopped.json()["desired"] is False
    wait_for(lambda: not _status(admin_api_client, provider)["running"], 15, "the stream to stop")
    assert rdb.get(lease_key("SIM")) is None  # released
    final = _status(admin_api_client, provider)
    assert (final["state"], final["stop_reason"]) == ("stopped", "stopped by an operator")
    holder_log = next(w for w in workers if w.node == node).text()
    assert f"stream SIM: stopped as {status['worker']} (stopped by an operator)" in holder_log


def _failure(result) -> str:
    """Wait for a task to fail in the worker and return its error (results of ignored tasks too)."""
    outcome = app.AsyncResult(result.id)
    wait_for(lambda: outcome.state in {"FAILURE", "SUCCESS"}, 20, f"task {result.id} to finish")
    assert outcome.state == "FAILURE", outcome.result
    return f"{type(outcome.result).__name__}: {outcome.result}"


def test_tasks_given_bad_arguments_fail_clearly_without_writes(workers, rdb):
    from instruments.tests.factories import InstrumentFactory
    from marketdata.live.store import StoreBatch, get_tick_store
    from marketdata.live.types import Bar

    assert _failure(run_stream.delay("NOPE")) == "StreamError: Unknown provider code 'NOPE'"
    assert "must be a provider code" in _failure(run_stream.delay(42))
    assert rdb.keys("stream:lease:*") == []  # no lease taken

    instrument = InstrumentFactory()
    store = get_tick_store()
    minute = int(time.time() // 60 * 60_000) - 120_000
    bar = Bar(instrument.id, minute, 10.0, 11.0, 9.0, 10.5, volume=100, provider="SIM")

    async def put() -> None:
        await store.write(StoreBatch(closed_bars=[bar]))
        await store.close()

    asyncio.run(put())
    # Ours is in the backlog (a stream of an earlier test winding down may add its own meanwhile).
    backlog = [entry_id for entry_id, _ in rdb.xrange("md:persist")]
    assert backlog
    for bad in ("many", 0, -1):
        error = _failure(persist_bars.delay(batch_size=bad))
        assert error.startswith("TaskArgumentError: batch_size must be a whole number from 1 to 100000")
    assert PriceHistoryIntraday.objects.count() == 0  # nothing written
    remaining = {entry_id for entry_id, _ in rdb.xrange("md:persist")}
    assert set(backlog) <= remaining  # and nothing taken from the backlog

    persist_bars.delay()  # the same task with good arguments saves the bar
    wait_for(lambda: PriceHistoryIntraday.objects.filter(instrument=instrument).exists(), 20, "the bar to be saved")
    saved = PriceHistoryIntraday.objects.get(instrument=instrument)
    assert (float(saved.open), float(saved.close), saved.volume) == (10.0, 10.5, 100)


class LeaseSampler(threading.Thread):
    """Samples the lease holder and the status writer every 20 ms while a test runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        self.samples: list[tuple[float, str | None, str | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            holder = self.client.get(lease_key("SIM"))
            writer = self.client.hget(status_key("SIM"), "worker")
            self.samples.append((time.monotonic(), holder, writer))
            time.sleep(0.02)

    def stop(self) -> list[tuple[float, str | None, str | None]]:
        self.done.set()
        self.join(5)
        self.client.close()
        return self.samples


def _streaming_since(log: str, worker_id: str) -> list[float]:
    """When the worker's log says it started streaming SIM as ``worker_id`` (epoch seconds)."""
    times = []
    for line in log.splitlines():
        if f"stream SIM: streaming as {worker_id}" in line:
            stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
            local = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S").astimezone()  # the worker's local time
            times.append(local.timestamp() + int(stamp.group(2)) / 1000)
    return times


def test_a_killed_stream_worker_is_replaced_within_30_s_and_never_doubled(workers, rdb):
    provider = sim_provider()
    marks = {worker.name: worker.mark() for worker in workers}
    sampler = LeaseSampler()
    sampler.start()
    try:
        assert streams.stream_start(provider=provider) is True
        first = wait_for(lambda: _when(_streaming, streams.stream_status(provider=provider)), 30, "ticks")
        victim = next(w for w in workers if w.owns(first["pid"]))
        survivor = next(w for w in workers if w is not victim)

        # Lost messages, a watchdog race: duplicate starts land on both workers' free slots and are refused.
        duplicates = [run_stream.delay("SIM") for _ in range(3)]
        for duplicate in duplicates:
            outcome = duplicate.get(timeout=20)
            assert outcome["started"] is False
            assert outcome["reason"] == f"already running on {first['worker']}"

        killed_wall = time.time()
        victim.kill()
        killed_at = time.monotonic()

        # Beat runs the watchdog every 15 s; here it runs every second, as its schedule row is all beat adds.
        def taken_over():
            streams.stream_watchdog()
            status = streams.stream_status(provider=provider)
            if status["running"] and status["worker"] != first["worker"] and status["ticks"]:
                return status
            time.sleep(0.5)
            return None

        second = wait_for(taken_over, 30, "another worker to take the stream over")
        took = time.monotonic() - killed_at
        assert took < 30
        assert survivor.owns(second["pid"])
        assert second["worker"].startswith(survivor.node + ":")
        # Ticks flow in the new worker.
        ticks = second["ticks"]
        wait_for(lambda: (streams.stream_status(provider=provider)["ticks"] or 0) > ticks, 10, "more ticks")

        # A warm shutdown (SIGTERM) of the survivor hands its stream back at once instead of hanging.
        stopping = time.monotonic()
        survivor.stop(within=15)
        assert survivor.process.returncode == 0
        assert time.monotonic() - stopping < 10
        final = streams.stream_status(provider=provider)
        assert (final["state"], final["stop_reason"]) == ("stopped", "worker shutting down")
        assert final["desired"] is True  # the watchdog would start it in the next worker
    finally:
        samples = sampler.stop()

    # Never two holders: the lease went from the victim to nobody (while its TTL ran out) to the survivor.
    holders = [holder for _t, holder, _w in samples if holder]
    changes = [h for i, h in enumerate(holders) if i == 0 or holders[i - 1] != h]
    assert changes == [first["worker"], second["worker"]]
    handover = next(t for t, holder, _w in samples if holder == second["worker"])
    last_old = [t for t, holder, _w in samples if holder == first["worker"]][-1]
    assert last_old < handover
    # Only the holder reports: once the survivor wrote the status, the victim never did again.
    writers = [w for _t, _h, w in samples if w]
    assert set(writers[writers.index(second["worker"]) :]) == {second["worker"]}
    # Each worker's log shows one stream start: the victim's before the kill, the survivor's after it.
    victim_log, survivor_log = victim.text(marks[victim.name]), survivor.text(marks[survivor.name])
    assert len(_streaming_since(victim_log, first["worker"])) == 1
    survivor_starts = _streaming_since(survivor_log, second["worker"])
    assert len(survivor_starts) == 1 and survivor_starts[0] > killed_wall
    assert survivor_log.count("stream SIM: streaming as") == 1
    assert survivor_log.count(f"stream SIM: already running on {first['worker']}; not starting") + victim_log.count(
        f"stream SIM: already running on {first['worker']}; not starting"
    ) == len(duplicates)
    print(f"taken over {took:.1f}s after the kill")
