"""Control tables: who is connected and with which OAuth grant.

Tokens live on the grant (one OAuth consent), not on the tenant: one consent can cover several XPM
organisations, and its refresh token rotates on every use. Storing it once per tenant would let one
copy go stale and, after the 30-minute grace, break every tenant of that consent.

Every table of the pipeline is declared on the one ``metadata`` below; migrations create them.
"""

from __future__ import annotations

import zlib

from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, String, Table, Text

from xpm_pipeline.warehouse.db import UtcDateTime

metadata = MetaData()

SLOTS = 4
GRANT_ACTIVE, GRANT_NEEDS_REAUTH, GRANT_REVOKED = "active", "needs_reauth", "revoked"
TENANT_ACTIVE, TENANT_DISCONNECTED = "active", "disconnected"


def tenant_slot(tenant_id: str) -> int:
    """The tenant's hourly slot (:00, :15, :30, :45): stable across processes, unlike ``hash()``."""
    return zlib.crc32(tenant_id.encode()) % SLOTS


def refresh_lease_columns() -> list[Column]:
    """The refresh lease (migration 24, ``warehouse/refresh_lease.py``): a refresh in flight is recorded
    before the token endpoint is called, so a crash between Xero's answer and our commit is visible and
    redone inside Xero's 30-minute grace (``xpm/tokens.py``)."""
    return [
        Column(
            "refresh_generation",
            Integer,
            nullable=False,
            default=0,
            server_default="0",
            comment="Bumped by every stored rotation; a refresh commits only if it is unchanged (compare-and-set).",
        ),
        Column(
            "refresh_holder",
            String(200),
            nullable=True,
            comment="Process refreshing this grant now (host:pid:nonce); NULL when no refresh is in flight.",
        ),
        Column("refresh_since", UtcDateTime, nullable=True, comment="When the refresh in flight began (lease taken)."),
        Column(
            "refresh_lease_until",
            UtcDateTime,
            nullable=True,
            comment="Lease end: after it, the holder counts as dead and any process redoes the refresh.",
        ),
    ]


oauth_grants = Table(
    "xpm_oauth_grants",
    metadata,
    Column("grant_id", String(36), primary_key=True, comment="Local UUID of this OAuth consent."),
    Column("client_id", String(200), nullable=False, comment="OAuth client (app) id the tokens were issued to."),
    Column("scopes", Text, nullable=False, comment="Space-separated scopes granted."),
    Column(
        "refresh_token_enc",
        Text,
        nullable=True,
        comment="Refresh token, Fernet-encrypted with XPM_TOKEN_KEY. Rotates on every refresh; NULL once revoked.",
    ),
    Column(
        "access_token_enc",
        Text,
        nullable=True,
        comment="Current access token, Fernet-encrypted with XPM_TOKEN_KEY; NULL once revoked.",
    ),
    Column("access_expires_at", UtcDateTime, nullable=True, comment="When the access token expires (from expires_in)."),
    Column(
        "refresh_issued_at",
        UtcDateTime,
        nullable=False,
        comment="When the stored refresh token was issued; it expires unused 60 days later.",
    ),
    Column("refreshed_at", UtcDateTime, nullable=True, comment="Last successful refresh (NULL: never refreshed)."),
    Column(
        "status",
        String(20),
        nullable=False,
        comment="active | needs_reauth (refresh refused: run `xpm-pipeline connect`) | revoked.",
    ),
    Column("last_error", Text, nullable=True, comment="Last refresh failure, one line; never contains a credential."),
    Column("created_at", UtcDateTime, nullable=False, comment="When the consent was stored."),
    *refresh_lease_columns(),
    Column("updated_at", UtcDateTime, nullable=False, comment="Last change to this row."),
    comment="One row per OAuth consent (token set). Several tenants may share one grant.",
)

tenants = Table(
    "xpm_tenants",
    metadata,
    Column("tenant_id", String(64), primary_key=True, comment="XPM organisation id (Xero-Tenant-Id)."),
    Column("tenant_name", Text, nullable=False, comment="Organisation name as Xero lists it."),
    Column("tenant_type", String(40), nullable=False, comment="Xero tenant type; PRACTICEMANAGER for XPM."),
    Column("connection_id", String(64), nullable=False, comment="Xero connection id (app x tenant), for disconnect."),
    Column("auth_event_id", String(64), nullable=True, comment="Xero auth event that created the connection."),
    Column(
        "grant_id",
        String(36),
        ForeignKey("xpm_oauth_grants.grant_id"),
        nullable=False,
        comment="The OAuth grant whose tokens reach this tenant.",
    ),
    Column("slot", Integer, nullable=False, comment="Hourly slot 0-3 (:00/:15/:30/:45): crc32(tenant_id) % 4."),
    Column("status", String(20), nullable=False, comment="active | disconnected."),
    Column("connected_at", UtcDateTime, nullable=False, comment="When the tenant was (last) connected."),
    Column("disconnected_at", UtcDateTime, nullable=True, comment="When it was disconnected; NULL while active."),
    comment="XPM organisations (tenants) the pipeline syncs, with their OAuth grant and hourly slot.",
)
Index("ix_xpm_tenants_grant_id", tenants.c.grant_id)

schema_migrations = Table(
    "xpm_schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False, comment="Migration number."),
    Column("name", String(200), nullable=False, comment="What the migration does."),
    Column("applied_at", UtcDateTime, nullable=False, comment="When it was applied."),
    comment="Schema migrations applied to this warehouse (see xpm_pipeline.warehouse.migrate).",
)

CONTROL_TABLES_V1 = (oauth_grants, tenants)
"""The tables migration 1 creates (later tables on ``metadata`` belong to later migrations)."""
