"""Signing in and out, and live quotes on the dashboard across a server restart."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from marketdata.tests.browser.conftest import PHONE, screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AAPL_LAST = "tr[data-channel='NASDAQ:AAPL'] td[data-field='last']"


def test_every_page_needs_a_signed_in_user_and_sign_in_works(alice, browsing, server):
    page = browsing.page()
    for path in ["/live/providers/", "/live/", "/instruments/NASDAQ/AAPL/"]:
        page.goto(server.url + path)
        assert page.url.startswith(f"{server.url}/accounts/login/?next="), page.url
    # Google is not configured on this server, so no Google button.
    assert page.locator("[id^='sign-in-google']").count() == 0

    page.fill("#id_login", alice.email)
    page.fill("#id_password", "not-the-password")
    page.click("#sign-in")
    expect(page.locator(".errorlist")).to_contain_text("not correct")
    assert "/accounts/login/" in page.url

    page.fill("#id_password", "correct-Horse-battery-9")
    page.click("#sign-in")
    page.wait_for_url("**/instruments/NASDAQ/AAPL/")  # back to the page asked for last
    page.goto(server.url + "/live/")
    expect(page.locator(".user")).to_have_text(alice.email)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    page.click("#sign-out")
    page.wait_for_url("**/accounts/login/")
    page.goto(server.url + "/live/")
    assert page.url.startswith(f"{server.url}/accounts/login/?next=")


def test_prices_move_and_the_feed_recovers_after_the_server_restarts(alice, browsing, server):
    page = browsing.sign_in(alice)
    conn = page.locator("#conn")
    last = page.locator(AAPL_LAST)
    expect(conn).to_have_attribute("data-state", "live")
    first = wait_for(lambda: last.inner_text() not in ("", "—") and last.inner_text(), 5, "a first AAPL price")
    assert first.startswith("$")
    started = time.monotonic()
    wait_for(lambda: last.inner_text() != first, 5, "the AAPL price to change")
    print(f"AAPL moved after {time.monotonic() - started:.2f} s")
    # The cell flashes in the direction of the move.
    assert "flash-" in (last.get_attribute("class") or "")

    server.stop()
    expect(conn).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    expect(conn).to_have_text("Reconnecting…")
    frozen = last.inner_text()
    server.start()
    expect(conn).to_have_attribute("data-state", "live", timeout=15_000)
    # New prices arrive only if the page subscribed again on the new connection.
    wait_for(lambda: last.inner_text() != frozen, 8, "AAPL to move after the restart")
    assert page.evaluate("window.marketFeed.reconnects") >= 1
    assert "NASDAQ:AAPL" in page.evaluate("window.marketFeed.channels")


def test_the_dashboard_on_a_phone(alice, browsing):
    page = browsing.sign_in(alice, viewport=PHONE)
    wait_for(lambda: page.locator(AAPL_LAST).inner_text() not in ("", "—"), 5, "an AAPL price")
    # The columns that do not fit are hidden, the essential ones stay.
    assert page.locator("th", has_text="Volume").is_hidden()
    assert page.locator(AAPL_LAST).is_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.locator("tr[data-channel='NASDAQ:AAPL'] .sym button").click()
    wait_for(lambda: page.evaluate("window.marketChart && window.marketChart.loads"), 10, "the chart to load")
    assert page.locator("#chart-panel").is_visible()
    screenshot(page, "dashboard-phone")
