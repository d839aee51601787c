"""A small versioned migration runner, safe when several processes start at once.

Migrations are ``(version, name, apply(conn))`` in one ordered registry. Each pending one runs in its
own transaction together with its row in ``xpm_schema_migrations``, under a lock (PostgreSQL
``pg_advisory_xact_lock``; SQLite ``BEGIN IMMEDIATE``), so a second process waits and then finds it
already applied. DDL is transactional on both dialects, so a failed migration leaves nothing behind.

Adding a migration from another module::

    from xpm_pipeline.warehouse.migrate import migration

    @migration(2, "entity tables")
    def _entity_tables(conn):
        metadata.create_all(conn, tables=[...])

and list that module in ``MIGRATION_MODULES`` so ``migrate()`` imports it (or import it before
calling ``migrate``). Never renumber or edit an applied migration: append a new one.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, text

from xpm_pipeline.clock import SYSTEM_CLOCK, Clock
from xpm_pipeline.warehouse.control import CONTROL_TABLES_V1, metadata, schema_migrations
from xpm_pipeline.warehouse.db import dialect_name, write_transaction

_LOCK_KEY = zlib.crc32(b"xpm-pipeline/migrate")

MIGRATION_MODULES: list[str] = [
    "xpm_pipeline.warehouse.entity_migrations",  # 2: entity tables
    "xpm_pipeline.warehouse.schema",  # 3: sync bookkeeping
    "xpm_pipeline.warehouse.views",  # 4: analyst views
    "xpm_pipeline.quota.tables",  # 10: quota ledger
    "xpm_pipeline.export.tables",  # 20, 21: export queue, audit log, v_export_queue
    "xpm_pipeline.warehouse.key_order",  # 22: key-first primary keys, identifiers in byte order
    "xpm_pipeline.sync.removals",  # 23: held removals, removals waiting for confirmation
    "xpm_pipeline.warehouse.refresh_lease",  # 24: refresh lease on xpm_oauth_grants
    "xpm_pipeline.warehouse.view_upgrade",  # 25: analyst views with hours to 2 places, tenant name, comments
]
"""Modules whose ``@migration`` declarations ``migrate()`` imports first (append yours)."""


class MigrationError(RuntimeError):
    """The registry or the database's schema history is inconsistent with this code."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]


MIGRATIONS: list[Migration] = []
"""Every known migration, kept sorted by version."""


def register(version: int, name: str, apply: Callable[[Connection], None]) -> Migration:
    """Add a migration; re-registering the same one (a module imported twice) is harmless."""
    if not isinstance(version, int) or version < 1:
        raise MigrationError(f"migration version must be a positive integer, got {version!r}")
    for existing in MIGRATIONS:
        if existing.version == version:
            same = existing.name == name and getattr(existing.apply, "__qualname__", None) == getattr(
                apply, "__qualname__", None
            )
            if same:
                return existing
            raise MigrationError(f"migration {version} registered twice ({existing.name!r} and {name!r})")
    entry = Migration(version, name, apply)
    MIGRATIONS.append(entry)
    MIGRATIONS.sort(key=lambda m: m.version)
    return entry


def migration(version: int, name: str) -> Callable[[Callable[[Connection], None]], Callable[[Connection], None]]:
    """Decorator form of ``register``."""

    def decorate(apply: Callable[[Connection], None]) -> Callable[[Connection], None]:
        register(version, name, apply)
        return apply

    return decorate


def load_migrations(modules: Iterable[str] | None = None) -> list[Migration]:
    """Import the declaring modules and return the registry in order."""
    for module in MIGRATION_MODULES if modules is None else modules:
        importlib.import_module(module)
    return list(MIGRATIONS)


def _lock(conn: Connection) -> None:
    """Serialize migrators; on SQLite ``write_transaction`` already holds the write lock."""
    if dialect_name(conn) == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def _applied(conn: Connection) -> set[int]:
    return set(conn.execute(select(schema_migrations.c.version)).scalars())


def applied_versions(engine: Engine) -> list[int]:
    """Versions recorded in this warehouse (empty when it was never migrated)."""
    with engine.connect() as conn:
        if not conn.dialect.has_table(conn, schema_migrations.name):
            return []
        return sorted(_applied(conn))


def pending(engine: Engine) -> list[Migration]:
    done = set(applied_versions(engine))
    return [m for m in load_migrations() if m.version not in done]


def migrate(engine: Engine, *, clock: Clock = SYSTEM_CLOCK) -> list[int]:
    """Apply every pending migration in order, each in its own transaction; return those applied here."""
    registry = load_migrations()
    known = {m.version for m in registry}
    applied_here: list[int] = []
    while True:
        with write_transaction(engine) as conn:
            _lock(conn)
            metadata.create_all(conn, tables=[schema_migrations], checkfirst=True)
            done = _applied(conn)
            unknown = sorted(done - known)
            if unknown:
                raise MigrationError(
                    f"the warehouse has schema migration(s) {unknown} that this version of xpm-pipeline does "
                    "not know; upgrade xpm-pipeline"
                )
            todo = [m for m in registry if m.version not in done]
            if not todo:
                return applied_here
            step = todo[0]
            step.apply(conn)
            conn.execute(insert(schema_migrations).values(version=step.version, name=step.name, applied_at=clock.now()))
        applied_here.append(step.version)


@migration(1, "control tables: xpm_oauth_grants, xpm_tenants")
def _control_tables(conn: Connection) -> None:
    metadata.create_all(conn, tables=list(CONTROL_TABLES_V1), checkfirst=False)
