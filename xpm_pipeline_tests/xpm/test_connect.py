"""The connect flow: loopback callback, state check, tenant choice, clear failures.

The person's browser is played by a thread that follows the announced URL's redirect_uri; Xero
identity is a scripted transport. The end-to-end run against the sandbox is further down.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import ConfigError, IdentityEndpoints, Settings
from xpm_pipeline.secrets import Secret
from xpm_pipeline.xpm.auth import OAuthClient
from xpm_pipeline.xpm.connect import ConnectError, ConsentDenied, NoPracticeManagerTenants, authorize

ENDPOINTS = IdentityEndpoints.same_origin("http://identity.test")
CONNECTIONS = [
    {"id": "c1", "authEventId": "e", "tenantId": "t1", "tenantType": "PRACTICEMANAGER", "tenantName": "Alpha"},
    {"id": "c2", "authEventId": "e", "tenantId": "t2", "tenantType": "PRACTICEMANAGER", "tenantName": "Beta"},
    {"id": "c3", "authEventId": "e", "tenantId": "t3", "tenantType": "ORGANISATION", "tenantName": "Books"},
]


class Identity:
    def __init__(self, connections=CONNECTIONS):
        self.connections = connections
        self.forms = []

    def __call__(self, request):
        if request.url.path == "/connect/token":
            self.forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})
            return httpx.Response(200, json={"access_token": "acc", "refresh_token": "ref", "expires_in": 1800,
                                             "scope": "practicemanager offline_access"})
        return httpx.Response(200, json=self.connections)


def oauth(identity):
    return OAuthClient(ENDPOINTS, "client-1", Secret("shh"), http=httpx.Client(transport=httpx.MockTransport(identity)),
                       clock=ManualClock())


def browser(answer):
    """An announce callback that, like a person, comes back through the redirect with ``answer(query)``."""
    seen = {}

    def announce(line):
        url = line.split()[-1]
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        seen.update(query)
        params = answer(query)
        threading.Thread(target=httpx.get, args=(f"{query['redirect_uri']}?{urlencode(params)}",), daemon=True).start()

    return announce, seen


def allow(query):
    return {"code": "the-code", "state": query["state"]}


def test_consent_returns_tokens_and_practice_manager_tenants():
    identity = Identity()
    announce, seen = browser(allow)
    tokens, connections = authorize(oauth=oauth(identity), announce=announce, timeout_seconds=10)
    assert tokens.access_token == Secret("acc") and tokens.refresh_token == Secret("ref")
    assert [c.tenant_id for c in connections] == ["t1", "t2"]
    assert seen["scope"] == "practicemanager offline_access" and len(seen["state"]) >= 20
    assert urlsplit(seen["redirect_uri"]).hostname == "127.0.0.1" and seen["redirect_uri"].endswith("/callback")
    assert [{k: v for k, v in form.items() if k != "code_verifier"} for form in identity.forms] == [
        {"grant_type": "authorization_code", "code": "the-code", "redirect_uri": seen["redirect_uri"]}]


def test_pkce_s256_challenge_on_the_url_and_its_fresh_verifier_on_the_exchange():
    verifiers = []
    for _ in range(2):
        identity = Identity()
        announce, seen = browser(allow)
        authorize(oauth=oauth(identity), announce=announce, timeout_seconds=10)
        verifier = identity.forms[0]["code_verifier"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,128}", verifier)
        digest = hashlib.sha256(verifier.encode()).digest()
        assert seen["code_challenge_method"] == "S256"
        assert seen["code_challenge"] == base64.urlsafe_b64encode(digest).decode().rstrip("=")
        assert verifier not in urlencode(seen)  # only its hash travels through the browser
        verifiers.append(verifier)
    assert verifiers[0] != verifiers[1]


def test_tenant_choice_by_list_and_by_callable():
    announce, _ = browser(allow)
    _, picked = authorize(oauth=oauth(Identity()), announce=announce, choose_tenants=["t2"], timeout_seconds=10)
    assert [c.tenant_id for c in picked] == ["t2"]
    announce, _ = browser(allow)
    _, picked = authorize(oauth=oauth(Identity()), announce=announce, timeout_seconds=10,
                          choose_tenants=lambda conns: [c for c in conns if c.tenant_name == "Alpha"])
    assert [c.tenant_id for c in picked] == ["t1"]


def test_choosing_an_unconsented_tenant_names_the_available_ones():
    announce, _ = browser(allow)
    with pytest.raises(ConnectError, match="'Alpha' \\(t1\\)"):
        authorize(oauth=oauth(Identity()), announce=announce, choose_tenants=["t9"], timeout_seconds=10)


def forged_first(forged: dict, real, statuses: list):
    """A browser that first follows a forged or stale link to the callback, then the real redirect."""

    def announce(line):
        query = {k: v[0] for k, v in parse_qs(urlsplit(line.split()[-1]).query).items()}

        def go():
            statuses.append(httpx.get(f"{query['redirect_uri']}?{urlencode(forged)}").status_code)
            statuses.append(httpx.get(f"{query['redirect_uri']}?{urlencode(real(query))}").status_code)

        threading.Thread(target=go, daemon=True).start()

    return announce


@pytest.mark.parametrize("forged", [
    {"code": "evil-code", "state": "forged"},
    {"code": "evil-code"},
    {"error": "access_denied", "state": "forged"},
], ids=["wrong-state", "no-state", "forged-error"])
def test_a_callback_without_this_flows_state_is_answered_400_and_ignored(forged):
    identity, statuses = Identity(), []
    tokens, _ = authorize(oauth=oauth(identity), announce=forged_first(forged, allow, statuses), timeout_seconds=10)
    assert statuses == [400, 200]
    assert tokens.access_token == Secret("acc") and [f["code"] for f in identity.forms] == ["the-code"]


def test_an_error_callback_with_the_right_state_ends_the_flow_in_one_line():
    identity, statuses = Identity(), []
    announce = forged_first({"error": "access_denied", "state": "forged"},
                            lambda q: {"error": "server_error\nsecond line", "state": q["state"]}, statuses)
    with pytest.raises(ConnectError, match="server_error") as info:
        authorize(oauth=oauth(identity), announce=announce, timeout_seconds=10)
    assert "\n" not in str(info.value) and not isinstance(info.value, ConsentDenied)
    assert statuses == [400, 200] and identity.forms == []


def in_thread(call) -> Future:
    """Run ``call`` on a daemon thread; the test waits on the future (so a hang fails instead of blocking)."""
    future: Future = Future()

    def run():
        try:
            future.set_result(call())
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


def idle_connection(redirect_uri: str) -> socket.socket:
    """A TCP connection to the callback port that never sends a byte (a scanner, a stuck browser tab)."""
    parts = urlsplit(redirect_uri)
    return socket.create_connection((parts.hostname, parts.port))


def test_an_idle_connection_does_not_stall_the_real_callback():
    identity, idle = Identity(), []
    announce_real, _ = browser(allow)

    def announce(line):
        idle.append(idle_connection(parse_qs(urlsplit(line.split()[-1]).query)["redirect_uri"][0]))
        announce_real(line)

    try:
        tokens, _ = in_thread(lambda: authorize(oauth=oauth(identity), announce=announce, timeout_seconds=30)).result(60)
    finally:
        for sock in idle:
            sock.close()
    assert tokens.access_token == Secret("acc") and len(identity.forms) == 1


def test_timeout_holds_on_the_injected_clock_with_an_idle_connection_open():
    clock, opened, idle = ManualClock(), threading.Event(), []

    def announce(line):
        idle.append(idle_connection(parse_qs(urlsplit(line.split()[-1]).query)["redirect_uri"][0]))
        opened.set()

    waiting = in_thread(lambda: authorize(oauth=oauth(Identity()), announce=announce, timeout_seconds=300,
                                          clock=clock))
    try:
        assert opened.wait(30)
        clock.advance(299)
        with pytest.raises(FutureTimeout):
            waiting.result(0.3)  # 299 simulated seconds: still waiting
        clock.advance(1)
        with pytest.raises(ConnectError, match="no answer from the consent page within 300 s"):
            waiting.result(30)
    finally:
        for sock in idle:
            sock.close()


def test_timeout_holds_on_the_real_clock_with_an_idle_connection_open():
    idle = []

    def announce(line):
        idle.append(idle_connection(parse_qs(urlsplit(line.split()[-1]).query)["redirect_uri"][0]))

    started = time.monotonic()
    waiting = in_thread(lambda: authorize(oauth=oauth(Identity()), announce=announce, timeout_seconds=0.5))
    try:
        with pytest.raises(ConnectError, match="within 0.5 s"):
            waiting.result(30)
        assert 0.5 <= time.monotonic() - started < 0.5 + 25  # gave up, not held by the idle connection (generous: CI is loaded)
    finally:
        for sock in idle:
            sock.close()


def test_access_denied_is_clear():
    announce, _ = browser(lambda q: {"error": "access_denied", "state": q["state"]})
    with pytest.raises(ConsentDenied, match="declined"):
        authorize(oauth=oauth(Identity()), announce=announce, timeout_seconds=10)


def test_no_practice_manager_tenant_names_the_privilege():
    announce, _ = browser(allow)
    with pytest.raises(NoPracticeManagerTenants) as info:
        authorize(oauth=oauth(Identity(connections=CONNECTIONS[2:])), announce=announce, timeout_seconds=10)
    message = str(info.value)
    assert "Authorise 3rd Party Full Access" in message and "Connect third-party add-ons" in message
    assert "\n" not in message


def test_no_answer_times_out():
    with pytest.raises(ConnectError, match="no answer"):
        authorize(oauth=oauth(Identity()), announce=lambda line: None, timeout_seconds=0.2)


def test_missing_client_settings_are_a_config_error():
    with pytest.raises(ConfigError, match="XPM_CLIENT_ID"):
        authorize(Settings(identity=ENDPOINTS), announce=lambda line: None, timeout_seconds=0.1)


# -- end to end against the sandbox -----------------------------------------------------------------

from sqlalchemy import select  # noqa: E402

from xpm_pipeline.secrets import TokenCipher, TokenKeyError  # noqa: E402
from xpm_pipeline.warehouse.control import oauth_grants  # noqa: E402
from xpm_pipeline.warehouse.db import make_engine  # noqa: E402
from xpm_pipeline.warehouse.migrate import migrate  # noqa: E402
from xpm_pipeline.xpm.connect import connect  # noqa: E402
from xpm_pipeline.xpm.tokens import TokenStore  # noqa: E402
from xpm_pipeline_tests.support import consent_on_sandbox_page  # noqa: E402


@pytest.fixture
def sandbox():
    sandbox_module = pytest.importorskip("xpm_pipeline.sandbox")
    clock = ManualClock()
    config = sandbox_module.SandboxConfig(size="small", seed=1, tenants=2, clock=clock)
    with sandbox_module.SandboxServer(config, port=0) as sb:
        yield sb, clock


def sandbox_oauth(sb, clock):
    return OAuthClient(IdentityEndpoints.same_origin(sb.base_url), sb.client_id, Secret(sb.client_secret), clock=clock)


def test_connect_end_to_end_with_auto_consent(warehouse_url, sandbox):
    sb, clock = sandbox
    key = TokenCipher.generate_key()
    engine = make_engine(warehouse_url)
    migrate(engine, clock=clock)
    store = TokenStore(engine, TokenCipher(key), sandbox_oauth(sb, clock), clock=clock)
    grant_id, connections = connect(store, auto_consent=True, timeout_seconds=20)
    assert sorted(c.tenant_id for c in connections) == sorted(sb.tenant_ids)
    assert sorted(t.tenant_id for t in store.tenants()) == sorted(sb.tenant_ids)
    assert {t.grant_id for t in store.tenants()} == {grant_id}
    paths = [e["path"] for e in sb.request_log]
    assert "/identity/connect/authorize/consent" in paths and paths.count("/connect/token") == 1
    token = store.access_token(sb.tenant_ids[0])
    assert store.oauth.connections(token)  # the stored token works
    with engine.connect() as conn:
        row = conn.execute(select(oauth_grants).where(oauth_grants.c.grant_id == grant_id)).one()
    raw = " ".join(str(v) for v in row)
    assert token.reveal() not in raw and "sbx_rt_" not in raw and "sbx_at_" not in raw
    assert TokenCipher(key).decrypt(row.refresh_token_enc).reveal().startswith("sbx_rt_")
    with pytest.raises(TokenKeyError):
        TokenCipher(TokenCipher.generate_key()).decrypt(row.refresh_token_enc)


def test_auto_consent_to_chosen_tenants_only(sandbox):
    sb, clock = sandbox
    wanted = sb.tenant_ids[1]
    tokens, connections = authorize(endpoints=IdentityEndpoints.same_origin(sb.base_url), client_id=sb.client_id,
                                    client_secret=Secret(sb.client_secret), auto_consent=True,
                                    choose_tenants=[wanted], timeout_seconds=20, clock=clock)
    assert [c.tenant_id for c in connections] == [wanted]
    assert tokens.expires_at == clock.now() + timedelta(seconds=1800)


def test_denied_consent_on_the_sandbox_page(sandbox):
    sb, clock = sandbox

    def person_clicks_cancel(line):
        def go():
            httpx.get(consent_on_sandbox_page(line.split()[-1], "deny"))

        threading.Thread(target=go, daemon=True).start()

    with pytest.raises(ConsentDenied):
        authorize(oauth=sandbox_oauth(sb, clock), announce=person_clicks_cancel, timeout_seconds=20)


def test_unknown_client_is_refused_on_the_authorize_page(sandbox):
    sb, clock = sandbox
    with pytest.raises(ConnectError, match="XPM_CLIENT_ID"):
        authorize(endpoints=IdentityEndpoints.same_origin(sb.base_url), client_id="not-the-app",
                  client_secret=Secret("x"), auto_consent=True, timeout_seconds=20)
