"""Xero identity, server side: one registered app, authorization codes, rotating refresh tokens, connections.

Model (as Xero's, simplified to one user who owns every sandbox practice):

* A **grant** is one consent ("auth event"): the app, the scopes, the tenants ticked on the consent page.
  Consenting creates or refreshes the app's **connection** to each ticked tenant (Xero keeps one
  connection per user x app x tenant; its ``authEventId`` is the latest consent's).
* An **access token** (``expires_in`` 1800 s) reaches every tenant the app is connected to, as with Xero;
  ``DELETE /connections/{id}`` or revoking the consent cuts a tenant off.
* **Refresh tokens rotate**: each refresh returns a new one; the superseded one keeps working for
  ``refresh_grace_seconds`` (30 min), then answers ``invalid_grant``. A refresh token unused for
  ``refresh_idle_days`` (60) expires. Revocation (``POST /connect/revocation``) kills the grant's
  refresh and access tokens and removes the connections it made.
* **PKCE** (RFC 7636), as Xero: an authorize request may carry ``code_challenge`` with
  ``code_challenge_method=S256`` (nothing else is accepted); its code then exchanges only with the matching
  ``code_verifier`` (``invalid_grant`` when it is missing or wrong).

All times come from the sandbox clock, so a test can jump 31 minutes or 61 days. Token strings are
random (``secrets``), not derived from the seed: they are credentials, not data.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from email import policy as email_policy
from email.parser import BytesParser
from datetime import datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


XPM_SCOPES = {"practicemanager", "practicemanager.read"} | {
    f"practicemanager.{res}{ro}" for res in ("client", "job", "staff", "time") for ro in ("", ".read")
}
KNOWN_SCOPES = XPM_SCOPES | {"offline_access", "openid", "profile", "email"}
PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636: a verifier's (and an S256 challenge's) alphabet
# Which granular scope family an XPM resource belongs to (task.api needs the broad scopes).
RESOURCE_SCOPE = {"client": "client", "clientgroup": "client", "job": "job", "staff": "staff", "time": "time"}


class OAuthError(Exception):
    """A JSON OAuth error answer: ``{"error": code}`` under ``status``."""

    def __init__(self, status: int, error: str, description: str = "") -> None:
        super().__init__(f"{status} {error} {description}".strip())
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


class PageError(Exception):
    """The authorize page cannot redirect (bad client or redirect URI): an HTML error page instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Grant:
    id: str  # Xero's authEventId
    client_id: str
    tenant_ids: list[str]
    scopes: tuple[str, ...]
    created: datetime
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str
    grant_id: str
    issued_at: datetime
    superseded_at: datetime | None = None
    revoked: bool = False


@dataclass
class AccessToken:
    token: str
    grant_id: str
    expires_at: datetime


@dataclass
class Connection:
    id: str
    client_id: str
    tenant_id: str
    auth_event_id: str
    created: datetime
    updated: datetime


@dataclass
class PendingConsent:
    id: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    created: datetime
    code_challenge: str | None = None  # PKCE (S256), when the authorize request carried one


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    tenant_ids: list[str]
    created: datetime
    used: bool = False
    code_challenge: str | None = None


@dataclass
class Identity:
    """All identity state; pickled with the data when a state file is used."""

    client_id: str
    client_secret: str
    tenants: dict[str, str]  # tenant id -> practice name
    settings: Any = None  # SandboxConfig (not pickled)
    grants: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    connections: dict[str, Connection] = field(default_factory=dict)
    consents: dict[str, PendingConsent] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("lock", None)
        state["settings"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()

    @classmethod
    def create(cls, seed: int, tenants: dict[str, str], settings) -> "Identity":
        rng = random.Random(f"app:{seed}")
        client_id = "%032X" % rng.getrandbits(128)
        secret = base64.urlsafe_b64encode(rng.getrandbits(288).to_bytes(36, "big")).decode().rstrip("=")
        return cls(client_id=client_id, client_secret=secret, tenants=dict(tenants), settings=settings)

    # -- authorize ----------------------------------------------------------------------------

    def redirect_allowed(self, uri: str) -> bool:
        parts = urlsplit(uri)
        if uri in (self.settings.redirect_uris or ()):
            return True
        return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1") and not parts.fragment

    def begin_consent(self, params: dict[str, str], now: datetime) -> PendingConsent | str:
        """Validate an authorize request: a consent to show, or the redirect URL carrying the error."""
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        if client_id != self.client_id:
            raise PageError("unauthorized_client: unknown client_id")
        if not redirect_uri or not self.redirect_allowed(redirect_uri):
            raise PageError("invalid redirect_uri: not registered for this app")
        state = params.get("state", "")
        if params.get("response_type") != "code":
            return with_query(redirect_uri, error="unsupported_response_type", state=state)
        scopes = tuple(params.get("scope", "").split())
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown or not any(s in XPM_SCOPES for s in scopes):
            return with_query(redirect_uri, error="invalid_scope", state=state)
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method")
        if challenge is not None and (method != "S256" or not PKCE_VALUE.fullmatch(challenge)):
            return with_query(redirect_uri, error="invalid_request", state=state)  # Xero offers S256 only
        with self.lock:
            self._prune(now)
            consent = PendingConsent(str(uuid.uuid4()), client_id, redirect_uri, scopes, state, now, challenge)
            self.consents[consent.id] = consent
        return consent

    def consent_page(self, consent: PendingConsent) -> str:
        rows = "\n".join(
            f'<li><label><input type="checkbox" name="tenant" value="{tid}" checked> {escape(name)}'
            f" <small>({tid})</small></label></li>"
            for tid, name in self.tenants.items()
        )
        return (
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>XPM sandbox - consent</title></head><body>"
            "<h1>Allow access to Xero Practice Manager?</h1>"
            f"<p>Scopes: {escape(' '.join(consent.scopes))}</p>"
            '<form method="post" action="/identity/connect/authorize/consent">'
            f'<input type="hidden" name="consent_id" value="{consent.id}">'
            f"<ul>{rows}</ul>"
            '<button type="submit" name="decision" value="allow">Allow access</button> '
            '<button type="submit" name="decision" value="deny">Cancel</button>'
            "</form></body></html>"
        )

    def decide(self, form: dict[str, list[str]], now: datetime) -> str:
        """The consent form's answer: the redirect URL (with a code, or with ``access_denied``)."""
        consent_id = (form.get("consent_id") or [""])[0]
        with self.lock:
            consent = self.consents.pop(consent_id, None)
            if consent is None or now - consent.created > timedelta(hours=1):
                raise PageError("unknown or expired consent_id")
            decision = (form.get("decision") or ["allow"])[0]
            if decision == "deny":
                return with_query(consent.redirect_uri, error="access_denied", state=consent.state)
            if decision != "allow":
                raise PageError("decision must be allow or deny")
            chosen = form.get("tenant") or list(self.tenants)
            unknown = [t for t in chosen if t not in self.tenants]
            if unknown:
                raise PageError(f"unknown tenant {unknown[0]}")
            code = AuthCode(secrets.token_urlsafe(24), consent.client_id, consent.redirect_uri, consent.scopes,
                            list(dict.fromkeys(chosen)), now, code_challenge=consent.code_challenge)
            self.codes[code.code] = code
        return with_query(consent.redirect_uri, code=code.code, scope=" ".join(consent.scopes), state=consent.state)

    # -- token endpoint -----------------------------------------------------------------------

    def check_client(self, form: dict[str, str], authorization: str | None) -> None:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode("utf-8")
                client_id, _, secret = decoded.partition(":")
            except (ValueError, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client") from None
        if client_id != self.client_id or not secret or not secrets.compare_digest(secret, self.client_secret):
            raise OAuthError(401, "invalid_client")

    def token(self, form: dict[str, str], authorization: str | None, now: datetime, *,
              after_commit=None) -> dict[str, Any]:
        """``POST /connect/token``. ``after_commit`` runs once the new tokens are stored (fault hook)."""
        self.check_client(form, authorization)
        grant_type = form.get("grant_type")
        with self.lock:
            if grant_type == "authorization_code":
                answer = self._exchange_code(form, now)
            elif grant_type == "refresh_token":
                answer = self._refresh(form, now)
            else:
                raise OAuthError(400, "unsupported_grant_type")
        if after_commit is not None:
            after_commit()
        return answer

    def _exchange_code(self, form: dict[str, str], now: datetime) -> dict[str, Any]:
        code = self.codes.get(form.get("code", ""))
        if code is None or code.used or code.client_id != self.client_id:
            raise OAuthError(400, "invalid_grant")
        if (now - code.created).total_seconds() > self.settings.code_seconds:
            raise OAuthError(400, "invalid_grant", "authorization code expired")
        if form.get("redirect_uri", "") != code.redirect_uri:
            raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorize request")
        if code.code_challenge is not None and not _verifier_matches(form.get("code_verifier", ""), code.code_challenge):
            raise OAuthError(400, "invalid_grant", "code_verifier missing or does not match the code_challenge")
        code.used = True
        grant = self._new_grant(code.tenant_ids, code.scopes, now)
        return self._issue(grant, now)

    def _refresh(self, form: dict[str, str], now: datetime) -> dict[str, Any]:
        record = self.refresh_tokens.get(form.get("refresh_token", ""))
        if record is None or record.revoked:
            raise OAuthError(400, "invalid_grant")
        grant = self.grants.get(record.grant_id)
        if grant is None or grant.revoked or grant.client_id != self.client_id:
            raise OAuthError(400, "invalid_grant")
        if now - record.issued_at > timedelta(days=self.settings.refresh_idle_days):
            raise OAuthError(400, "invalid_grant", "refresh token expired (unused too long)")
        if record.superseded_at is not None and (now - record.superseded_at).total_seconds() > \
                self.settings.refresh_grace_seconds:
            raise OAuthError(400, "invalid_grant", "refresh token superseded")
        if record.superseded_at is None:
            record.superseded_at = now
        return self._issue(grant, now)

    def _new_grant(self, tenant_ids: list[str], scopes: tuple[str, ...], now: datetime) -> Grant:
        grant = Grant(str(uuid.uuid4()), self.client_id, list(tenant_ids), scopes, now)
        self.grants[grant.id] = grant
        for tenant_id in tenant_ids:
            existing = self.connection_for(tenant_id)
            if existing is None:
                conn = Connection(str(uuid.uuid4()), self.client_id, tenant_id, grant.id, now, now)
                self.connections[conn.id] = conn
            else:
                existing.auth_event_id, existing.updated = grant.id, now
        return grant

    def _issue(self, grant: Grant, now: datetime) -> dict[str, Any]:
        self._prune(now)
        access = AccessToken("sbx_at_" + secrets.token_urlsafe(32), grant.id,
                             now + timedelta(seconds=self.settings.access_token_seconds))
        self.access_tokens[access.token] = access
        answer: dict[str, Any] = {
            "access_token": access.token,
            "expires_in": self.settings.access_token_seconds,
            "token_type": "Bearer",
            "scope": " ".join(grant.scopes),
        }
        if "offline_access" in grant.scopes:
            refresh = RefreshToken("sbx_rt_" + secrets.token_urlsafe(32), grant.id, now)
            self.refresh_tokens[refresh.token] = refresh
            answer["refresh_token"] = refresh.token
        return answer

    def _prune(self, now: datetime) -> None:
        """Forget what can no longer be used, so a long-running sandbox does not grow without bound."""
        day = timedelta(days=1)
        for table, dead in (
            (self.access_tokens, lambda a: a.expires_at < now - day),
            (self.codes, lambda c: now - c.created > day),
            (self.consents, lambda c: now - c.created > day),
            (self.refresh_tokens, lambda r: now - r.issued_at > timedelta(days=self.settings.refresh_idle_days) + day
             or (r.superseded_at is not None
                 and now - r.superseded_at > max(day, timedelta(seconds=self.settings.refresh_grace_seconds)))),
        ):
            for key in [k for k, v in table.items() if dead(v)]:
                del table[key]

    def issue_for_tenant(self, tenant_id: str, now: datetime, scopes: tuple[str, ...] | None = None) -> dict[str, Any]:
        """A consented connection without the browser dance (admin interface, ``sb.issue_token``)."""
        if tenant_id not in self.tenants:
            raise KeyError(tenant_id)
        with self.lock:
            grant = self._new_grant([tenant_id], scopes or ("practicemanager", "offline_access"), now)
            return self._issue(grant, now)

    def revoke(self, form: dict[str, str], authorization: str | None) -> None:
        self.check_client(form, authorization)
        with self.lock:
            record = self.refresh_tokens.get(form.get("token", ""))
            if record is None:
                return  # RFC 7009: unknown tokens are not an error
            grant = self.grants.get(record.grant_id)
            if grant is None:
                return
            grant.revoked = True
            for token in self.refresh_tokens.values():
                if token.grant_id == grant.id:
                    token.revoked = True
            for token in [t for t, a in self.access_tokens.items() if a.grant_id == grant.id]:
                del self.access_tokens[token]
            for conn_id in [c.id for c in self.connections.values() if c.auth_event_id == grant.id]:
                del self.connections[conn_id]

    # -- bearer checks and connections --------------------------------------------------------

    def bearer(self, authorization: str | None, now: datetime) -> Grant | None:
        """The grant behind a valid, unexpired Bearer token, else None (-> 401 invalid_token)."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        with self.lock:
            access = self.access_tokens.get(authorization[7:].strip())
            if access is None or access.expires_at <= now:
                return None
            grant = self.grants.get(access.grant_id)
            if grant is None or grant.revoked:
                return None
            return grant

    def connection_for(self, tenant_id: str) -> Connection | None:
        for conn in self.connections.values():
            if conn.tenant_id == tenant_id and conn.client_id == self.client_id:
                return conn
        return None

    def list_connections(self, auth_event_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": c.id, "authEventId": c.auth_event_id, "tenantId": c.tenant_id,
                    "tenantType": "PRACTICEMANAGER", "tenantName": self.tenants.get(c.tenant_id, ""),
                    "createdDateUtc": _iso(c.created), "updatedDateUtc": _iso(c.updated),
                }
                for c in self.connections.values()
                if auth_event_id is None or c.auth_event_id == auth_event_id
            ]

    def delete_connection(self, connection_id: str) -> bool:
        with self.lock:
            return self.connections.pop(connection_id, None) is not None


def _verifier_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 section 4.6, S256: BASE64URL(SHA256(code_verifier)) == code_challenge."""
    if not PKCE_VALUE.fullmatch(verifier):
        return False
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode("ascii").rstrip("=")
    return secrets.compare_digest(digest, challenge)


def scope_allows(scopes: tuple[str, ...], resource: str, method: str) -> bool:
    """Whether a grant's scopes reach ``<resource>.api`` with ``method`` (xpm-api §2)."""
    granted = set(scopes)
    read = method == "GET"
    if "practicemanager" in granted or (read and "practicemanager.read" in granted):
        return True
    family = RESOURCE_SCOPE.get(resource)
    if family is None:
        return False
    return f"practicemanager.{family}" in granted or (read and f"practicemanager.{family}.read" in granted)


def with_query(url: str, **params: str) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def parse_form(body: bytes, content_type: str | None = None) -> dict[str, list[str]]:
    """An HTML form body: ``application/x-www-form-urlencoded`` (what most clients send, and the default)
    or ``multipart/form-data`` (Xero's own Postman collection refreshes that way; Xero accepts both).
    A multipart body that cannot be read gives no fields, so the request is refused as incomplete."""
    if content_type and content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        return _multipart_fields(body, content_type)
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _multipart_fields(body: bytes, content_type: str) -> dict[str, list[str]]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=email_policy.HTTP).parsebytes(head + body)
    fields: dict[str, list[str]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name or part.get_filename() is not None:
            continue  # a file upload is no form field
        payload = part.get_payload(decode=True) or b""
        fields.setdefault(str(name), []).append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return fields


def first_values(form: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in form.items() if v}
