"""The removal guard: no single XPM answer may remove much of a table.

XPM answers are trusted for what they contain, never for what they lack: a list cut short, emptied or
answered for the wrong tenant looks exactly like mass deletion. So every step that soft-deletes rows or
marks jobs Completed reports the removal to the run's guard inside its write transaction, before it
commits. When the run would remove more than a bounded share of the tenant's live rows of a table
(default: more than 20 % AND more than 10 rows; and always every row of a non-empty table), the guard
raises ``RemovalHeld``: the transaction rolls back, the table stays as it was, the step fails with one
line saying how to accept, and the run's other steps go on. A person who looked accepts it for one run
(``xpm-pipeline sync ... --accept-removals xpm_staff`` or the Dagster run config); the decision is
recorded with who and when in ``xpm_held_removals``, in the same transaction as the removal.

The check is a count on an indexed column, made only when a load removes something.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from xpm_pipeline.clock import Clock
from xpm_pipeline.entities import ENTITIES, Entity
from xpm_pipeline.sync.removals import HeldRemoval, record_accepted
from xpm_pipeline.warehouse.schema import table_for

DELETED, COMPLETED = "deleted", "completed"


@dataclass(frozen=True)
class RemovalLimits:
    """A run may remove at most ``share`` of a table's live rows, unless that is ``min_rows`` or fewer."""

    share: float = 0.20
    min_rows: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError("the removal share must be between 0 and 1")
        if self.min_rows < 0:
            raise ValueError("the removal row floor must be 0 or more")

    def exceeded(self, removing: int, live: int) -> bool:
        if removing <= 0:
            return False
        if removing >= live:
            return True  # every row of a non-empty table
        return removing > self.share * live and removing > self.min_rows

    def describe(self) -> str:
        return f"more than {self.share:.0%} and more than {self.min_rows} rows, or every row"


class RemovalHeld(RuntimeError):
    """The guard stopped a removal; the step's transaction rolled back."""

    def __init__(self, held: HeldRemoval) -> None:
        super().__init__(held.reason)
        self.held = held


def table_name(name: str) -> str:
    """``xpm_staff`` or ``staff`` -> ``xpm_staff``; an unknown name is a one-line error."""
    for entity in ENTITIES.values():
        if name in (entity.table, entity.name):
            return entity.table
    raise ValueError(f"unknown table {name!r} to accept removals for; choose from "
                     + ", ".join(entity.table for entity in ENTITIES.values()))


@dataclass
class RemovalGuard:
    tenant_id: str
    mode: str
    clock: Clock
    limits: RemovalLimits = field(default_factory=RemovalLimits)
    accepted: frozenset[str] = frozenset()  # table names a person accepted removals for, this run
    accepted_by: str = ""
    sync_run_id: str | None = None  # set by the runner for each step
    _baseline: dict[str, int] = field(default_factory=dict)  # live rows before the run's first removal
    _removed: dict[str, int] = field(default_factory=dict)  # committed removals of this run, per table

    def __post_init__(self) -> None:
        self.accepted = frozenset(table_name(name) for name in self.accepted)

    def __call__(self, conn: Connection, entity: Entity | str, removing: int, *, added: int = 0,
                 kind: str = DELETED) -> None:
        """Called inside the removing transaction, after the removal: ``removing`` rows went, ``added``
        rows became live in the same load. Raises ``RemovalHeld`` past the limits."""
        if removing <= 0:
            return
        entity = ENTITIES[entity] if isinstance(entity, str) else entity
        table = entity.table
        if table not in self._baseline:
            self._baseline[table] = _live_rows(conn, entity, self.tenant_id, kind) + removing - added
        live = self._baseline[table]
        total = self._removed.get(table, 0) + removing
        if self.limits.exceeded(total, live):
            held = self._held(table, total, live, kind)
            if table not in self.accepted:
                raise RemovalHeld(held)
            record_accepted(conn, held, by=self.accepted_by, at=self.clock.now())
        self._removed[table] = total

    def _held(self, table: str, removing: int, live: int, kind: str) -> HeldRemoval:
        what = "mark Completed" if kind == COMPLETED else "remove"
        share = removing / live if live else 1.0
        reason = (
            f"held: the {self.mode} sync would {what} {removing} of {live} live rows of {table} ({share:.0%}; "
            f"the limit is {self.limits.describe()}); nothing was removed. If XPM is right, accept with: "
            f"xpm-pipeline sync --tenant {self.tenant_id} --mode {self.mode} --accept-removals {table}"
        )
        return HeldRemoval(self.tenant_id, table, self.mode, removing, live, reason, self.clock.now(),
                           self.sync_run_id)


def _live_rows(conn: Connection, entity: Entity, tenant_id: str, kind: str) -> int:
    table = table_for(entity)
    query = select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id, table.c._deleted_at.is_(None))
    if kind == COMPLETED and entity.completed_when is not None:
        column, value = entity.completed_when
        query = query.where(table.c[column].is_distinct_from(value))
    return int(conn.execute(query).scalar() or 0)
