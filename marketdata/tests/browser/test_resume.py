"""The dashboard resumes its quote channels after a reconnect (``since``), instead of starting over."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from marketdata.tests.browser.conftest import DEFAULT_PASSWORD, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AAPL_LAST = "tr[data-channel='NASDAQ:AAPL'] td[data-field='last']"


def test_the_dashboard_sends_its_last_seqs_on_reconnect_and_is_resumed(alice, browsing, server):
    page = browsing.page()
    sent: list[dict] = []
    received: list[dict] = []

    def watch(ws) -> None:
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

    page.on("websocket", watch)
    page.goto(server.url + "/live/")
    page.fill("#id_login", alice.email)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("#sign-in")
    page.wait_for_url("**/live/")

    def frames(select):
        """Sync Playwright delivers frame events only inside its own calls: pump them, then look."""

        def look():
            page.wait_for_timeout(50)
            return select()

        return look

    last = page.locator(AAPL_LAST)
    wait_for(lambda: last.inner_text() not in ("", "—"), 5, "a first AAPL price")
    seen = wait_for(
        frames(lambda: [m["seq"] for m in received if m.get("symbol") == "AAPL" and m.get("message_type") == "data"]),
        5,
        "an AAPL update",
    )

    server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    server.start()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)

    resubscribe = wait_for(
        frames(lambda: [m for m in sent if m.get("message_type") == "subscribe" and "since" in m and m["since"]]),
        8,
        "a subscribe frame with since",
    )[-1]
    assert resubscribe["since"]["NASDAQ:AAPL"] >= seen[-1]
    assert not any("@" in channel for channel in resubscribe["since"])  # bar channels carry no seq
    resumed = wait_for(
        frames(lambda: [m for m in received if m.get("message_type") == "resumed" and m["channel"] == "NASDAQ:AAPL"]),
        8,
        "the server's resumed answer",
    )[-1]
    # The engine restarted with the web server and took its state back from Redis: nothing was lost.
    assert resumed["recovered"] is True
