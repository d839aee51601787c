"""Xero identity: OAuth 2.0 authorization-code flow, refresh, connections, revocation.

Only HTTP lives here; storing and serialising tokens is ``tokens.TokenStore``'s job. Credentials go
in and out as ``Secret`` and are revealed only when put on the wire. Failures are typed so callers can
act on them: ``InvalidGrant`` (the consent is gone: re-consent), ``IdentityUnavailable`` (nothing or
no answer came back: safe to retry a refresh within the 30-minute grace), ``IdentityError`` (any other
refusal). Their messages carry the OAuth error code and HTTP status, never a token, code or secret.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from secrets import token_urlsafe
from typing import Any
from urllib.parse import urlencode

import httpx

from xpm_pipeline.clock import SYSTEM_CLOCK, Clock
from xpm_pipeline.config import DEFAULT_SCOPES, IdentityEndpoints
from xpm_pipeline.secrets import Secret, redact
from xpm_pipeline.xpm.errors import XPMError

log = logging.getLogger(__name__)

PRACTICE_MANAGER = "PRACTICEMANAGER"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class IdentityError(XPMError):
    """Xero identity refused a request. ``error`` is the OAuth error code (e.g. ``invalid_client``)."""

    def __init__(self, message: str, *, error: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.status_code = status_code


class InvalidGrant(IdentityError):
    """400 ``invalid_grant``: the refresh token (or code) is expired, superseded or revoked; re-consent."""


class IdentityUnavailable(IdentityError):
    """No usable answer: connect error, timeout, reset, 429 or 5xx. The request may or may not have
    been processed, so a refresh is retried with the same (still valid for 30 min) refresh token."""


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint returned; ``expires_at`` is computed from ``expires_in`` (trusted)."""

    access_token: Secret
    refresh_token: Secret | None
    expires_at: datetime
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Connection:
    """One app x tenant connection from ``GET /connections``."""

    id: str
    tenant_id: str
    tenant_type: str
    tenant_name: str
    auth_event_id: str | None = None


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """One line, credential-free, short: safe for messages, logs and ``last_error``."""
    for value in secrets:
        if value:
            text = text.replace(value, "***")
    text = " ".join(redact(text).split())
    return text[:200]


@dataclass(frozen=True)
class Pkce:
    """RFC 7636 (S256): the verifier stays here until the code exchange; only its hash goes to the browser,
    so an authorization code intercepted on the way back (another app on the loopback port, a logged URL)
    cannot be exchanged by anyone else."""

    verifier: Secret
    challenge: str
    method: str = "S256"

    @classmethod
    def create(cls) -> "Pkce":
        verifier = token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]: inside RFC 7636's 43-128
        return cls(Secret(verifier), s256_challenge(verifier))


def s256_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class OAuthClient:
    """Talks to Xero identity (or the sandbox's copy of it) as one OAuth client (app)."""

    def __init__(
        self,
        endpoints: IdentityEndpoints,
        client_id: str,
        client_secret: Secret,
        *,
        http: httpx.Client | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not isinstance(client_secret, Secret):
            raise TypeError("client_secret must be a Secret")
        self.endpoints = endpoints
        self.client_id = client_id
        self._client_secret = client_secret
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self.clock = clock

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "OAuthClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OAuthClient(client_id={self.client_id!r}, token_url={self.endpoints.token_url!r})"

    # -- authorization code flow --------------------------------------------------------------

    def authorize_url(
        self, redirect_uri: str, scopes: Sequence[str] = DEFAULT_SCOPES, *, state: str, pkce: Pkce | None = None
    ) -> str:
        """Where the user consents; Xero redirects back to ``redirect_uri?code=...&state=...``."""
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
        }
        if pkce is not None:
            params |= {"code_challenge": pkce.challenge, "code_challenge_method": pkce.method}
        return f"{self.endpoints.authorize_url}?{urlencode(params)}"

    def exchange_code(self, code: Secret | str, redirect_uri: str, *, pkce: Pkce | None = None) -> TokenSet:
        code = Secret(code)
        form = {"grant_type": "authorization_code", "code": code.reveal(), "redirect_uri": redirect_uri}
        hidden = [code.reveal()]
        if pkce is not None:
            form["code_verifier"] = pkce.verifier.reveal()
            hidden.append(pkce.verifier.reveal())
        return self._token_request(form, what="code exchange", secrets=hidden)

    def refresh(self, refresh_token: Secret) -> TokenSet:
        """One refresh call. Rotation means the answer carries a new refresh token: persist it first."""
        return self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token.reveal()},
            what="token refresh",
            secrets=[refresh_token.reveal()],
        )

    # -- connections --------------------------------------------------------------------------

    def connections(self, access_token: Secret) -> list[Connection]:
        """The XPM organisations this token reaches (other Xero tenant types are dropped)."""
        response = self._send("GET", self.endpoints.connections_url, what="connections", headers=self._bearer(access_token))
        self._raise_for_status(response, "connections", [access_token.reveal()])
        try:
            rows = response.json()
            return [
                Connection(
                    id=str(row["id"]),
                    tenant_id=str(row["tenantId"]),
                    tenant_type=str(row["tenantType"]),
                    tenant_name=str(row.get("tenantName") or ""),
                    auth_event_id=row.get("authEventId"),
                )
                for row in rows
                if row.get("tenantType") == PRACTICE_MANAGER
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise IdentityError(
                f"connections: malformed response (HTTP {response.status_code})", status_code=response.status_code
            ) from None

    def delete_connection(self, access_token: Secret, connection_id: str) -> None:
        """Disconnect one tenant from the app; an already-removed connection (404) counts as done."""
        url = f"{self.endpoints.connections_url.rstrip('/')}/{connection_id}"
        response = self._send("DELETE", url, what="delete connection", headers=self._bearer(access_token))
        if response.status_code == 404:
            return
        self._raise_for_status(response, "delete connection", [access_token.reveal()])

    def revoke(self, refresh_token: Secret) -> None:
        """Revoke a refresh token (Xero also removes every connection made by that consent)."""
        response = self._send(
            "POST",
            self.endpoints.revoke_url,
            what="revocation",
            data={"token": refresh_token.reveal()},
            auth=self._basic(),
        )
        self._raise_for_status(response, "revocation", [refresh_token.reveal()])

    # -- plumbing -----------------------------------------------------------------------------

    def _basic(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.client_id, self._client_secret.reveal())

    @staticmethod
    def _bearer(access_token: Secret) -> dict[str, str]:
        return {"Authorization": f"Bearer {access_token.reveal()}", "Accept": "application/json"}

    def _token_request(self, form: dict[str, str], *, what: str, secrets: list[str]) -> TokenSet:
        issued_at = self.clock.now()  # before sending: the expiry estimate errs early, never late
        response = self._send(
            "POST",
            self.endpoints.token_url,
            what=what,
            data=form,
            auth=self._basic(),
            headers={"Accept": "application/json"},
        )
        self._raise_for_status(response, what, secrets)
        try:
            payload: dict[str, Any] = response.json()
            access = payload["access_token"]
            expires_in = int(payload["expires_in"])
            if not isinstance(access, str) or not access:
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise IdentityError(
                f"{what}: malformed token response (HTTP {response.status_code})", status_code=response.status_code
            ) from None
        refresh = payload.get("refresh_token")
        scope = payload.get("scope")
        return TokenSet(
            access_token=Secret(access),
            refresh_token=Secret(refresh) if isinstance(refresh, str) and refresh else None,
            expires_at=issued_at + timedelta(seconds=expires_in),
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        )

    def _send(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            # ``from None``: httpx's exception holds the request, and with it the form body.
            raise IdentityUnavailable(f"{what}: identity server unreachable or no answer ({type(exc).__name__})") from None

    def _raise_for_status(self, response: httpx.Response, what: str, secrets: list[str]) -> None:
        status = response.status_code
        if status < 400:
            return
        secrets = [*secrets, self._client_secret.reveal()]
        error, description = None, None
        try:
            body = response.json()
            if isinstance(body, dict):
                error = body.get("error") if isinstance(body.get("error"), str) else None
                raw_description = body.get("error_description") or body.get("Detail") or body.get("detail")
                description = raw_description if isinstance(raw_description, str) else None
        except ValueError:
            pass
        error = scrub(error, secrets) if error else None
        detail = f": {scrub(description, secrets)}" if description else ""
        label = error or "error"
        message = f"{what} failed: {label} (HTTP {status}){detail}"
        if status == 400 and error == "invalid_grant":
            raise InvalidGrant(message, error=error, status_code=status)
        if status == 429 or status >= 500:
            raise IdentityUnavailable(message, error=error, status_code=status)
        raise IdentityError(message, error=error, status_code=status)
