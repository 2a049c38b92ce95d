"""The instrument page (details, mappings, latest quote, daily chart) and the admins' provider panel."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from playwright.sync_api import expect

from instruments.models import Instrument
from marketdata.models import PriceHistoryDaily
from marketdata.tests.browser.conftest import PHONE, screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _daily_history(instrument, days: int) -> list[str]:
    """Weekday bars over the last ``days`` days, a walk that ends near the simulator's start price."""
    rng = random.Random(5)
    today = dt.datetime.now(dt.UTC).date()
    price = 210.0
    rows = []
    for n in range(1, days + 1):
        day = today - dt.timedelta(days=n)
        if day.weekday() >= 5:
            continue
        open_ = price * (1 + rng.uniform(-0.015, 0.015))
        rows.append(
            PriceHistoryDaily(
                instrument=instrument,
                date=day,
                open=round(open_, 2),
                high=round(max(open_, price) * (1 + rng.uniform(0, 0.01)), 2),
                low=round(min(open_, price) * (1 - rng.uniform(0, 0.01)), 2),
                close=round(price, 2),
                volume=rng.randint(30_000_000, 90_000_000),
            )
        )
        price = open_
    PriceHistoryDaily.objects.bulk_create(rows)
    return sorted(row.date.isoformat() for row in rows)


def test_instrument_page(alice, browsing, server):
    aapl = Instrument.objects.get(exchange__code="NASDAQ", symbol="AAPL")
    dates = _daily_history(aapl, 90)
    page = browsing.sign_in(alice, path="/instruments/NASDAQ/AAPL/")
    expect(page.locator("h1")).to_contain_text("AAPL")
    wait_for(lambda: page.evaluate("window.marketChart && window.marketChart.loads") == 1, 10, "the daily chart")
    # Read together: a live quote may add today's bar between two reads.
    bars, plotted = page.evaluate("[marketChart.bars.map(b => b.utc), marketChart.series.data().length]")
    # The stored days, then (once a live quote came) today's session from the quote.
    assert bars[: len(dates)] == dates and len(bars) - len(dates) in (0, 1)
    assert plotted == len(bars)
    assert page.locator("#chart-intervals button[data-interval='1D']").get_attribute("aria-pressed") == "true"
    wait_for(lambda: page.locator("#quote-last").inner_text().startswith("$"), 5, "the latest quote")
    mappings = page.locator("#mappings tbody tr").all_inner_texts()
    assert any("SIM" in row and "AAPL" in row for row in mappings)
    assert any("YF" in row for row in mappings)
    screenshot(page, "instrument-wide")

    phone = browsing.sign_in(alice, viewport=PHONE, path="/instruments/NSE/RELIANCE/")
    wait_for(lambda: phone.locator("#quote-last").inner_text().startswith("₹"), 5, "a rupee quote")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(phone, "instrument-phone")

    page.goto(f"{server.url}/instruments/NASDAQ/NOPE/")
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("main")).to_contain_text("Unknown symbol 'NOPE' on NASDAQ.")


def test_provider_panel_is_for_admins(alice, admin, browsing, server):
    page = browsing.sign_in(alice, path="/live/")
    assert page.locator("nav a", has_text="Providers").count() == 0
    response = page.goto(f"{server.url}/live/providers/")
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("Admins only")

    panel = browsing.sign_in(admin, path="/live/providers/")
    rows = panel.locator("#providers tr[data-provider-id]")
    expect(rows).to_have_count(4)
    codes = rows.evaluate_all("rows => rows.map(r => r.dataset.code)")
    assert codes == ["DHAN", "REPLAY", "SIM", "YF"]
    # Each row gets its state from GET /providers/{id}/status.
    wait_for(lambda: "…" not in panel.locator("[data-field=state]").all_inner_texts(), 10, "the states")
    sim = panel.locator("tr[data-code='SIM']")
    # The buttons call POST /providers/{id}/start|stop and show the state the answer reports.
    for action in ["Start", "Stop"]:
        button = sim.get_by_role("button", name=f"{action} SIM")
        expect(button).to_be_enabled()
        with panel.expect_response(lambda r, a=action: r.url.endswith(f"/{a.lower()}")) as answer:
            button.click()
        assert answer.value.status == 202, answer.value.text()
        expect(sim.locator("[data-field=state]")).to_have_text(answer.value.json()["state"])
    expect(panel.locator("#providers-error")).to_have_text("")
    screenshot(panel, "providers-wide")
