"""Where the settings send each request: Xero's own endpoints unless overridden, identity taken from the
API's origin only for a loopback sandbox, and the XPM API version (3.0 or 3.1) chosen in one place."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import ConfigError, Settings
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.xpm.client import XPMClient
from xpm_pipeline_tests.support import SandboxTokens

XERO = {
    "api_base_url": "https://api.xero.com/practicemanager/3.1/",
    "authorize_url": "https://login.xero.com/identity/connect/authorize",
    "token_url": "https://identity.xero.com/connect/token",
    "revoke_url": "https://identity.xero.com/connect/revocation",
    "connections_url": "https://api.xero.com/connections",
}


def endpoints(env: dict) -> dict:
    settings = Settings.from_env(env)
    identity = settings.identity
    return {"api_base_url": settings.api_base_url, "authorize_url": identity.authorize_url,
            "token_url": identity.token_url, "revoke_url": identity.revoke_url,
            "connections_url": identity.connections_url}


LOOPBACK = ["http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765", "http://127.0.0.2:9000"]
NOT_LOOPBACK = [
    None,
    "https://api.xero.com/practicemanager/3.1/",
    "https://api.xero.com",
    "https://xpm-proxy.example.com/practicemanager/3.1/",  # a remote host lends identity nothing either
    "http://10.0.0.5:8765",
]


def test_identity_follows_the_api_origin_only_for_a_loopback_sandbox():
    for origin in LOOPBACK:
        assert endpoints({"XPM_API_BASE_URL": origin}) == {
            "api_base_url": f"{origin}/practicemanager/3.1/",
            "authorize_url": f"{origin}/identity/connect/authorize",
            "token_url": f"{origin}/connect/token",
            "revoke_url": f"{origin}/connect/revocation",
            "connections_url": f"{origin}/connections",
        }, origin
    for api in NOT_LOOPBACK:
        resolved = endpoints({"XPM_API_BASE_URL": api} if api else {})
        assert resolved | {"api_base_url": None} == XERO | {"api_base_url": None}, api
    assert endpoints({}) == XERO


def test_each_endpoint_can_be_overridden_on_its_own():
    env = {"XPM_API_BASE_URL": "https://api.xero.com/practicemanager/3.1/",
           "XPM_TOKEN_URL": "https://token.example.com/oauth/token"}
    assert endpoints(env) == XERO | {"token_url": "https://token.example.com/oauth/token"}
    env = {"XPM_IDENTITY_URL": "https://id.example.com", "XPM_AUTHORIZE_URL": "https://login.example.com/a",
           "XPM_CONNECTIONS_URL": "https://conn.example.com/c", "XPM_REVOKE_URL": "https://id.example.com/r"}
    assert endpoints(env) == {
        "api_base_url": XERO["api_base_url"],
        "authorize_url": "https://login.example.com/a",
        "token_url": "https://id.example.com/connect/token",  # XPM_IDENTITY_URL still names the rest
        "revoke_url": "https://id.example.com/r",
        "connections_url": "https://conn.example.com/c",
    }


@pytest.mark.parametrize("name", ["XPM_AUTHORIZE_URL", "XPM_TOKEN_URL", "XPM_REVOKE_URL", "XPM_CONNECTIONS_URL",
                                  "XPM_API_VERSION"])
def test_a_bad_override_is_named_in_one_line(name):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: "ftp://nowhere"})
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and "\n" not in message


def test_api_version_comes_from_the_setting_or_the_base_url():
    cases = [
        ({}, "https://api.xero.com/practicemanager/3.1/"),
        ({"XPM_API_VERSION": "3.0"}, "https://api.xero.com/practicemanager/3.0/"),
        ({"XPM_API_VERSION": "3.1"}, "https://api.xero.com/practicemanager/3.1/"),
        ({"XPM_API_BASE_URL": "http://127.0.0.1:8765", "XPM_API_VERSION": "3.0"},
         "http://127.0.0.1:8765/practicemanager/3.0/"),
        ({"XPM_API_BASE_URL": "https://api.xero.com/practicemanager/3.0"}, "https://api.xero.com/practicemanager/3.0/"),
        ({"XPM_API_BASE_URL": "https://api.xero.com/practicemanager/3.0/", "XPM_API_VERSION": "3.0"},
         "https://api.xero.com/practicemanager/3.0/"),
    ]
    assert [Settings.from_env(env).api_base_url for env, _ in cases] == [base for _, base in cases]


def test_api_version_and_base_url_must_agree():
    with pytest.raises(ConfigError, match=r"^XPM_API_BASE_URL: .*does not name API version 3\.0"):
        Settings.from_env({"XPM_API_BASE_URL": "https://api.xero.com/practicemanager/3.1/", "XPM_API_VERSION": "3.0"})


def test_the_client_reads_through_either_version_against_the_sandbox():
    clock = ManualClock(datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc))
    with SandboxServer(SandboxConfig(size="small", seed=3, tenants=1, clock=clock), port=0) as sandbox:
        tenant = sandbox.tenant_ids[0]
        staff = {}
        for version in ("3.0", "3.1"):
            settings = Settings.from_env({"XPM_API_BASE_URL": sandbox.base_url, "XPM_API_VERSION": version})
            with XPMClient(base_url=settings.api_base_url, tenant_id=tenant, clock=clock,
                           tokens=SandboxTokens(sandbox, tenant)) as client:
                staff[version] = sorted(client.staff()["staff"].column("uuid"))
        assert staff["3.0"] and staff["3.0"] == staff["3.1"]
        assert [e["path"] for e in sandbox.log_entries()] == [
            "/practicemanager/3.0/staff.api/list", "/practicemanager/3.1/staff.api/list"]
