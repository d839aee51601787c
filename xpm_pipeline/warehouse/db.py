"""Engines and write transactions that behave the same on SQLite and PostgreSQL.

Why this exists: several OS processes (Dagster runs, the CLI) share one warehouse. Correctness needs
"lock, re-read, write" transactions that really are transactions on both dialects:

- SQLite: Python's ``sqlite3`` (before 3.12) does not emit ``BEGIN`` for SELECTs or DDL, so a
  "transaction" could read outside it. We apply SQLAlchemy's documented pysqlite recipe (driver
  BEGIN off, SQLAlchemy emits it), WAL so readers don't block the writer, a 30 s busy timeout, and
  foreign keys on. ``write_transaction`` opens with ``BEGIN IMMEDIATE`` so the database write lock
  is taken before the first read: two writers queue instead of deadlocking on a lock upgrade.
- PostgreSQL: a normal transaction; callers lock the rows they will change with
  ``SELECT ... FOR UPDATE`` (``select(...).with_for_update()`` renders nothing on SQLite, so the
  same statement works on both).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.types import TypeDecorator

from xpm_pipeline.private_files import create_private_file, private_dir

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
_BEGIN_IMMEDIATE = "xpm_begin_immediate"


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` (as users and PaaS hosts write them) mean psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str, **kwargs) -> Engine:
    """An engine for the warehouse URL, with the per-dialect settings above applied."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def _sqlite_engine(parsed, **kwargs) -> Engine:
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        try:
            _create_private_database(Path(database).expanduser())
        except OSError as exc:
            from xpm_pipeline.config import ConfigError

            raise ConfigError(
                f"cannot create the warehouse {database} ({exc.strerror or exc}): check XPM_HOME and XPM_WAREHOUSE_URL"
            ) from None
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_SECONDS)  # sqlite3's busy timeout
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Recipe step 1: stop sqlite3 from issuing (or skipping) BEGIN on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                _set_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Recipe step 2: SQLAlchemy's begin is the real BEGIN; IMMEDIATE when a writer asked for it.
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_BEGIN_IMMEDIATE) else "BEGIN")

    return engine


def _create_private_database(path: Path) -> None:
    """The warehouse holds client data and encrypted tokens: create its file empty (SQLite makes a database
    of an empty file) with mode 0600 before SQLite opens it, so it is never readable by others. SQLite gives
    its -wal, -shm and -journal files the database file's mode. A folder made for it is 0700; an existing
    folder is left alone (it may be one the user shares with other things)."""
    private_dir(path.parent, tighten_existing=False)
    create_private_file(path)


def _set_wal(cursor, attempts: int = 300) -> None:
    """Switch to WAL. Switching needs a moment alone with the file: when another process is opening a
    fresh database at the same instant, SQLite answers "database is locked" at once (the busy timeout
    does not cover this pragma), so retry for up to ~30 s."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


def dialect_name(engine: Engine | Connection) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    return engine.dialect.name


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that commits on success and rolls back on error.

    On SQLite it holds the database write lock from its first statement (``BEGIN IMMEDIATE``; other
    writers wait up to the busy timeout). On PostgreSQL lock rows with ``with_for_update()``.
    """
    with engine.connect() as conn:
        if dialect_name(engine) == "sqlite":
            conn = conn.execution_options(**{_BEGIN_IMMEDIATE: True})
        with conn.begin():
            yield conn


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on both dialects.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC
    and given back their UTC zone on read. Naive input is refused: it is always a bug (local time?).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime (use the injected Clock)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
