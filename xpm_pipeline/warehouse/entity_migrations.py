"""Migration 2: the entity tables (``xpm_clients`` ... ``xpm_timesheets``) with their indexes and comments.

The tables are generated from the entity registry (``schema.ENTITY_TABLES``). This migration creates
them as the registry declares them *today*; a column added to the registry later needs its own
migration (``ALTER TABLE ... ADD COLUMN``) for warehouses created before it, so never edit this one.
"""

from __future__ import annotations

from sqlalchemy import Connection

from xpm_pipeline.warehouse.control import metadata
from xpm_pipeline.warehouse.migrate import migration
from xpm_pipeline.warehouse.schema import ENTITY_TABLES

VERSION = 2
NAME = "entity tables"


@migration(VERSION, NAME)
def create_entity_tables(conn: Connection) -> None:
    """Create every entity table and its secondary indexes (fails if one already exists)."""
    metadata.create_all(conn, tables=list(ENTITY_TABLES.values()), checkfirst=False)
