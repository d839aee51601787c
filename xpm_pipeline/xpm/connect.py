"""The OAuth authorization-code flow as ``xpm-pipeline connect`` runs it.

A one-shot loopback HTTP server receives Xero's redirect (``http://127.0.0.1:PORT/callback``). A
person opens the printed authorize URL and consents; or, with ``auto_consent=True``, this module
submits the consent form itself, which only the sandbox offers (its form posts ``consent_id``,
``decision`` and optional repeated ``tenant`` fields to ``/identity/connect/authorize/consent``).
The callback server accepts only the redirect carrying this flow's ``state`` (CSRF): any other request to
it is answered 400 and ignored, so a forged link cannot abort the real consent. It serves each connection on
its own thread with a read timeout, so an idle connection cannot hold it past ``timeout_seconds``. The code
is exchanged with a PKCE verifier (RFC 7636, S256), so a code intercepted on the way back is worthless.
Then: list the XPM connections, apply the tenant choice.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterable, Sequence
from html.parser import HTMLParser
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from xpm_pipeline.clock import SYSTEM_CLOCK, Clock
from xpm_pipeline.config import DEFAULT_SCOPES, ConfigError, IdentityEndpoints, Settings
from xpm_pipeline.secrets import Secret
from xpm_pipeline.xpm.auth import Connection, OAuthClient, Pkce, TokenSet

log = logging.getLogger(__name__)

CALLBACK_PATH = "/callback"
TenantChoice = Sequence[str] | Callable[[list[Connection]], Iterable[Connection | str]] | None


class ConnectError(RuntimeError):
    """The connect flow failed; the message is one line saying what to do."""


class ConsentDenied(ConnectError):
    """The user (or the consent form) answered Deny."""


class NoPracticeManagerTenants(ConnectError):
    """The consent covered no XPM organisation."""


NO_XPM_MESSAGE = (
    "the consent covered no Xero Practice Manager organisation: the consenting user's XPM role needs the "
    'privilege "Authorise 3rd Party Full Access" ("Connect third-party add-ons" in the newer UI); '
    "grant it in XPM and run `xpm-pipeline connect` again"
)


# -- loopback callback server -------------------------------------------------------------------

CALLBACK_READ_TIMEOUT = 10.0  # seconds one connection may take to send its request line and headers
WAIT_STEP = 0.05  # how often the waiting thread looks at the clock


class _Callback:
    """The one redirect this flow accepts: the first that carries its ``state``. Anything else (a stale
    tab, a forged link, a port scanner) is answered 400 and ignored, so it cannot abort the real consent."""

    def __init__(self, state: str) -> None:
        self._state = state.encode()
        self._lock = threading.Lock()
        self._claimed = False
        self.done = threading.Event()
        self.params: dict[str, str] = {}

    def claim(self, params: dict[str, str]) -> bool:
        with self._lock:
            if self._claimed or not hmac.compare_digest(params.get("state", "").encode(), self._state):
                return False
            self._claimed = True
            self.params = params
            return True


def _page(text: str) -> bytes:
    return f"<!DOCTYPE html><html><body><p>{escape(text)}</p></body></html>".encode()


CONNECTED_PAGE = _page("xpm-pipeline is connected. You can close this window.")
FAILED_PAGE = _page("Connection failed; see the terminal.")
IGNORED_PAGE = _page(
    "This link does not belong to the xpm-pipeline connect waiting here (wrong, missing or already used "
    "state); it was ignored."
)


def _handler_for(result: _Callback) -> type[BaseHTTPRequestHandler]:
    class CallbackHandler(BaseHTTPRequestHandler):
        timeout = CALLBACK_READ_TIMEOUT  # an idle or slow connection gives up its thread, never the flow

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            if parts.path != CALLBACK_PATH:
                self.send_error(404)
                return
            params = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
            if not result.claim(params):
                self._answer(400, IGNORED_PAGE)
                return
            try:
                ok = "code" in params and "error" not in params
                self._answer(200, CONNECTED_PAGE if ok else FAILED_PAGE)
            finally:
                result.done.set()

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # the query holds the code: never log it
            return

    return CallbackHandler


class _CallbackServer(ThreadingHTTPServer):
    daemon_threads = True  # a connection still open when the flow ends does not keep the process alive
    block_on_close = False  # ... nor delay closing the server


class _LoopbackServer:
    """Serves ``/callback`` on a background thread, one thread per connection."""

    def __init__(self, host: str, port: int, state: str) -> None:
        self.result = _Callback(state)
        self._server = _CallbackServer((host, port), _handler_for(self.result))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="xpm-connect-callback", daemon=True
        )

    @property
    def redirect_uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{CALLBACK_PATH}"

    def wait(self, timeout_seconds: float, clock: Clock) -> dict[str, str]:
        """The accepted callback's parameters. Gives up after ``timeout_seconds`` on the injected clock, or
        on the monotonic clock if that comes first (a simulated clock nobody advances must not hang connect)."""
        started_at, started = clock.now(), time.monotonic()
        while not self.result.done.wait(WAIT_STEP):
            waited = max((clock.now() - started_at).total_seconds(), time.monotonic() - started)
            if waited >= timeout_seconds:
                raise ConnectError(f"no answer from the consent page within {timeout_seconds:g} s; run connect again")
        return self.result.params

    def __enter__(self) -> "_LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# -- sandbox consent form -----------------------------------------------------------------------


class _FormParser(HTMLParser):
    """The first ``<form>``: its action and its named inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []
        self.choices: dict[str, list[str]] = {}  # checkbox / radio name -> the values offered
        self._in_form = False
        self._seen_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self._seen_form:
            self._in_form = self._seen_form = True
            self.action = a.get("action", "")
        elif tag == "input" and self._in_form and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio"):
                self.choices.setdefault(a["name"], []).append(a.get("value", ""))
            elif kind not in ("submit", "button"):
                self.fields.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _auto_consent(authorize_url: str, redirect_uri: str, tenant_ids: Sequence[str] | None, timeout: float) -> None:
    """Play the user's part on the sandbox's consent page, then follow the redirect to our callback."""
    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        try:
            page = http.get(authorize_url)
            if page.is_redirect:
                location = urljoin(authorize_url, page.headers["location"])
            else:
                if page.status_code != 200:
                    raise ConnectError(
                        f"the identity server refused the authorize request (HTTP {page.status_code}); "
                        "check XPM_CLIENT_ID and the redirect URI"
                    )
                form = _FormParser()
                form.feed(page.text)
                if form.action is None:
                    raise ConnectError(
                        "the consent page has no machine-postable form (auto consent works with the sandbox "
                        "only); run without --yes and consent in a browser"
                    )
                data: dict[str, str | list[str]] = {k: v for k, v in form.fields if k not in ("decision", "tenant")}
                data["decision"] = "allow"
                if tenant_ids:
                    offered = form.choices.get("tenant")
                    unknown = [t for t in tenant_ids if offered is not None and t not in offered]
                    if unknown:
                        raise ConnectError(
                            f"organisation {', '.join(unknown)} is not one this login may connect; it may connect: "
                            f"{', '.join(offered) or 'none'}"
                        )
                    data["tenant"] = list(tenant_ids)  # repeated field; absent means every organisation
                answer = http.post(urljoin(authorize_url, form.action), data=data)
                if not answer.is_redirect:
                    raise ConnectError(f"the consent form was not accepted (HTTP {answer.status_code})")
                location = urljoin(authorize_url, answer.headers["location"])
            if not location.startswith(redirect_uri):
                raise ConnectError("the identity server redirected somewhere other than the callback")
            http.get(location)
        except httpx.TransportError as exc:
            raise ConnectError(f"could not reach the identity server ({type(exc).__name__})") from None


# -- the flow -----------------------------------------------------------------------------------


def _oauth_from(
    settings: Settings | None,
    oauth: OAuthClient | None,
    endpoints: IdentityEndpoints | None,
    client_id: str | None,
    client_secret: Secret | None,
    clock: Clock,
) -> OAuthClient:
    if oauth is not None:
        return oauth
    if settings is not None:
        endpoints = endpoints or settings.identity
        client_id = client_id or settings.client_id
        client_secret = client_secret or settings.client_secret
    if endpoints is None:
        raise ConfigError("no identity endpoints: set XPM_IDENTITY_URL or XPM_API_BASE_URL")
    if not client_id or client_secret is None:
        raise ConfigError("XPM_CLIENT_ID and XPM_CLIENT_SECRET must be set (the sandbox prints both)")
    return OAuthClient(endpoints, client_id, Secret(client_secret), clock=clock)


def _choose(connections: list[Connection], choice: TenantChoice) -> list[Connection]:
    if choice is None:
        return connections
    picked = choice(connections) if callable(choice) else choice
    by_id = {c.tenant_id: c for c in connections}
    chosen: list[Connection] = []
    for item in picked:
        tenant_id = item.tenant_id if isinstance(item, Connection) else str(item)
        if tenant_id not in by_id:
            available = ", ".join(f"{c.tenant_name!r} ({c.tenant_id})" for c in connections)
            raise ConnectError(f"tenant {tenant_id} is not among the consented XPM organisations: {available}")
        if by_id[tenant_id] not in chosen:
            chosen.append(by_id[tenant_id])
    if not chosen:
        raise ConnectError("no tenant was chosen; nothing to connect")
    return chosen


def authorize(
    settings: Settings | None = None,
    *,
    oauth: OAuthClient | None = None,
    endpoints: IdentityEndpoints | None = None,
    client_id: str | None = None,
    client_secret: Secret | None = None,
    redirect_host: str = "127.0.0.1",
    port: int = 0,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    auto_consent: bool = False,
    choose_tenants: TenantChoice = None,
    open_browser: bool = False,
    timeout_seconds: float = 300,
    announce: Callable[[str], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[TokenSet, list[Connection]]:
    """Run the consent flow; return the tokens and the chosen XPM connections (not yet stored).

    ``choose_tenants``: None keeps every XPM organisation; a list of tenant ids keeps those (and, with
    ``auto_consent``, consents only to them); a callable gets the connections and returns the kept
    ones (or their ids). Pass the result to ``TokenStore.register``.
    """
    client = _oauth_from(settings, oauth, endpoints, client_id, client_secret, clock)
    state, pkce = secrets.token_urlsafe(24), Pkce.create()
    with _LoopbackServer(redirect_host, port, state) as server:
        url = client.authorize_url(server.redirect_uri, scopes, state=state, pkce=pkce)
        if auto_consent:
            wanted = list(choose_tenants) if isinstance(choose_tenants, (list, tuple)) else None
            _auto_consent(url, server.redirect_uri, wanted, timeout=min(timeout_seconds, 60))
        else:
            say = announce or (lambda line: print(line, file=sys.stderr))
            say(f"Open this URL to connect XPM, then come back here:\n{url}")
            if open_browser:
                webbrowser.open(url)
        params = server.wait(timeout_seconds, clock)
    error = params.get("error")
    if error == "access_denied":
        raise ConsentDenied("consent was declined (access_denied); run `xpm-pipeline connect` again and choose Allow")
    if error:
        raise ConnectError(f"the identity server answered {error[:60]!r} instead of a code; run connect again")
    code = params.get("code")
    if not code:
        raise ConnectError("the callback carried no authorization code; run connect again")
    token_set = client.exchange_code(Secret(code), server.redirect_uri, pkce=pkce)
    connections = client.connections(token_set.access_token)
    if not connections:
        raise NoPracticeManagerTenants(NO_XPM_MESSAGE)
    return token_set, _choose(connections, choose_tenants)


def connect(store, **authorize_kwargs) -> tuple[str, list[Connection]]:
    """``authorize`` with the store's OAuth client, then ``store.register``; returns (grant id, tenants)."""
    authorize_kwargs.setdefault("oauth", store.oauth)
    authorize_kwargs.setdefault("clock", store.clock)
    token_set, connections = authorize(**authorize_kwargs)
    grant_id = store.register(token_set, connections, store.oauth.client_id)
    return grant_id, connections
