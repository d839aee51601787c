"""Migration 24: the refresh lease on ``xpm_oauth_grants``.

Before it, a token refresh held the grant row locked across the call to Xero's token endpoint and
committed the rotated refresh token afterwards: a process killed in between lost the rotation (the
tenant needed a new consent 30 minutes later), and on SQLite the lock stopped every other writer for
as long as the identity server took. Now a refresh records a lease first, calls Xero with no
transaction open and stores the answer with a compare-and-set on ``refresh_generation``
(``xpm/tokens.py``).

The DDL is written out as it was at this version (never derived from today's table declaration).
Warehouses whose migration 1 already created these columns are left as they are.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect, text

from xpm_pipeline.warehouse.db import dialect_name
from xpm_pipeline.warehouse.migrate import migration

VERSION = 24
NAME = "xpm_oauth_grants: refresh lease (generation, holder, since, lease end)"

_TABLE = "xpm_oauth_grants"
_COLUMNS = (
    # name, SQLite type, PostgreSQL type, comment
    ("refresh_generation", "INTEGER NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0",
     "Bumped by every stored rotation; a refresh commits only if it is unchanged (compare-and-set)."),
    ("refresh_holder", "VARCHAR(200)", "VARCHAR(200)",
     "Process refreshing this grant now (host:pid:nonce); NULL when no refresh is in flight."),
    ("refresh_since", "DATETIME", "TIMESTAMP WITH TIME ZONE",
     "When the refresh in flight began (lease taken)."),
    ("refresh_lease_until", "DATETIME", "TIMESTAMP WITH TIME ZONE",
     "Lease end: after it, the holder counts as dead and any process redoes the refresh."),
)


@migration(VERSION, NAME)
def add_refresh_lease(conn: Connection) -> None:
    postgres = dialect_name(conn) == "postgresql"
    present = {column["name"] for column in inspect(conn).get_columns(_TABLE)}
    for name, sqlite_type, postgres_type, comment in _COLUMNS:
        if name in present:
            continue
        conn.execute(text(f"ALTER TABLE {_TABLE} ADD COLUMN {name} {postgres_type if postgres else sqlite_type}"))
        if postgres:
            quoted = comment.replace("'", "''")  # DDL takes no bind parameters
            conn.execute(text(f"COMMENT ON COLUMN {_TABLE}.{name} IS '{quoted}'"))
