"""OAuthClient on a scripted transport: wire format, error mapping, and no credential in any message."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import IdentityEndpoints
from xpm_pipeline.secrets import Secret
from xpm_pipeline.xpm.auth import (
    Connection,
    IdentityError,
    IdentityUnavailable,
    InvalidGrant,
    OAuthClient,
    TokenSet,
)

ENDPOINTS = IdentityEndpoints.same_origin("http://identity.test")
CLIENT_SECRET = "client-secret-XYZ"
REFRESH = "refresh-token-ABC"
ACCESS = "access-token-DEF"
CODE = "auth-code-GHI"
CREDENTIALS = (CLIENT_SECRET, REFRESH, ACCESS, CODE)


def make(handler, clock=None):
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return OAuthClient(ENDPOINTS, "client-1", Secret(CLIENT_SECRET), http=http, clock=clock or ManualClock())


def token_json(**extra):
    body = {"access_token": "new-access", "refresh_token": "new-refresh", "expires_in": 1800,
            "token_type": "Bearer", "scope": "practicemanager offline_access"}
    body.update(extra)
    return httpx.Response(200, json=body)


def assert_clean(*texts):
    for text in texts:
        for credential in CREDENTIALS:
            assert credential not in text, (credential, text)


def test_authorize_url_carries_the_oauth_parameters():
    client = make(lambda r: httpx.Response(500))
    url = client.authorize_url("http://127.0.0.1:9999/callback", state="s-1")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == ENDPOINTS.authorize_url
    query = parse_qs(parts.query)
    assert query == {
        "response_type": ["code"],
        "client_id": ["client-1"],
        "redirect_uri": ["http://127.0.0.1:9999/callback"],
        "scope": ["practicemanager offline_access"],
        "state": ["s-1"],
    }


def test_refresh_posts_form_with_basic_auth_and_computes_expiry():
    seen = []

    def handler(request):
        seen.append(request)
        return token_json()

    clock = ManualClock()
    tokens = make(handler, clock).refresh(Secret(REFRESH))
    request, = seen
    assert request.method == "POST" and str(request.url) == ENDPOINTS.token_url
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH]}
    scheme, encoded = request.headers["authorization"].split()
    assert scheme == "Basic" and base64.b64decode(encoded).decode() == f"client-1:{CLIENT_SECRET}"
    assert tokens.access_token == Secret("new-access") and tokens.refresh_token == Secret("new-refresh")
    assert tokens.expires_at == clock.now() + timedelta(seconds=1800)
    assert tokens.scopes == ("practicemanager", "offline_access")
    assert "new-access" not in repr(tokens) and "new-refresh" not in repr(tokens)


def test_expiry_trusts_expires_in():
    clock = ManualClock()
    tokens = make(lambda r: token_json(expires_in=720), clock).refresh(Secret(REFRESH))
    assert tokens.expires_at == clock.now() + timedelta(seconds=720)


def test_exchange_code_sends_code_and_redirect_uri():
    seen = []

    def handler(request):
        seen.append(parse_qs(request.content.decode()))
        return token_json()

    make(handler).exchange_code(Secret(CODE), "http://127.0.0.1:1/callback")
    assert seen == [{"grant_type": ["authorization_code"], "code": [CODE], "redirect_uri": ["http://127.0.0.1:1/callback"]}]


def test_invalid_grant_is_typed_and_clean():
    def handler(request):
        return httpx.Response(400, json={"error": "invalid_grant", "error_description": f"token {REFRESH} is gone"})

    with pytest.raises(InvalidGrant) as info:
        make(handler).refresh(Secret(REFRESH))
    exc = info.value
    assert exc.error == "invalid_grant" and exc.status_code == 400
    assert "invalid_grant" in str(exc) and "400" in str(exc)
    assert_clean(str(exc), repr(exc))


@pytest.mark.parametrize(
    "response, kind, code",
    [
        (httpx.Response(400, json={"error": "invalid_client"}), IdentityError, "invalid_client"),
        (httpx.Response(401, json={"error": "unauthorized_client", "error_description": CLIENT_SECRET}), IdentityError,
         "unauthorized_client"),
        (httpx.Response(400, text=f"<html>refresh_token={REFRESH}</html>"), IdentityError, None),
        (httpx.Response(503, text="busy"), IdentityUnavailable, None),
        (httpx.Response(429, json={"error": "rate_limited"}), IdentityUnavailable, "rate_limited"),
    ],
)
def test_other_errors_are_typed_with_code_and_status(response, kind, code):
    with pytest.raises(kind) as info:
        make(lambda r: response).refresh(Secret(REFRESH))
    exc = info.value
    assert type(exc) is kind
    assert exc.error == code and exc.status_code == response.status_code
    assert str(response.status_code) in str(exc)
    assert_clean(str(exc), repr(exc))


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                   httpx.RemoteProtocolError("reset")])
def test_transport_errors_become_identity_unavailable(error):
    def handler(request):
        raise error

    with pytest.raises(IdentityUnavailable) as info:
        make(handler).refresh(Secret(REFRESH))
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert_clean(str(info.value))


def test_malformed_token_response_is_an_identity_error():
    with pytest.raises(IdentityError, match="malformed"):
        make(lambda r: httpx.Response(200, json={"token_type": "Bearer"})).refresh(Secret(REFRESH))
    with pytest.raises(IdentityError, match="malformed"):
        make(lambda r: httpx.Response(200, text="not json")).refresh(Secret(REFRESH))


def test_connections_keep_practice_manager_only():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json=[
            {"id": "c1", "authEventId": "e1", "tenantId": "t1", "tenantType": "PRACTICEMANAGER", "tenantName": "Firm"},
            {"id": "c2", "authEventId": "e1", "tenantId": "t2", "tenantType": "ORGANISATION", "tenantName": "Books"},
        ])

    result = make(handler).connections(Secret(ACCESS))
    assert result == [Connection(id="c1", tenant_id="t1", tenant_type="PRACTICEMANAGER", tenant_name="Firm",
                                 auth_event_id="e1")]
    assert seen[0].headers["authorization"] == f"Bearer {ACCESS}"
    assert str(seen[0].url) == ENDPOINTS.connections_url


def test_connections_401_is_clean():
    with pytest.raises(IdentityError) as info:
        make(lambda r: httpx.Response(401, json={"Title": "Unauthorized"})).connections(Secret(ACCESS))
    assert info.value.status_code == 401
    assert_clean(str(info.value))


def test_delete_connection_and_revoke():
    seen = []

    def handler(request):
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204 if request.url.path.endswith("/c1") else 404)
        return httpx.Response(200)

    client = make(handler)
    client.delete_connection(Secret(ACCESS), "c1")
    client.delete_connection(Secret(ACCESS), "gone")  # already removed: fine
    client.revoke(Secret(REFRESH))
    delete, _, revoke = seen
    assert str(delete.url) == ENDPOINTS.connections_url + "/c1"
    assert delete.headers["authorization"] == f"Bearer {ACCESS}"
    assert str(revoke.url) == ENDPOINTS.revoke_url
    assert parse_qs(revoke.content.decode()) == {"token": [REFRESH]}
    assert revoke.headers["authorization"].startswith("Basic ")


def test_reprs_hide_credentials():
    client = make(lambda r: httpx.Response(500))
    tokens = TokenSet(Secret(ACCESS), Secret(REFRESH), ManualClock().now(), ())
    assert_clean(repr(client), repr(tokens), str(tokens), json.dumps(vars(client), default=repr))


def test_client_secret_must_be_a_secret():
    with pytest.raises(TypeError):
        OAuthClient(ENDPOINTS, "client-1", CLIENT_SECRET)  # type: ignore[arg-type]
