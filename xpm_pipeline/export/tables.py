"""The export tables (migration 20) and the analyst view ``v_export_queue`` (migration 21).

``xpm_export_queue`` is the outbox: one row per change to write to XPM, whose ``status`` moves
pending -> sending -> done, or to in_doubt (reconciled by reading XPM back) or dead (XPM refused it).
``xpm_export_log`` is the audit trail: one row per event of an item (enqueued, coalesced, sent,
answered, reconciled, requeued, dead), with XPM's answer, so every write is explained and joinable to
the data by ``tenant_id`` + ``entity_key`` / ``remote_id``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, text
from sqlalchemy.engine import Connection

from xpm_pipeline.warehouse.control import metadata
from xpm_pipeline.warehouse.db import UtcDateTime
from xpm_pipeline.warehouse.migrate import migration
from xpm_pipeline.warehouse.views import create_views

PENDING, SENDING, IN_DOUBT, DONE, DEAD = "pending", "sending", "in_doubt", "done", "dead"
STATUSES = (PENDING, SENDING, IN_DOUBT, DONE, DEAD)
OPEN_STATUSES = (PENDING, SENDING, IN_DOUBT)  # not finished: the change has not reached XPM for sure

_BIGINT = BigInteger().with_variant(Integer, "sqlite")

queue = Table(
    "xpm_export_queue",
    metadata,
    Column("item_id", _BIGINT, primary_key=True, autoincrement=True, comment="Queue item id (enqueue order)."),
    Column("tenant_id", String(64), nullable=False, comment="XPM organisation the change is for."),
    Column("kind", String(16), nullable=False, comment="timesheet | job | client | task."),
    Column("op", String(8), nullable=False, comment="create | update | delete."),
    Column("write_op", String(32), nullable=False, comment="The XPM write it becomes (time_add, job_update, ...)."),
    Column(
        "priority", Integer, nullable=False,
        comment="1 timesheets, 2 job updates, 3 client updates, 4 task updates: lower goes first, then age.",
    ),
    Column(
        "entity_key", String(100), nullable=False,
        comment="The changed thing: XPM UUID (job number for jobs) for updates, your own local id for creates.",
    ),
    Column("payload", Text, nullable=False, comment="The change's fields as JSON, XPM element names."),
    Column("status", String(10), nullable=False, comment="pending | sending | in_doubt | done | dead."),
    Column("attempts", Integer, nullable=False, default=0, comment="Times sent to XPM (429s do not count)."),
    Column("not_before", UtcDateTime, nullable=True, comment="Not sent before this (backoff after a failure)."),
    Column("claimed_by", String(120), nullable=True, comment="Drain worker holding the item (host:pid:n)."),
    Column("lease_until", UtcDateTime, nullable=True, comment="The claim ends here; a dead worker's items return."),
    Column("call_id", BigInteger, nullable=True, comment="xpm_quota_ledger call of the latest send."),
    Column("remote_id", String(100), nullable=True, comment="XPM's id of the result (new UUID for creates)."),
    Column("last_error", Text, nullable=True, comment="Why the last attempt failed, or why the item is dead."),
    Column("xpm_response", Text, nullable=True, comment="XPM's answer to the last send (trimmed)."),
    Column("source", String(200), nullable=True, comment="Where the change came from (file name, 'api')."),
    Column("coalesced", Integer, nullable=False, default=0, comment="Later updates merged into this item."),
    Column("created_at", UtcDateTime, nullable=False, comment="When first queued (the item's age)."),
    Column("updated_at", UtcDateTime, nullable=False, comment="Last change to this row."),
    Column("sent_at", UtcDateTime, nullable=True, comment="When last marked sending."),
    Column("finished_at", UtcDateTime, nullable=True, comment="When it became done or dead."),
    sqlite_autoincrement=True,
    comment="Outbox of changes to write back to XPM, drained in priority order within the quota.",
)
Index("ix_xpm_export_queue_next", queue.c.tenant_id, queue.c.status, queue.c.priority, queue.c.item_id)
Index("ix_xpm_export_queue_key", queue.c.tenant_id, queue.c.kind, queue.c.entity_key)
# A create is queued once per local id, whatever happened to it since: re-adding a file is harmless.
Index(
    "ux_xpm_export_queue_create",
    queue.c.tenant_id, queue.c.kind, queue.c.entity_key,
    unique=True,
    sqlite_where=text("op = 'create'"),
    postgresql_where=text("op = 'create'"),
)

log = Table(
    "xpm_export_log",
    metadata,
    Column("log_id", _BIGINT, primary_key=True, autoincrement=True, comment="Event order."),
    Column("item_id", BigInteger, nullable=False, comment="xpm_export_queue item."),
    Column("tenant_id", String(64), nullable=False, comment="XPM organisation."),
    Column("kind", String(16), nullable=False, comment="timesheet | job | client | task."),
    Column("op", String(8), nullable=False, comment="create | update | delete."),
    Column("entity_key", String(100), nullable=False, comment="As in the queue."),
    Column("priority", Integer, nullable=False, comment="As in the queue."),
    Column("attempt", Integer, nullable=False, comment="The item's attempts at the time of the event."),
    Column(
        "event", String(16), nullable=False,
        comment="enqueued | coalesced | sending | done | in_doubt | reconciled | requeued | dead | released.",
    ),
    Column("status_code", Integer, nullable=True, comment="HTTP status of XPM's answer, when there was one."),
    Column("remote_id", String(100), nullable=True, comment="XPM's id of the result, when known."),
    Column("call_id", BigInteger, nullable=True, comment="xpm_quota_ledger call, for sends."),
    Column("detail", Text, nullable=True, comment="XPM's answer or the error, trimmed."),
    Column("worker", String(120), nullable=True, comment="Process that recorded the event."),
    Column("at", UtcDateTime, nullable=False, comment="When."),
    sqlite_autoincrement=True,
    comment="Audit trail of the export queue: every enqueue, send, answer and reconciliation.",
)
Index("ix_xpm_export_log_item", log.c.item_id)
Index("ix_xpm_export_log_key", log.c.tenant_id, log.c.entity_key)

EXPORT_TABLES = (queue, log)


@migration(20, "export: xpm_export_queue, xpm_export_log")
def create_export_tables(conn: Connection) -> None:
    metadata.create_all(conn, tables=list(EXPORT_TABLES), checkfirst=True)


@migration(21, "analyst view: v_export_queue")
def _create_export_view(conn: Connection) -> None:
    create_views(conn, ("v_export_queue",))
