"""Settling an item in doubt: did XPM apply it? Read XPM back before anything is sent again.

An item is in doubt when its write was sent but no clear answer came (timeout, reset, 5xx, the worker
died while ``sending``). XPM has no idempotency keys, so the only safe move is to look:

- **updates** (time, job, client, task on a job): read the thing and compare every field the change
  sets; all equal -> applied (done). Otherwise not applied -> pending (sent again). Gone -> dead.
- **deletes** (time): "not found" -> applied.
- **creates**: look for a thing with the change's values that no one else accounts for — not the
  result of another queue item, and not a row the warehouse already held before this item was first
  sent. Time entries are read for that staff member and date (``time.api/staff``), tasks from their
  job, clients by name (``client.api/search``). Found -> done with its id; none -> pending.

Each look costs one or two reads, admitted by the quota ledger like any other call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from xpm_pipeline.entities import write_column
from xpm_pipeline.export import tables as T
from xpm_pipeline.export.changes import typed_values
from xpm_pipeline.export.queue import Item
from xpm_pipeline.warehouse.schema import table_for
from xpm_pipeline.xpm.client import XPMClient
from xpm_pipeline.xpm.errors import XPMNotFound
from xpm_pipeline.xpm.parse import CONVERTERS
from xpm_pipeline.xpm.windows import DateWindow

APPLIED, NOT_APPLIED, GONE = "applied", "not_applied", "gone"


@dataclass(frozen=True)
class Verdict:
    outcome: str  # applied | not_applied | gone
    remote_id: str | None = None
    detail: str = ""


def reconcile(engine: Engine, client: XPMClient, item: Item) -> Verdict:
    """Read XPM back for one in-doubt item (raises XPM errors other than "not found" as they are)."""
    if item.op == "create":
        return _find_created(engine, client, item)
    if item.op == "delete":
        try:
            client.get(item.spec.write.target_entity, item.entity_key)
        except XPMNotFound:
            return Verdict(APPLIED, item.entity_key, "XPM no longer has it")
        return Verdict(NOT_APPLIED, None, "XPM still has it")
    return _compare_update(engine, client, item)


# --- updates --------------------------------------------------------------------------------------------


def _compare_update(engine: Engine, client: XPMClient, item: Item) -> Verdict:
    spec = item.spec
    try:
        current = _read_target(engine, client, item)
    except XPMNotFound as exc:
        return Verdict(GONE, None, f"XPM has no {spec.kind} {item.entity_key}: {exc}")
    if current is None:
        return Verdict(NOT_APPLIED, None, f"{spec.kind} {item.entity_key} cannot be read back; sending again")
    wanted = typed_values(spec, item.payload)
    differs = [c for c, v in wanted.items() if not _same(engine, item, c, v, current.get(c))]
    if differs:
        return Verdict(NOT_APPLIED, None, f"XPM differs in {', '.join(differs)}")
    return Verdict(APPLIED, item.entity_key, "XPM holds every changed field")


def _read_target(engine: Engine, client: XPMClient, item: Item) -> dict[str, Any] | None:
    target = item.spec.write.target_entity
    key = item.entity_key
    if target == "job":
        rows = client.job(key)["job"]
    elif target == "job_task":
        job_number = _job_of_task(engine, item.tenant_id, key)
        if job_number is None:
            return None
        rows = client.job(job_number)["job_task"]
    else:
        rows = client.get(target, key)[target]
    key_column = write_column(item.spec.write, item.spec.key_field)
    wanted_key = CONVERTERS[key_column.type](key)
    return next((r for r in rows.records() if r[key_column.name] == wanted_key), None)


def _job_of_task(engine: Engine, tenant_id: str, task_on_job: str) -> str | None:
    job_tasks = table_for("job_task")
    with engine.connect() as conn:
        return conn.execute(
            select(job_tasks.c.job_number).where(
                job_tasks.c.tenant_id == tenant_id, job_tasks.c.uuid == task_on_job.lower()
            )
        ).scalar()


def _same(engine: Engine, item: Item, column: str, wanted: Any, actual: Any) -> bool:
    if wanted == actual or (wanted in (None, "") and actual in (None, "")):
        return True
    if column == "task_uuid" and wanted is not None and actual is not None:
        return _task_type_of(engine, item.tenant_id, actual) == wanted  # a task-list UUID was written
    return False


def _task_type_of(engine: Engine, tenant_id: str, task_on_job: str) -> str | None:
    job_tasks = table_for("job_task")
    with engine.connect() as conn:
        return conn.execute(
            select(job_tasks.c.task_uuid).where(job_tasks.c.tenant_id == tenant_id, job_tasks.c.uuid == task_on_job)
        ).scalar()


# --- creates -------------------------------------------------------------------------------------------


def _find_created(engine: Engine, client: XPMClient, item: Item) -> Verdict:
    spec = item.spec
    wanted = typed_values(spec, item.payload)
    target = spec.write.target_entity
    if target == "timesheet":
        day = wanted["entry_date"]
        rows = client.time_by_staff(item.payload["StaffUUID"], DateWindow(day, day))
        if "minutes" not in wanted and wanted.get("start_time") and wanted.get("end_time"):
            wanted["minutes"] = _minutes_between(wanted["start_time"], wanted["end_time"])
            wanted.pop("start_time"), wanted.pop("end_time")
    elif target == "job_task":
        rows = client.job(item.payload["Job"])["job_task"]
    elif target == "client":
        rows = client.client_search(item.payload["Name"])["client"]
    else:  # pragma: no cover - KINDS declares no other create
        raise ValueError(f"no read-back for creates of {target}")
    candidates = [r for r in rows.records() if all(_same(engine, item, c, v, r.get(c)) for c, v in wanted.items())]
    if target == "client":
        candidates = [r for r in candidates if not r.get("is_deleted")]
    taken = _accounted_for(engine, item, target, [r["uuid"] for r in candidates])
    fresh = [r for r in candidates if r["uuid"] not in taken]
    if not fresh:
        return Verdict(NOT_APPLIED, None, f"no {target} with these values in XPM ({len(candidates)} accounted for)")
    return Verdict(APPLIED, fresh[0]["uuid"], f"found in XPM as {fresh[0]['uuid']}")


def _minutes_between(start: str, end: str) -> int:
    (h1, m1), (h2, m2) = (map(int, start.split(":")), map(int, end.split(":")))
    return (h2 * 60 + m2) - (h1 * 60 + m1)


def _accounted_for(engine: Engine, item: Item, target: str, uuids: list[str]) -> set[str]:
    """Of ``uuids``: results of other queue items, and rows the warehouse held before this item was
    first sent (a sync since may have loaded our own entry: it is not excluded)."""
    if not uuids:
        return set()
    qc, lc = T.queue.c, T.log.c
    table = table_for(target)
    with engine.connect() as conn:
        others = set(
            conn.execute(
                select(qc.remote_id).where(
                    qc.tenant_id == item.tenant_id, qc.remote_id.in_(uuids), qc.item_id != item.item_id
                )
            ).scalars()
        )
        first_sent: datetime | None = conn.execute(
            select(func.min(lc.at)).where(lc.item_id == item.item_id, lc.event == "sending")
        ).scalar()
        known: set[str] = set()
        if first_sent is not None:
            known = set(
                conn.execute(
                    select(table.c.uuid).where(
                        table.c.tenant_id == item.tenant_id, table.c.uuid.in_(uuids), table.c._synced_at < first_sent
                    )
                ).scalars()
            )
    return others | known
