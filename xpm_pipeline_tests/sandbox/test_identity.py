"""Identity: the authorization-code flow, rotating refresh tokens, expiry, connections, auth failures."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from xpm_pipeline.sandbox import SandboxServer
from xpm_pipeline_tests.sandbox.conftest import SSL_CONTEXT, Api, http, make_config

REDIRECT = "http://localhost:8910/callback"


def consent(sb: SandboxServer, *, tenants: list[str] | None = None, scope: str = "practicemanager offline_access",
            decision: str = "allow", state: str = "xyz", **extra: str) -> dict[str, list[str]]:
    """Run authorize -> consent page -> form POST, returning the redirect's query. ``extra``: more authorize
    parameters (PKCE's ``code_challenge``...)."""
    with httpx.Client(base_url=sb.base_url, verify=SSL_CONTEXT) as http:
        page = http.get("/identity/connect/authorize", params={
            "response_type": "code", "client_id": sb.client_id, "redirect_uri": REDIRECT, "scope": scope,
            "state": state, **extra})
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        consent_id = re.search(r'name="consent_id" value="([^"]+)"', page.text)[1]
        for tenant_id in sb.tenant_ids:
            assert f'value="{tenant_id}"' in page.text
        form = [("consent_id", consent_id), ("decision", decision)] + [("tenant", t) for t in tenants or []]
        answer = http.post("/identity/connect/authorize/consent", content=urlencode(form),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


def exchange(sb: SandboxServer, code: str, *, basic: bool = True, **extra: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    if basic:
        return http.post(sb.base_url + "/connect/token", data=form, auth=(sb.client_id, sb.client_secret))
    form |= {"client_id": sb.client_id, "client_secret": sb.client_secret}
    return http.post(sb.base_url + "/connect/token", data=form)


def refresh(sb: SandboxServer, token: str) -> httpx.Response:
    return http.post(sb.base_url + "/connect/token", data={"grant_type": "refresh_token", "refresh_token": token},
                      auth=(sb.client_id, sb.client_secret))


def test_authorization_code_flow_end_to_end(sandbox):
    tenant = sandbox.tenant_ids[1]
    query = consent(sandbox, tenants=[tenant])
    assert query["state"] == ["xyz"]
    tokens = exchange(sandbox, query["code"][0]).json()
    assert tokens["expires_in"] == 1800 and tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"] and tokens["scope"] == "practicemanager offline_access"

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    connections = http.get(sandbox.base_url + "/connections", headers=bearer).json()
    assert [c["tenantId"] for c in connections] == [tenant]
    row = connections[0]
    assert row["tenantType"] == "PRACTICEMANAGER" and row["tenantName"] == sandbox.state.tenant(tenant).name
    assert set(row) >= {"id", "authEventId", "tenantId", "tenantType", "tenantName", "createdDateUtc", "updatedDateUtc"}

    api = Api(sandbox, tenant, token=tokens)
    assert api.xml("staff.api/list").find("StaffList") is not None
    # The tenant that was not ticked is not connected.
    other = Api(sandbox, sandbox.tenant_ids[0], token=tokens)
    assert other.get("staff.api/list").status_code == 403

    # The code is single-use.
    again = exchange(sandbox, query["code"][0])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_consent_without_tenant_choice_connects_all_and_form_client_auth(sandbox):
    query = consent(sandbox)
    tokens = exchange(sandbox, query["code"][0], basic=False).json()
    rows = http.get(sandbox.base_url + "/connections",
                     headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert sorted(r["tenantId"] for r in rows) == sorted(sandbox.tenant_ids)


def test_consent_denied_and_authorize_validation(sandbox):
    assert consent(sandbox, decision="deny") == {"error": ["access_denied"], "state": ["xyz"]}
    base = {"response_type": "code", "client_id": sandbox.client_id, "redirect_uri": REDIRECT,
            "scope": "practicemanager offline_access", "state": "s"}
    with httpx.Client(base_url=sandbox.base_url, verify=SSL_CONTEXT) as http:
        assert http.get("/identity/connect/authorize", params=base | {"client_id": "nope"}).status_code == 400
        assert http.get("/identity/connect/authorize",
                        params=base | {"redirect_uri": "https://evil.example/cb"}).status_code == 400
        for bad, error in (({"scope": "accounting.transactions"}, "invalid_scope"),
                           ({"response_type": "token"}, "unsupported_response_type")):
            answer = http.get("/identity/connect/authorize", params=base | bad)
            assert answer.status_code == 302
            assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == [error]


VERIFIER = "pkce-verifier-of-the-sandbox-identity-tests_0123456789~."
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("=")


def test_pkce_code_exchanges_only_with_its_verifier(sandbox):
    query = consent(sandbox, code_challenge=CHALLENGE, code_challenge_method="S256")
    code = query["code"][0]
    for wrong in ({}, {"code_verifier": VERIFIER[:-1] + "l"}, {"code_verifier": "short"}):
        refused = exchange(sandbox, code, **wrong)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", wrong
    assert exchange(sandbox, code, code_verifier=VERIFIER).status_code == 200


def test_pkce_accepts_only_s256(sandbox):
    base = {"response_type": "code", "client_id": sandbox.client_id, "redirect_uri": REDIRECT,
            "scope": "practicemanager offline_access", "state": "s", "code_challenge": CHALLENGE}
    for method in ({"code_challenge_method": "plain"}, {}):
        answer = http.get(sandbox.base_url + "/identity/connect/authorize", params=base | method)
        assert answer.status_code == 302
        assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == ["invalid_request"]


def test_no_refresh_token_without_offline_access_and_read_scope_is_read_only(sandbox):
    query = consent(sandbox, scope="practicemanager.read", tenants=[sandbox.tenant_ids[0]])
    tokens = exchange(sandbox, query["code"][0]).json()
    assert "refresh_token" not in tokens
    api = Api(sandbox, sandbox.tenant_ids[0], token=tokens)
    api.xml("task.api/list")
    assert api.send("POST", "time.api/add", "<Timesheet />").status_code == 403


def test_bad_client_and_bad_grant_type(sandbox):
    bad = http.post(sandbox.base_url + "/connect/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                     auth=(sandbox.client_id, "wrong"))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    odd = http.post(sandbox.base_url + "/connect/token", data={"grant_type": "password"},
                     auth=(sandbox.client_id, sandbox.client_secret))
    assert odd.status_code == 400 and odd.json()["error"] == "unsupported_grant_type"


def test_code_expires_and_redirect_uri_must_match(sandbox, clock):
    query = consent(sandbox)
    form = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": "http://localhost:1/other"}
    wrong = http.post(sandbox.base_url + "/connect/token", data=form, auth=(sandbox.client_id, sandbox.client_secret))
    assert wrong.status_code == 400
    query = consent(sandbox)
    clock.advance(301)
    late = exchange(sandbox, query["code"][0])
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


def test_refresh_rotates_with_30_minute_grace(sandbox, clock):
    first = sandbox.issue_token(sandbox.tenant_ids[0])
    second = refresh(sandbox, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"] and second["expires_in"] == 1800
    # The superseded token still works within the grace period (a lost response can be retried)...
    clock.advance(29 * 60)
    retry = refresh(sandbox, first["refresh_token"])
    assert retry.status_code == 200
    # ...and not after it.
    clock.advance(2 * 60)
    late = refresh(sandbox, first["refresh_token"])
    assert late.status_code == 400 and late.json() == {"error": "invalid_grant", "error_description": late.json()
                                                        .get("error_description")}
    assert late.json()["error"] == "invalid_grant"
    # The newest token is unaffected.
    assert refresh(sandbox, retry.json()["refresh_token"]).status_code == 200


def test_refresh_token_expires_after_60_idle_days(sandbox, clock):
    tokens = sandbox.issue_token(sandbox.tenant_ids[0])
    clock.advance(59 * 86400)
    fresh = refresh(sandbox, tokens["refresh_token"])
    assert fresh.status_code == 200
    clock.advance(60 * 86400 + 1)
    idle = refresh(sandbox, fresh.json()["refresh_token"])
    assert idle.status_code == 400 and idle.json()["error"] == "invalid_grant"


def test_revocation_kills_tokens_and_connections(sandbox):
    tokens = sandbox.issue_token(sandbox.tenant_ids[0])
    api = Api(sandbox, sandbox.tenant_ids[0], token=tokens)
    api.xml("staff.api/list")
    answer = http.post(sandbox.base_url + "/connect/revocation", data={"token": tokens["refresh_token"]},
                        auth=(sandbox.client_id, sandbox.client_secret))
    assert answer.status_code == 200
    assert refresh(sandbox, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert api.get("staff.api/list").status_code == 401


def test_access_token_expires_after_1800_seconds(sandbox, clock):
    api = Api(sandbox)
    api.xml("staff.api/list")
    clock.advance(1801)
    answer = api.get("staff.api/list")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert "x-daylimit-remaining" in answer.headers


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}])
def test_missing_or_unknown_token_is_401(sandbox, headers):
    answer = http.get(sandbox.api_url + "staff.api/list", headers=headers | {"Xero-Tenant-Id": sandbox.tenant_ids[0]})
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]


@pytest.mark.parametrize("status", [403, 404])
def test_bad_tenant_status_is_configurable(clock, status):
    with SandboxServer(make_config(clock=clock, bad_tenant_status=status)) as sb:
        api = Api(sb, sb.tenant_ids[0])
        for tenant in (None, "00000000-0000-4000-8000-000000000000", sb.tenant_ids[1]):
            headers = {"Xero-Tenant-Id": tenant} if tenant else {}
            http = httpx.Client(base_url=sb.api_url, verify=SSL_CONTEXT, headers={"Authorization": api.http.headers["Authorization"]} | headers)
            answer = http.get("staff.api/list")
            assert answer.status_code == status, tenant
            assert "x-minlimit-remaining" in answer.headers
        # The tenant id header is case-insensitive like a GUID.
        upper = http.get(sb.api_url + "staff.api/list", headers={
            "Authorization": api.http.headers["Authorization"], "Xero-Tenant-Id": sb.tenant_ids[0].upper()})
        assert upper.status_code == 200


def test_delete_connection_cuts_the_tenant_off(sandbox):
    api = Api(sandbox)
    bearer = {"Authorization": api.http.headers["Authorization"]}
    rows = http.get(sandbox.base_url + "/connections", headers=bearer).json()
    assert http.delete(f"{sandbox.base_url}/connections/{rows[0]['id']}", headers=bearer).status_code == 204
    assert http.delete(f"{sandbox.base_url}/connections/{rows[0]['id']}", headers=bearer).status_code == 404
    assert api.get("staff.api/list").status_code == 403
    assert http.get(sandbox.base_url + "/connections", headers={"Authorization": "Bearer x"}).status_code == 401


def test_token_endpoint_reads_multipart_form_fields_as_well(sandbox):
    """Xero's Postman collection refreshes with multipart/form-data; Xero accepts it, so the sandbox does."""
    first = sandbox.issue_token(sandbox.tenant_ids[0])
    fields = {"grant_type": (None, "refresh_token"), "refresh_token": (None, first["refresh_token"]),
              "client_id": (None, sandbox.client_id), "client_secret": (None, sandbox.client_secret)}
    answer = http.post(sandbox.base_url + "/connect/token", files=fields)
    assert answer.request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert answer.status_code == 200, answer.text
    assert answer.json()["refresh_token"] != first["refresh_token"]
    revoked = http.post(sandbox.base_url + "/connect/revocation", files={"token": (None, answer.json()["refresh_token"])},
                        auth=(sandbox.client_id, sandbox.client_secret))
    assert revoked.status_code == 200
    assert refresh(sandbox, answer.json()["refresh_token"]).json()["error"] == "invalid_grant"
    unreadable = http.post(sandbox.base_url + "/connect/token", content=b"no parts here",
                           headers={"Content-Type": "multipart/form-data; boundary=zzz"},
                           auth=(sandbox.client_id, sandbox.client_secret))
    assert unreadable.status_code == 400 and unreadable.json()["error"] == "unsupported_grant_type"
