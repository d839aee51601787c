"""What a drain would do now, without calling XPM: calls needed, what goes at once, what waits and until
when. Also the ETA per item that ``xpm-pipeline queue`` shows.

The ETA is the quota ledger's own simulation (``QuotaLedger.schedule``) of the writes the open items
need, in drain order, assuming nothing else spends the tenant's quota meanwhile. An item in doubt
needs one read first (and possibly a re-send); it is counted as one read plus one write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from xpm_pipeline.export import queue as Q
from xpm_pipeline.export import tables as T
from xpm_pipeline.export.changes import PRIORITY_NAMES
from xpm_pipeline.quota.ledger import QuotaLedger, QuotaUsage
from xpm_pipeline.quota.limits import WRITE


@dataclass(frozen=True)
class PlannedItem:
    position: int
    item_id: int
    kind: str
    op: str
    priority: int
    entity_key: str
    status: str
    attempts: int
    eta: datetime
    goes_now: bool
    last_error: str | None

    @property
    def priority_name(self) -> str:
        return PRIORITY_NAMES[self.priority]


@dataclass
class ExportPlan:
    tenant_id: str
    at: datetime
    usage: QuotaUsage
    items: list[PlannedItem] = field(default_factory=list)
    dead: int = 0

    @property
    def calls_needed(self) -> int:
        return sum(2 if i.status == T.IN_DOUBT else 1 for i in self.items)

    @property
    def go_now(self) -> list[PlannedItem]:
        return [i for i in self.items if i.goes_now]

    @property
    def waiting(self) -> list[PlannedItem]:
        return [i for i in self.items if not i.goes_now]

    @property
    def finished_by(self) -> datetime | None:
        return self.items[-1].eta if self.items else None

    def summary(self) -> str:
        if not self.items:
            return f"tenant {self.tenant_id}: nothing to export"
        line = (
            f"tenant {self.tenant_id}: {len(self.items)} item(s), {self.calls_needed} call(s); "
            f"{len(self.go_now)} go now"
        )
        if self.waiting:
            line += f", {len(self.waiting)} wait (last at {self.finished_by.isoformat(timespec='seconds')})"
        return line


def plan(engine: Engine, ledger: QuotaLedger, tenant_id: str) -> ExportPlan:
    """The drain's order and each item's ETA at the current quota."""
    rows = Q.open_items(engine, tenant_id)
    calls = sum(2 if r.status == T.IN_DOUBT else 1 for r in rows)
    schedule = ledger.schedule(tenant_id, calls, WRITE) if calls else []
    usage = ledger.usage(tenant_id)  # read after the schedule: "now" is then never before its first slot
    result = ExportPlan(tenant_id=tenant_id, at=usage.at, usage=usage)
    result.dead = Q.depth(engine, tenant_id).by_status.get(T.DEAD, 0)
    slot = 0
    for position, row in enumerate(rows, start=1):
        slot += 2 if row.status == T.IN_DOUBT else 1
        eta = max(schedule[slot - 1], row.not_before or usage.at)
        result.items.append(
            PlannedItem(
                position=position, item_id=row.item_id, kind=row.kind, op=row.op, priority=row.priority,
                entity_key=row.entity_key, status=row.status, attempts=row.attempts, eta=eta,
                goes_now=eta <= usage.at, last_error=row.last_error,
            )
        )
    return result
