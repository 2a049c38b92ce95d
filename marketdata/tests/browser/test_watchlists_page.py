"""Watchlists on the dashboard: create, rename, add through the search box, remove, delete; private."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import Watchlist
from marketdata.tests.browser.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _rows(page) -> list[str]:
    return page.locator("#quote-rows tr[data-channel]").evaluate_all("rows => rows.map(r => r.dataset.channel)")


def _selected(page) -> str:
    return page.locator("#watchlist-select option:checked").inner_text()


def _name_dialog(page, name: str) -> None:
    dialog = page.locator("#name-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("input[name=name]").fill(name)
    dialog.locator("button[value=save]").click()


def test_watchlists_are_edited_on_the_page_survive_a_reload_and_stay_private(alice, bob, browsing):
    page = browsing.sign_in(alice)
    # A new user starts with the default list of the demo instruments.
    assert _selected(page) == "Default (21)"
    assert len(_rows(page)) == 21 and "NASDAQ:AAPL" in _rows(page)
    expect(page.locator("#watchlist-delete")).to_be_disabled()  # the only list stays

    page.click("#watchlist-new")
    _name_dialog(page, "Chips")
    expect(page.locator("#name-dialog")).to_be_hidden()
    assert _selected(page) == "Chips (0)"
    expect(page.locator("#quote-rows .empty")).to_contain_text("This list is empty")

    # Names are unique per user: the dialog says so and stays open.
    page.click("#watchlist-new")
    _name_dialog(page, "chips")
    expect(page.locator("#name-dialog .error-text")).to_have_text("You already have a watchlist named 'chips'.")
    page.locator("#name-dialog button[value=cancel]").click()
    expect(page.locator("#name-dialog")).to_be_hidden()

    # Add with the mouse from the suggestions...
    search = page.locator("#instrument-search")
    search.fill("NVD")
    page.locator("#instrument-options li[data-channel='NASDAQ:NVDA']").click()
    wait_for(lambda: _rows(page) == ["NASDAQ:NVDA"], 5, "NVDA on the list")
    # ... and with the keyboard (the name matches too).
    search.fill("Advanced Micro")
    expect(page.locator("#instrument-options li[data-channel='NASDAQ:AMD']")).to_be_visible()
    expect(search).to_have_attribute("aria-expanded", "true")
    search.press("Enter")
    wait_for(lambda: _rows(page) == ["NASDAQ:NVDA", "NASDAQ:AMD"], 5, "AMD on the list")
    # Adding it twice is refused with the server's reason.
    search.fill("AMD")
    page.locator("#instrument-options li[data-channel='NASDAQ:AMD']").click()
    expect(page.locator("#watchlist-error")).to_have_text("NASDAQ:AMD is already on 'Chips'.")

    page.get_by_role("button", name="Remove AMD (NASDAQ) from Chips").click()
    wait_for(lambda: _rows(page) == ["NASDAQ:NVDA"], 5, "AMD removed")
    page.click("#watchlist-rename")
    _name_dialog(page, "Semis")
    wait_for(lambda: _selected(page) == "Semis (1)", 5, "the new name")
    wait_for(
        lambda: page.locator("tr[data-channel='NASDAQ:NVDA'] td[data-field='last']").inner_text() not in ("", "—"),
        5,
        "a live NVDA price",
    )

    page.reload()
    assert _selected(page) == "Semis (1)"  # the chosen list is remembered
    assert _rows(page) == ["NASDAQ:NVDA"]
    semis = Watchlist.objects.get(user=alice, name="Semis")
    assert [item.instrument.symbol for item in semis.items.all()] == ["NVDA"]

    # Bob sees only his own lists, and cannot read or change Alice's through the API.
    other = browsing.sign_in(bob)
    assert other.locator("#watchlist-select option").all_inner_texts() == ["Default (21)"]
    statuses = other.evaluate(
        """async (id) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const call = (method, path, body) => fetch(path, {
                method, headers: {"Content-Type": "application/json", "X-CSRFToken": token},
                body: body && JSON.stringify(body),
            }).then(r => r.status);
            return [
                await call("GET", `/watchlists/${id}`),
                await call("PATCH", `/watchlists/${id}`, {name: "Mine now"}),
                await call("POST", `/watchlists/${id}/items`, {instrument: "NASDAQ:AAPL"}),
                await call("DELETE", `/watchlists/${id}`),
            ];
        }""",
        semis.pk,
    )
    assert statuses == [404, 404, 404, 404]
    semis.refresh_from_db()
    assert semis.name == "Semis" and semis.items.count() == 1

    # Deleting asks first, then the default list is shown again.
    page.click("#watchlist-delete")
    expect(page.locator("#confirm-dialog p")).to_have_text("Delete the watchlist “Semis”?")
    page.locator("#confirm-dialog button[value=confirm]").click()
    wait_for(lambda: _selected(page) == "Default (21)", 5, "the default list again")
    assert page.locator("#watchlist-select option").all_inner_texts() == ["Default (21)"]
    assert not Watchlist.objects.filter(pk=semis.pk).exists()
