"""The outbox: enqueue changes, and every status move of an item, each in one short transaction.

Life of an item::

    pending --claim--> pending (claimed, leased) --admission--> sending --answer--> done
                                                                   |  \\--XPM refused--> dead
                                   unclear answer, worker died ----+--> in_doubt --read XPM back--> done | pending

Rules kept here, for every process and both dialects:

- Enqueue takes a per-tenant lock (PostgreSQL advisory lock; SQLite's write lock), so coalescing an
  update into the tenant's pending item for the same entity is race-free. A create is queued once per
  local key (unique index): adding the same file twice queues nothing the second time.
- Claiming picks the next item by status (in doubt first, to settle it), priority, then age, skipping
  rows another worker holds (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and any item whose entity has an
  older open item (two edits of one job go out in order, never in parallel).
- ``sending`` is committed in the same transaction as the item's quota admission (``mark_sending`` is
  the ledger's ``on_admit``), before the HTTP call: a crash after it leaves a trace that
  ``recover_expired`` turns into ``in_doubt`` once the lease ends.
- Every move writes an ``xpm_export_log`` row.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from xpm_pipeline.clock import SYSTEM_CLOCK, Clock
from xpm_pipeline.export import tables as T
from xpm_pipeline.export.changes import Change, ChangeError, KINDS, make_change
from xpm_pipeline.export.protect import apply_locally
from xpm_pipeline.warehouse.control import tenants as tenants_table
from xpm_pipeline.warehouse.db import dialect_name, write_transaction

DETAIL_LIMIT = 2000
q = T.queue.c


class UnknownTenant(ValueError):
    """Changes for a tenant the warehouse does not know (never connected)."""


class NotDead(ValueError):
    """``retry-dead`` named items that are not dead (done, waiting, or someone else's)."""


class ClaimLost(RuntimeError):
    """Another worker took the item over (our lease ran out): leave it to them."""


@dataclass(frozen=True)
class Item:
    """A claimed queue item, as the drain sees it."""

    item_id: int
    tenant_id: str
    kind: str
    op: str
    write_op: str
    priority: int
    entity_key: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    claimed_by: str
    last_error: str | None = None

    @property
    def spec(self):
        return KINDS[(self.kind, self.op)]


@dataclass
class EnqueueResult:
    added: int = 0
    coalesced: int = 0
    duplicates: int = 0  # creates already queued under the same key: not queued again
    shown_in_warehouse: int = 0  # rows of xpm_jobs / xpm_clients now showing the pending values
    item_ids: list[int] = field(default_factory=list)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _trim(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value)
    return value if len(value) <= DETAIL_LIMIT else value[: DETAIL_LIMIT - 1] + "…"


def _lock_tenant(conn: Connection, tenant_id: str) -> None:
    """Serialise queue writes of one tenant (SQLite: the write transaction already does)."""
    if dialect_name(conn) == "postgresql":
        digest = hashlib.blake2b(b"xpm-pipeline/export/" + tenant_id.encode(), digest_size=8).digest()
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest, "big", signed=True)})


def _log(conn: Connection, row: Any, event: str, now: datetime, *, worker: str | None = None, **values: Any) -> None:
    values["detail"] = _trim(values.get("detail"))
    conn.execute(
        insert(T.log).values(
            item_id=row.item_id, tenant_id=row.tenant_id, kind=row.kind, op=row.op, entity_key=row.entity_key,
            priority=row.priority, attempt=values.pop("attempt", row.attempts), event=event, worker=worker, at=now,
            **values,
        )
    )


def check_tenant(conn: Connection, tenant_id: str) -> None:
    found = conn.execute(select(tenants_table.c.status).where(tenants_table.c.tenant_id == tenant_id)).scalar()
    if found is None:
        known = conn.execute(select(tenants_table.c.tenant_id).order_by(tenants_table.c.tenant_id)).scalars().all()
        raise UnknownTenant(
            f"unknown tenant {tenant_id!r}; known: {', '.join(known) or 'none'} (run `xpm-pipeline connect`)"
        )


# --- enqueue -----------------------------------------------------------------------------------------


def enqueue(
    engine: Engine,
    tenant_id: str,
    changes: Iterable[Change | dict],
    *,
    source: str = "api",
    clock: Clock = SYSTEM_CLOCK,
) -> EnqueueResult:
    """Queue changes for one tenant in ONE transaction: all of them, or (on any error) none.

    Dicts are checked like change-file lines first (``ChangeError`` names the change and field).
    """
    checked = [c if isinstance(c, Change) else make_change(c, where=f"change {i}") for i, c in enumerate(changes, 1)]
    if not checked:
        raise ChangeError("no changes to queue")
    result = EnqueueResult()
    with write_transaction(engine) as conn:
        check_tenant(conn, tenant_id)
        _lock_tenant(conn, tenant_id)
        now = clock.now()
        for change in checked:
            _enqueue_one(conn, tenant_id, change, source, now, result)
    return result


def _enqueue_one(conn: Connection, tenant_id: str, change: Change, source: str, now: datetime, result: EnqueueResult) -> None:
    same = (q.tenant_id == tenant_id, q.kind == change.kind, q.entity_key == change.key)
    if change.op in ("create", "delete"):
        statuses = T.STATUSES if change.op == "create" else T.OPEN_STATUSES
        existing = conn.execute(select(q.item_id).where(*same, q.op == change.op, q.status.in_(statuses))).scalar()
        if existing is not None:
            result.duplicates += 1
            return
    else:
        row = conn.execute(
            select(T.queue).where(*same, q.op == "update", q.status == T.PENDING).order_by(q.item_id.desc()).limit(1)
        ).first()
        if row is not None:
            merged = {**json.loads(row.payload), **dict(change.fields)}
            done = conn.execute(
                update(T.queue)
                .where(q.item_id == row.item_id, q.status == T.PENDING)
                .values(payload=json.dumps(merged, sort_keys=True, ensure_ascii=False, default=str),
                        coalesced=q.coalesced + 1, updated_at=now, source=_trim(source))
            ).rowcount
            if done:
                _log(conn, row, "coalesced", now, detail=change.payload())
                result.coalesced += 1
                result.item_ids.append(row.item_id)
                result.shown_in_warehouse += apply_locally(conn, tenant_id, change)
                return
    spec = change.spec
    item_id = conn.execute(
        insert(T.queue)
        .values(
            tenant_id=tenant_id, kind=change.kind, op=change.op, write_op=spec.write_op, priority=spec.priority,
            entity_key=change.key, payload=change.payload(), status=T.PENDING, attempts=0, coalesced=0,
            source=_trim(source), created_at=now, updated_at=now,
        )
        .returning(q.item_id)
    ).scalar_one()
    row = conn.execute(select(T.queue).where(q.item_id == item_id)).one()
    _log(conn, row, "enqueued", now, detail=change.payload())
    result.added += 1
    result.item_ids.append(item_id)
    result.shown_in_warehouse += apply_locally(conn, tenant_id, change)


# --- the drain's moves ---------------------------------------------------------------------------------


def recover_expired(engine: Engine, tenant_id: str, now: datetime, *, worker: str | None = None) -> int:
    """Items left ``sending`` by a worker whose lease ran out (it died, or hangs) become ``in_doubt``:
    XPM may or may not have applied them, so they are read back before any re-send."""
    with write_transaction(engine) as conn:
        rows = conn.execute(
            select(T.queue).where(q.tenant_id == tenant_id, q.status == T.SENDING, q.lease_until < now)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            conn.execute(
                update(T.queue).where(q.item_id == row.item_id, q.status == T.SENDING)
                .values(status=T.IN_DOUBT, claimed_by=None, lease_until=None, updated_at=now,
                        last_error=f"worker {row.claimed_by} stopped while sending (lease ended)")
            )
            _log(conn, row, "in_doubt", now, worker=worker, detail=f"lease of {row.claimed_by} ended while sending")
    return len(rows)


def _eligible(now: datetime):
    older = T.queue.alias("older")
    blocked_by_older = exists().where(
        older.c.tenant_id == q.tenant_id,
        older.c.kind == q.kind,
        older.c.entity_key == q.entity_key,
        older.c.item_id < q.item_id,
        older.c.status.in_(T.OPEN_STATUSES),
    )
    return and_(
        q.status.in_((T.PENDING, T.IN_DOUBT)),
        (q.not_before.is_(None)) | (q.not_before <= now),
        (q.lease_until.is_(None)) | (q.lease_until < now),
        ~blocked_by_older,
    )


def claim_next(engine: Engine, tenant_id: str, worker: str, now: datetime, lease: timedelta) -> Item | None:
    """Take the tenant's next item (in doubt first, then priority, then age) for ``lease``."""
    with write_transaction(engine) as conn:
        row = None
        for status in (T.IN_DOUBT, T.PENDING):  # one index range each: (tenant, status, priority, item_id)
            row = conn.execute(
                select(T.queue)
                .where(q.tenant_id == tenant_id, q.status == status, _eligible(now))
                .order_by(q.priority, q.item_id)
                .limit(1)
                .with_for_update(skip_locked=True, of=T.queue)
            ).first()
            if row is not None:
                break
        if row is None:
            return None
        conn.execute(
            update(T.queue).where(q.item_id == row.item_id).values(claimed_by=worker, lease_until=now + lease)
        )
    return _item(row, worker)


def _item(row: Any, worker: str) -> Item:
    return Item(
        item_id=row.item_id, tenant_id=row.tenant_id, kind=row.kind, op=row.op, write_op=row.write_op,
        priority=row.priority, entity_key=row.entity_key, payload=json.loads(row.payload), status=row.status,
        attempts=row.attempts, created_at=row.created_at, claimed_by=worker, last_error=row.last_error,
    )


def mark_sending(conn: Connection, item: Item, *, call_id: int | None, now: datetime, lease: timedelta) -> Item:
    """Inside the quota admission's transaction: the item is ``sending`` with its latest payload (an
    update coalesced since the claim goes out too). ``ClaimLost`` undoes the admission."""
    row = conn.execute(
        update(T.queue)
        .where(q.item_id == item.item_id, q.claimed_by == item.claimed_by, q.status == item.status)
        .values(status=T.SENDING, attempts=q.attempts + 1, sent_at=now, lease_until=now + lease, call_id=call_id,
                updated_at=now)
        .returning(*T.queue.c)
    ).first()
    if row is None:
        raise ClaimLost(f"export item {item.item_id} was taken over by another worker")
    _log(conn, row, "sending", now, worker=item.claimed_by, call_id=call_id)
    return _item(row, item.claimed_by)


def _move(
    engine: Engine, item: Item, now: datetime, event: str, *, from_statuses: Sequence[str], values: dict[str, Any],
    log_values: dict[str, Any] | None = None,
) -> bool:
    """One guarded status move plus its log row; False when the item is no longer ours."""
    with write_transaction(engine) as conn:
        row = conn.execute(
            update(T.queue)
            .where(q.item_id == item.item_id, q.claimed_by == item.claimed_by, q.status.in_(from_statuses))
            .values(updated_at=now, **values)
            .returning(*T.queue.c)
        ).first()
        if row is None:
            return False
        _log(conn, row, event, now, worker=item.claimed_by, **(log_values or {}))
    return True


_UNCLAIM = {"claimed_by": None, "lease_until": None}


def mark_done(
    engine: Engine, item: Item, now: datetime, *, remote_id: str | None, response: str | None,
    status_code: int | None = 200, event: str = "done",
) -> bool:
    return _move(
        engine, item, now, event, from_statuses=(T.SENDING, T.IN_DOUBT),
        values={"status": T.DONE, "remote_id": remote_id, "xpm_response": _trim(response), "last_error": None,
                "finished_at": now, "not_before": None, **_UNCLAIM},
        log_values={"remote_id": remote_id, "status_code": status_code, "detail": response},
    )


def mark_in_doubt(engine: Engine, item: Item, now: datetime, error: str) -> bool:
    return _move(
        engine, item, now, "in_doubt", from_statuses=(T.SENDING,),
        values={"status": T.IN_DOUBT, "last_error": _trim(error), **_UNCLAIM},
        log_values={"detail": error},
    )


def mark_dead(engine: Engine, item: Item, now: datetime, reason: str, *, status_code: int | None = None) -> bool:
    return _move(
        engine, item, now, "dead", from_statuses=(T.SENDING, T.IN_DOUBT, T.PENDING),
        values={"status": T.DEAD, "last_error": _trim(reason), "xpm_response": _trim(reason), "finished_at": now,
                **_UNCLAIM},
        log_values={"detail": reason, "status_code": status_code},
    )


def requeue(
    engine: Engine, item: Item, now: datetime, reason: str, *, not_before: datetime | None = None,
    not_an_attempt: bool = False, event: str = "requeued",
) -> bool:
    """Back to pending (after a 429, an auth failure, or a read-back that found nothing applied)."""
    values: dict[str, Any] = {"status": T.PENDING, "last_error": _trim(reason), "not_before": not_before, **_UNCLAIM}
    if not_an_attempt:
        values["attempts"] = case((q.attempts > 0, q.attempts - 1), else_=0)
    return _move(
        engine, item, now, event, from_statuses=(T.SENDING, T.IN_DOUBT, T.PENDING), values=values,
        log_values={"detail": reason},
    )


def release(engine: Engine, item: Item, now: datetime, reason: str) -> bool:
    """Give a claimed item back untouched (no quota now): it keeps its place."""
    with write_transaction(engine) as conn:
        return bool(
            conn.execute(
                update(T.queue)
                .where(q.item_id == item.item_id, q.claimed_by == item.claimed_by, q.status == item.status)
                .values(**_UNCLAIM)
            ).rowcount
        )


def reset_dead(engine: Engine, tenant_id: str, item_ids: Sequence[int] | None = None, *, clock: Clock = SYSTEM_CLOCK) -> int:
    """Put dead items back to pending (after fixing the cause in XPM): ``xpm-pipeline queue --retry-dead``."""
    with write_transaction(engine) as conn:
        _lock_tenant(conn, tenant_id)
        now = clock.now()
        where = [q.tenant_id == tenant_id, q.status == T.DEAD]
        if item_ids:
            where.append(q.item_id.in_(list(item_ids)))
        rows = conn.execute(select(T.queue).where(*where)).all()
        missing = sorted(set(item_ids or ()) - {row.item_id for row in rows})
        if missing:
            raise NotDead(
                f"item {', '.join(map(str, missing))} is not a dead item of tenant {tenant_id} (see `xpm-pipeline "
                f"queue --tenant {tenant_id} --status dead`); nothing was put back"
            )
        for row in rows:
            conn.execute(
                update(T.queue).where(q.item_id == row.item_id)
                .values(status=T.PENDING, finished_at=None, not_before=None, updated_at=now)
            )
            _log(conn, row, "requeued", now, detail="dead item put back by hand")
    return len(rows)


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    tenant_id: str
    by_status: dict[str, int]
    open_by_priority: dict[int, int]

    @property
    def open(self) -> int:
        return sum(self.by_status.get(s, 0) for s in T.OPEN_STATUSES)


def depth(conn_or_engine: Engine | Connection, tenant_id: str) -> QueueDepth:
    def read(conn: Connection) -> QueueDepth:
        by_status = dict(
            conn.execute(select(q.status, func.count()).where(q.tenant_id == tenant_id).group_by(q.status)).all()
        )
        by_priority = dict(
            conn.execute(
                select(q.priority, func.count())
                .where(q.tenant_id == tenant_id, q.status.in_(T.OPEN_STATUSES))
                .group_by(q.priority)
            ).all()
        )
        return QueueDepth(tenant_id, {s: int(by_status.get(s, 0)) for s in T.STATUSES}, by_priority)

    if isinstance(conn_or_engine, Connection):
        return read(conn_or_engine)
    with conn_or_engine.connect() as conn:
        return read(conn)


def tenants_with_work(engine: Engine, now: datetime) -> list[str]:
    """Tenants with an item the drain could take now (the sensor's question)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(q.tenant_id).where(_eligible(now)).group_by(q.tenant_id).order_by(q.tenant_id)
            ).scalars()
        )


def open_items(engine: Engine, tenant_id: str, *, statuses: Sequence[str] = T.OPEN_STATUSES, limit: int | None = None):
    """Items in drain order (sending, in doubt, then priority and age)."""
    order = (case((q.status == T.SENDING, 0), (q.status == T.IN_DOUBT, 1), else_=2), q.priority, q.item_id)
    stmt = select(T.queue).where(q.tenant_id == tenant_id, q.status.in_(list(statuses))).order_by(*order)
    if limit is not None:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        return conn.execute(stmt).all()
