"""Importing instruments by URL cannot be turned against the server's own network (SSRF).

Real HTTP servers on 127.0.0.1 stand in for internal services: a URL, or a redirect, to an
internal address is refused before any request reaches it; sizes and line lengths are capped
(also after gzip); failures are reported in generic words, never with the fetched body, and
a closed port reads the same as an open one. ``IMPORT_URL_ALLOWED_HOSTS`` lets a test reach
the one server it names.
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ingestion.jobs import job_run, populate_instruments_job_create
from ingestion.models import PopulateJob
from ingestion.seeding import reference_data_seed
from instruments.models import Instrument

pytestmark = pytest.mark.django_db

DHAN_HEADER = (
    "SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_EXPIRY_CODE,SEM_TRADING_SYMBOL,"
    "SEM_LOT_UNITS,SEM_CUSTOM_SYMBOL,SEM_EXPIRY_DATE,SEM_STRIKE_PRICE,SEM_OPTION_TYPE,SEM_TICK_SIZE,"
    "SEM_EXPIRY_FLAG,SEM_EXCH_INSTRUMENT_TYPE,SEM_SERIES,SM_SYMBOL_NAME"
)
ROW = "NSE,E,2885,EQUITY,0,RELIANCE,1.0,Reliance Industries,,-0.01000,,10.0000,NA,ES,EQ,RELIANCE INDUSTRIES LTD"
SECRET = "INTERNAL-SECRET-7f3a"


class _Server:
    """A local HTTP server; ``answer(handler)`` writes each reply, ``requests`` lists the paths asked."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                answer(self)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextmanager
def serving(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[_Server]:
    server = _Server(answer)
    server.thread.start()
    try:
        yield server
    finally:
        server.close()


def body(content: bytes, status: int = 200, **headers: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(content)), **headers}.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(content)

    return answer


def redirect(location: str, status: int = 302) -> Callable[[BaseHTTPRequestHandler], None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def secret_answer(handler: BaseHTTPRequestHandler) -> None:
    body(f"{DHAN_HEADER}\n{SECRET},{SECRET}\n".encode())(handler)


@pytest.fixture
def reference():
    reference_data_seed()


def _run(url: str) -> PopulateJob:
    job = populate_instruments_job_create(url=url, file_format="dhan")
    job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def _text(job: PopulateJob) -> str:
    return f"{job.message} {job.errors}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433", "0.0.0.0"])  # noqa: S104 - a URL, not a bind
def test_a_url_to_an_internal_address_is_refused_before_any_request(reference, host):
    with serving(secret_answer) as internal:
        job = _run(f"http://{host}:{internal.port}/latest/meta-data")

    assert job.state == "failed"
    assert internal.requests == []
    assert SECRET not in _text(job)
    assert "not allowed" in job.message


def test_a_redirect_to_another_internal_address_is_refused(reference, settings):
    with serving(secret_answer) as internal:
        target = f"http://127.0.0.1:{internal.port}/secret"
        with serving(redirect(target)) as hop:
            settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{hop.port}"]
            job = _run(f"{hop.url}/scrip.csv")

    assert hop.requests == ["/scrip.csv"]
    assert internal.requests == []
    assert job.state == "failed"
    assert SECRET not in _text(job) and str(internal.port) not in _text(job)


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://example.com/x.csv", "gopher://127.0.0.1:70/_x"])
def test_a_redirect_to_another_scheme_is_refused(reference, settings, location):
    with serving(redirect(location)) as hop:
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{hop.port}"]
        job = _run(f"{hop.url}/scrip.csv")

    assert job.state == "failed"
    assert "root:" not in _text(job)


def test_an_allowed_host_imports_normally(reference, settings):
    with serving(body(f"{DHAN_HEADER}\n{ROW}\n".encode())) as allowed:
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{allowed.port}"]
        job = _run(f"{allowed.url}/scrip.csv")

    assert job.state == "succeeded", job.message
    assert Instrument.objects.filter(symbol="RELIANCE").exists()


def test_the_fetched_body_is_never_echoed_in_the_job(reference, settings):
    with serving(body(f"ami-id,{SECRET}\ninstance-id\n".encode())) as allowed:
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{allowed.port}"]
        job = _run(f"{allowed.url}/latest/meta-data")
    assert job.state == "failed"
    assert SECRET not in _text(job) and "ami-id" not in _text(job)

    with serving(body(SECRET.encode(), status=500)) as failing:
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{failing.port}"]
        job = _run(f"{failing.url}/scrip.csv")
    assert job.state == "failed" and "HTTP 500" in job.message
    assert SECRET not in _text(job)


def test_a_closed_port_reads_the_same_as_an_open_non_http_one(reference, settings):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port = listener.getsockname()[1]

    def banner() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        conn.close()

    thread = threading.Thread(target=banner, daemon=True)
    thread.start()
    closed_port = _closed_port()
    settings.IMPORT_URL_ALLOWED_HOSTS = ["127.0.0.1"]
    try:
        opened = _run(f"http://127.0.0.1:{open_port}/")
        closed = _run(f"http://127.0.0.1:{closed_port}/")
    finally:
        thread.join(timeout=5)
        listener.close()

    assert opened.state == closed.state == "failed"
    assert opened.message == closed.message
    assert "SSH" not in opened.message


def test_a_response_larger_than_the_cap_is_refused(reference, settings):
    settings.IMPORT_URL_MAX_BYTES = 100_000
    content = (DHAN_HEADER + "\n" + "\n" * 300_000).encode()
    with serving(body(content)) as declared:
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{declared.port}"]
        job = _run(f"{declared.url}/big.csv")
    assert job.state == "failed" and "larger than" in job.message

    def undeclared(handler: BaseHTTPRequestHandler) -> None:  # no Content-Length: ends when the socket closes
        handler.protocol_version = "HTTP/1.0"
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(content)

    with serving(undeclared) as streamed:
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{streamed.port}"]
        job = _run(f"{streamed.url}/big.csv")
    assert job.state == "failed" and "larger than" in job.message


def test_a_gzip_bomb_is_stopped_at_the_cap(reference, settings):
    settings.IMPORT_URL_MAX_BYTES = 1_000_000
    bomb = gzip.compress((DHAN_HEADER + "\n").encode() + b"\n" * 50_000_000)
    assert len(bomb) < 200_000
    with serving(body(bomb, Content_Encoding="gzip")) as allowed:
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{allowed.port}"]
        job = _run(f"{allowed.url}/bomb.csv")

    assert job.state == "failed" and "larger than" in job.message


def test_a_line_longer_than_the_cap_is_refused(reference, settings):
    settings.IMPORT_URL_MAX_LINE_BYTES = 10_000
    content = f"{DHAN_HEADER}\n{ROW}\n{'x' * 50_000}\n".encode()
    with serving(body(content)) as allowed:
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{allowed.port}"]
        job = _run(f"{allowed.url}/long.csv")

    assert job.state == "failed" and "line" in job.message
    assert "xxxx" not in _text(job)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",  # noqa: S104 - an address to refuse, not a bind
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
    ],
)
def test_internal_addresses_are_not_public(address):
    from core.net import address_is_public

    assert not address_is_public(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_public(address):
    from core.net import address_is_public

    assert address_is_public(address)


def test_the_connection_goes_to_the_address_that_was_checked(reference, settings, monkeypatch):
    """No DNS rebinding: the name is resolved once per hop and the connection made to that address."""
    real_getaddrinfo = socket.getaddrinfo
    with serving(body(f"{DHAN_HEADER}\n{ROW}\n".encode())) as first, serving(secret_answer) as second:
        answers = iter(["127.0.0.1"])

        def rebinding(host, port, *args, **kwargs):
            if host == "rebind.test":
                # The first answer is the checked one; any later lookup would point elsewhere.
                address = next(answers, "127.0.0.2")
                return real_getaddrinfo(address, port, *args, **kwargs)
            return real_getaddrinfo(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"rebind.test:{first.port}"]
        job = _run(f"http://rebind.test:{first.port}/scrip.csv")

    assert job.state == "succeeded", job.message
    assert first.requests == ["/scrip.csv"] and second.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://10.0.0.5:8080/x.csv",
        "http://user:pass@example.com/x.csv",
    ],
)
def test_the_api_refuses_an_internal_literal_address_at_once(admin_api_client, url):
    response = admin_api_client.post("/populate/instruments", {"url": url}, format="json")

    assert response.status_code == 400, response.content
    assert "url" in response.json()["errors"]
    assert not PopulateJob.objects.exists()


def _self_signed(directory) -> tuple[str, str]:
    """A certificate for ``localhost`` (and its key), written under ``directory``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_https_to_the_pinned_address_still_verifies_the_host_name(reference, settings, tmp_path, monkeypatch):
    import ssl

    import certifi

    cert, key = _self_signed(tmp_path)
    monkeypatch.setattr(certifi, "where", lambda: cert)  # trust the test certificate, and only it
    with serving(body(f"{DHAN_HEADER}\n{ROW}\n".encode())) as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
        settings.IMPORT_URL_ALLOWED_HOSTS = [f"localhost:{server.port}", f"127.0.0.1:{server.port}"]

        by_name = _run(f"https://localhost:{server.port}/scrip.csv")
        by_address = _run(f"https://127.0.0.1:{server.port}/scrip.csv")  # the certificate names localhost only

    assert by_name.state == "succeeded", by_name.message
    assert by_address.state == "failed"
    assert server.requests == ["/scrip.csv"]
