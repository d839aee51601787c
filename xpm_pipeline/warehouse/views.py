"""Analyst views, kept as plain SQL files beside this module (``sql/*.sql``), portable between SQLite
and PostgreSQL. A migration creates them; a later change to a view is a new migration that drops and
re-creates it from the file."""

from __future__ import annotations

from importlib import resources

from sqlalchemy import Connection, text

from xpm_pipeline.warehouse.migrate import migration

VIEWS = ("v_sync_status", "v_timesheets_enriched")


def view_sql(name: str) -> str:
    return resources.files("xpm_pipeline.warehouse").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def create_views(conn: Connection, names=VIEWS) -> None:
    for name in names:
        conn.execute(text(f"DROP VIEW IF EXISTS {name}"))
        conn.execute(text(view_sql(name)))


@migration(4, "analyst views: v_sync_status, v_timesheets_enriched")
def _create_views(conn: Connection) -> None:
    create_views(conn)
