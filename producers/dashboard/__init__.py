"""`conveyor dashboard`: a read-only web page of releases and deployments, updated live.

Served by the standard library's threaded HTTP server: a static page (HTML, one script, one
style sheet; no build step) and a JSON API that answers the same documents as ``--json``:

* ``GET /api/list?service=api-*&state=failed&cluster=prod&only=releases&limit=50``;
* ``GET /api/deployments/ID`` and ``GET /api/releases/ID``.

Every request needs HTTP basic authentication (``CONVEYOR_DASHBOARD_BASIC_AUTH``, as for Flower);
the server does not start without it, nor with a password shorter than 12 characters. Basic
authentication sends the password with every request, so the server speaks HTTPS when given a
certificate and key, and refuses to serve plain HTTP on an address other than loopback unless told
that a proxy in front of it terminates TLS. Service names, reasons and ECS events are untrusted: the
page inserts them as text only, and a Content-Security-Policy forbids inline and foreign scripts.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlsplit

from config.basic_auth import BasicAuthError, parse_basic_auth
from producers.client import (
    ConveyorClient,
    ConveyorUnavailableError,
    DeploymentLostError,
    DeploymentNotFoundError,
)
from producers.contract.errors import ProducerError
from producers.views import deployment_view, list_view, release_view

AUTH_VARIABLE = "CONVEYOR_DASHBOARD_BASIC_AUTH"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_LIST_PARAMS = {"service", "state", "cluster", "only", "limit"}
# Set on an answer served from memory while Redis cannot be reached: the seconds since the
# data was read. The page says "reconnecting" and keeps showing it.
STALE_HEADER = "X-Conveyor-Reconnecting"
# Last good answers kept for a Redis outage, one per API URL; bounded, oldest dropped first.
_KEPT_ANSWERS = 256


class _LastAnswers:
    """The last good answer of each API URL, for serving during a Redis outage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def keep(self, url: str, data: Any) -> None:
        with self._lock:
            self._answers[url] = (time.monotonic(), data)
            self._answers.move_to_end(url)
            while len(self._answers) > _KEPT_ANSWERS:
                self._answers.popitem(last=False)

    def get(self, url: str) -> tuple[float, Any] | None:
        with self._lock:
            return self._answers.get(url)


class DashboardConfigError(ProducerError, ValueError):
    """Raised when the dashboard cannot start as configured; the message says what to set."""


def parse_credentials(raw: str | None) -> list[tuple[str, str]]:
    """The user:password pairs of ``raw``, each checked; DashboardConfigError otherwise.

    The message names the setting and the fix, never a credential.
    """
    try:
        return parse_basic_auth(AUTH_VARIABLE, raw)
    except BasicAuthError as exc:
        raise DashboardConfigError(
            f"{exc}; the dashboard shows every deployment and does not run without authentication"
        ) from None


def is_loopback(address: str) -> bool:
    """Whether ``address`` (what the server binds) is reachable from this machine only."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name, or "" (every interface): not provably loopback
        return False


def tls_context(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """The server's TLS context from PEM files, or None when neither is given.

    DashboardConfigError, naming the option, when only one is given or they cannot be loaded.
    """
    if not cert_file and not key_file:
        return None
    if not cert_file or not key_file:
        raise DashboardConfigError(
            "--tls-cert and --tls-key (CONVEYOR_DASHBOARD_TLS_CERT, CONVEYOR_DASHBOARD_TLS_KEY) "
            "go together: give both, a PEM certificate and its private key"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise DashboardConfigError(
            f"--tls-cert/--tls-key: no such file {exc.filename or cert_file!r}"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "unreadable"
        raise DashboardConfigError(
            f"--tls-cert/--tls-key: cannot load {cert_file!r} with {key_file!r} ({reason}); "
            "give a PEM certificate and the private key that matches it, unencrypted"
        ) from None
    return context


def check_exposure(address: str, tls: bool, insecure_http: bool) -> None:
    """DashboardConfigError when plain HTTP would carry the password beyond this machine."""
    if tls or insecure_http or is_loopback(address):
        return
    raise DashboardConfigError(
        f"--address {address or '(every interface)'} without TLS would send the dashboard's "
        "password in clear: give --tls-cert and --tls-key (CONVEYOR_DASHBOARD_TLS_CERT, "
        "CONVEYOR_DASHBOARD_TLS_KEY), listen on 127.0.0.1, or pass --insecure-http "
        "(CONVEYOR_DASHBOARD_INSECURE_HTTP=true) when a proxy in front terminates TLS"
    )


def _authorized(header: str | None, credentials: list[tuple[str, str]]) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Compare every pair in constant time: no early exit that times which user exists.
    found = False
    for known_user, known_password in credentials:
        same_user = hmac.compare_digest(user.encode(), known_user.encode())
        same_password = hmac.compare_digest(password.encode(), known_password.encode())
        found |= same_user and same_password
    return found


def make_handler(
    client: ConveyorClient, credentials: list[tuple[str, str]]
) -> type[BaseHTTPRequestHandler]:
    """The request handler class, bound to a client and the accepted credentials.

    A request never waits out a Redis outage: it is answered at once with the last data read
    for its URL, marked as such (``X-Conveyor-Reconnecting``), and the page polls on. The
    client reconnects by itself on a later request (to the promoted primary, behind Sentinel).
    """
    client = client.retrying_for(0)
    last = _LastAnswers()

    class Handler(BaseHTTPRequestHandler):
        server_version = "conveyor-dashboard"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: access logs would repeat every poll of every open page."""

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str,
            extra: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
                self.send_header(name, value)
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Basic realm="conveyor", charset="UTF-8"')
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
            body = json.dumps(data, sort_keys=True).encode()
            self._send(status, body, "application/json", extra)

        def _api(self, data: Any) -> None:
            """A good answer: sent, and kept for an outage."""
            last.keep(self.path, data)
            self._json(HTTPStatus.OK, data)

        def _unavailable(self, exc: ConveyorUnavailableError) -> None:
            kept = last.get(self.path)
            if kept is None:
                self._json(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"error": str(exc), "reconnecting": True},
                    {STALE_HEADER: "0", "Retry-After": "2"},
                )
                return
            read_at, data = kept
            age = f"{max(0.0, time.monotonic() - read_at):.0f}"
            self._json(HTTPStatus.OK, data, {STALE_HEADER: age})

        def do_HEAD(self) -> None:
            """As GET, without the body."""
            self.do_GET()

        def do_GET(self) -> None:
            """Serve the page, its assets, and the JSON API; everything behind basic auth."""
            if not _authorized(self.headers.get("Authorization"), credentials):
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "authentication required"})
                return
            url = urlsplit(self.path)
            try:
                if url.path in STATIC:
                    name, content_type = STATIC[url.path]
                    body = files(__package__).joinpath("static", name).read_bytes()
                    self._send(HTTPStatus.OK, body, content_type)
                elif url.path == "/api/list":
                    self._api(self._list(parse_qs(url.query)))
                elif url.path.startswith("/api/deployments/"):
                    deployment_id = self._id(url.path.removeprefix("/api/deployments/"))
                    self._api(deployment_view(client.status(deployment_id)))
                elif url.path.startswith("/api/releases/"):
                    release_id = self._id(url.path.removeprefix("/api/releases/"))
                    release = client.release_status(release_id)
                    self._api(release_view(client, release))
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": "no such page"})
            except ValueError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except DeploymentNotFoundError as exc:
                self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
            except DeploymentLostError as exc:
                self._json(HTTPStatus.GONE, {"error": str(exc)})
            except ConveyorUnavailableError as exc:
                self._unavailable(exc)

        @staticmethod
        def _id(raw: str) -> str:
            if not _ID.match(raw):
                raise ValueError("ids are letters, digits and - _ . : only")
            return raw

        @staticmethod
        def _list(query: dict[str, list[str]]) -> dict[str, Any]:
            unknown = sorted(set(query) - _LIST_PARAMS)
            if unknown:
                raise ValueError(f"unknown parameter(s): {', '.join(unknown)}")
            only = query["only"][-1] if query.get("only") else None
            if only not in (None, "deployments", "releases"):
                raise ValueError("only must be deployments or releases")
            raw_limit = (query.get("limit") or ["20"])[-1]
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
                raise ValueError("limit must be a whole number from 1 to 1000")
            return list_view(
                client,
                services=tuple(query.get("service", [])),
                states=tuple(query.get("state", [])),
                clusters=tuple(query.get("cluster", [])),
                only=only,
                limit=int(raw_limit),
            )

    return Handler


class TLSHTTPServer(ThreadingHTTPServer):
    """The threaded server, speaking TLS on every connection.

    The handshake happens in the connection's own thread, with a bound on its time, so that a
    client that connects and says nothing never holds up the accept loop.
    """

    handshake_timeout = 10.0

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Handshake, then serve the request over the TLS connection."""
        raw: socket.socket = request
        raw.settimeout(self.handshake_timeout)
        try:
            connection = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            return  # not TLS (plain HTTP to the HTTPS port), or gone: nothing to answer
        try:
            connection.settimeout(None)
            super().finish_request(connection, client_address)
        finally:
            connection.close()


def make_server(
    client: ConveyorClient,
    address: str,
    port: int,
    credentials: list[tuple[str, str]],
    tls: ssl.SSLContext | None = None,
) -> ThreadingHTTPServer:
    """A dashboard server bound to ``address:port`` (port 0: a free one); not yet serving.

    With ``tls``, every connection is HTTPS.
    """
    handler = make_handler(client, credentials)
    server = (
        TLSHTTPServer((address, port), handler, tls)
        if tls is not None
        else ThreadingHTTPServer((address, port), handler)
    )
    server.daemon_threads = True
    return server
