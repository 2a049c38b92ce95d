"""The embedded mode has daily bars: seeded demo history, the runtime's own rollup, a simulator on sessions."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from exchanges.selectors import exchange_session
from ingestion.demo_history import demo_history_seed
from ingestion.models import DEFAULT_SETTINGS, Provider
from ingestion.rollup import session_window
from ingestion.runtime import rollup_forever
from ingestion.seeding import demo_data_seed
from instruments import reference_data
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday

# A Friday evening in New York: NSE, BSE and NASDAQ have all closed that day's session.
NOW = datetime(2024, 6, 14, 23, 0, tzinfo=UTC)


def _window_of(instrument, day):
    session = exchange_session(exchange=instrument.exchange, date=day)
    return session_window(exchange=instrument.exchange, session=session)


@pytest.mark.django_db
def test_demo_history_fills_past_sessions_and_rolls_them_up():
    demo_data_seed(admin_email="demo@example.com", admin_password="pw-demo-12345")
    result = demo_history_seed(sessions=2, now=NOW)

    demo_count = len(reference_data.DEMO_INSTRUMENTS)
    assert result.sessions == 2 * 3  # two sessions on each of NSE, BSE, NASDAQ
    assert result.daily == 2 * demo_count
    assert result.intraday == PriceHistoryIntraday.objects.count()

    sim = Provider.objects.get(code="SIM")
    for daily in PriceHistoryDaily.objects.select_related("instrument__exchange"):
        assert daily.from_rollup and daily.date <= NOW.date()
        window = _window_of(daily.instrument, daily.date)
        bars = PriceHistoryIntraday.objects.filter(
            instrument=daily.instrument, timestamp__gte=window.start, timestamp__lt=window.end
        ).order_by("timestamp")
        # Every regular-session minute has a bar, and the daily bar is their rollup.
        assert bars.count() == (window.end - window.start).total_seconds() // 60
        assert daily.open == bars.first().open and daily.close == bars.last().close
        assert daily.high == max(b.high for b in bars) and daily.low == min(b.low for b in bars)
        assert {b.source_id for b in bars} == {sim.pk}
        assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
    # The sessions are the latest closed ones: NASDAQ's Friday and Thursday, not the weekend.
    nasdaq_days = set(
        PriceHistoryDaily.objects.filter(instrument__exchange__code="NASDAQ").values_list("date", flat=True)
    )
    assert {d.isoformat() for d in nasdaq_days} == {"2024-06-13", "2024-06-14"}


@pytest.mark.django_db
def test_demo_history_twice_writes_nothing_new():
    demo_data_seed(admin_email="demo@example.com", admin_password="pw-demo-12345")
    first = demo_history_seed(sessions=1, now=NOW)
    bars = list(PriceHistoryIntraday.objects.order_by("pk").values_list("instrument_id", "timestamp", "close"))
    again = demo_history_seed(sessions=1, now=NOW)
    assert first.intraday > 0 and (again.intraday, again.daily) == (0, 0)
    assert list(PriceHistoryIntraday.objects.order_by("pk").values_list("instrument_id", "timestamp", "close")) == bars


@pytest.mark.django_db
def test_seed_demo_writes_history_when_asked(settings):
    settings.DEMO_HISTORY_SESSIONS = 1
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "demo history:" in out.getvalue()
    assert PriceHistoryDaily.objects.filter(from_rollup=True).exists()
    out = io.StringIO()
    call_command("seed_demo", "--history-sessions", "0", stdout=out)
    assert "demo history:" not in out.getvalue()


@pytest.mark.django_db
def test_the_simulator_follows_sessions_by_default(settings):
    assert DEFAULT_SETTINGS["simulated"]["follow_sessions"] is True
    settings.SIM_FOLLOW_SESSIONS = True
    demo_data_seed(admin_email="demo@example.com", admin_password="pw-demo-12345")
    assert Provider.objects.get(code="SIM").settings["follow_sessions"] is True


@pytest.mark.django_db
def test_the_simulator_can_be_seeded_to_trade_around_the_clock(settings):
    settings.SIM_FOLLOW_SESSIONS = False
    demo_data_seed(admin_email="demo@example.com", admin_password="pw-demo-12345")
    assert Provider.objects.get(code="SIM").settings["follow_sessions"] is False


@pytest.mark.django_db(transaction=True)
async def test_the_embedded_runtime_rolls_closed_sessions_up():
    """``runmarket`` has no Celery beat: its runtime rolls up on its own (``ROLLUP_INTERVAL_S``)."""

    def seed() -> int:
        demo_data_seed(admin_email="demo@example.com", admin_password="pw-demo-12345")
        # History of the latest closed sessions, as of now; then forget the daily bars.
        demo_history_seed(sessions=1)
        expected = PriceHistoryDaily.objects.count()
        PriceHistoryDaily.objects.all().delete()
        return expected

    expected = await sync_to_async(seed)()
    assert expected > 0
    task = asyncio.create_task(rollup_forever(3600))
    try:
        async with asyncio.timeout(30):
            while await PriceHistoryDaily.objects.acount() < expected:  # noqa: ASYNC110 - database state
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert await PriceHistoryDaily.objects.filter(from_rollup=True).acount() == expected
