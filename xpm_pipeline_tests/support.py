"""Helpers shared by tests that talk to the sandbox."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx

from xpm_pipeline.config import api_base_from
from xpm_pipeline.sandbox import SandboxServer
from xpm_pipeline.secrets import Secret
from xpm_pipeline.xpm.client import XPMClient


class SandboxTokens:
    """Tokens straight from the sandbox's admin endpoint; force_refresh asks for a new one."""

    def __init__(self, sandbox: SandboxServer, tenant_id: str) -> None:
        self.sandbox = sandbox
        self.refreshes = 0
        self.current = Secret(sandbox.issue_token(tenant_id)["access_token"])
        self.tenant_id = tenant_id

    def access_token(self, tenant_id: str) -> Secret:
        return self.current

    def force_refresh(self, tenant_id: str, rejected: Secret) -> Secret:
        self.refreshes += 1
        self.current = Secret(self.sandbox.issue_token(self.tenant_id)["access_token"])
        return self.current


def sandbox_client(sandbox: SandboxServer, tenant_id: str, clock, **kwargs) -> XPMClient:
    """An XPM client for one sandbox tenant, on the test's clock."""
    kwargs.setdefault("tokens", SandboxTokens(sandbox, tenant_id))
    return XPMClient(base_url=api_base_from(sandbox.base_url), tenant_id=tenant_id, clock=clock, **kwargs)


def admin(sandbox: SandboxServer, method: str, path: str, body=None):
    """Call the sandbox's admin interface and return its JSON (asserting success)."""
    response = httpx.request(method, f"{sandbox.base_url}/_sandbox/{path}", json=body, timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def consent_on_sandbox_page(authorize_url: str, decision: str = "allow") -> str:
    """A person on the sandbox's consent page: open it, click Allow (or Cancel); returns where the page
    redirects the browser (the callback URL with the code or the error)."""
    page = httpx.get(authorize_url)
    consent_id = re.search(r'name="consent_id" value="([^"]+)"', page.text).group(1)
    answer = httpx.post(urljoin(authorize_url, "/identity/connect/authorize/consent"),
                        data={"consent_id": consent_id, "decision": decision})
    return answer.headers["location"]
