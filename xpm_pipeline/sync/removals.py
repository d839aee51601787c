"""The record of removals a sync held back or was allowed to make (migration 23).

``xpm_held_removals``: one row per tenant and table whose removal the guard (``sync.guard``) stopped,
kept open (``held``) until a person accepts it (``accepted``: who, when, by which run) or a later sync of
that table succeeds without tripping the guard (``cleared``: XPM's answer was sane again). ``status``,
the Dagster check ``removals_not_held`` and analysts read it.

``xpm_unconfirmed_removals``: rows XPM's list no longer shows but that no per-row read has confirmed as
deleted yet (the nightly confirmation budget ran out). They stay live and are confirmed on later nights,
oldest first, so none is deleted unconfirmed and none is forgotten when its date leaves the window.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Index, Integer, String, Table, Text, and_, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from xpm_pipeline.warehouse.control import metadata
from xpm_pipeline.warehouse.db import UtcDateTime, write_transaction
from xpm_pipeline.warehouse.migrate import migration

HELD, ACCEPTED, CLEARED = "held", "accepted", "cleared"

held_removals = Table(
    "xpm_held_removals",
    metadata,
    Column("removal_id", String(36), primary_key=True, comment="Id of this held (or accepted) removal."),
    Column("tenant_id", String(64), nullable=False, comment="XPM organisation."),
    Column("table_name", String(64), nullable=False, comment="Warehouse table the removal was for (xpm_staff)."),
    Column("mode", String(16), nullable=False, comment="Sync mode that wanted the removal."),
    Column("sync_run_id", String(36), comment="The xpm_sync_runs row of the step that held (or made) it."),
    Column("removing", Integer, nullable=False, comment="Rows the sync would remove (soft delete or Completed)."),
    Column("live_rows", Integer, nullable=False, comment="Live rows of the tenant's table before the removal."),
    Column("status", String(16), nullable=False, comment="held | accepted | cleared."),
    Column("reason", Text, nullable=False, comment="The guard's one-line message."),
    Column("held_at", UtcDateTime, nullable=False, comment="When the guard stopped it (UTC)."),
    Column("decided_by", String(200), comment="Who accepted it (CLI user or Dagster run)."),
    Column("decided_at", UtcDateTime, comment="When it was accepted or cleared (UTC)."),
    comment="Removals the sync held back because one XPM answer would remove too much, and who accepted them.",
)
Index("ix_xpm_held_removals_open", held_removals.c.tenant_id, held_removals.c.table_name, held_removals.c.status)

unconfirmed_removals = Table(
    "xpm_unconfirmed_removals",
    metadata,
    Column("tenant_id", String(64), primary_key=True, comment="XPM organisation."),
    Column("entity", String(32), primary_key=True, comment="Registry entity (timesheet)."),
    Column("entity_key", String(100), primary_key=True, comment="The row's XPM key."),
    Column("first_missing_at", UtcDateTime, nullable=False, comment="When XPM's list first lacked it (UTC)."),
    Column("checks", Integer, nullable=False, default=0, comment="Nights it waited for a confirmation read."),
    comment="Rows missing from XPM's list, still live, waiting for a per-row read to confirm the deletion.",
)

REMOVAL_TABLES = (held_removals, unconfirmed_removals)


@migration(23, "removal guard: xpm_held_removals, xpm_unconfirmed_removals")
def _create_removal_tables(conn: Connection) -> None:
    metadata.create_all(conn, tables=list(REMOVAL_TABLES), checkfirst=False)


@dataclass(frozen=True)
class HeldRemoval:
    tenant_id: str
    table_name: str
    mode: str
    removing: int
    live_rows: int
    reason: str
    held_at: datetime
    sync_run_id: str | None


def record_held(engine: Engine, held: HeldRemoval) -> None:
    """Open (or refresh) the tenant's held removal of a table; one open row per table."""
    with write_transaction(engine) as conn:
        _write_open(conn, held, {"held_at": held.held_at}, on_insert={"status": HELD})


def record_accepted(conn: Connection, held: HeldRemoval, *, by: str, at: datetime) -> None:
    """In the removal's own transaction: the person's decision, closing any open hold of the table."""
    _write_open(conn, held, {"status": ACCEPTED, "decided_by": by, "decided_at": at}, on_insert={"held_at": at})


def _write_open(conn: Connection, held: HeldRemoval, values: dict, *, on_insert: dict) -> None:
    """The table's open hold updated with ``held``'s figures and ``values``, or a new row if none is open."""
    values = dict(mode=held.mode, sync_run_id=held.sync_run_id, removing=held.removing, live_rows=held.live_rows,
                  reason=held.reason, **values)
    open_row = _open(conn, held.tenant_id, held.table_name)
    if open_row is None:
        conn.execute(insert(held_removals).values(removal_id=str(uuid.uuid4()), tenant_id=held.tenant_id,
                                                  table_name=held.table_name, **on_insert, **values))
    else:
        conn.execute(update(held_removals).where(held_removals.c.removal_id == open_row).values(**values))


def clear_held(engine: Engine, tenant_id: str, table_names: Iterable[str], *, at: datetime) -> None:
    """A later sync of these tables succeeded within the bounds: their holds are over."""
    names = list(table_names)
    if not names:
        return
    with write_transaction(engine) as conn:
        conn.execute(
            update(held_removals)
            .where(held_removals.c.tenant_id == tenant_id, held_removals.c.table_name.in_(names),
                   held_removals.c.status == HELD)
            .values(status=CLEARED, decided_at=at)
        )


def open_holds(engine: Engine, tenant_id: str | None = None) -> list[HeldRemoval]:
    query = select(held_removals).where(held_removals.c.status == HELD).order_by(
        held_removals.c.tenant_id, held_removals.c.table_name)
    if tenant_id is not None:
        query = query.where(held_removals.c.tenant_id == tenant_id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [HeldRemoval(r.tenant_id, r.table_name, r.mode, r.removing, r.live_rows, r.reason, r.held_at, r.sync_run_id)
            for r in rows]


def _open(conn: Connection, tenant_id: str, table_name: str) -> str | None:
    return conn.execute(
        select(held_removals.c.removal_id).where(
            held_removals.c.tenant_id == tenant_id, held_removals.c.table_name == table_name,
            held_removals.c.status == HELD)
    ).scalar()


# --- rows waiting for a confirmation read ------------------------------------------------------------


def waiting_keys(conn: Connection, tenant_id: str, entity: str) -> list[str]:
    """Keys waiting for confirmation, the longest-waiting first."""
    return list(conn.execute(
        select(unconfirmed_removals.c.entity_key)
        .where(unconfirmed_removals.c.tenant_id == tenant_id, unconfirmed_removals.c.entity == entity)
        .order_by(unconfirmed_removals.c.first_missing_at, unconfirmed_removals.c.entity_key)
    ).scalars())


def settle_waiting(conn: Connection, tenant_id: str, entity: str, *, resolved: Iterable[str],
                   waiting: Iterable[str], at: datetime) -> None:
    """Forget keys that were confirmed (or came back); keep the rest waiting, counting the night."""
    scope = and_(unconfirmed_removals.c.tenant_id == tenant_id, unconfirmed_removals.c.entity == entity)
    resolved = sorted(set(resolved))
    for start in range(0, len(resolved), 500):
        conn.execute(delete(unconfirmed_removals).where(
            scope, unconfirmed_removals.c.entity_key.in_(resolved[start:start + 500])))
    waiting = sorted(set(waiting) - set(resolved))
    known = set(conn.execute(select(unconfirmed_removals.c.entity_key).where(scope)).scalars())
    new = [key for key in waiting if key not in known]
    if new:
        conn.execute(insert(unconfirmed_removals), [
            dict(tenant_id=tenant_id, entity=entity, entity_key=key, first_missing_at=at, checks=1) for key in new])
    old = [key for key in waiting if key in known]
    for start in range(0, len(old), 500):
        conn.execute(update(unconfirmed_removals)
                     .where(scope, unconfirmed_removals.c.entity_key.in_(old[start:start + 500]))
                     .values(checks=unconfirmed_removals.c.checks + 1))
