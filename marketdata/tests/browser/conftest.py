"""Browser tests: a real ``manage.py runmarket`` process and Debian's Chromium driven by Playwright.

The server runs in the stack mode against the pytest-django test database (the tests are
``transaction=True`` so rows are committed and visible to it) and the test Redis, with a
channel-layer prefix of its own (Redis pub/sub ignores database numbers) and a fast
simulator. Screenshots go to ``artifacts/`` at the repository root.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from ingestion.models import Provider

ROOT = Path(settings.BASE_DIR)
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
# A lively simulator: several ticks a second per instrument and visible steps.
FAST_SIM = {"seed": 7, "ticks_per_second": 5, "tick_interval_ms": 100, "volatility": 3.0, "follow_sessions": False}
LAYER_PREFIX = f"browser{os.getpid()}"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def wait_for(predicate: Callable[[], object], within: float, what: str, every: float = 0.1):
    """Poll until ``predicate`` is truthy (and return it), failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(every)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The pytest-django test database, for the server process."""
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def redis_url() -> str:
    return settings.REDIS_URL or "redis://127.0.0.1:6379/15"


class MarketServer:
    """``manage.py runmarket`` on a fixed free port; ``restart()`` brings it back on the same port."""

    def __init__(self, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.runs = 0
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self, within: float = 30.0) -> None:
        self.runs += 1
        self.log_path = self.log_dir / f"runmarket-{self.runs}.log"
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url(),
            "CHANNEL_LAYER_PREFIX": LAYER_PREFIX,
            "DEBUG": "true",
            "LOG_LEVEL": "INFO",
        }
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runmarket", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._healthy, within, f"runmarket to serve on {self.url}\n{self.log_tail()}", every=0.2)
        wait_for(
            lambda: "feed SIM: idle -> streaming" in self.log_path.read_text(),
            within,
            f"the SIM feed to stream\n{self.log_tail()}",
        )

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"runmarket exited with {self.process.returncode}\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/health/", timeout=1) as response:  # noqa: S310 - local URL
                return response.status == 200
        except OSError:
            return False

    def stop(self, within: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


@pytest.fixture(scope="package")
def browser() -> Iterator:
    """One Chromium for the browser tests, closed when they are done.

    Playwright's sync API keeps its event loop marked as running in this thread, which makes
    Django refuse ORM calls ("async context"). Nothing runs concurrently here (the loop only
    works while Playwright is called), so the guard is lifted for exactly as long as it runs.
    """
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def market_data(transactional_db):
    """The demo instruments and providers, with a fast simulator, committed for the server to read."""
    client = redis.Redis.from_url(redis_url())
    client.flushdb()
    call_command("seed_demo", verbosity=0, stdout=io.StringIO())
    Provider.objects.filter(code="SIM").update(settings=FAST_SIM)
    yield
    client.flushdb()
    client.close()


@pytest.fixture
def alice(market_data):
    return UserFactory(email="alice@example.com")


@pytest.fixture
def bob(market_data):
    return UserFactory(email="bob@example.com")


@pytest.fixture
def admin(market_data):
    return UserFactory(email="ops@example.com", role="admin", is_staff=True)


@pytest.fixture
def server(market_data, tmp_path) -> Iterator[MarketServer]:
    """A running server over the seeded data (start it after creating the rows a test needs)."""
    server = MarketServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Browsing:
    """Opens pages in fresh browser contexts and keeps what went wrong in them."""

    def __init__(self, browser, server: MarketServer) -> None:
        self.browser = browser
        self.server = server
        self.contexts: list = []
        self.page_errors: list[str] = []
        self.foreign_requests: list[str] = []

    def page(self, *, viewport: dict | None = None):
        context = self.browser.new_context(viewport=viewport or WIDE, locale="en-US", timezone_id="UTC")
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        context.on("request", self._check_origin)
        page = context.new_page()
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        return page

    def _check_origin(self, request) -> None:
        # Every asset comes from this app: no CDN, nothing from outside.
        if not request.url.startswith((self.server.url, "data:", "blob:", f"ws://127.0.0.1:{self.server.port}")):
            self.foreign_requests.append(request.url)

    def sign_in(self, user, *, viewport: dict | None = None, path: str = "/live/"):
        page = self.page(viewport=viewport)
        page.goto(self.server.url + path)
        page.fill("#id_login", user.email)
        page.fill("#id_password", DEFAULT_PASSWORD)
        page.click("#sign-in")
        page.wait_for_url(f"**{path}")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsing(browser, server) -> Iterator[Browsing]:
    session = Browsing(browser, server)
    try:
        yield session
    finally:
        session.close()
    assert session.page_errors == [], f"JavaScript errors: {session.page_errors}\n{server.log_tail()}"
    assert session.foreign_requests == [], f"requests outside the app: {session.foreign_requests}"


def screenshot(page, name: str) -> Path:
    """Write a full-page PNG to ``artifacts/`` and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path
