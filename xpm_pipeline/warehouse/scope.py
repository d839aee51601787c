"""Which stored rows a load's input describes completely ("delete missing" scope).

A sync that re-read part of an entity from XPM - a date window of timesheets, the tasks of some jobs,
every client - knows that any stored row of that part which XPM did not return was deleted there. The
scope says which part; it never reaches beyond the tenant being loaded.

    Scope(column="entry_date", between=(date(2025, 1, 1), date(2025, 12, 31)))   # inclusive bounds
    Scope(column="job_uuid", within=job_uuids)                                    # any of these values
    Scope.all()                                                                    # a full re-read

A bound of ``None`` leaves that side open. ``within`` values are staged into a temporary table rather than
bound one by one, so a scope of 100,000 job UUIDs is as valid as one of three (PostgreSQL caps a statement
at 65,535 parameters, SQLite at 32,766).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xpm_pipeline.entities import Entity


@dataclass(frozen=True, init=False)
class Scope:
    column: str | None = None
    between: tuple[Any, Any] | None = None
    within: tuple[Any, ...] | None = None

    def __init__(
        self, column: str | None = None, *, between: tuple[Any, Any] | None = None, within: Iterable[Any] | None = None
    ) -> None:
        if column is None and (between is not None or within is not None):
            raise ValueError("a Scope with between= or within= needs a column")
        if column is not None and (between is None) == (within is None):
            raise ValueError(f"Scope(column={column!r}) needs exactly one of between=(low, high) or within=[...]")
        if between is not None:
            between = tuple(between)
            if len(between) != 2:
                raise ValueError("between= takes (low, high); use None for an open side")
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "between", between)
        object.__setattr__(self, "within", None if within is None else tuple(dict.fromkeys(within)))

    @classmethod
    def all(cls) -> "Scope":
        """Every row of the tenant: the load is a full re-read of the entity."""
        return cls()

    @property
    def is_all(self) -> bool:
        return self.column is None

    def check(self, entity: Entity) -> None:
        """Refuse a column the entity does not have (a typo would otherwise delete nothing, or everything)."""
        if self.column is not None and self.column not in entity.column_names:
            raise ValueError(f"{entity.name} has no column {self.column!r} to scope deletes by")

    def __repr__(self) -> str:
        if self.is_all:
            return "Scope.all()"
        if self.between is not None:
            return f"Scope({self.column!r}, between={self.between!r})"
        return f"Scope({self.column!r}, within=<{len(self.within)} values>)"
