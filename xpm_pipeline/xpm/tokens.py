"""Stored OAuth tokens, refreshed safely by many processes at once (the XPM client's ``TokenProvider``).

Xero's refresh tokens rotate: each refresh returns a new one and the old one keeps working for a
30-minute grace after its first use, then answers ``invalid_grant``. Two processes refreshing the same
consent at once could store a superseded token; a process dying between Xero's answer and its commit
loses the rotation. Either way the consent is dead half an hour later. So a refresh is a lease on the
grant row (xpm-api §2, made crash-safe):

1. read the grant: if another process refreshed meanwhile, use its token and stop; if another holds
   a live lease, poll (on the injected clock) until it commits or its lease ends;
2. take the lease in a short committed transaction (compare-and-set: same ``refresh_generation``, no
   live lease): "refresh in flight since T, by holder H" is on disk before Xero is called;
3. call the token endpoint with NO transaction or lock open (a lost answer is retried with the same
   old token, which the grace keeps valid);
4. store the new pair and free the lease in one transaction, only if the generation is unchanged
   (else another process stored a rotation first: use that one).

A holder that died leaves its lease behind. Once the lease ends (``refresh_lease_seconds``, far
inside the grace) the next ``access_token`` call, or ``recover_interrupted_refreshes`` (run by the
``xpm_token_recovery_sensor`` every few minutes), redoes the refresh with the still-stored previous
token, which Xero accepts inside its grace. A lost answer after the retries leaves the lease expired
at once, for the same reason.

``invalid_grant`` marks the grant ``needs_reauth`` once and raises ``ReauthRequired``; later calls
raise immediately without contacting Xero, so nothing loops on a dead consent.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, exists, func, insert, or_, select, update
from sqlalchemy.engine import Row

from xpm_pipeline.clock import SYSTEM_CLOCK, Clock
from xpm_pipeline.config import ConfigError, Settings
from xpm_pipeline.killpoints import killpoint
from xpm_pipeline.secrets import Secret, TokenCipher
from xpm_pipeline.warehouse.control import (
    GRANT_ACTIVE,
    GRANT_NEEDS_REAUTH,
    GRANT_REVOKED,
    TENANT_ACTIVE,
    TENANT_DISCONNECTED,
    oauth_grants,
    tenant_slot,
    tenants,
)
from xpm_pipeline.warehouse.db import write_transaction
from xpm_pipeline.xpm.auth import Connection, IdentityError, IdentityUnavailable, InvalidGrant, OAuthClient, TokenSet, scrub
from xpm_pipeline.xpm.errors import XPMAuthError

log = logging.getLogger(__name__)

REFRESH_TOKEN_LIFETIME = timedelta(days=60)
"""Xero: an unused refresh token expires after 60 days (older reports said 30; we alert well before)."""

REFRESH_GRACE = timedelta(minutes=30)
"""Xero (and the sandbox, ``sandbox/identity.py``): a superseded refresh token still works this long
after the refresh that superseded it. An interrupted refresh must be redone inside it."""

CONNECT_HINT = "run `xpm-pipeline connect` again"


def new_holder() -> str:
    """Who holds a refresh lease: host and pid for the operator, a nonce so no two refreshes share one."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def lease_live(grant: Row, now: datetime) -> bool:
    """A refresh is in flight and its holder may still be working."""
    return grant.refresh_holder is not None and grant.refresh_lease_until > now


def interrupted(grant: Row, now: datetime) -> bool:
    """A refresh began and neither stored nor gave up before its lease ended: its process died (or its
    answer was lost), so Xero may have rotated the stored token already. Redo it inside the grace."""
    return grant.refresh_holder is not None and grant.refresh_lease_until <= now


class TenantNotConnected(XPMAuthError):
    """The tenant was never connected, or was disconnected."""


class ReauthRequired(XPMAuthError):
    """Xero refused the stored refresh token; only a new consent (``xpm-pipeline connect``) helps."""

    def __init__(self, message: str, *, tenant_id: str | None, grant_id: str) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id
        self.grant_id = grant_id


@dataclass(frozen=True)
class TenantRecord:
    tenant_id: str
    tenant_name: str
    tenant_type: str
    connection_id: str
    auth_event_id: str | None
    grant_id: str
    slot: int
    status: str
    connected_at: datetime
    disconnected_at: datetime | None


@dataclass(frozen=True)
class GrantStatus:
    """Token health for one tenant, for status pages and the "re-consent soon" alert."""

    tenant_id: str
    grant_id: str
    status: str
    access_expires_at: datetime | None
    refreshed_at: datetime | None
    refresh_expires_at: datetime
    """Estimate: refresh token issue time + 60 days of non-use."""
    last_error: str | None

    def refresh_expires_within(self, now: datetime, days: float = 7) -> bool:
        return self.refresh_expires_at - now <= timedelta(days=days)


@dataclass(frozen=True)
class IdleRefresh:
    grant_id: str
    refreshed: bool
    error: str | None = None


@dataclass(frozen=True)
class Recovery:
    """One interrupted refresh redone (or not: ``error`` says why, credential-free)."""

    grant_id: str
    interrupted_at: datetime | None
    recovered: bool
    error: str | None = None


_Reuse = Callable[[Row], Secret | None]


class TokenStore:
    """Tokens per OAuth grant in the warehouse, encrypted; hands out valid access tokens per tenant."""

    def __init__(
        self,
        engine: Engine,
        cipher: TokenCipher,
        oauth: OAuthClient,
        *,
        clock: Clock = SYSTEM_CLOCK,
        refresh_margin_seconds: float = 300,
        lost_response_retries: int = 3,
        retry_delay_seconds: float = 2.0,
        refresh_lease_seconds: float = 120,
        lease_poll_seconds: float = 0.05,
    ) -> None:
        if not 0 < refresh_lease_seconds <= REFRESH_GRACE.total_seconds() / 4:
            raise ValueError("refresh_lease_seconds must be positive and well inside the 30-minute grace")
        self.engine = engine
        self.cipher = cipher
        self.oauth = oauth
        self.clock = clock
        self.refresh_margin = timedelta(seconds=refresh_margin_seconds)
        self.lost_response_retries = lost_response_retries
        self.retry_delay_seconds = retry_delay_seconds
        self.refresh_lease = timedelta(seconds=refresh_lease_seconds)
        """Longer than a refresh with its retries normally takes; a lease older than this counts as dead."""
        self.lease_poll_seconds = lease_poll_seconds

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine, *, clock: Clock = SYSTEM_CLOCK, **kwargs) -> "TokenStore":
        """The store as the CLI and Dagster resources build it from ``XPM_*`` settings."""
        if settings.token_key is None:
            raise ConfigError("XPM_TOKEN_KEY is not set; generate one with `xpm-pipeline keygen`")
        if not settings.client_id or settings.client_secret is None:
            raise ConfigError("XPM_CLIENT_ID and XPM_CLIENT_SECRET must be set (the sandbox prints both)")
        oauth = OAuthClient(settings.identity, settings.client_id, settings.client_secret, clock=clock)
        return cls(engine, TokenCipher(settings.token_key.reveal()), oauth, clock=clock, **kwargs)

    def __repr__(self) -> str:
        return f"TokenStore({self.engine.url.render_as_string(hide_password=True)!r}, client_id={self.oauth.client_id!r})"

    # -- TokenProvider ------------------------------------------------------------------------

    def access_token(self, tenant_id: str) -> Secret:
        """A token valid for more than the margin: the stored one, or a fresh one."""
        row = self._tenant_grant(tenant_id)
        token = self._usable(row)
        if token is not None:
            return token
        return self._refresh(row.grant_id, self._label(row), tenant_id, reuse=self._usable)

    def force_refresh(self, tenant_id: str, rejected: Secret) -> Secret:
        """After a 401: refresh, unless another process already replaced the rejected token."""

        def replaced(grant: Row) -> Secret | None:
            current = self._decrypt_access(grant)
            if current is None or current == rejected or grant.access_expires_at is None:
                return None
            if grant.access_expires_at <= self.clock.now():
                return None
            return current

        row = self._tenant_grant(tenant_id)
        return self._refresh(row.grant_id, self._label(row), tenant_id, reuse=replaced)

    # -- connections --------------------------------------------------------------------------

    def register(self, token_set: TokenSet, connections: Sequence[Connection], client_id: str) -> str:
        """Store one consent and point its tenants at it; returns the new grant id.

        A reconnect re-points an existing tenant at the new grant and reactivates it. A previous
        grant left with no active tenant is retired locally (tokens dropped). It is not revoked at
        Xero: revoking removes the consent's connections, which the new consent may share.
        """
        if token_set.refresh_token is None:
            raise ValueError("the consent returned no refresh token; request the offline_access scope")
        if not connections:
            raise ValueError("no XPM tenants to register")
        now = self.clock.now()
        grant_id = str(uuid.uuid4())
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(oauth_grants).values(
                    grant_id=grant_id,
                    client_id=client_id,
                    scopes=" ".join(token_set.scopes),
                    refresh_token_enc=self.cipher.encrypt(token_set.refresh_token),
                    access_token_enc=self.cipher.encrypt(token_set.access_token),
                    access_expires_at=token_set.expires_at,
                    refresh_issued_at=now,
                    refreshed_at=None,
                    status=GRANT_ACTIVE,
                    last_error=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            previous: set[str] = set()
            for c in connections:
                existing = conn.execute(
                    select(tenants.c.grant_id).where(tenants.c.tenant_id == c.tenant_id).with_for_update()
                ).one_or_none()
                values = dict(
                    tenant_name=c.tenant_name,
                    tenant_type=c.tenant_type,
                    connection_id=c.id,
                    auth_event_id=c.auth_event_id,
                    grant_id=grant_id,
                    status=TENANT_ACTIVE,
                    connected_at=now,
                    disconnected_at=None,
                )
                if existing is None:
                    conn.execute(insert(tenants).values(tenant_id=c.tenant_id, slot=tenant_slot(c.tenant_id), **values))
                else:
                    previous.add(existing.grant_id)
                    conn.execute(update(tenants).where(tenants.c.tenant_id == c.tenant_id).values(**values))
            for old in previous - {grant_id}:
                if not self._has_active_tenant(conn, old):
                    self._retire(conn, old, "superseded by a newer consent", now)
        log.info("registered OAuth grant %s for %d tenant(s)", grant_id, len(connections))
        return grant_id

    def disconnect(self, tenant_id: str) -> bool:
        """Remove the tenant's connection at Xero and mark it disconnected here.

        Returns False when the tenant was not connected. When the consent is already dead at Xero the
        tenant is disconnected locally only (a warning says to remove the app in Xero's settings).
        The grant is revoked once no active tenant uses it.
        """
        try:
            row = self._tenant_grant(tenant_id, require_active=False)
        except TenantNotConnected:
            return False
        if row.status != TENANT_ACTIVE:
            return False
        try:
            self.oauth.delete_connection(self.access_token(tenant_id), row.connection_id)
        except (ReauthRequired, TenantNotConnected):
            log.warning(
                "tenant %s: Xero no longer accepts this consent; disconnected locally only "
                "(remove the app under Xero's connected apps if it is still listed)",
                tenant_id,
            )
        now = self.clock.now()
        retired = None
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(tenants)
                .where(tenants.c.tenant_id == tenant_id)
                .values(status=TENANT_DISCONNECTED, disconnected_at=now)
            )
            grant = conn.execute(
                select(oauth_grants).where(oauth_grants.c.grant_id == row.grant_id).with_for_update()
            ).one()
            if not self._has_active_tenant(conn, grant.grant_id):
                self._retire(conn, grant.grant_id, "revoked: no connected tenant left", now)
                retired = grant
        if retired is not None:  # after the commit: no warehouse lock is held across a call to Xero
            self._revoke_remote(retired)
        return True

    def tenants(self, active_only: bool = True) -> list[TenantRecord]:
        query = select(tenants).order_by(tenants.c.tenant_name, tenants.c.tenant_id)
        if active_only:
            query = query.where(tenants.c.status == TENANT_ACTIVE)
        with self.engine.connect() as conn:
            return [TenantRecord(**row._mapping) for row in conn.execute(query)]

    def grant_status(self, tenant_id: str) -> GrantStatus:
        row = self._tenant_grant(tenant_id, require_active=False)
        return GrantStatus(
            tenant_id=tenant_id,
            grant_id=row.grant_id,
            status=row.grant_status,
            access_expires_at=row.access_expires_at,
            refreshed_at=row.refreshed_at,
            refresh_expires_at=row.refresh_issued_at + REFRESH_TOKEN_LIFETIME,
            last_error=row.last_error,
        )

    def refresh_idle(self, older_than_days: float = 7) -> list[IdleRefresh]:
        """Refresh active grants unused for a while, so their refresh tokens never reach 60 days idle."""
        cutoff = self.clock.now() - timedelta(days=older_than_days)
        last_used = func.coalesce(oauth_grants.c.refreshed_at, oauth_grants.c.refresh_issued_at)
        with self.engine.connect() as conn:
            idle = list(
                conn.execute(
                    select(oauth_grants.c.grant_id)
                    .where(oauth_grants.c.status == GRANT_ACTIVE, last_used < cutoff)
                    .where(self._active_tenant_exists(oauth_grants.c.grant_id))
                    .order_by(oauth_grants.c.grant_id)
                ).scalars()
            )

        def refreshed_meanwhile(grant: Row) -> Secret | None:
            if (grant.refreshed_at or grant.refresh_issued_at) >= cutoff:
                return self._decrypt_access(grant)
            return None

        results = []
        for grant_id in idle:
            label = self._grant_label(grant_id)
            try:
                self._refresh(grant_id, label, None, reuse=refreshed_meanwhile)
                results.append(IdleRefresh(grant_id, True))
            except (ReauthRequired, IdentityError) as exc:
                results.append(IdleRefresh(grant_id, False, str(exc)))
        return results

    def recover_interrupted(self) -> list["Recovery"]:
        """Redo every refresh whose process died (lease ended, nothing stored), oldest first.

        Each is redone with the stored refresh token, which Xero accepts inside its 30-minute grace; a
        dead consent is marked ``needs_reauth`` as any refresh would. Never raises for one grant.
        """
        now = self.clock.now()
        with self.engine.connect() as conn:
            stuck = conn.execute(
                select(oauth_grants.c.grant_id, oauth_grants.c.refresh_since)
                .where(
                    oauth_grants.c.status == GRANT_ACTIVE,
                    oauth_grants.c.refresh_holder.is_not(None),
                    oauth_grants.c.refresh_lease_until <= now,
                )
                .order_by(oauth_grants.c.refresh_since, oauth_grants.c.grant_id)
            ).all()

        def finished(grant: Row) -> Secret | None:
            return self._decrypt_access(grant) if grant.refresh_holder is None else None

        results = []
        for grant_id, since in stuck:
            if since is not None and now - since > REFRESH_GRACE:
                log.warning("grant %s: refresh interrupted at %s, past Xero's grace; trying anyway", grant_id, since)
            try:
                self._refresh(grant_id, self._grant_label(grant_id), None, reuse=finished)
                results.append(Recovery(grant_id, since, True))
            except (XPMAuthError, IdentityError) as exc:
                results.append(Recovery(grant_id, since, False, str(exc)))
        return results

    # -- the refresh protocol -----------------------------------------------------------------

    def _refresh(self, grant_id: str, label: str, tenant_id: str | None, *, reuse: _Reuse) -> Secret:
        """Lease, call Xero with no transaction open, compare-and-set the answer (module docstring)."""
        deadline = self.clock.now() + self.refresh_lease * 2  # a live holder's lease ends by then
        while True:
            grant = self._read_grant(grant_id)
            if grant is None or grant.status == GRANT_REVOKED:
                raise TenantNotConnected(f"XPM tenant {label} is not connected; {CONNECT_HINT}")
            if grant.status == GRANT_NEEDS_REAUTH:
                raise self._reauth(label, tenant_id, grant_id)
            current = reuse(grant)
            if current is not None:
                return current  # another process refreshed meanwhile
            if grant.client_id != self.oauth.client_id:
                raise IdentityError(
                    f"XPM tenant {label} was connected with client id {grant.client_id!r}, but XPM_CLIENT_ID is "
                    f"{self.oauth.client_id!r}; set it back or {CONNECT_HINT}"
                )
            now = self.clock.now()
            if lease_live(grant, now):
                if now >= deadline:
                    raise IdentityUnavailable(
                        f"XPM tenant {label}: another process's token refresh is still in flight; try again"
                    )
                self.clock.sleep(self.lease_poll_seconds)  # wait for the holder's commit, or its lease end
                continue
            holder = new_holder()
            if not self._take_lease(grant, holder, now):
                continue  # another process took it first: wait for it
            if grant.refresh_holder is not None:
                log.warning("grant %s: redoing a refresh whose process stopped (since %s)", grant_id,
                            grant.refresh_since)
            token = self._refresh_leased(grant, holder, label, tenant_id)
            if token is not None:
                return token
            # lost the compare-and-set: another process stored a newer rotation; re-read and use it

    def _refresh_leased(self, grant: Row, holder: str, label: str, tenant_id: str | None) -> Secret | None:
        """The token call under our lease; None when another process committed a rotation first."""
        old_refresh = self.cipher.decrypt(grant.refresh_token_enc)
        killpoint("tokens.before_refresh_call")
        now = self.clock.now()
        try:
            new = self._call_refresh(old_refresh, grant.grant_id)
        except InvalidGrant as exc:
            message = scrub(str(exc), [old_refresh.reveal()])
            if not self._settle(grant, holder, now, status=GRANT_NEEDS_REAUTH, last_error=message, lease=None):
                return None  # refused because someone else rotated: theirs is the live token
            raise self._reauth(label, tenant_id, grant.grant_id) from None
        except IdentityUnavailable as exc:
            # Xero may have rotated before the answer was lost: keep the lease, expired, so the next
            # process (or the recovery sensor) redoes the refresh with this token inside its grace.
            self._settle(grant, holder, now, status=GRANT_ACTIVE, last_error=scrub(str(exc), [old_refresh.reveal()]),
                         lease=now)
            raise
        except IdentityError as exc:
            self._settle(grant, holder, now, status=GRANT_ACTIVE, last_error=scrub(str(exc), [old_refresh.reveal()]),
                         lease=None)
            raise
        killpoint("tokens.after_refresh_answer")
        if not self._commit_rotation(grant, new, old_refresh, now):
            log.info("grant %s: another process stored a rotation first; using it", grant.grant_id)
            return None
        log.info("refreshed the access token of grant %s", grant.grant_id)
        return new.access_token

    def _read_grant(self, grant_id: str) -> Row | None:
        with self.engine.connect() as conn:
            return conn.execute(select(oauth_grants).where(oauth_grants.c.grant_id == grant_id)).one_or_none()

    def _take_lease(self, grant: Row, holder: str, now: datetime) -> bool:
        """Compare-and-set: the lease is ours if the generation is unchanged and no live lease exists."""
        free = or_(oauth_grants.c.refresh_holder.is_(None), oauth_grants.c.refresh_lease_until <= now)
        with write_transaction(self.engine) as conn:
            taken = conn.execute(
                update(oauth_grants)
                .where(
                    oauth_grants.c.grant_id == grant.grant_id,
                    oauth_grants.c.status == GRANT_ACTIVE,
                    oauth_grants.c.refresh_generation == grant.refresh_generation,
                    free,
                )
                .values(refresh_holder=holder, refresh_since=now, refresh_lease_until=now + self.refresh_lease)
            ).rowcount
        return taken == 1

    def _commit_rotation(self, grant: Row, new: TokenSet, old_refresh: Secret, now: datetime) -> bool:
        """Store the new pair if nobody stored another rotation since our lease began; frees the lease."""
        with write_transaction(self.engine) as conn:
            stored = conn.execute(
                update(oauth_grants)
                .where(
                    oauth_grants.c.grant_id == grant.grant_id,
                    oauth_grants.c.refresh_generation == grant.refresh_generation,
                    oauth_grants.c.status == GRANT_ACTIVE,
                )
                .values(
                    access_token_enc=self.cipher.encrypt(new.access_token),
                    access_expires_at=new.expires_at,
                    refresh_token_enc=self.cipher.encrypt(new.refresh_token or old_refresh),
                    refresh_issued_at=now if new.refresh_token else grant.refresh_issued_at,
                    refreshed_at=now,
                    scopes=" ".join(new.scopes) if new.scopes else grant.scopes,
                    status=GRANT_ACTIVE,
                    last_error=None,
                    updated_at=now,
                    refresh_generation=grant.refresh_generation + 1,
                    refresh_holder=None,
                    refresh_since=None,
                    refresh_lease_until=None,
                )
            ).rowcount
            killpoint("tokens.before_refresh_commit")
        return stored == 1

    def _settle(self, grant: Row, holder: str, now: datetime, *, status: str, last_error: str,
                lease: datetime | None) -> bool:
        """Record a failed refresh if no rotation was stored meanwhile. ``lease``: None frees it; a time
        keeps it, ending then (outcome unknown: to be redone)."""
        keep = {"refresh_lease_until": lease} if lease is not None else {
            "refresh_holder": None, "refresh_since": None, "refresh_lease_until": None}
        with write_transaction(self.engine) as conn:
            return conn.execute(
                update(oauth_grants)
                .where(
                    oauth_grants.c.grant_id == grant.grant_id,
                    oauth_grants.c.refresh_generation == grant.refresh_generation,
                    oauth_grants.c.refresh_holder == holder,
                )
                .values(status=status, last_error=last_error, updated_at=now, **keep)
            ).rowcount == 1

    def _call_refresh(self, old_refresh: Secret, grant_id: str) -> TokenSet:
        """A lost answer may mean Xero rotated already; the old token stays valid for 30 min, so retry."""
        attempt = 0
        while True:
            try:
                return self.oauth.refresh(old_refresh)
            except IdentityUnavailable as exc:
                attempt += 1
                if attempt > self.lost_response_retries:
                    raise
                log.warning("grant %s: %s; retry %d with the same refresh token", grant_id, exc, attempt)
                self.clock.sleep(self.retry_delay_seconds * attempt)

    # -- helpers ------------------------------------------------------------------------------

    def _reauth(self, label: str, tenant_id: str | None, grant_id: str) -> ReauthRequired:
        return ReauthRequired(
            f"XPM tenant {label} needs a new consent: Xero refused the stored refresh token; {CONNECT_HINT}",
            tenant_id=tenant_id,
            grant_id=grant_id,
        )

    def _tenant_grant(self, tenant_id: str, *, require_active: bool = True) -> Row:
        query = (
            select(
                tenants,
                oauth_grants.c.status.label("grant_status"),
                oauth_grants.c.access_token_enc,
                oauth_grants.c.access_expires_at,
                oauth_grants.c.refresh_issued_at,
                oauth_grants.c.refreshed_at,
                oauth_grants.c.last_error,
                oauth_grants.c.refresh_holder,
                oauth_grants.c.refresh_lease_until,
            )
            .join(oauth_grants, oauth_grants.c.grant_id == tenants.c.grant_id)
            .where(tenants.c.tenant_id == tenant_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None or (require_active and row.status != TENANT_ACTIVE):
            raise TenantNotConnected(f"XPM tenant {tenant_id} is not connected; run `xpm-pipeline connect`")
        if require_active and row.grant_status == GRANT_NEEDS_REAUTH:
            raise self._reauth(self._label(row), tenant_id, row.grant_id)
        return row

    @staticmethod
    def _label(row: Row) -> str:
        return f"{row.tenant_name!r} ({row.tenant_id})" if row.tenant_name else str(row.tenant_id)

    def _grant_label(self, grant_id: str) -> str:
        with self.engine.connect() as conn:
            names = conn.execute(
                select(tenants.c.tenant_name, tenants.c.tenant_id)
                .where(tenants.c.grant_id == grant_id, tenants.c.status == TENANT_ACTIVE)
                .order_by(tenants.c.tenant_id)
            ).all()
        return ", ".join(f"{n!r} ({t})" for n, t in names) or f"grant {grant_id}"

    def _decrypt_access(self, row: Row) -> Secret | None:
        return self.cipher.decrypt(row.access_token_enc) if row.access_token_enc else None

    def _usable(self, row: Row) -> Secret | None:
        """The stored access token, unless it is near expiry or a refresh was interrupted (redo that first:
        the stored refresh token may be inside its last 30 minutes)."""
        return None if interrupted(row, self.clock.now()) else self._still_valid(row)

    def _still_valid(self, row: Row) -> Secret | None:
        if row.access_token_enc is None or row.access_expires_at is None:
            return None
        if row.access_expires_at - self.clock.now() <= self.refresh_margin:
            return None
        return self._decrypt_access(row)

    @staticmethod
    def _active_tenant_exists(grant_id_column):
        return exists().where(and_(tenants.c.grant_id == grant_id_column, tenants.c.status == TENANT_ACTIVE))

    def _has_active_tenant(self, conn, grant_id: str) -> bool:
        return bool(conn.execute(select(self._active_tenant_exists(grant_id))).scalar())

    def _retire(self, conn, grant_id: str, reason: str, now: datetime) -> None:
        conn.execute(
            update(oauth_grants)
            .where(oauth_grants.c.grant_id == grant_id)
            .values(status=GRANT_REVOKED, refresh_token_enc=None, access_token_enc=None, last_error=reason, updated_at=now)
        )

    def _revoke_remote(self, grant: Row) -> None:
        if grant.status != GRANT_ACTIVE or not grant.refresh_token_enc:
            return
        try:
            self.oauth.revoke(self.cipher.decrypt(grant.refresh_token_enc))
        except IdentityError as exc:
            log.warning("grant %s: revocation at Xero failed (%s); the tokens are dropped locally anyway", grant.grant_id, exc)


def recover_interrupted_refreshes(store: TokenStore) -> list[Recovery]:
    """What the recovery sensor runs: ``TokenStore.recover_interrupted`` (no Dagster needed)."""
    return store.recover_interrupted()
