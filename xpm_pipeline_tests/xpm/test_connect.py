"""The connect flow: loopback callback, state check, tenant choice, clear failures.

The person's browser is played by a thread that follows the announced URL's redirect_uri; Xero
identity is a scripted transport. The end-to-end run against the sandbox is further down.
"""

from __future__ import annotations

import threading
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
    assert identity.forms == [{"grant_type": "authorization_code", "code": "the-code",
                               "redirect_uri": seen["redirect_uri"]}]


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


def test_state_mismatch_is_refused_before_any_exchange():
    identity = Identity()
    announce, _ = browser(lambda q: {"code": "the-code", "state": "forged"})
    with pytest.raises(ConnectError, match="state"):
        authorize(oauth=oauth(identity), announce=announce, timeout_seconds=10)
    assert identity.forms == []


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

import re  # noqa: E402

from sqlalchemy import select  # noqa: E402

from xpm_pipeline.secrets import TokenCipher, TokenKeyError  # noqa: E402
from xpm_pipeline.warehouse.control import oauth_grants  # noqa: E402
from xpm_pipeline.warehouse.db import make_engine  # noqa: E402
from xpm_pipeline.warehouse.migrate import migrate  # noqa: E402
from xpm_pipeline.xpm.connect import connect  # noqa: E402
from xpm_pipeline.xpm.tokens import TokenStore  # noqa: E402


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
            page = httpx.get(line.split()[-1])
            consent_id = re.search(r'name="consent_id" value="([^"]+)"', page.text).group(1)
            answer = httpx.post(f"{sb.base_url}/identity/connect/authorize/consent",
                                data={"consent_id": consent_id, "decision": "deny"})
            httpx.get(answer.headers["location"])

        threading.Thread(target=go, daemon=True).start()

    with pytest.raises(ConsentDenied):
        authorize(oauth=sandbox_oauth(sb, clock), announce=person_clicks_cancel, timeout_seconds=20)


def test_unknown_client_is_refused_on_the_authorize_page(sandbox):
    sb, clock = sandbox
    with pytest.raises(ConnectError, match="XPM_CLIENT_ID"):
        authorize(endpoints=IdentityEndpoints.same_origin(sb.base_url), client_id="not-the-app",
                  client_secret=Secret("x"), auto_consent=True, timeout_seconds=20)
