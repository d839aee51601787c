"""Analyst views, kept as plain SQL files beside this module (``sql/*.sql``), portable between SQLite
and PostgreSQL. A migration creates them; a later change to a view is a new migration that drops and
re-creates it from the file. On PostgreSQL every (re)creation comments the view and its columns from
``view_docs`` (a dropped view loses its comments)."""

from __future__ import annotations

from importlib import resources

from sqlalchemy import Connection, text

from xpm_pipeline.warehouse.db import dialect_name
from xpm_pipeline.warehouse.migrate import migration
from xpm_pipeline.warehouse.view_docs import comment_statements

VIEWS = ("v_sync_status", "v_timesheets_enriched")
ALL_VIEWS = (*VIEWS, "v_export_queue")
"""``VIEWS`` need only the entity and sync tables; ``v_export_queue`` also the export tables (migration 20)."""

_SQLITE_TYPES = {"AS NUMERIC(12, 2))": "AS REAL)"}
"""SQLite's NUMERIC affinity would turn 2.00 into the integer 2; REAL keeps a column of decimals."""


def view_sql(name: str, dialect: str = "postgresql") -> str:
    sql = resources.files("xpm_pipeline.warehouse").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")
    if dialect == "sqlite":
        for portable, sqlite in _SQLITE_TYPES.items():
            sql = sql.replace(portable, sqlite)
    return sql


def create_views(conn: Connection, names=VIEWS) -> None:
    dialect = dialect_name(conn)
    for name in names:
        conn.execute(text(f"DROP VIEW IF EXISTS {name}"))
        conn.execute(text(view_sql(name, dialect)))
        if dialect == "postgresql":
            for statement in comment_statements(name):
                conn.execute(text(statement))


@migration(4, "analyst views: v_sync_status, v_timesheets_enriched")
def _create_views(conn: Connection) -> None:
    create_views(conn)
