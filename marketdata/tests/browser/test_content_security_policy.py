"""Every page runs under its Content-Security-Policy in a real Chromium without a single violation.

A listener installed before any page script records ``securitypolicyviolation`` events; each
page is used (live quotes arrive, the chart draws, Swagger UI and ReDoc render the schema) and
must have its policy header, with no inline or eval'd script allowed, and no violation.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} at ${event.sourceFile}:${event.lineNumber}`
  );
});
"""


def _watch(page) -> list[str]:
    """Record violations on every document the page loads, and the console's CSP refusals."""
    refusals: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("console", lambda msg: refusals.append(msg.text) if "Content Security Policy" in msg.text else None)
    return refusals


def _assert_policy(response) -> None:
    policy = response.headers.get("content-security-policy")
    assert policy, f"no Content-Security-Policy on {response.url}"
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    script_src = directives.get("script-src", directives.get("default-src"))
    assert script_src and "'self'" in script_src, policy
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src, policy


def _assert_no_violations(page, refusals: list[str], where: str) -> None:
    page.wait_for_timeout(300)  # violation events are dispatched asynchronously
    violations = page.evaluate("window.__cspViolations")
    assert violations == [], f"{where}: {violations}"
    assert refusals == [], f"{where}: {refusals}"


def test_no_csp_violations_on_the_dashboard(alice, browsing, server):
    page = browsing.sign_in(alice)
    refusals = _watch(page)
    response = page.reload()

    _assert_policy(response)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    last = page.locator("tr[data-channel='NASDAQ:AAPL'] td[data-field='last']")
    expect(last).not_to_have_text("—")
    _assert_no_violations(page, refusals, "dashboard")


def test_no_csp_violations_on_the_instrument_page_admin_pages_and_api_docs(market_data, browsing, server):
    root = UserFactory(email="root@example.com", role="admin", is_staff=True, is_superuser=True)
    page = browsing.sign_in(root)
    refusals = _watch(page)

    response = page.goto(server.url + "/instruments/NASDAQ/AAPL/")
    _assert_policy(response)
    expect(page.locator("canvas").first).to_be_visible()
    _assert_no_violations(page, refusals, "instrument page")

    response = page.goto(server.url + "/live/providers/")
    _assert_policy(response)
    expect(page.locator("button[data-action='start']").first).to_be_visible()
    _assert_no_violations(page, refusals, "provider panel")

    for path in ["/admin/", "/admin/instruments/instrument/", "/admin/instruments/instrument/add/"]:
        response = page.goto(server.url + path)
        assert response.status == 200, path
        _assert_policy(response)
        expect(page.locator("#content")).to_be_visible()
        _assert_no_violations(page, refusals, path)

    response = page.goto(server.url + "/exchange/")  # DRF's browsable API
    _assert_policy(response)
    expect(page.locator(".response-info")).to_be_visible()
    _assert_no_violations(page, refusals, "browsable API")

    response = page.goto(server.url + "/")
    _assert_policy(response)
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("marketapp API")
    expect(page.locator(".opblock").first).to_be_visible()
    _assert_no_violations(page, refusals, "Swagger UI")

    response = page.goto(server.url + "/redoc")
    _assert_policy(response)
    page.wait_for_timeout(5000)
    # ReDoc renders the whole schema before it shows anything: slow on a busy machine.
    expect(page.locator("h1").first).to_contain_text("marketapp API", timeout=60_000)
    expect(page.locator("[data-section-id]").first).to_be_attached()
    # The one thing blocked, by design: the Redocly logo ReDoc's sidebar loads from its CDN
    # (the image hides itself when it cannot load). Nothing else.
    page.wait_for_timeout(300)
    violations = page.evaluate("window.__cspViolations")
    assert set(violations) <= {"img-src blocked https://cdn.redoc.ly/redoc/logo-mini.svg at :0"}, violations
    assert all("cdn.redoc.ly/redoc/logo-mini.svg" in refusal for refusal in refusals), refusals
    # The browser attempted that request and the policy blocked it: not a request that left the app.
    browsing.foreign_requests[:] = [
        url for url in browsing.foreign_requests if url != "https://cdn.redoc.ly/redoc/logo-mini.svg"
    ]
