"""The SQL warehouse: engines, control tables and schema migrations (SQLite or PostgreSQL)."""

from xpm_pipeline.warehouse.db import dialect_name, make_engine, write_transaction
from xpm_pipeline.warehouse.migrate import applied_versions, migrate, migration

__all__ = ["applied_versions", "dialect_name", "make_engine", "migrate", "migration", "write_transaction"]
