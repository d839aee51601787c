"""The SQL warehouse: engines and write transactions (``db``), control tables (``control``), and
schema migrations (``migrate``). SQLite embedded by default, or PostgreSQL."""

from xpm_pipeline.warehouse.db import dialect_name, make_engine, write_transaction

__all__ = ["dialect_name", "make_engine", "write_transaction"]
