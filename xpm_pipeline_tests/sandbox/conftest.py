"""Fixtures for the sandbox tests: a running sandbox on a ManualClock, and a thin raw-httpx XPM caller.

Only httpx and lxml are used against the sandbox (the project's own XPM client is tested elsewhere),
so these tests pin the wire behaviour itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import ssl

import httpx
import pytest
from lxml import etree

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer

START = "2026-11-23T09:00:00+00:00"
# Building an SSL context costs ~50 ms per httpx.Client; everything here is plain http on loopback.
SSL_CONTEXT = ssl.create_default_context()
http = httpx.Client(verify=SSL_CONTEXT, timeout=30)  # for one-off calls (module-level httpx.get would pay it each time)


def make_config(**overrides) -> SandboxConfig:
    """Generous limits by default, so only the limit tests meet them."""
    values = dict(size="small", seed=1, tenants=2, daily_limit=100_000, minute_limit=100_000,
                  concurrent_limit=50, app_minute_limit=100_000, clock=ManualClock(START))
    values.update(overrides)
    return SandboxConfig(**values)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sandbox(clock) -> Iterator[SandboxServer]:
    with SandboxServer(make_config(clock=clock)) as sb:
        yield sb


class Api:
    """Raw XPM calls for one tenant with a consented token."""

    def __init__(self, sb: SandboxServer, tenant_id: str | None = None, token: dict | None = None) -> None:
        self.sb = sb
        self.tenant_id = tenant_id or sb.tenant_ids[0]
        self.token = token or sb.issue_token(self.tenant_id)
        self.http = httpx.Client(base_url=sb.api_url, timeout=30, verify=SSL_CONTEXT, headers={
            "Authorization": f"Bearer {self.token['access_token']}", "Xero-Tenant-Id": self.tenant_id})
        self.admin_http = httpx.Client(base_url=sb.base_url + "/_sandbox/", timeout=30, verify=SSL_CONTEXT)

    def renew(self) -> None:
        """A fresh access token (tests that jump days outlive the 30-minute one)."""
        self.token = self.sb.issue_token(self.tenant_id)
        self.http.headers["Authorization"] = f"Bearer {self.token['access_token']}"

    @property
    def tenant(self):
        return self.sb.state.tenant(self.tenant_id)

    def get(self, path: str, **params) -> httpx.Response:
        return self.http.get(path, params=params or None)

    def send(self, method: str, path: str, body: str | bytes | None = None) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else body
        return self.http.request(method, path, content=content, headers={"Content-Type": "application/xml"})

    def ok(self, response: httpx.Response) -> etree._Element:
        assert response.status_code == 200, (response.status_code, response.text[:500])
        assert response.headers["content-type"] == "text/xml; charset=utf-8"
        root = etree.fromstring(response.content)
        assert root.tag == "Response"
        assert root.findtext("Status") == "OK", response.text[:500]
        return root

    def xml(self, path: str, **params) -> etree._Element:
        return self.ok(self.get(path, **params))

    def error(self, response: httpx.Response, status: int) -> str:
        assert response.status_code == status, (response.status_code, response.text[:300])
        root = etree.fromstring(response.content)
        assert root.findtext("Status") == "ERROR"
        return root.findtext("ErrorDescription")

    def admin(self, method: str, path: str, json=None) -> httpx.Response:
        return self.admin_http.request(method, path, json=json)


@pytest.fixture
def api(sandbox) -> Iterator[Api]:
    caller = Api(sandbox)
    yield caller
    caller.http.close()
    caller.admin_http.close()
